//! Which address space each CPU has loaded, and lazy TLB (Linux:
//! `switch_mm_irqs_off()` and `cpu_tlbstate` in arch/x86/mm/tlb.c).
//!
//! A thread without an address space of its own (a kernel thread, the idle
//! thread) does not switch CR3: it borrows whatever was loaded, since it only
//! touches the kernel half, which every space shares. The CPU is then *lazy*:
//! it stays in the borrowed space's `active_cpus` (the translations are still
//! in its TLB), but nothing running there uses them. A shootdown skips lazy
//! CPUs, so an idle CPU is not woken for every change to a space it once ran.
//!
//! The price is paid on the way back. Each space counts its changes in
//! `tlb_gen`; each CPU records the generation its TLB is up to date with
//! (`loaded_gen`). A CPU that leaves lazy mode for the same space compares the
//! two and flushes everything if it missed a change. The two sides:
//!
//! ```text
//!   initiator (changed a PTE)              lazy CPU coming back
//!   tlb_gen += 1                           lazy = false
//!   fence(SeqCst)                          fence(SeqCst)
//!   read lazy: skip the CPU if set         read tlb_gen: flush all if newer
//! ```
//!
//! With a full fence between each side's store and load, at least one side
//! sees the other's store (the "store buffering" pattern): either the
//! initiator sees `lazy == false` and sends the IPI, or the returning CPU sees
//! the new generation and flushes itself. It may be both: a flush too many.
//!
//! A CPU that loads a space anew writes CR3, which drops every non-global
//! translation (Intel SDM Vol. 3A, "Invalidation of TLBs and Paging-Structure
//! Caches": "MOV to CR3"); it reads `tlb_gen` after joining `active_cpus` and
//! before the CR3 write, so it is up to date with what it read, and any later
//! change either sees it in the set or it read that change's generation.
//!
//! Skipping lazy CPUs is safe only while nothing frees the space's page
//! tables: a lazy CPU may still walk them (the SDM allows speculative walks
//! through cached paging-structure entries). This kernel frees page tables
//! only when the space itself goes, and that needs every CPU to leave it first
//! with `unload()`, lazy ones included (Linux interrupts lazy CPUs for the same
//! reason when page tables are freed: `info->freed_tables`).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering, fence};

use crate::arch::x86::interrupts;

use super::address_space::AddressSpace;
use crate::percpu::{self, cpu_local};
use crate::trace;

/// One CPU's view of its TLB. `loaded` and `loaded_gen` change only on their
/// own CPU with interrupts off; `lazy` is read by initiators on other CPUs.
struct CpuTlbState {
    /// The address space loaded in CR3 (one strong reference), or null for
    /// the kernel's own tables.
    loaded: AtomicPtr<AddressSpace>,
    /// The loaded space's `tlb_gen` this CPU's TLB is up to date with.
    loaded_gen: AtomicU64,
    /// The loaded space is only borrowed by a kernel thread.
    lazy: AtomicBool,
}

impl CpuTlbState {
    const fn new() -> CpuTlbState {
        CpuTlbState {
            loaded: AtomicPtr::new(core::ptr::null_mut()),
            loaded_gen: AtomicU64::new(0),
            lazy: AtomicBool::new(false),
        }
    }
}

cpu_local! {
    static TLB_STATE: CpuTlbState = CpuTlbState::new();
}

fn this_cpu() -> &'static CpuTlbState {
    TLB_STATE.get()
}

/// Whether `cpu` is lazy: a shootdown may skip it (see the module comment).
pub fn is_lazy(cpu: usize) -> bool {
    TLB_STATE.on(cpu).lazy.load(Ordering::Relaxed)
}

static CATCH_UP_FLUSHES: AtomicU64 = AtomicU64::new(0);

/// How many times a CPU coming back from lazy mode found it had missed a
/// shootdown and flushed.
pub fn catch_up_flushes() -> u64 {
    CATCH_UP_FLUSHES.load(Ordering::Relaxed)
}

