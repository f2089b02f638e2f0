//! Address spaces: a lower half of their own, the kernel's upper half shared,
//! and a record of the CPUs where each is loaded.
//!
//! A new address space gets a level-4 table whose upper 256 entries are copies
//! of the kernel's (they point to the same lower-level tables, so kernel
//! mappings are the same everywhere: every one of those entries exists from
//! boot, see `paging`) and whose lower half starts empty.
//!
//! `active_cpus` is the set of CPUs whose CR3 holds this space: the CPUs that
//! may have its translations in their TLBs, and so the CPUs a TLB shootdown
//! must reach (Linux: `mm_cpumask`). A CPU joins the set before it loads CR3
//! and leaves it after it has loaded another, so a change made while the bit
//! is clear cannot be in that CPU's TLB. Kernel threads do not switch CR3:
//! they borrow whatever was loaded, and the CPU stays in that space's set,
//! lazily (see `lazy_tlb`). `tlb_gen` counts the space's TLB-visible changes,
//! so a lazy CPU that comes back can tell whether it missed one.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::PhysAddr;
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB,
    page_table::PageTableEntry,
};

use super::frame;
use crate::arch::x86::mmu;
use crate::percpu::{AtomicCpuSet, CpuSet};
use crate::sync::SpinLock;

mod tests;

/// What user mode may do with a page (`PROT_READ`, `PROT_WRITE`,
/// `PROT_EXEC`). x86 pages are always readable when present, so any right
/// implies reading; none at all is `PROT_NONE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Access {
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
}

pub struct AddressSpace {
    level4: PhysFrame,
    /// `active_cpus`, changed with SeqCst atomic read-modify-writes. The set
    /// is a bitmap of several words, and reading it is not a snapshot of all
    /// of them at one instant; the join-before-CR3 / leave-after protocol does
    /// not need one. It is a promise about each CPU alone, and each CPU's bit
    /// lives in one word, which that CPU changes with one locked instruction
    /// (`LOCK OR` to join, `LOCK AND` to leave), a full barrier on x86. A
    /// shootdown's `next_tlb_gen` (a `LOCK XADD`) and fence come after its
    /// page-table store, so the store is visible everywhere before it reads
    /// any word. For a joining CPU's word,
    /// that read comes either after the locked OR, and sees the bit, or before
    /// it, and then the store was visible before the OR, so the joiner's CR3
    /// load and table walks, which follow its OR, see the new entry. A
    /// leaving CPU clears its bit only after its CR3 write (which dropped the
    /// space's translations), so a clear bit read in any word is safe to skip.
    /// Other CPUs' updates of other words change none of this.
    active: AtomicCpuSet,
    /// Bumped by every shootdown of this space, after its page-table change
    /// (Linux: `mm->context.tlb_gen`).
    tlb_gen: AtomicU64,
    /// Serialises edits of the page tables.
    edit: SpinLock<()>,
}

struct Frames;

// SAFETY: frame::allocate() hands out each free frame once.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        frame::allocate()
    }
}

/// Where user mappings may go: above page 0, below the last page of the
/// lower half (`arch::x86::entry::USER_END`).
pub const USER_START: u64 = 0x1000;
pub const USER_END: u64 = crate::arch::x86::entry::USER_END;

/// The entry flags of a user page with rights `access`. Any right makes the
/// page user-accessible (x86 pages are readable when present); none leaves
/// it present for the kernel only (PROT_NONE, see `protect_range`).
fn user_page_flags(access: Access) -> PageTableFlags {
    let mut flags = PageTableFlags::PRESENT;
    if access.readable || access.writable || access.executable {
        flags |= PageTableFlags::USER_ACCESSIBLE;
    }
    if access.writable {
        flags |= PageTableFlags::WRITABLE;
    }
    if !access.executable {
        flags |= PageTableFlags::NO_EXECUTE;
    }
    flags
}

fn table(frame: PhysFrame) -> *mut PageTable {
    super::phys_to_virt(frame.start_address()).as_mut_ptr()
}

