//! TLB shootdown: after a page-table change, making every CPU that may cache
//! the old translation forget it.
//!
//! TLBs are not coherent with page tables: a CPU keeps using a cached
//! translation until it is invalidated on that CPU (Intel SDM Vol. 3A 4.10.4
//! "Invalidation of TLBs and Paging-Structure Caches"), and a change made on
//! one CPU does nothing to the others' TLBs: software must tell them, usually
//! with an IPI (4.10.5 "Propagation of Paging-Structure Changes to Multiple
//! Processors"). Until every CPU has flushed, the old frame may still be read
//! or written through the stale entry, so it must not be reused before then.
//!
//! As Linux's arch/x86/mm/tlb.c does:
//! - only the CPUs in the address space's `active_cpus` are asked, and of
//!   those only the ones not in lazy mode (see `lazy_tlb`: a lazy CPU checks
//!   the space's TLB generation when it comes back, and flushes then);
//! - up to `FLUSH_CEILING` pages are flushed one by one with INVLPG, a larger
//!   range with a full flush (reloading CR3), which is cheaper than many INVLPGs;
//! - the local flush runs while the remote CPUs work on theirs.
//!
//! The wait follows `ipi_wait=` (see smp::call), and it never gives up: a
//! shootdown returns only once every target has flushed, so the caller may
//! free the old frame. A target that does not answer (interrupts off for a
//! second) is reported, and waited for. A parked target needs no flush: it
//! is restarted with INIT, which empties its TLB, before it runs again.
//!
//! This module sits above `smp` (it sends cross-CPU calls) and `mm` (whose
//! address spaces and lazy-TLB state it reads); `mm`'s stack allocator, which
//! needs a kernel-wide flush before it reuses freed stack frames, gets it
//! through the one function `init` registers.

pub mod bench;
mod tests;

use core::sync::atomic::{AtomicU64, Ordering, fence};

use x86_64::VirtAddr;

use crate::arch::x86::mmu;
use crate::mm::address_space::AddressSpace;
use crate::mm::lazy_tlb::{self, Flushed};
use crate::percpu::CpuSet;
use crate::sched;
use crate::smp::call::CrossCall;
use crate::trace;

/// Linux's `tlb_single_page_flush_ceiling`.
pub const FLUSH_CEILING: usize = 33;

/// Flushes `pages` pages from `start` on this CPU.
pub fn flush_local(start: VirtAddr, pages: usize) {
    if pages > FLUSH_CEILING {
        mmu::flush_all();
    } else {
        mmu::flush_pages(start, pages);
    }
}

static FLUSH_IPIS_SENT: AtomicU64 = AtomicU64::new(0);
static FLUSH_IPIS_SAVED: AtomicU64 = AtomicU64::new(0);

/// Flush requests sent to other CPUs by address-space shootdowns, and those
/// not sent because the CPU was lazy, since boot.
pub fn flush_ipi_counts() -> (u64, u64) {
    (FLUSH_IPIS_SENT.load(Ordering::Relaxed), FLUSH_IPIS_SAVED.load(Ordering::Relaxed))
}

