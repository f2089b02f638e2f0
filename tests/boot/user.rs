//! User programs (user/*.c, built with musl into the ramdisk), started with
//! `run=NAME`: each run ends with the program, successfully only if it
//! exits with status 0.

use super::*;

/// Boots `run=NAME then=exit` plus `extra` arguments.
fn run_program(firmware: Firmware, cpus: u32, name: &str, extra: &[&str]) -> Run {
    let run = format!("run={name}");
    let mut args = vec![run.as_str(), "then=exit"];
    args.extend_from_slice(extra);
    boot(firmware, cpus, &args)
}

/// The program gave back every frame it had: the kernel's count of free
/// frames after it is the count before.
fn expect_frames_given_back(run: &Run) {
    let line = run
        .serial
        .lines()
        .find(|l| l.contains("user: frames free before the program "))
        .unwrap_or_else(|| panic!("no frame count; {}", run.explain()));
    let numbers: Vec<&str> =
        line.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).collect();
    let (before, after) = (numbers[numbers.len() - 2], numbers[numbers.len() - 1]);
    assert_eq!(
        before,
        after,
        "the process did not give back every frame: {line}; {}",
        run.explain()
    );
}

#[test]
fn hello_prints_and_exits_0() {
    let run = run_program(Firmware::Bios, 1, "hello", &["run_args=0,two,3"]);
    run.expect(Outcome::KernelSuccess)
        .expect_line("hello from user mode: argc=4")
        .expect_line("argv[0]=hello")
        .expect_line("argv[2]=two")
        .expect_line("'hello' exited with status 0")
        .expect_count("---- kernel panic", 0);
    expect_frames_given_back(&run);
}

#[test]
fn hello_runs_from_the_uefi_ramdisk_too() {
    run_program(Firmware::Uefi, 4, "hello", &[])
        .expect(Outcome::KernelSuccess)
        .expect_line("hello from user mode: argc=1");
}

#[test]
fn a_nonzero_status_fails_the_run() {
    run_program(Firmware::Bios, 1, "hello", &["run_args=7"])
        .expect(Outcome::KernelFailure)
        .expect_line("'hello' exited with status 7");
}

#[test]
fn an_unknown_program_lists_the_ramdisk() {
    run_program(Firmware::Bios, 1, "nope", &[])
        .expect(Outcome::KernelFailure)
        .expect_line("user: no program 'nope' in the ramdisk; it holds:")
        .expect_line("    hello")
        .expect_line("    threads");
}

#[test]
fn a_segfault_ends_only_that_program() {
    let run = run_program(Firmware::Bios, 2, "segv", &[]);
    // The kernel goes on to the end of the run; the program's status fails it.
    run.expect(Outcome::KernelFailure)
        .expect_line("segv: writing to address 0x10")
        .expect_line("killed: write to a page that is not present at address 0x10, RIP 0x")
        .expect_line("'segv' exited with status 139")
        .expect_count("FAILED: the write did not fault", 0)
        .expect_count("---- kernel panic", 0);
    expect_frames_given_back(&run);
}

#[test]
fn threads_run_on_every_cpu() {
    let run = run_program(Firmware::Bios, 4, "threads", &[]);
    run.expect(Outcome::KernelSuccess)
        .expect_line("threads: 4 threads ran on 4 CPUs")
        .expect_count("---- kernel panic", 0);
    for cpu in 0..4 {
        run.expect_line(&format!("threads: thread {cpu} on cpu {cpu} "));
    }
    expect_frames_given_back(&run);
}

#[test]
fn bad_pointers_get_efault() {
    run_program(Firmware::Bios, 2, "efault", &[])
        .expect(Outcome::KernelSuccess)
        .expect_line("efault: write(kernel address) = -14")
        .expect_line("efault: write(unmapped low page) = -14")
        .expect_line("cases returned -EFAULT");
}

/// Threads on every CPU read pages while the main thread remaps, unmaps,
/// write-protects and discards them: every change must reach every CPU's
/// TLB before the call returns. Both kinds of wait for the shootdown.
fn tlb_torture(wait: &str) {
    let run = run_program(Firmware::Bios, 4, "tlb-torture", &["run_args=all,20", wait]);
    run.expect(Outcome::KernelSuccess)
        .expect_line("tlb-torture: remap: 20 rounds")
        .expect_line("tlb-torture: munmap: 20 rounds")
        .expect_line("tlb-torture: mprotect: 20 rounds")
        .expect_line("tlb-torture: madvise: 20 rounds")
        .expect_line("tlb-torture: no stale read");
    expect_frames_given_back(&run);
}

#[test]
fn user_tlb_torture_with_preemptible_waits() {
    tlb_torture("ipi_wait=preempt");
}

#[test]
fn user_tlb_torture_with_spinning_waits() {
    tlb_torture("ipi_wait=spin");
}

/// The torture can fail: with shootdowns that flush only the local CPU, a
/// reader sees a page's old contents.
#[test]
fn user_tlb_torture_catches_a_skipped_shootdown() {
    run_program(Firmware::Bios, 4, "tlb-torture", &["run_args=remap,10", "fault=skip_shootdown"])
        .expect(Outcome::KernelFailure)
        .expect_line("tlb-torture: remap: stale on cpu");
}

/// Two threads on one CPU keep their own SSE registers across switches
/// (the kernel saves them for user threads only).
#[test]
fn each_thread_keeps_its_own_sse_registers() {
    run_program(Firmware::Bios, 2, "fpu", &[])
        .expect(Outcome::KernelSuccess)
        .expect_line("fpu: 2 threads on cpu 0, 2000 yields each, registers kept");
}

/// SMAP: the kernel reading a user page outside its copy routine faults.
#[test]
fn smap_stops_a_stray_kernel_read_of_user_memory() {
    boot(Firmware::Bios, 1, &["test=crash_smap"])
        .expect(PANIC_EXITED)
        .expect_line("accessing 0x400000 (access to a user page outside a user copy: SMAP)");
}

/// SMEP: the kernel executing a user page faults.
#[test]
fn smep_stops_the_kernel_running_user_code() {
    boot(Firmware::Bios, 1, &["test=crash_smep"])
        .expect(PANIC_EXITED)
        .expect_line("accessing 0x400000 (instruction fetch from a user page: SMEP)");
}

/// exit_group while the other threads spin in user mode (one as SCHED_FIFO,
/// which no time slice interrupts) or sleep in a futex: each is stopped on
/// its way back to user mode, and the process ends with main's status.
#[test]
fn a_process_ends_while_its_threads_spin_and_sleep() {
    let run = run_program(Firmware::Bios, 4, "exit-group", &[]);
    run.expect(Outcome::KernelFailure)
        .expect_line("exit-group: 4 spinners and a sleeper started; exiting with 3")
        .expect_line("'exit-group' exited with status 3")
        .expect_count("---- kernel panic", 0);
    expect_frames_given_back(&run);
}

/// Random system calls with random and bad arguments, on two seeds: every
/// call returns, the kernel stays up, the process gives its memory back.
#[test]
fn the_fuzzer_survives_its_calls() {
    for seed in ["1", "7"] {
        let run_args = format!("run_args=3000,{seed}");
        let run = run_program(Firmware::Bios, 2, "fuzz", &[&run_args]);
        run.expect(Outcome::KernelSuccess)
            .expect_line("fuzz: survived 3000 calls")
            .expect_count("---- kernel panic", 0);
        expect_frames_given_back(&run);
    }
}