impl AddressSpace {
    pub fn new() -> AddressSpace {
        let level4 = frame::allocate().expect("out of memory for a page table");
        // The kernel's own table, not whatever CR3 holds: this thread may be
        // preempted here, and a space it borrowed (lazy TLB) freed meanwhile.
        // Its kernel half is final (see paging::preallocate_kernel_half).
        let kernel = super::paging::kernel_level4();
        // SAFETY: `level4` is a fresh frame; the kernel's table is only read.
        unsafe {
            let new = &mut *table(level4);
            let kernel = &*table(kernel);
            new.zero();
            for i in 256..512 {
                new[i] = kernel[i].clone();
            }
        }
        AddressSpace {
            level4,
            active: AtomicCpuSet::new(),
            tlb_gen: AtomicU64::new(0),
            edit: SpinLock::new(()),
        }
    }

    /// The CPUs where this space is loaded (see the module comment).
    pub fn active_cpus(&self) -> CpuSet {
        self.active.load(Ordering::SeqCst)
    }

    /// Whether `cpu` has this space loaded (one word read, not the whole set).
    pub fn is_active_on(&self, cpu: usize) -> bool {
        self.active.contains(cpu, Ordering::SeqCst)
    }

    /// The space's latest TLB generation.
    pub fn tlb_gen(&self) -> u64 {
        self.tlb_gen.load(Ordering::Acquire)
    }

