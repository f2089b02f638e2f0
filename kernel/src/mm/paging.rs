//! Editing the kernel's page tables.
//!
//! The x86_64 crate's `OffsetPageTable` walks the 4-level tables through the
//! physical memory window (SDM Vol. 3A 4.5 "4-Level Paging and 5-Level Paging").
//! Intermediate tables it needs come from the frame allocator. One lock guards
//! the tables; the TLB of this CPU is flushed for each changed page (other CPUs
//! are the business of TLB shootdown, later).

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::mapper::{MapToError, Translate};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::{frame, layout};
use crate::arch::x86::mmu;
use crate::sync::SpinLock;

static KERNEL_TABLES: SpinLock<Option<OffsetPageTable<'static>>> = SpinLock::new(None);

/// Hands the page-table code frames for new intermediate tables.
struct TableFrames;

// SAFETY: frame::allocate() returns unused frames, each once.
unsafe impl FrameAllocator<Size4KiB> for TableFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        KERNEL_TABLES_MADE.fetch_add(1, Ordering::Relaxed);
        frame::allocate()
    }
}

/// How many page tables the kernel half has gained since boot (they are
/// never freed): for frame accounting, which must not mistake them for a leak.
static KERNEL_TABLES_MADE: AtomicU64 = AtomicU64::new(0);

pub fn kernel_tables_made() -> u64 {
    KERNEL_TABLES_MADE.load(Ordering::Relaxed)
}

static KERNEL_LEVEL4: AtomicU64 = AtomicU64::new(0);

/// The kernel's own level-4 table (the one the bootloader built).
pub fn kernel_level4() -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(KERNEL_LEVEL4.load(Ordering::Relaxed)))
}

pub fn init() {
    let level_4 = mmu::current_root();
    KERNEL_LEVEL4.store(level_4.start_address().as_u64(), Ordering::Relaxed);
    let offset = super::phys_to_virt(PhysAddr::new(0));
    let table: *mut PageTable = super::phys_to_virt(level_4.start_address()).as_mut_ptr();
    // SAFETY: CR3 names the active level-4 table, which the bootloader built and
    // the physical window maps at `offset`; from now on only this module edits
    // it, under KERNEL_TABLES' lock.
    let mapper = unsafe { OffsetPageTable::new(&mut *table, offset) };
    *KERNEL_TABLES.lock_irqsave() = Some(mapper);
    preallocate_kernel_half();
}

/// Gives every kernel-half entry of the level-4 table (256-511) a level-3
/// table now, even an empty one. Address spaces copy these 256 entries when
/// they are created (see `address_space`), and the AP trampoline copies the
/// table too; as long as the entries never change afterwards, a kernel
/// mapping made later, in any slot, lands in a level-3 table every copy
/// shares. Without this, a mapping in a slot first used after a space was
/// created would be missing from that space. Linux does the same for its
/// vmalloc area (arch/x86/mm/init_64.c, `preallocate_vmalloc_pages()`).
/// Cost: one frame per unused slot, at most 1 MiB.
fn preallocate_kernel_half() {
    with_tables(|tables| {
        let level4 = tables.level_4_table_mut();
        for index in 256..512 {
            let entry = &mut level4[index];
            if entry.flags().contains(PageTableFlags::PRESENT) {
                continue;
            }
            let frame = frame::allocate().expect("out of memory for the kernel's level-3 tables");
            // SAFETY: a fresh frame, reachable through the physical window.
            unsafe {
                (*super::phys_to_virt(frame.start_address()).as_mut_ptr::<PageTable>()).zero()
            };
            entry.set_frame(frame, PageTableFlags::PRESENT | PageTableFlags::WRITABLE);
        }
    });
}

