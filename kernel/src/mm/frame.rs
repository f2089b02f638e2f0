//! The physical frame allocator: hands out 4 KiB frames of usable RAM.
//!
//! Two sources, tried in order:
//! - a free list of frames given back, linked through the frames themselves
//!   (each free frame's first 8 bytes hold the address of the next);
//! - a cursor that walks the bootloader's usable regions once, front to back.
//!
//! Memory below 1 MiB is never handed out: the bootloader keeps it free so
//! that the kernel can place the real-mode trampoline that starts the other
//! CPUs there (see `low_memory_pages`).

use bootloader_api::info::{MemoryRegion, MemoryRegionKind};
use x86_64::PhysAddr;
use x86_64::structures::paging::{PhysFrame, Size4KiB};

use crate::sync::SpinLock;

mod tests;

pub const FRAME_SIZE: u64 = 4096;
const LOW_MEMORY_END: u64 = 0x10_0000;

struct FrameAllocator {
    regions: &'static [MemoryRegion],
    /// Index of the region the cursor is in, and the next unused frame there.
    region: usize,
    cursor: u64,
    /// Head of the list of freed frames (0 = empty).
    free_list: u64,
    free_frames: usize,
    total_frames: usize,
}

static FRAMES: SpinLock<FrameAllocator> = SpinLock::new(FrameAllocator {
    regions: &[],
    region: 0,
    cursor: 0,
    free_list: 0,
    free_frames: 0,
    total_frames: 0,
});

/// The part of a usable region the allocator may hand out: above 1 MiB, whole frames.
fn usable_span(region: &MemoryRegion) -> Option<(u64, u64)> {
    if region.kind != MemoryRegionKind::Usable {
        return None;
    }
    let start = region.start.max(LOW_MEMORY_END).next_multiple_of(FRAME_SIZE);
    let end = region.end & !(FRAME_SIZE - 1);
    (start < end).then_some((start, end))
}

pub fn init(regions: &'static [MemoryRegion]) {
    let total: u64 =
        regions.iter().filter_map(usable_span).map(|(start, end)| (end - start) / FRAME_SIZE).sum();
    let mut frames = FRAMES.lock_irqsave();
    frames.regions = regions;
    frames.region = 0;
    frames.cursor = 0;
    frames.total_frames = total as usize;
    frames.free_frames = total as usize;
}

impl FrameAllocator {
    fn allocate(&mut self) -> Option<PhysFrame> {
        if self.free_list != 0 {
            let frame = self.free_list;
            // SAFETY: a frame on the free list is unused RAM whose first word was
            // written by free(); the physical window maps it.
            self.free_list =
                unsafe { super::phys_to_virt(PhysAddr::new(frame)).as_ptr::<u64>().read() };
            self.free_frames -= 1;
            return Some(PhysFrame::containing_address(PhysAddr::new(frame)));
        }
        while self.region < self.regions.len() {
            if let Some((start, end)) = usable_span(&self.regions[self.region]) {
                let frame = self.cursor.max(start);
                if frame < end {
                    self.cursor = frame + FRAME_SIZE;
                    self.free_frames -= 1;
                    return Some(PhysFrame::containing_address(PhysAddr::new(frame)));
                }
            }
            self.region += 1;
            self.cursor = 0;
        }
        None
    }

    fn free(&mut self, frame: PhysFrame) {
        let address = frame.start_address();
        // SAFETY: the caller of free() gave up the frame; we now own its memory.
        unsafe { super::phys_to_virt(address).as_mut_ptr::<u64>().write(self.free_list) };
        self.free_list = address.as_u64();
        self.free_frames += 1;
    }
}

/// A free frame, or None when physical memory is exhausted.
pub fn allocate() -> Option<PhysFrame> {
    FRAMES.lock_irqsave().allocate()
}

/// Gives a frame back.
///
/// # Safety
/// The frame came from `allocate()` and nothing uses it any more (no mapping,
/// no pointer into it).
pub unsafe fn free(frame: PhysFrame) {
    FRAMES.lock_irqsave().free(frame)
}

/// (free frames, total usable frames).
pub fn counts() -> (usize, usize) {
    let frames = FRAMES.lock_irqsave();
    (frames.free_frames, frames.total_frames)
}

/// Usable pages below 1 MiB, which the allocator never hands out: candidates for
/// the AP start-up trampoline (a SIPI vector names a 4 KiB page below 1 MiB).
pub fn low_memory_pages() -> impl Iterator<Item = PhysFrame> {
    let regions = FRAMES.lock_irqsave().regions;
    regions
        .iter()
        .filter(|r| r.kind == MemoryRegionKind::Usable && r.start < LOW_MEMORY_END)
        .flat_map(|r| {
            let start = r.start.next_multiple_of(FRAME_SIZE);
            let end = r.end.min(LOW_MEMORY_END) & !(FRAME_SIZE - 1);
            (start..end)
                .step_by(FRAME_SIZE as usize)
                .map(|a| PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(a)))
        })
}

fn is_in_usable_region(address: u64) -> bool {
    FRAMES
        .lock_irqsave()
        .regions
        .iter()
        .filter_map(usable_span)
        .any(|(start, end)| (start..end).contains(&address))
}