    /// Starts a new TLB generation, after a page-table change whose
    /// shootdown follows; returns it. A full barrier: the change is visible
    /// before the new number, and the number before anything read after.
    pub fn next_tlb_gen(&self) -> u64 {
        self.tlb_gen.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn edit<R>(&self, f: impl FnOnce(&mut OffsetPageTable<'static>) -> R) -> R {
        let _guard = self.edit.lock_irqsave();
        // SAFETY: the table belongs to this space; edits are serialised above.
        let mut mapper = unsafe {
            OffsetPageTable::new(&mut *table(self.level4), super::phys_to_virt(PhysAddr::new(0)))
        };
        f(&mut mapper)
    }

    /// Maps `page` (lower half) to `frame`, writable. The caller flushes.
    pub fn map(&self, page: Page, frame: PhysFrame) -> Result<(), MapToError<Size4KiB>> {
        assert!(
            page.start_address().as_u64() < 0x0000_8000_0000_0000,
            "address spaces own the lower half only"
        );
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
        self.edit(|m| {
            // SAFETY: the lower half of this space is its own; the flush is the
            // caller's business (a fresh mapping needs none: not-present
            // entries are not cached).
            unsafe { m.map_to(page, frame, flags, &mut Frames) }.map(|flush| flush.ignore())
        })
    }

    /// Maps `page` (lower half) to `frame` for user mode: readable, and
    /// writable or executable as asked. The tables on the way get the user
    /// bit too (the CPU requires it at every level, SDM Vol. 3A 4.6.1). A
    /// fresh mapping needs no flush.
    pub fn map_user(
        &self,
        page: Page,
        frame: PhysFrame,
        access: Access,
    ) -> Result<(), MapToError<Size4KiB>> {
        // Never page 0 (a null pointer must fault) nor the top page of the
        // lower half: code there could make `syscall` save a return address
        // past the canonical hole, and returning to it would fault in ring 0
        // (see `arch::x86::syscall`).
        let address = page.start_address().as_u64();
        assert!(
            (USER_START..USER_END).contains(&address),
            "user pages lie in {USER_START:#x}..{USER_END:#x}, not at {address:#x}"
        );
        let flags = user_page_flags(access);
        let tables =
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        self.edit(|m| {
            // SAFETY: as in `map`: the lower half is this space's own.
            unsafe { m.map_to_with_table_flags(page, frame, flags, tables, &mut Frames) }
                .map(|flush| flush.ignore())
        })
    }

    /// The level-1 entry of `page`, if the tables on the way exist (the
    /// caller holds `edit`).
    fn leaf_entry(&self, page: Page) -> Option<*mut PageTableEntry> {
        let address = page.start_address();
        let mut table_frame = self.level4;
        for index in [address.p4_index(), address.p3_index(), address.p2_index()] {
            // SAFETY: a page table of this space, edits serialised by `edit`.
            let entry = unsafe { &(&*table(table_frame))[index] };
            if !entry.flags().contains(PageTableFlags::PRESENT)
                || entry.flags().contains(PageTableFlags::HUGE_PAGE)
            {
                return None;
            }
            table_frame = entry.frame().ok()?;
        }
        // SAFETY: as above; the level-1 table of `page`.
        Some(unsafe { &mut (&mut *table(table_frame))[address.p1_index()] } as *mut _)
    }

    /// The flags `page` is mapped with, if it is mapped.
    pub fn flags_of(&self, page: Page) -> Option<PageTableFlags> {
        let _guard = self.edit.lock_irqsave();
        // SAFETY: an entry of this space's tables, read under `edit`.
        let flags = unsafe { &*self.leaf_entry(page)? }.flags();
        flags.contains(PageTableFlags::PRESENT).then_some(flags)
    }

    /// Calls `f` on every present level-1 entry of `[start, end)` (page
    /// aligned, lower half), skipping tables that do not exist, so a huge
    /// sparse range costs only what is mapped in it. Under `edit`.
    fn for_each_mapped(&self, start: u64, end: u64, mut f: impl FnMut(&mut PageTableEntry)) {
        const SPANS: [u64; 4] = [1 << 39, 1 << 30, 1 << 21, 1 << 12];
        fn walk(
            table_frame: PhysFrame,
            level: usize,
            start: u64,
            end: u64,
            f: &mut dyn FnMut(&mut PageTableEntry),
        ) {
            let span = SPANS[level];
            let mut at = start;
            while at < end {
                let index = ((at >> (39 - 9 * level)) & 511) as usize;
                let next = ((at / span) + 1) * span;
                // SAFETY: a page table of this space, edits serialised by `edit`.
                let entry = unsafe { &mut (&mut *table(table_frame))[index] };
                let flags = entry.flags();
                if flags.contains(PageTableFlags::PRESENT) {
                    if level == 3 {
                        f(entry);
                    } else if !flags.contains(PageTableFlags::HUGE_PAGE)
                        && let Ok(frame) = entry.frame()
                    {
                        walk(frame, level + 1, at, end.min(next), f);
                    }
                }
                at = next;
            }
        }
        let _guard = self.edit.lock_irqsave();
        walk(self.level4, 0, start, end.min(0x0000_8000_0000_0000), &mut f);
    }

    /// Unmaps every mapped page of `[start, end)` and returns their frames;
    /// the caller shoots down before freeing them.
    pub fn unmap_range(&self, start: u64, end: u64) -> alloc::vec::Vec<PhysFrame> {
        let mut frames = alloc::vec::Vec::new();
        self.for_each_mapped(start, end, |entry| {
            if let Ok(frame) = entry.frame() {
                frames.push(frame);
            }
            // SAFETY: a single aligned 64-bit store clears the entry at once.
            unsafe { (entry as *mut PageTableEntry as *mut u64).write_volatile(0) };
        });
        frames
    }

    /// Gives every mapped page of `[start, end)` the rights `access`
    /// (`mprotect`); returns whether any page lost a right, which needs a
    /// shootdown (a TLB never holds more rights than its entry had, and a
    /// fault on a right just given makes the CPU reread the entry, SDM Vol.
    /// 3A 4.10.4.3).
    ///
    /// No rights at all (PROT_NONE) keeps the pages present without their
    /// user bit, so their contents survive until rights come back. (The
    /// kernel's own copies could still reach them: an accepted difference
    /// from Linux, which marks such entries not-present with a software bit.)
    pub fn protect_range(&self, start: u64, end: u64, access: Access) -> bool {
        let mut lost_a_right = false;
        self.for_each_mapped(start, end, |entry| {
            let old = entry.flags();
            let new = user_page_flags(access)
                | (old & (PageTableFlags::ACCESSED | PageTableFlags::DIRTY));
            let lost = |flag| old.contains(flag) && !new.contains(flag);
            lost_a_right |= lost(PageTableFlags::USER_ACCESSIBLE)
                || lost(PageTableFlags::WRITABLE)
                || (new.contains(PageTableFlags::NO_EXECUTE)
                    && !old.contains(PageTableFlags::NO_EXECUTE));
            let value = entry.addr().as_u64() | new.bits();
            // SAFETY: a single aligned 64-bit store replaces the entry atomically.
            unsafe { (entry as *mut PageTableEntry as *mut u64).write_volatile(value) };
        });
        lost_a_right
    }

    /// Points `page` at `frame` instead of whatever it mapped, and returns the
    /// old frame. The entry is rewritten with one 64-bit store, so a CPU
    /// walking the tables meanwhile sees the old mapping or the new, never a
    /// hole. Other CPUs may keep using the old translation from their TLBs
    /// until the caller's shootdown completes; only then may the old frame be
    /// reused.
    pub fn remap(&self, page: Page, frame: PhysFrame) -> Option<PhysFrame> {
        let _guard = self.edit.lock_irqsave();
        // SAFETY: an entry of this space's tables, edited under `edit`.
        let entry = unsafe { &mut *self.leaf_entry(page)? };
        let old = entry.frame().ok()?;
        let value = frame.start_address().as_u64() | entry.flags().bits();
        // SAFETY: a single aligned 64-bit store replaces the entry atomically.
        unsafe { (entry as *mut PageTableEntry as *mut u64).write_volatile(value) };
        Some(old)
    }

    /// Unmaps `page` and returns its frame; the caller shoots down the TLBs
    /// before reusing the frame.
    pub fn unmap(&self, page: Page) -> Option<PhysFrame> {
        self.edit(|m| {
            m.unmap(page).ok().map(|(frame, flush)| {
                flush.ignore();
                frame
            })
        })
    }

    /// Loads this space on this CPU: joins `active_cpus` first, reads the
    /// TLB generation, then writes CR3, which flushes the lower half's
    /// translations; returns the generation the TLB is now up to date with.
    ///
    /// # Safety
    /// Interrupts are off, and `previous` is the space this CPU had loaded (if any).
    pub unsafe fn load(&self, cpu: usize, previous: Option<&AddressSpace>) -> u64 {
        self.active.insert(cpu, Ordering::SeqCst);
        // After joining: a change this read misses sees us in the set.
        let generation = self.tlb_gen.load(Ordering::SeqCst);
        // SAFETY: the upper half matches the kernel's, so the running code and
        // stack stay mapped across the switch.
        unsafe { mmu::load_root(self.level4) };
        if let Some(previous) = previous {
            previous.active.remove(cpu, Ordering::SeqCst);
        }
        generation
    }
}

impl AddressSpace {
    /// Removes `cpu` from the set without touching CR3: for a CPU that was
    /// restarted (INIT) and runs on the kernel's tables already.
    pub fn forget_cpu(&self, cpu: usize) {
        self.active.remove(cpu, Ordering::SeqCst);
    }
}

/// Goes back to the kernel's own tables on this CPU (leaving `space`'s set).
///
/// # Safety
/// As for `AddressSpace::load`.
pub unsafe fn load_kernel_tables(kernel: PhysFrame, cpu: usize, space: &AddressSpace) {
    // SAFETY: the kernel's tables map everything the kernel runs on.
    unsafe { mmu::load_root(kernel) };
    space.active.remove(cpu, Ordering::SeqCst);
}

impl Drop for AddressSpace {
    /// Frees the lower half's page tables (not the frames they map: those
    /// belong to whoever mapped them) and the level-4 table.
    fn drop(&mut self) {
        assert!(
            self.active.load(Ordering::SeqCst).is_empty(),
            "an address space was dropped while loaded"
        );
        fn free_tables(frame: PhysFrame, level: u8) {
            // SAFETY: a page table of this space, no longer reachable by any CPU.
            let entries = unsafe { &*table(frame) };
            if level > 1 {
                for entry in entries.iter().filter(|e| e.flags().contains(PageTableFlags::PRESENT))
                {
                    if !entry.flags().contains(PageTableFlags::HUGE_PAGE) {
                        free_tables(entry.frame().unwrap(), level - 1);
                    }
                }
            }
            // SAFETY: as above.
            unsafe { frame::free(frame) };
        }
        // SAFETY: as above.
        let level4 = unsafe { &*table(self.level4) };
        for entry in level4.iter().take(256).filter(|e| e.flags().contains(PageTableFlags::PRESENT))
        {
            free_tables(entry.frame().unwrap(), 3);
        }
        // SAFETY: the level-4 table is ours and unused.
        unsafe { frame::free(self.level4) };
    }
}
