//! Tests of TLB shootdown: a torture test that catches stale translations
//! (lazy CPUs coming back into the space included), and a check that
//! kernel-wide flushes reach every CPU.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame};

use crate::mm::address_space::AddressSpace;
use crate::mm::frame::FRAME_SIZE;
use crate::mm::{frame, lazy_tlb, paging, phys_to_virt};
use crate::percpu::CpuSet;
use crate::sched::Builder;
use crate::smp::call::{self, WaitMode};
use crate::sync::SpinLock;
use crate::testing::{KernelTest, Random, TestResult};
use crate::tlb;
use crate::{percpu, smp};

/// Where the torture maps its pages in the shared address space.
const TORTURE_BASE: u64 = 0x0000_0040_0000_0000;
const PAGES_PER_CPU: usize = 4;
pub const TORTURE_SHOOTDOWNS: u64 = 100_000;

/// What each torture frame holds: its page, its generation, and a check word.
fn write_pattern(frame: PhysFrame, page: usize, generation: u64) {
    let words = phys_to_virt(frame.start_address()).as_mut_ptr::<u64>();
    // SAFETY: the frame was just allocated by the caller and is not mapped yet.
    unsafe {
        words.write_volatile(page as u64);
        words.add(1).write_volatile(generation);
        words.add(2).write_volatile(!(page as u64) ^ generation);
    }
}

fn page_address(page: usize) -> VirtAddr {
    VirtAddr::new(TORTURE_BASE + page as u64 * FRAME_SIZE)
}

struct Torture {
    space: Arc<AddressSpace>,
    /// The generation of each page whose shootdown has completed.
    published: Vec<AtomicU64>,
    failures: AtomicU64,
    first_failure: SpinLock<Option<alloc::string::String>>,
    shootdowns: AtomicU64,
}

impl Torture {
    fn fail(&self, message: alloc::string::String) {
        if self.failures.fetch_add(1, Ordering::AcqRel) == 0 {
            *self.first_failure.lock() = Some(message);
        }
    }

    /// Reads `page` through the shared space and checks it is no older than
    /// its last completed shootdown.
    fn check(&self, page: usize) {
        let expected = self.published[page].load(Ordering::Acquire);
        let words = page_address(page).as_ptr::<u64>();
        // SAFETY: every torture page is mapped in the space this thread runs in.
        let (seen_page, generation, check) = unsafe {
            (words.read_volatile(), words.add(1).read_volatile(), words.add(2).read_volatile())
        };
        if seen_page != page as u64 || check != !seen_page ^ generation {
            self.fail(alloc::format!(
                "cpu{}: page {page} read the frame of page {seen_page} (generation {generation})",
                percpu::cpu_number()
            ));
        } else if generation < expected {
            self.fail(alloc::format!(
                "cpu{}: page {page} read generation {generation} after the shootdown for generation {expected} completed",
                percpu::cpu_number()
            ));
        }
    }

    /// One thread's share: remap its own pages (with a shootdown each) and
    /// read everybody's. Now and then it sleeps, so its CPU goes lazy (the
    /// idle thread borrows the space, and shootdowns skip the CPU), then
    /// comes back and reads at once: a missed catch-up is a stale read.
    fn run(&self, cpu: usize, cpus: usize, rounds: u64) {
        let mut random = Random::new(cpu as u64 + 1);
        let pages = cpus * PAGES_PER_CPU;
        for round in 0..rounds {
            let page = cpu * PAGES_PER_CPU + (round as usize % PAGES_PER_CPU);
            let generation = self.published[page].load(Ordering::Relaxed) + 1;
            let new = frame::allocate().expect("torture: out of frames");
            write_pattern(new, page, generation);
            let old = self
                .space
                .remap(Page::containing_address(page_address(page)), new)
                .expect("torture: remap");
            tlb::shootdown(&self.space, page_address(page), 1);
            self.shootdowns.fetch_add(1, Ordering::Relaxed);
            self.published[page].store(generation, Ordering::Release);
            // SAFETY: no CPU can reach the old frame any more: the shootdown
            // completed, and the page table now points elsewhere.
            unsafe { frame::free(old) };
            for _ in 0..2 {
                self.check(random.next() as usize % pages);
            }
            if random.next().is_multiple_of(16) {
                crate::sched::sleep_ns(random.next() % 200_000);
                for _ in 0..4 {
                    self.check(random.next() as usize % pages);
                }
            }
        }
    }
}

