//! A small x86_64 SMP kernel for learning how multiprocessor kernels work.
//!
//! `kernel_main` is the boot CPU's path from the bootloader to a running
//! system; each step is one call into the module that owns it. docs/boot.md
//! walks through it.

#![no_std]
#![no_main]
#![feature(used_with_arg)]

extern crate alloc;

mod acpi;
mod arch;
mod args;
mod console;
mod fault;
mod host_stats;
mod irq;
mod logger;
mod mm;
mod panic;
mod percpu;
mod sched;
mod smp;
mod symbols;
mod sync;
mod testing;
mod time;
mod tlb;
mod trace;
mod user;

use bootloader_api::config::{BootloaderConfig, Mapping};
use bootloader_api::{BootInfo, entry_point};

use arch::x86::{cpu, gdt, idt, interrupts, lapic, pic, qemu_exit};
use args::{Bench, Then};

/// What the bootloader sets up for the kernel (bootloader_api 0.11).
pub static BOOTLOADER_CONFIG: BootloaderConfig = {
    let mut config = BootloaderConfig::new_default();
    // Map all physical memory, so page tables and ACPI tables are reachable.
    config.mappings.physical_memory = Some(Mapping::Dynamic);
    // Keep the bootloader's mappings out of the kernel's own regions (mm::layout).
    config.mappings.dynamic_range_start = Some(mm::layout::BOOTLOADER_RANGE_START);
    config.mappings.dynamic_range_end = Some(mm::layout::BOOTLOADER_RANGE_END);
    config.kernel_stack_size = 256 * 1024;
    config
};

entry_point!(kernel_main, config = &BOOTLOADER_CONFIG);

fn kernel_main(boot_info: &'static mut BootInfo) -> ! {
    time::start();
    irq::init();
    panic::init();
    percpu::install_boot_cpu();
    console::init();
    // Early, so that a panic from here on can tell the host.
    arch::x86::pvpanic::detect();
    // Before the IDT is loaded, so that a panic that then halts with `sti;
    // hlt` cannot take a legacy PIC interrupt on an exception's vector.
    pic::remap_and_mask();
    logger::init(log::LevelFilter::Info);
    gdt::init_this_cpu(gdt::boot_cpu_tables(), gdt::boot_cpu_ist_stacks());
    arch::x86::syscall::init_this_cpu();
    idt::init_this_cpu();
    let (tsc_hz, source) = time::tsc::calibrate();

    let args = args::load();
    logger::set_level(args.log_level);
    if !args::text().is_empty() {
        log::info!("args: {}", args::text());
    }
    let version = boot_info.api_version;
    log::info!(
        "boot: started by bootloader {}.{}.{}",
        version.version_major(),
        version.version_minor(),
        version.version_patch()
    );
    log::info!(
        "time: TSC at {}.{:03} MHz (from the {}), invariant: {}",
        tsc_hz / 1_000_000,
        tsc_hz / 1000 % 1000,
        source.name(),
        if cpu::has_invariant_tsc() { "yes" } else { "no" }
    );

    let physical_memory_offset = boot_info
        .physical_memory_offset
        .into_option()
        .expect("the bootloader did not map physical memory");
    mm::init(physical_memory_offset, &boot_info.memory_regions);
    symbols::init(boot_info.kernel_addr, boot_info.kernel_len, boot_info.kernel_image_offset);

    let apic = lapic::init_boot_cpu(args.force_xapic, mm::paging::map_mmio);
    percpu::set_apic_id(0, apic.id());
    let timer_ticks_per_ms = time::timer::calibrate();
    time::timer::register_interrupt();
    log::info!(
        "apic: boot CPU has APIC id {}, {} mode; timer at {} kHz (divide by 16)",
        apic.id(),
        apic.mode().name(),
        timer_ticks_per_ms
    );

    let platform = acpi::init(boot_info.rsdp_addr.into_option(), apic.id());
    trace::init(platform.startable_cpus().count());
    let (smep, smap) = arch::x86::fpu::init();
    log::info!(
        "cpu: x87/SSE for user threads only; SMEP {}, SMAP {}",
        if smep { "on" } else { "absent" },
        if smap { "on" } else { "absent" }
    );
    sched::init_boot_cpu("main");
    tlb::init();
    user::init();
    user::run::set_ramdisk(ramdisk(boot_info));
    sched::irq_handlers::register();
    smp::irq_handlers::register();
    fault::register_nmi();
    smp::call::open_this_cpu();
    interrupts::enable();
    smp::init(platform);
    smp::call::set_wait_mode(args.ipi_wait);
    fault::start_from_args();

    if let Some(selection) = args.test {
        testing::run(selection);
    }
    match args.bench {
        Some(Bench::Smp) => smp::bench::run(),
        Some(Bench::Sched) => sched::bench::run(),
        Some(Bench::Tlb) => tlb::bench::run(),
        None => {}
    }
    if args.bench.is_some() {
        testing::end_run(qemu_exit::ExitCode::Success);
    }
    log::info!("boot: done in {} us", time::now_ns() / 1000);
    if let Some(name) = args.run {
        let status = user::run::run(name, args.run_args);
        if args.then == Then::Exit {
            let code = if status == Some(0) {
                qemu_exit::ExitCode::Success
            } else {
                qemu_exit::ExitCode::Failure
            };
            testing::end_run(code);
        }
    }
    match args.then {
        Then::Exit => testing::end_run(qemu_exit::ExitCode::Success),
        Then::Panic => panic!("then=panic: panicking on purpose"),
        Then::Halt => {
            log::info!(
                "boot: halting (then=halt): the main thread exits, every CPU idles; stop QEMU with Ctrl-C"
            );
            sched::exit()
        }
    }
}

/// The ramdisk the bootloader loaded and mapped, if any.
fn ramdisk(boot_info: &BootInfo) -> Option<&'static [u8]> {
    let address = boot_info.ramdisk_addr.into_option()?;
    let length = boot_info.ramdisk_len as usize;
    // SAFETY: the bootloader mapped the ramdisk's `length` bytes at
    // `address` (in its range of the kernel half, which every address space
    // shares), and its frames are not Usable memory, so nothing reuses them.
    Some(unsafe { core::slice::from_raw_parts(address as *const u8, length) })
}
