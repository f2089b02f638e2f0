//! A process's memory map: which ranges of the user half it may use, with
//! which rights, and the system calls that change it (`mmap`, `munmap`,
//! `mprotect`, `madvise`, `brk`). These are where user programs cause TLB
//! shootdowns, as in Linux.
//!
//! A range the process may use is a [`Region`] (Linux: a VMA). Pages in it
//! get frames only when first touched: the page fault finds the region,
//! checks the access against its rights and maps a zeroed frame (demand
//! zero). Taking pages away is the other direction, and the order matters:
//!
//! ```text
//!   1. change the page-table entries (unmap, or take a right away)
//!   2. tlb::shootdown: every CPU that may hold the old translation drops it
//!      (the space's active CPUs; lazy ones catch up, see lazy_tlb)
//!   3. only then free the frames
//! ```
//!
//! Freeing before step 2 returns would let another CPU go on reading or
//! writing a frame through its stale TLB entry after the frame was given to
//! someone else. Linux does the same with its `mmu_gather`: `zap_page_range`
//! clears the entries and gathers the pages, `tlb_finish_mmu` calls
//! `flush_tlb_mm_range` and frees them after.
//!
//! The map is behind a sleeping [`Mutex`], not a spin lock, because the
//! shootdown in step 2 waits for other CPUs, preemptibly (`ipi_wait=`): a
//! high-priority thread may run meanwhile, and the waiter may sleep.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use x86_64::VirtAddr;
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};

use super::errno::{EEXIST, EINVAL, ENOMEM, Errno};
use crate::mm::address_space::{Access, AddressSpace, USER_END, USER_START};
use crate::mm::{self, frame};

pub const PAGE_SIZE: u64 = frame::FRAME_SIZE;

/// The stack region: 8 MiB below the top of the user half (Linux's default
/// `ulimit -s`), its pages given on demand.
pub const STACK_SIZE: u64 = 8 << 20;
pub const STACK_TOP: u64 = USER_END;

/// `mmap` without an address places regions top-down below this, leaving a
/// gap under the stack.
const MMAP_TOP: u64 = STACK_TOP - STACK_SIZE - (1 << 30);

fn page_align_up(value: u64) -> Option<u64> {
    value.checked_next_multiple_of(PAGE_SIZE)
}

fn page(address: u64) -> Page {
    Page::containing_address(VirtAddr::new(address))
}

/// A range the process may use, and how.
#[derive(Clone, Copy, Debug)]
struct Region {
    end: u64,
    access: Access,
}

/// The memory map of one process.
pub struct MemoryMap {
    /// Regions by start address; they never overlap.
    regions: BTreeMap<u64, Region>,
    /// The program break: the heap is `[heap_start, brk)` (page-rounded).
    heap_start: u64,
    brk: u64,
}

/// What a page fault in user memory asks for.
#[derive(Clone, Copy, Debug)]
pub struct FaultAccess {
    pub write: bool,
    pub execute: bool,
}

impl MemoryMap {
    pub fn new() -> MemoryMap {
        let mut map = MemoryMap { regions: BTreeMap::new(), heap_start: 0, brk: 0 };
        let stack = Access { readable: true, writable: true, executable: false };
        map.regions.insert(STACK_TOP - STACK_SIZE, Region { end: STACK_TOP, access: stack });
        map
    }

    /// Records a range the loader filled (an ELF segment); the heap starts
    /// after the highest.
    pub fn add_loaded(&mut self, start: u64, end: u64, access: Access) {
        self.regions.insert(start, Region { end, access });
        self.heap_start = self.heap_start.max(end);
        self.brk = self.heap_start;
    }

    /// The region containing `address`, as (start, region).
    fn region_at(&self, address: u64) -> Option<(u64, Region)> {
        let (&start, &region) = self.regions.range(..=address).next_back()?;
        (address < region.end).then_some((start, region))
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        self.regions.range(..end).next_back().is_some_and(|(_, region)| region.end > start)
    }

    /// `[address, address + length)` as `page_range` gives it, if every
    /// page of it lies in some region (ENOMEM otherwise, as Linux's
    /// `madvise` and `mprotect` answer for a hole).
    fn mapped_range(&self, address: u64, length: u64) -> Result<(u64, u64), Errno> {
        let (start, end) = page_range(address, length)?;
        let mut at = start;
        while at < end {
            match self.region_at(at) {
                Some((_, region)) => at = region.end,
                None => return Err(ENOMEM),
            }
        }
        Ok((start, end))
    }

