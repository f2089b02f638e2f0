//! What a run is: the firmware, the virtual machine's size, the accelerator,
//! and the arguments for QEMU and for the kernel.

use std::path::PathBuf;
use std::time::Duration;

use crate::trace::Window;

/// The number of CPUs when `--smp` is not given.
pub const DEFAULT_CPUS: u32 = 4;
/// The guest memory when `--memory` is not given, as QEMU's -m takes it.
pub const DEFAULT_MEMORY: &str = "512M";
/// Where Debian's `ovmf` package puts the UEFI firmware.
const OVMF_CANDIDATES: &[&str] =
    &["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// QEMU's software emulator: slower, available everywhere.
    Tcg,
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
}

impl Accelerator {
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Tcg => "TCG",
            Accelerator::Kvm => "KVM",
        }
    }
}

/// Another kernel, booted the way QEMU boots Linux: `-kernel`, `-initrd` and
/// `-append` instead of the kernel's disk image and fw_cfg arguments
/// (`bench-user` boots Debian's Linux this way, see [`crate::user_bench`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxBoot {
    /// The kernel image (a bzImage such as Debian's `vmlinuz-*`).
    pub kernel: PathBuf,
    /// The initramfs, a cpio archive.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub firmware: Firmware,
    pub cpus: u32,
    /// QEMU's -m value, e.g. "512M".
    pub memory: String,
    pub accelerator: Accelerator,
    /// Start paused and wait for GDB on localhost:1234.
    pub gdb: bool,
    /// Give the guest QEMU's pvpanic device, through which a panicking
    /// kernel tells the host (on unless `--no-pvpanic`).
    pub pvpanic: bool,
    /// End the run as soon as QEMU says the guest panicked (`--exit-on-panic`);
    /// otherwise a halted guest is left as it is, for inspection.
    pub exit_on_panic: bool,
    pub timeout: Option<Duration>,
    /// Passed to QEMU as they are, after everything else.
    pub qemu_args: Vec<String>,
    pub kernel_args: Vec<String>,
    /// The QEMU program: $QEMU, else qemu-system-x86_64 from PATH.
    pub qemu_binary: String,
    /// Where to look for the UEFI firmware: $OVMF, else where Debian's `ovmf` puts it.
    pub ovmf_candidates: Vec<PathBuf>,
    /// Record a trace: QEMU keeps the kernel's dumps in this path's `.ktrace`
    /// file and, once it exits, the runner writes this JSON and an SVG beside
    /// it (see [`crate::trace`]). The kernel gets `trace=all` unless a
    /// `trace=` argument says otherwise.
    pub trace: Option<PathBuf>,
    /// The part of the trace the SVG draws (all of it when None).
    pub trace_window: Option<Window>,
    /// Boot this kernel instead of ours (then `firmware`'s disk image and
    /// `kernel_args` are not used); everything else is the same.
    pub linux: Option<LinuxBoot>,
    /// Measure QEMU's threads from its start to the first serial line that
    /// is this text (surrounding white space aside): see
    /// [`crate::RunningQemu::host_interval`].
    pub host_interval_until: Option<String>,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            firmware: Firmware::Bios,
            cpus: DEFAULT_CPUS,
            memory: DEFAULT_MEMORY.into(),
            accelerator: Accelerator::Tcg,
            gdb: false,
            pvpanic: true,
            exit_on_panic: false,
            timeout: None,
            qemu_args: Vec::new(),
            kernel_args: Vec::new(),
            qemu_binary: std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
            ovmf_candidates: match std::env::var_os("OVMF") {
                Some(path) => vec![PathBuf::from(path)],
                None => OVMF_CANDIDATES.iter().map(PathBuf::from).collect(),
            },
            trace: None,
            trace_window: None,
            linux: None,
            host_interval_until: None,
        }
    }
}

impl RunConfig {
    /// The kernel arguments QEMU passes on: `kernel_args`, and `trace=all`
    /// when a trace is asked for and no `trace=` argument chooses what.
    pub fn effective_kernel_args(&self) -> Vec<String> {
        let mut args = self.kernel_args.clone();
        if self.trace.is_some() && !args.iter().any(|arg| arg.starts_with("trace=")) {
            args.push("trace=all".into());
        }
        args
    }
}

/// A one-line description of the run, printed by the runner before it starts.
pub fn describe(config: &RunConfig) -> String {
    if let Some(linux) = &config.linux {
        return format!(
            "{} with -kernel, {} CPU{}, {} memory, accelerator {}, command line: {}",
            linux.kernel.display(),
            config.cpus,
            if config.cpus == 1 { "" } else { "s" },
            config.memory,
            config.accelerator.name(),
            linux.append
        );
    }
    let kernel_args = config.effective_kernel_args();
    let trace = match &config.trace {
        Some(json) => format!(", trace to {}", json.display()),
        None => String::new(),
    };
    format!(
        "{} firmware, {} CPU{}, {} memory, accelerator {}, kernel args: {}{trace}",
        match config.firmware {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        },
        config.cpus,
        if config.cpus == 1 { "" } else { "s" },
        config.memory,
        config.accelerator.name(),
        if kernel_args.is_empty() { "(none)".to_string() } else { kernel_args.join(" ") }
    )
}