/// Called by the scheduler as it switches to a thread, with interrupts off:
/// `next` is the thread's address space (None for a kernel thread).
pub fn switch_to(next: Option<&Arc<AddressSpace>>) {
    let state = this_cpu();
    let loaded = state.loaded.load(Ordering::Relaxed);
    match next {
        // Borrow what is loaded. Marking the CPU lazy needs no fence: an
        // initiator that misses it sends an IPI that was not needed.
        None => state.lazy.store(!loaded.is_null(), Ordering::Relaxed),
        Some(space) if core::ptr::eq(loaded, Arc::as_ptr(space)) => {
            if state.lazy.load(Ordering::Relaxed) {
                state.lazy.store(false, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                catch_up(state, space);
            }
        }
        Some(space) => load(state, space, loaded),
    }
}

/// Back from lazy mode in the same space: flush if a shootdown skipped us.
fn catch_up(state: &CpuTlbState, space: &AddressSpace) {
    let latest = space.tlb_gen();
    if state.loaded_gen.load(Ordering::Relaxed) >= latest {
        return;
    }
    if crate::args::get().fault == Some(crate::args::Fault::SkipLazyCatchUp) {
        return; // fault injection: the bug the torture must catch
    }
    crate::arch::x86::mmu::flush_all();
    state.loaded_gen.store(latest, Ordering::Relaxed);
    CATCH_UP_FLUSHES.fetch_add(1, Ordering::Relaxed);
    trace::record(trace::format::LAZY_CATCH_UP, 0, latest, 0, 0);
}

/// Loads `space` in place of `loaded` (null: the kernel's tables).
fn load(state: &CpuTlbState, space: &Arc<AddressSpace>, loaded: *mut AddressSpace) {
    state.lazy.store(false, Ordering::Relaxed);
    // SAFETY: interrupts are off (our caller's contract); `loaded` is this
    // CPU's current space, kept alive by the reference `loaded` holds.
    let generation = unsafe { space.load(percpu::cpu_number(), loaded.as_ref()) };
    state.loaded_gen.store(generation, Ordering::Relaxed);
    state.loaded.store(Arc::into_raw(space.clone()) as *mut AddressSpace, Ordering::Relaxed);
    if !loaded.is_null() {
        // SAFETY: the reference stored when it was loaded.
        drop(unsafe { Arc::from_raw(loaded) });
    }
}

/// The flush a shootdown of `space` asks of this CPU (interrupts off): the
/// range if this is the only change we have not seen, everything if we missed
/// more, nothing if an earlier full flush already covered it (Linux:
/// `flush_tlb_func()`). A CPU that has loaded another space since needs
/// nothing: its CR3 write flushed. Returns what it did.
pub fn flush_for(space: &AddressSpace, request_gen: u64, flush_range: impl FnOnce()) -> Flushed {
    let state = this_cpu();
    if !core::ptr::eq(state.loaded.load(Ordering::Relaxed), space) {
        return Flushed::Nothing;
    }
    let local = state.loaded_gen.load(Ordering::Relaxed);
    let latest = space.tlb_gen();
    // Up to date, or at least with this request (a newer change's initiator
    // sends its own request, or finds us lazy and we catch up).
    if local >= latest || request_gen <= local {
        return Flushed::Nothing;
    }
    let flushed = if request_gen == local + 1 && request_gen == latest {
        flush_range();
        Flushed::Range
    } else {
        crate::arch::x86::mmu::flush_all();
        Flushed::All
    };
    state.loaded_gen.store(latest, Ordering::Relaxed);
    flushed
}

/// What [`flush_for`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Nothing was due: this CPU was up to date, or runs another space.
    Nothing,
    /// The range the shootdown named (which may itself be a full flush, for a
    /// range too long to flush page by page).
    Range,
    /// Everything, because this CPU had missed more than this change.
    All,
}

/// If this CPU only borrows `space` (lazily), goes back to the kernel's
/// tables, dropping its reference: for a space whose threads have all
/// exited, so it can be freed (see `tlb::evict`). Interrupts are off.
pub fn leave_if_lazy(space: &AddressSpace) {
    let state = this_cpu();
    if state.lazy.load(Ordering::Relaxed)
        && core::ptr::eq(state.loaded.load(Ordering::Relaxed), space)
    {
        unload();
    }
}

/// Leaves any address space this CPU has loaded and goes back to the kernel's
/// tables, so the space can be freed. The caller must not run in that space.
pub fn unload() {
    interrupts::without_interrupts(|| {
        let state = this_cpu();
        state.lazy.store(false, Ordering::Relaxed);
        let loaded = state.loaded.swap(core::ptr::null_mut(), Ordering::Relaxed);
        if !loaded.is_null() {
            // SAFETY: the reference stored when it was loaded.
            let space = unsafe { Arc::from_raw(loaded) };
            // SAFETY: interrupts are off; the kernel's tables map all the kernel runs on.
            unsafe {
                super::address_space::load_kernel_tables(
                    super::paging::kernel_level4(),
                    percpu::cpu_number(),
                    &space,
                )
            };
        }
    });
}

/// For a restarted (INITed) CPU, which runs on the kernel's tables already:
/// forget the space it had loaded before, and leave that space's set.
pub fn forget_after_restart() {
    let state = this_cpu();
    state.lazy.store(false, Ordering::Relaxed);
    let stale = state.loaded.swap(core::ptr::null_mut(), Ordering::Relaxed);
    if !stale.is_null() {
        // SAFETY: the reference stored when that space was loaded.
        let space = unsafe { Arc::from_raw(stale) };
        space.forget_cpu(percpu::cpu_number());
    }
}