fn with_tables<R>(f: impl FnOnce(&mut OffsetPageTable<'static>) -> R) -> R {
    let mut tables = KERNEL_TABLES.lock_irqsave();
    f(tables.as_mut().expect("paging used before mm::paging::init()"))
}

/// Maps one page to one frame.
///
/// # Safety
/// The page must be unused in the kernel's address space, and the frame must be
/// owned by the caller (or be device memory that nothing else maps differently).
pub unsafe fn map(
    page: Page,
    frame: PhysFrame,
    flags: PageTableFlags,
) -> Result<(), MapToError<Size4KiB>> {
    with_tables(|tables| {
        // SAFETY: guaranteed by the caller (see above).
        unsafe { tables.map_to(page, frame, flags, &mut TableFrames) }.map(|flush| flush.flush())
    })
}

/// Unmaps one page and returns the frame it mapped.
///
/// # Safety
/// Nothing may use the page afterwards (on any CPU).
pub unsafe fn unmap(page: Page) -> Option<PhysFrame> {
    with_tables(|tables| {
        tables.unmap(page).ok().map(|(frame, flush)| {
            flush.flush();
            frame
        })
    })
}

/// The physical address `address` maps to, if it is mapped.
pub fn translate(address: VirtAddr) -> Option<PhysAddr> {
    with_tables(|tables| tables.translate_addr(address))
}

/// Allocates frames for `size` bytes at `start` and maps them writable.
pub fn map_fresh_memory(start: VirtAddr, size: u64) {
    let pages = Page::<Size4KiB>::range(
        Page::containing_address(start),
        Page::containing_address(start + size),
    );
    for page in pages {
        let frame = frame::allocate().expect("out of physical memory while mapping kernel memory");
        // SAFETY: callers pass regions of the kernel's own layout, which nothing
        // else maps; the frame is fresh.
        unsafe { map(page, frame, PageTableFlags::PRESENT | PageTableFlags::WRITABLE) }
            .expect("mapping kernel memory failed");
    }
}

static NEXT_MMIO: AtomicU64 = AtomicU64::new(layout::MMIO_START);

/// Maps `size` bytes of device registers at `phys`, uncached, and returns where.
/// Device registers must not be cached: reads have side effects and writes must
/// reach the device in order (SDM Vol. 3A 12.3 "Methods of Caching Available").
pub fn map_mmio(phys: PhysAddr, size: u64) -> VirtAddr {
    let first = PhysFrame::<Size4KiB>::containing_address(phys);
    let last = PhysFrame::<Size4KiB>::containing_address(phys + (size.max(1) - 1));
    let frames = PhysFrame::range_inclusive(first, last);
    let bytes = frames.count() as u64 * frame::FRAME_SIZE;
    let start = NEXT_MMIO.fetch_add(bytes, Ordering::Relaxed);
    assert!(start + bytes <= layout::MMIO_END, "the MMIO region is full");
    let flags = PageTableFlags::PRESENT
        | PageTableFlags::WRITABLE
        | PageTableFlags::NO_CACHE
        | PageTableFlags::WRITE_THROUGH;
    for (i, frame) in PhysFrame::range_inclusive(first, last).enumerate() {
        let page = Page::containing_address(VirtAddr::new(start + i as u64 * frame::FRAME_SIZE));
        // SAFETY: the page is new (NEXT_MMIO only grows); the frame is device memory.
        unsafe { map(page, frame, flags) }.expect("mapping MMIO failed");
    }
    VirtAddr::new(start + phys.as_u64() % frame::FRAME_SIZE)
}

/// Whether `address` is mapped, found by walking the active page tables
/// without taking their lock: for the panic path only, where the lock's holder
/// may have been stopped. A concurrent change could make the answer stale; by
/// then the other CPUs are stopped.
pub fn is_mapped_for_panic(address: u64) -> bool {
    let Ok(address) = VirtAddr::try_new(address) else { return false };
    let level_4 = mmu::current_root();
    let mut table_address = level_4.start_address();
    let indices = [address.p4_index(), address.p3_index(), address.p2_index(), address.p1_index()];
    for (level, index) in indices.into_iter().enumerate() {
        // SAFETY: table_address names a page table (CR3 or a present non-huge
        // entry above), reachable through the physical window; only read.
        let table = unsafe { &*super::phys_to_virt(table_address).as_ptr::<PageTable>() };
        let entry = &table[index];
        if !entry.flags().contains(PageTableFlags::PRESENT) {
            return false;
        }
        if level > 0 && entry.flags().contains(PageTableFlags::HUGE_PAGE) {
            return true;
        }
        table_address = entry.addr();
    }
    true
}