    /// Splits regions so that `at` is a region boundary (if it is inside one).
    fn split_at(&mut self, at: u64) {
        if let Some((start, region)) = self.region_at(at)
            && start != at
        {
            self.regions.insert(start, Region { end: at, access: region.access });
            self.regions.insert(at, region);
        }
    }

    /// The page fault's question: may this access to `address` be made to
    /// work? If its region allows it: a zeroed frame if the page has none
    /// (demand zero), or nothing to do if another thread mapped it first or
    /// the fault came from a TLB entry older than an `mprotect` that gave
    /// the right. Returns false if the access is not allowed (the process
    /// is then killed, or the copy fails with EFAULT).
    pub fn resolve_fault(&self, space: &AddressSpace, address: u64, access: FaultAccess) -> bool {
        let Some((_, region)) = self.region_at(address) else { return false };
        let allowed = if access.execute {
            region.access.executable
        } else if access.write {
            region.access.writable
        } else {
            region.access.readable || region.access.writable || region.access.executable
        };
        if !allowed {
            return false;
        }
        let page = page(address);
        if let Some(flags) = space.flags_of(page) {
            // Mapped: the entry must already allow it (rights are only ever
            // set together with the region's), so the fault was from a
            // stale TLB entry, which the fault itself dropped.
            let user = flags.contains(PageTableFlags::USER_ACCESSIBLE);
            let writable = flags.contains(PageTableFlags::WRITABLE);
            return user && (!access.write || writable);
        }
        let Some(frame) = frame::allocate() else {
            log::warn!("user: out of memory for a page at {address:#x}");
            return false;
        };
        zero(frame);
        // The zeros before the entry that makes them visible to other CPUs
        // (x86 keeps stores in order anyway; this keeps the compiler too).
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        match space.map_user(page, frame, region.access) {
            Ok(()) => true,
            Err(MapToError::PageAlreadyMapped(_)) => {
                // SAFETY: never mapped anywhere.
                unsafe { frame::free(frame) };
                true
            }
            Err(_) => {
                // SAFETY: as above.
                unsafe { frame::free(frame) };
                false
            }
        }
    }

    /// `mmap(addr, length, prot, MAP_PRIVATE | MAP_ANONYMOUS [| MAP_FIXED])`:
    /// where the new region starts.
    pub fn map_anonymous(
        &mut self,
        space: &AddressSpace,
        address: u64,
        length: u64,
        access: Access,
        placement: Placement,
    ) -> Result<u64, Errno> {
        let length = page_align_up(length).filter(|&l| l > 0).ok_or(EINVAL)?;
        if length > USER_END - USER_START {
            return Err(ENOMEM);
        }
        let start = match placement {
            Placement::Fixed | Placement::FixedNoReplace => {
                let end = address.checked_add(length).ok_or(ENOMEM)?;
                if !address.is_multiple_of(PAGE_SIZE) || address < USER_START || end > USER_END {
                    return Err(EINVAL);
                }
                if self.overlaps(address, end) {
                    if placement == Placement::FixedNoReplace {
                        return Err(EEXIST);
                    }
                    // MAP_FIXED replaces what was there: an unmap first,
                    // with its shootdown.
                    self.unmap(space, address, length)?;
                }
                address
            }
            Placement::Anywhere => self.find_free(length).ok_or(ENOMEM)?,
        };
        self.regions.insert(start, Region { end: start + length, access });
        Ok(start)
    }

    /// The highest free range of `length` bytes below MMAP_TOP.
    fn find_free(&self, length: u64) -> Option<u64> {
        let mut ceiling = MMAP_TOP;
        for (&start, region) in self.regions.range(..MMAP_TOP).rev() {
            if region.end <= ceiling && ceiling - region.end >= length {
                return Some(ceiling - length);
            }
            ceiling = ceiling.min(start);
        }
        let floor = self.brk.max(USER_START).saturating_add(1 << 30); // room for the heap to grow
        ceiling.checked_sub(length).filter(|&start| start >= floor)
    }