/// Flushes `pages` pages from `start` of `space` on every CPU that uses it
/// (lazy CPUs catch up later: see `lazy_tlb`), and returns once they all have.
/// The caller has changed the page tables already.
pub fn shootdown(space: &AddressSpace, start: VirtAddr, pages: usize) {
    // Set before the call is queued anywhere (the queueing publishes it).
    let request_gen = AtomicU64::new(0);
    let flush = || {
        let generation = request_gen.load(Ordering::Relaxed);
        let flushed = lazy_tlb::flush_for(space, generation, || flush_local(start, pages));
        let how = match flushed {
            Flushed::Nothing => trace::format::FLUSH_NOTHING,
            Flushed::Range => trace::format::FLUSH_RANGE,
            Flushed::All => trace::format::FLUSH_ALL,
        };
        trace::record(trace::format::TLB_FLUSH, how, start.as_u64(), pages as u64, 0);
    };
    let call = CrossCall::new("tlb_flush_range", &flush);
    let skip_remote = crate::args::get().fault == Some(crate::args::Fault::SkipShootdown);
    // Err(Offline) only names parked CPUs, which need no flush (see above).
    let _ = call.run(
        |me| {
            // The new generation comes after the page-table change and before
            // the reads of the set and of each CPU's lazy flag (a full
            // barrier, and the fence makes it one for the relaxed reads too):
            // a CPU joining the set meanwhile, or leaving lazy mode, either is
            // seen here or sees the new generation (lazy_tlb's comment).
            request_gen.store(space.next_tlb_gen(), Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let mut active = space.active_cpus();
            active.remove(me);
            let mut lazy = CpuSet::default();
            for cpu in active.iter().filter(|&cpu| lazy_tlb::is_lazy(cpu)) {
                lazy.insert(cpu);
            }
            let mut targets = active.difference(&lazy);
            if skip_remote {
                targets = CpuSet::new(); // fault injection: the bug the torture must catch
            }
            FLUSH_IPIS_SENT.fetch_add(targets.len() as u64, Ordering::Relaxed);
            FLUSH_IPIS_SAVED.fetch_add(lazy.len() as u64, Ordering::Relaxed);
            trace_shootdown_begin(start, pages, targets.len(), lazy.len());
            targets
        },
        // Only this CPU changes its own bit, and it cannot move meanwhile.
        |me| {
            if space.is_active_on(me) {
                crate::arch::x86::interrupts::without_interrupts(flush);
            }
        },
    );
    trace_shootdown_end(start);
}

/// Makes every CPU that still borrows `space` lazily (see `lazy_tlb`) leave
/// it, so its last reference can go and its page tables be freed: the
/// end of a process, once all its threads have exited (none runs in it).
/// Linux's equivalent is the IPI lazy CPUs get when page tables are freed.
pub fn evict(space: &AddressSpace) {
    let leave = || crate::mm::lazy_tlb::leave_if_lazy(space);
    let call = CrossCall::new("tlb_evict", &leave);
    // Err(Offline) only names parked CPUs, which left every space already.
    let _ = call.run(
        |me| {
            let mut targets = space.active_cpus();
            targets.remove(me);
            targets
        },
        |_| crate::arch::x86::interrupts::without_interrupts(leave),
    );
}

fn trace_shootdown_begin(start: VirtAddr, pages: usize, targets: usize, lazy: usize) {
    if trace::is_on(trace::format::SHOOTDOWN_BEGIN) {
        let counts =
            pages.min(u32::MAX as usize) as u64 | (targets as u64) << 32 | (lazy as u64) << 48;
        let mode = crate::smp::call::wait_mode() as u16;
        trace::record(
            trace::format::SHOOTDOWN_BEGIN,
            mode,
            start.as_u64(),
            counts,
            sched::current_id(),
        );
    }
}

fn trace_shootdown_end(start: VirtAddr) {
    if trace::is_on(trace::format::SHOOTDOWN_END) {
        trace::record(trace::format::SHOOTDOWN_END, 0, start.as_u64(), 0, sched::current_id());
    }
}

/// Flushes a range of kernel mappings, which every CPU shares: on every online CPU.
pub fn shootdown_kernel(start: VirtAddr, pages: usize) {
    let flush = || flush_kernel_local(start, pages);
    let call = CrossCall::new("tlb_flush_kernel_range", &flush);
    let _ = call.run(
        |me| {
            let mut targets = CpuSet::all_online();
            targets.remove(me);
            targets
        },
        |_| flush_kernel_local(start, pages),
    );
}

/// Gives `mm::stack` its kernel-wide flush. Called once at boot.
pub fn init() {
    crate::mm::stack::set_flush_every_cpu(flush_for_freed_stacks);
}

/// The flush `mm::stack` waits for before it frees retired stack frames; false
/// (nothing done) on a CPU whose scheduler does not run yet, which cannot wait.
fn flush_for_freed_stacks() -> bool {
    if !crate::sched::is_started() {
        return false;
    }
    shootdown_kernel_everything();
    true
}

/// Flushes every kernel translation (global ones included) on every CPU.
pub fn shootdown_kernel_everything() {
    // Any range longer than the ceiling is flushed whole, wherever it starts.
    shootdown_kernel(VirtAddr::new(crate::mm::layout::STACKS_START), FLUSH_CEILING + 1);
}

/// Kernel pages may be global, which a CR3 reload keeps: flush them one by
/// one, or toggle CR4.PGE to drop everything (SDM 4.10.4.1).
fn flush_kernel_local(start: VirtAddr, pages: usize) {
    if pages > FLUSH_CEILING {
        mmu::flush_all_including_global();
    } else {
        mmu::flush_pages(start, pages);
    }
}
