//! Tests of the kernel heap: allocation, that freed memory comes back, and that exhaustion is an error (the crash test).

use super::*;
use crate::testing::{KernelTest, TestResult};

fn heap_box_and_vec() -> TestResult {
    let boxed = alloc::boxed::Box::new(0x1234_5678u64);
    crate::ensure!(*boxed == 0x1234_5678, "a boxed value changed");
    // The heap is mapped page by page: the box's address must translate to a
    // frame, and reading that frame through the physical window must show the box.
    let physical = super::super::paging::translate(VirtAddr::from_ptr(&*boxed))
        .ok_or("the heap is not mapped")?;
    // SAFETY: the frame backs the live box; only read.
    let through_window =
        unsafe { super::super::phys_to_virt(physical).as_ptr::<u64>().read_volatile() };
    crate::ensure!(
        through_window == 0x1234_5678,
        "translate() gave a frame that does not hold the box"
    );
    let mut numbers = alloc::vec::Vec::new();
    for i in 0..100_000u64 {
        numbers.push(i);
    }
    crate::ensure!(
        numbers.iter().sum::<u64>() == 99_999 * 100_000 / 2,
        "a grown Vec lost elements"
    );
    Ok(())
}

fn heap_memory_is_returned() -> TestResult {
    // The heap is shared: an interrupt handler here (a timer tick waking a
    // sleeper) or another CPU may allocate during the rounds and change the
    // total for reasons of its own. Interrupts stay off here, and a round of
    // measurement that another CPU disturbed is repeated; a real leak shows
    // in every attempt.
    let mut attempts = alloc::vec::Vec::new();
    for _ in 0..3 {
        let (before, after) = crate::arch::x86::interrupts::without_interrupts(|| {
            let before = used();
            for round in 0..100 {
                let blocks: alloc::vec::Vec<alloc::vec::Vec<u8>> =
                    (0..64).map(|i| alloc::vec![round as u8; 16 + i * 37]).collect();
                assert!(
                    blocks.iter().enumerate().all(|(i, b)| b.len() == 16 + i * 37),
                    "block sizes changed"
                );
            }
            (before, used())
        });
        if before == after {
            return Ok(());
        }
        attempts.push((before, after));
    }
    Err(alloc::format!(
        "heap use changed over free/alloc rounds, in 3 attempts (before, after): {attempts:?}"
    ))
}

fn heap_exhaustion_is_an_error_not_a_hang() -> TestResult {
    let mut too_big: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
    let result = too_big.try_reserve_exact(2 * HEAP_SIZE as usize);
    crate::ensure!(result.is_err(), "reserving twice the heap's size succeeded");
    Ok(())
}

fn crash_out_of_memory() -> TestResult {
    // black_box: an allocation whose contents are never used may be removed
    // by the optimiser, and then nothing runs out.
    let huge = core::hint::black_box(alloc::vec![0u8; 2 * HEAP_SIZE as usize]);
    Err(alloc::format!("allocated {} bytes, more than the heap has", huge.len()))
}

crate::kernel_tests![
    KernelTest::new("heap_box_and_vec", heap_box_and_vec),
    KernelTest::new("heap_memory_is_returned", heap_memory_is_returned),
    KernelTest::new("heap_exhaustion_is_an_error", heap_exhaustion_is_an_error_not_a_hang),
    KernelTest::crash("crash_out_of_memory", crash_out_of_memory),
];