/// Runs the torture in `mode`: a thread per CPU, `total` shootdowns in all.
fn torture(mode: WaitMode, total: u64) -> Result<u64, alloc::string::String> {
    call::set_wait_mode(mode);
    let cpus = smp::cpus().len();
    let pages = cpus * PAGES_PER_CPU;
    let space = Arc::new(AddressSpace::new());
    for page in 0..pages {
        let frame = frame::allocate().ok_or("out of frames")?;
        write_pattern(frame, page, 0);
        space
            .map(Page::containing_address(page_address(page)), frame)
            .map_err(|e| alloc::format!("map: {e:?}"))?;
    }
    let state = Arc::new(Torture {
        space: space.clone(),
        published: (0..pages).map(|_| AtomicU64::new(0)).collect(),
        failures: AtomicU64::new(0),
        first_failure: SpinLock::new(None),
        shootdowns: AtomicU64::new(0),
    });
    let rounds = total.div_ceil(cpus as u64);
    let (sent_before, saved_before) = tlb::flush_ipi_counts();
    let catch_ups_before = lazy_tlb::catch_up_flushes();
    let threads: Vec<_> = (0..cpus)
        .map(|cpu| {
            let state = state.clone();
            Builder::new("tlb-torture")
                .pin(cpu)
                .address_space(space.clone())
                .spawn(move || state.run(cpu, cpus, rounds))
        })
        .collect();
    for thread in threads {
        thread.join();
    }
    let (sent, saved) = tlb::flush_ipi_counts();
    let catch_ups = lazy_tlb::catch_up_flushes() - catch_ups_before;
    log::info!(
        "test: tlb torture ({mode:?}): {} flush IPIs sent, {} saved by lazy CPUs, {catch_ups} catch-up flushes",
        sent - sent_before,
        saved - saved_before
    );
    // Every CPU leaves the space, so it can be freed with its frames.
    call::call_on_many(CpuSet::all_online(), "unload_address_space", &lazy_tlb::unload)
        .map_err(|e| alloc::format!("unload: {e:?}"))?;
    for page in 0..pages {
        if let Some(frame) = space.unmap(Page::containing_address(page_address(page))) {
            // SAFETY: no CPU has the space loaded any more.
            unsafe { frame::free(frame) };
        }
    }
    call::set_wait_mode(crate::args::get().ipi_wait);
    if let Some(message) = state.first_failure.lock().take() {
        return Err(alloc::format!(
            "{} failures in {mode:?} mode; first: {message}",
            state.failures.load(Ordering::Acquire)
        ));
    }
    // The lazy path must have been taken, or the torture proved nothing about it.
    if cpus > 1 && crate::args::get().fault.is_none() {
        crate::ensure!(saved > saved_before, "{mode:?}: no shootdown skipped a lazy CPU");
        crate::ensure!(catch_ups > 0, "{mode:?}: no lazy CPU came back to a changed space");
    }
    Ok(state.shootdowns.load(Ordering::Acquire))
}

fn tlb_torture() -> TestResult {
    for mode in WaitMode::ALL {
        let done = torture(mode, TORTURE_SHOOTDOWNS)?;
        crate::ensure!(done >= TORTURE_SHOOTDOWNS, "only {done} shootdowns in {mode:?} mode");
        log::info!("test: tlb_torture: {done} shootdowns in {mode:?} mode, no stale read");
    }
    Ok(())
}

fn tlb_torture_short() -> TestResult {
    for mode in WaitMode::ALL {
        torture(mode, 4000)?;
    }
    Ok(())
}

/// Kernel mappings are shared by all CPUs: after a kernel remap and a kernel
/// shootdown, every CPU must read the new frame.
fn kernel_shootdown_reaches_every_cpu() -> TestResult {
    let page = Page::containing_address(VirtAddr::new(crate::mm::layout::MMIO_END - FRAME_SIZE));
    let (first, second) =
        (frame::allocate().ok_or("no frame")?, frame::allocate().ok_or("no frame")?);
    write_pattern(first, 1, 1);
    write_pattern(second, 2, 2);
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    // SAFETY: the last page of the MMIO region is never handed out (map_mmio
    // stops before MMIO_END); the frames are fresh.
    unsafe { paging::map(page, first, flags) }.map_err(|e| alloc::format!("map: {e:?}"))?;
    let reads = Arc::new(SpinLock::new(Vec::new()));
    let read_everywhere = || {
        let reads2 = reads.clone();
        let read = move || {
            // SAFETY: the page is mapped (to one of the two frames) in the kernel half.
            let value = unsafe { page.start_address().as_ptr::<u64>().read_volatile() };
            reads2.lock().push((percpu::cpu_number(), value));
        };
        call::call_on_many(CpuSet::all_online(), "read_kernel_page", &read)
    };
    read_everywhere().map_err(|e| alloc::format!("{e:?}"))?;
    // SAFETY: the page was mapped above; only this test uses it.
    let old = unsafe { paging::unmap(page) }.ok_or("unmap failed")?;
    // SAFETY: `page` was just unmapped and `second` is this test's own frame.
    unsafe { paging::map(page, second, flags) }.map_err(|e| alloc::format!("map: {e:?}"))?;
    tlb::shootdown_kernel(page.start_address(), 1);
    reads.lock().clear();
    read_everywhere().map_err(|e| alloc::format!("{e:?}"))?;
    let seen = reads.lock().clone();
    // SAFETY: unmapped and flushed everywhere; nothing refers to them.
    unsafe {
        let last = paging::unmap(page).ok_or("unmap failed")?;
        tlb::shootdown_kernel(page.start_address(), 1);
        frame::free(old);
        frame::free(last);
    }
    crate::ensure!(
        seen.len() == smp::cpus().len(),
        "{} of {} CPUs read the page",
        seen.len(),
        smp::cpus().len()
    );
    for (cpu, value) in seen {
        crate::ensure!(
            value == 2,
            "cpu{cpu} still read the old frame (page {value}) after the shootdown"
        );
    }
    Ok(())
}