    /// `munmap(addr, length)`: forgets the range, takes its pages away,
    /// shoots down and frees.
    pub fn unmap(&mut self, space: &AddressSpace, address: u64, length: u64) -> Result<(), Errno> {
        let (start, end) = page_range(address, length)?;
        self.split_at(start);
        self.split_at(end);
        let inside: Vec<u64> = self.regions.range(start..end).map(|(&s, _)| s).collect();
        for region_start in inside {
            self.regions.remove(&region_start);
        }
        release_pages(space, start, end);
        Ok(())
    }

    /// `madvise(addr, length, MADV_DONTNEED)`: the pages go, the range stays;
    /// the next touch finds zeros (anonymous private memory, as in Linux).
    pub fn discard(
        &mut self,
        space: &AddressSpace,
        address: u64,
        length: u64,
    ) -> Result<(), Errno> {
        let (start, end) = self.mapped_range(address, length)?;
        release_pages(space, start, end);
        Ok(())
    }

    /// `mprotect(addr, length, prot)`: new rights for the range and its
    /// mapped pages; a shootdown if any page lost a right.
    pub fn protect(
        &mut self,
        space: &AddressSpace,
        address: u64,
        length: u64,
        access: Access,
    ) -> Result<(), Errno> {
        let (start, end) = self.mapped_range(address, length)?;
        self.split_at(start);
        self.split_at(end);
        for (_, region) in self.regions.range_mut(start..end) {
            region.access = access;
        }
        if space.protect_range(start, end, access) {
            shootdown(space, start, end);
        }
        Ok(())
    }

    /// `brk(new)`: moves the program break (0 or a bad value just asks
    /// where it is); returns the break, as Linux's system call does.
    pub fn set_brk(&mut self, space: &AddressSpace, new: u64) -> u64 {
        if new < self.heap_start {
            return self.brk;
        }
        let (Some(old_end), Some(new_end)) = (page_align_up(self.brk), page_align_up(new)) else {
            return self.brk;
        };
        if new_end > old_end {
            if new_end > MMAP_TOP || self.overlaps(old_end, new_end) {
                return self.brk;
            }
            let heap = Access { readable: true, writable: true, executable: false };
            self.regions.insert(old_end, Region { end: new_end, access: heap });
        } else if new_end < old_end {
            let _ = self.unmap(space, new_end, old_end - new_end);
        }
        self.brk = new;
        self.brk
    }

    /// At exit: every page goes, in one shootdown.
    pub fn release_everything(&mut self, space: &AddressSpace) {
        let regions = core::mem::take(&mut self.regions);
        let mut frames = Vec::new();
        let (mut low, mut high) = (u64::MAX, 0);
        for (start, region) in regions {
            frames.extend(space.unmap_range(start, region.end));
            low = low.min(start);
            high = high.max(region.end);
        }
        if !frames.is_empty() {
            shootdown(space, low, high);
        }
        free_frames(frames);
    }
}

/// How `mmap` chooses the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    Anywhere,
    Fixed,
    FixedNoReplace,
}

/// `[address, address + length)` rounded out to pages, in the user half.
fn page_range(address: u64, length: u64) -> Result<(u64, u64), Errno> {
    if !address.is_multiple_of(PAGE_SIZE) || length == 0 {
        return Err(EINVAL);
    }
    let end = address.checked_add(length).and_then(page_align_up).ok_or(EINVAL)?;
    if address < USER_START || end > USER_END {
        return Err(EINVAL);
    }
    Ok((address, end))
}

/// Unmaps the mapped pages of `[start, end)`, shoots down, frees.
fn release_pages(space: &AddressSpace, start: u64, end: u64) {
    let frames = space.unmap_range(start, end);
    if !frames.is_empty() {
        shootdown(space, start, end);
    }
    free_frames(frames);
}

fn shootdown(space: &AddressSpace, start: u64, end: u64) {
    crate::tlb::shootdown(space, VirtAddr::new(start), ((end - start) / PAGE_SIZE) as usize);
}

fn free_frames(frames: Vec<PhysFrame>) {
    for frame in frames {
        // SAFETY: unmapped, and the shootdown has returned: no CPU can reach
        // the frame through a stale translation any more.
        unsafe { frame::free(frame) };
    }
}

/// Fills a fresh frame with zeros, through the kernel's map of physical memory.
fn zero(frame: PhysFrame) {
    // SAFETY: a frame just allocated, reached through the physical-memory map.
    unsafe {
        let bytes = mm::phys_to_virt(frame.start_address()).as_mut_ptr::<u8>();
        bytes.write_bytes(0, PAGE_SIZE as usize)
    };
}
