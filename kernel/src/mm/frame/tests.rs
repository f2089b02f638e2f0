//! Tests of the frame allocator: frames are distinct, usable, writable, and reused once freed.

use super::*;
use crate::testing::{KernelTest, TestResult};

fn frames_are_distinct_usable_and_writable() -> TestResult {
    const COUNT: usize = 512;
    let (free_before, _) = counts();
    let mut frames = alloc::vec::Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        let frame = allocate().ok_or("ran out of frames")?;
        let address = frame.start_address().as_u64();
        crate::ensure!(address % FRAME_SIZE == 0, "frame {address:#x} is not 4 KiB aligned");
        crate::ensure!(address >= LOW_MEMORY_END, "frame {address:#x} is below 1 MiB");
        crate::ensure!(
            is_in_usable_region(address),
            "frame {address:#x} is not in a usable region"
        );
        let word = super::super::phys_to_virt(frame.start_address() + 8u64).as_mut_ptr::<u64>();
        // SAFETY: the frame was just allocated to this test; offset 8 avoids the
        // free-list link written on free().
        unsafe { word.write_volatile(0x5a5a_0000 + i as u64) };
        frames.push(frame);
    }
    for (i, frame) in frames.iter().enumerate() {
        // SAFETY: as above; the test still owns every frame.
        let value = unsafe {
            super::super::phys_to_virt(frame.start_address() + 8u64).as_ptr::<u64>().read_volatile()
        };
        crate::ensure!(
            value == 0x5a5a_0000 + i as u64,
            "frame {i} was overwritten: two allocations share it"
        );
    }
    let mut sorted: alloc::vec::Vec<u64> =
        frames.iter().map(|f| f.start_address().as_u64()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    crate::ensure!(sorted.len() == COUNT, "only {} of {COUNT} frames are distinct", sorted.len());
    crate::ensure!(counts().0 == free_before - COUNT, "the free count did not drop by {COUNT}");
    for frame in frames {
        // SAFETY: the test allocated these frames and holds no pointer into them.
        unsafe { free(frame) };
    }
    crate::ensure!(counts().0 == free_before, "freeing did not restore the free count");
    Ok(())
}

fn freed_frames_are_reused() -> TestResult {
    let frame = allocate().ok_or("ran out of frames")?;
    // SAFETY: just allocated, never mapped.
    unsafe { free(frame) };
    let again = allocate().ok_or("ran out of frames")?;
    crate::ensure!(again == frame, "a freed frame was not the next one handed out");
    // SAFETY: as above.
    unsafe { free(again) };
    Ok(())
}

crate::kernel_tests![
    KernelTest::new(
        "frame_alloc_distinct_usable_writable",
        frames_are_distinct_usable_and_writable,
    ),
    KernelTest::new("frame_free_then_reuse", freed_frames_are_reused),
];