/// How long the deaf CPU keeps interrupts off: past the 1 s report threshold.
const DEAF_FOR_US: u64 = 2_000_000;
/// The longest the short scene's CPU stays deaf waiting for the real-time
/// thread (woken 50 ms into the wait) to have run: short of the stuck report,
/// and long enough for a slow host to run that thread.
const SHORT_DEAF_FOR_US: u64 = 900_000;
/// The short scene's deaf window in spin mode, where the real-time thread
/// cannot run before the wait ends.
const SPIN_DEAF_FOR_US: u64 = 300_000;
/// How long the real-time thread works once woken.
const URGENT_WORK_US: u64 = 5_000;

/// A shootdown while one target has interrupts off for longer than the report
/// threshold: the waiter must report the CPU and keep waiting (never drop the
/// flush), the deaf CPU must read the new frame once it wakes, and in preempt
/// mode a higher-priority thread must run on the waiting CPU meanwhile.
fn shootdown_waits_for_a_deaf_cpu() -> TestResult {
    let cpus = smp::cpus().len();
    if cpus < 3 {
        return crate::testing::skip("needs 3 CPUs");
    }
    let (deaf, initiator) = (cpus - 1, 1);
    for mode in [WaitMode::Preempt, WaitMode::Sleep, WaitMode::Spin] {
        call::set_wait_mode(mode);
        let result = deaf_cpu_round(deaf, initiator, mode, DEAF_FOR_US, false);
        call::set_wait_mode(crate::args::get().ipi_wait);
        // Each mode's events, before the next mode's overwrite them.
        crate::trace::dump();
        result?;
    }
    Ok(())
}

/// The same scene, shorter and in the one mode `ipi_wait=` chose: what the
/// trace of a preemptible wait is drawn from (docs/tracing.md). The deaf CPU
/// is deaf for less than the time after which a waiter reports it.
fn realtime_thread_during_a_slow_shootdown() -> TestResult {
    let cpus = smp::cpus().len();
    if cpus < 3 {
        return crate::testing::skip("needs 3 CPUs");
    }
    let mode = call::wait_mode();
    // A spinning waiter keeps the real-time thread off the CPU until the
    // wait ends, so the deaf CPU would wait for it in vain: a fixed window.
    let longest = if mode == WaitMode::Spin { SPIN_DEAF_FOR_US } else { SHORT_DEAF_FOR_US };
    deaf_cpu_round(cpus - 1, 1, mode, longest, true)
}

