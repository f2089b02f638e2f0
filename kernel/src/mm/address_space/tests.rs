//! Tests of address spaces: a space sees kernel mappings made after it was created, on every CPU.

use super::*;
use crate::testing::{KernelTest, TestResult};

/// A kernel mapping made in a top-level slot that nothing used when an
/// address space was created must still be visible in that space, on every
/// CPU: kernel-half top-level entries are shared, never copied late.
fn sees_kernel_mappings_made_after_it() -> TestResult {
    use alloc::sync::Arc;
    use x86_64::VirtAddr;
    // A kernel-half slot with nothing mapped under it yet.
    // SAFETY: kernel_level4() is the kernel's live level-4 table; only read here.
    let kernel = unsafe { &*table(super::super::paging::kernel_level4()) };
    let unused_slot = (256..512).rev().find(|&i| {
        let entry = &kernel[i];
        // SAFETY: a present entry of the kernel's level-4 table names a level-3 table.
        !entry.flags().contains(PageTableFlags::PRESENT)
            || unsafe { &*table(entry.frame().unwrap()) }.iter().all(|e| e.is_unused())
    });
    let slot = unused_slot.ok_or("no unused kernel top-level slot")? as u64;
    let space = Arc::new(AddressSpace::new());
    let address = VirtAddr::new_truncate(slot << 39);
    let page = Page::containing_address(address);
    let frame = frame::allocate().ok_or("out of frames")?;
    // SAFETY: a fresh frame, mapped below at a kernel address nothing else uses.
    unsafe {
        super::super::phys_to_virt(frame.start_address()).as_mut_ptr::<u64>().write_volatile(0x5eed)
    };
    // SAFETY: `page` is in a kernel slot nothing maps (found above), `frame` is fresh.
    unsafe {
        super::super::paging::map(page, frame, PageTableFlags::PRESENT | PageTableFlags::WRITABLE)
    }
    .map_err(|e| alloc::format!("map: {e:?}"))?;
    let mut seen = alloc::vec::Vec::new();
    for cpu in crate::smp::cpus().iter().filter(|c| c.state() == crate::smp::ApState::Online) {
        let value = Arc::new(AtomicU64::new(0));
        let value2 = value.clone();
        crate::sched::Builder::new("reader")
            .pin(cpu.number)
            .address_space(space.clone())
            .spawn(move || {
                // SAFETY: mapped above in the kernel half, which every space shares.
                value2.store(unsafe { address.as_ptr::<u64>().read_volatile() }, Ordering::Release);
            })
            .join();
        seen.push((cpu.number, value.load(Ordering::Acquire)));
    }
    crate::smp::call::call_on_many(
        CpuSet::all_online(),
        "unload_address_space",
        &super::super::lazy_tlb::unload,
    )
    .map_err(|e| alloc::format!("{e:?}"))?;
    // SAFETY: only this test used the page.
    let unmapped = unsafe { super::super::paging::unmap(page) };
    crate::tlb::shootdown_kernel(address, 1);
    if let Some(frame) = unmapped {
        // SAFETY: unmapped and flushed everywhere.
        unsafe { frame::free(frame) };
    }
    for (cpu, value) in seen {
        crate::ensure!(
            value == 0x5eed,
            "cpu{cpu} read {value:#x} through the space instead of 0x5eed"
        );
    }
    Ok(())
}

crate::kernel_tests![KernelTest::new(
    "address_space_sees_kernel_mappings_made_after_it",
    sees_kernel_mappings_made_after_it,
)];