/// One scene: `deaf` keeps interrupts off for `deaf_for_us` while
/// `initiator` shoots down a page it caches, and a real-time thread is woken
/// on `initiator` 50 ms into the wait. With `end_when_seen`, the deaf CPU
/// wakes up as soon as the real-time thread has run (so a slow host cannot
/// make the scene end before it), `deaf_for_us` being only the longest it
/// waits for that.
fn deaf_cpu_round(
    deaf: usize,
    initiator: usize,
    mode: WaitMode,
    deaf_for_us: u64,
    end_when_seen: bool,
) -> TestResult {
    use core::sync::atomic::AtomicBool;
    let space = Arc::new(AddressSpace::new());
    let old = frame::allocate().ok_or("out of frames")?;
    write_pattern(old, 0, 0);
    space
        .map(Page::containing_address(page_address(0)), old)
        .map_err(|e| alloc::format!("map: {e:?}"))?;
    let read_generation = || {
        // SAFETY: page 0 is mapped in the space the calling thread runs in.
        unsafe { page_address(0).as_ptr::<u64>().add(1).read_volatile() }
    };

    // The deaf CPU: loads the space, caches page 0's translation, then keeps
    // interrupts off (spinning) for `deaf_for_us`; on `sti` the flush IPI is
    // taken at once, and the read after it must see the new frame.
    let deaf_now = Arc::new(AtomicBool::new(false));
    let read_after = Arc::new(AtomicU64::new(u64::MAX));
    let urgent_done = Arc::new(AtomicBool::new(false));
    let (deaf_now2, read_after2) = (deaf_now.clone(), read_after.clone());
    let urgent_done2 = urgent_done.clone();
    let deaf_thread = Builder::new("deaf")
        .priority(crate::sched::Priority::RealTime(3))
        .pin(deaf)
        .address_space(space.clone())
        .spawn(move || {
            let _ = read_generation();
            crate::arch::x86::interrupts::disable();
            deaf_now2.store(true, Ordering::Release);
            let until = crate::time::now_ns() + deaf_for_us * 1000;
            while crate::time::now_ns() < until
                && !(end_when_seen && urgent_done2.load(Ordering::Acquire))
            {
                core::hint::spin_loop();
            }
            crate::arch::x86::interrupts::enable();
            read_after2.store(read_generation(), Ordering::Release);
        });
    while !deaf_now.load(Ordering::Acquire) {
        crate::sched::sleep_ns(100_000);
    }

    // The initiator remaps page 0 and shoots it down; the old frame may be
    // freed only once every target has flushed.
    let pending = Arc::new(AtomicBool::new(false));
    let outcome = Arc::new(SpinLock::new(None));
    let (pending2, outcome2, space2) = (pending.clone(), outcome.clone(), space.clone());
    let initiator_thread =
        Builder::new("initiator").pin(initiator).address_space(space.clone()).spawn(move || {
            let new = frame::allocate().expect("out of frames");
            write_pattern(new, 0, 1);
            let replaced =
                space2.remap(Page::containing_address(page_address(0)), new).expect("remap");
            pending2.store(true, Ordering::Release);
            let reports_before = call::stuck_reports();
            tlb::shootdown(&space2, page_address(0), 1);
            pending2.store(false, Ordering::Release);
            *outcome2.lock() = Some((call::stuck_reports() - reports_before, replaced));
        });
    while !pending.load(Ordering::Acquire) {
        crate::sched::sleep_ns(100_000);
    }

    // A real-time thread on the initiator's CPU, woken by its timer 50 ms
    // into the wait: in preempt mode it runs while the shootdown is pending.
    let ran_during_wait = Arc::new(AtomicBool::new(false));
    let (ran2, pending3, urgent_done3) =
        (ran_during_wait.clone(), pending.clone(), urgent_done.clone());
    let urgent = Builder::new("urgent")
        .priority(crate::sched::Priority::RealTime(2))
        .pin(initiator)
        .spawn(move || {
            crate::sched::sleep_ns(50_000_000);
            ran2.store(pending3.load(Ordering::Acquire), Ordering::Release);
            // Its work: long enough to be seen in a trace of the scene.
            crate::time::udelay(URGENT_WORK_US);
            urgent_done3.store(true, Ordering::Release);
        });
    urgent.join();
    initiator_thread.join();
    deaf_thread.join();

    let (reports, replaced) = outcome.lock().take().ok_or("the initiator recorded nothing")?;
    // SAFETY: the shootdown returned, so every target flushed; nothing maps the frame.
    unsafe { frame::free(replaced) };
    let leave = call::call_on_many(CpuSet::all_online(), "unload_address_space", &lazy_tlb::unload);
    if let Some(frame) = space.unmap(Page::containing_address(page_address(0))) {
        // SAFETY: no CPU has the space loaded any more.
        unsafe { frame::free(frame) };
    }
    let report_due = deaf_for_us > call::STUCK_AFTER_MS * 1000;
    crate::ensure!(
        reports >= 1 || !report_due,
        "{mode:?}: the deaf CPU was not reported during a {} ms wait",
        deaf_for_us / 1000
    );
    crate::ensure!(leave.is_ok(), "{mode:?}: leaving the space failed");
    let seen = read_after.load(Ordering::Acquire);
    crate::ensure!(
        seen == 1,
        "{mode:?}: the deaf CPU read generation {seen} after waking: a stale translation"
    );
    if mode != WaitMode::Spin {
        crate::ensure!(
            ran_during_wait.load(Ordering::Acquire),
            "{mode:?} mode: the real-time thread did not run on the waiting CPU during the shootdown"
        );
    }
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("tlb_torture_short", tlb_torture_short),
    KernelTest::new("tlb_shootdown_waits_for_a_deaf_cpu", shootdown_waits_for_a_deaf_cpu),
    KernelTest::new(
        "tlb_realtime_thread_during_a_slow_shootdown",
        realtime_thread_during_a_slow_shootdown
    ),
    KernelTest::new("tlb_kernel_shootdown_reaches_every_cpu", kernel_shootdown_reaches_every_cpu),
    KernelTest::long("tlb_torture", tlb_torture),
];
