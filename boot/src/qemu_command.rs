//! The QEMU command line for a [`RunConfig`] (docs/runner.md explains each
//! piece).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel_args::table::FW_CFG_FILE;
use crate::{Accelerator, BIOS_IMAGE, Firmware, RunConfig, SetupError, UEFI_IMAGE};

fn find_ovmf(candidates: &[PathBuf]) -> Result<&Path, SetupError> {
    candidates.iter().map(PathBuf::as_path).find(|p| p.is_file()).ok_or_else(|| {
        let looked_in: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        SetupError(format!(
            "--uefi needs the OVMF firmware, which is not installed (looked for {}).\n\
             Install it with: sudo apt-get install ovmf   (or run ./dev setup), or set OVMF=/path/to/OVMF.fd",
            looked_in.join(", ")
        ))
    })
}

/// Doubles commas: QEMU's option parser reads ",," as a literal comma.
fn escape_qemu_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// The QEMU command line for `config`.
pub fn qemu_command(config: &RunConfig) -> Result<Command, SetupError> {
    let mut command = Command::new(&config.qemu_binary);
    let image = match config.firmware {
        Firmware::Bios => Path::new(BIOS_IMAGE),
        Firmware::Uefi => {
            command.arg("-bios").arg(find_ovmf(&config.ovmf_candidates)?);
            Path::new(UEFI_IMAGE)
        }
    };
    match &config.linux {
        // QEMU loads the kernel and initramfs itself and passes the command line.
        Some(linux) => {
            command.arg("-kernel").arg(&linux.kernel).arg("-initrd").arg(&linux.initrd);
            command.arg("-append").arg(&linux.append);
        }
        // snapshot=on: the image is never written, so runs can share it in parallel.
        None => {
            command.arg("-drive").arg(format!("format=raw,snapshot=on,file={}", image.display()));
        }
    }
    command.args(["-smp", &config.cpus.to_string(), "-m", &config.memory]);
    // Name QEMU's threads (`CPU 1/TCG`, `worker`...) so host_stats can tell them apart.
    command.args(["-name", "debug-threads=on"]);
    match config.accelerator {
        // One host thread per vCPU (QEMU's default for x86 on x86, made explicit).
        Accelerator::Tcg => command.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
        Accelerator::Kvm => {
            if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
                return Err(SetupError(
                    "--kvm: /dev/kvm is missing or not accessible to this user".into(),
                ));
            }
            // Nested KVM here rejects MSR 0x10a (IA32_ARCH_CAPABILITIES) with -cpu host.
            command.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"])
        }
    };
    command.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    if config.pvpanic {
        // The kernel tells the host it panicked through pvpanic (port 0x505).
        // QEMU's default answer is to shut the guest down; `none` leaves it
        // as `panic=` made it (halted for inspection, spinning, ...).
        command.args(["-device", "pvpanic", "-action", "panic=none"]);
    }
    command.args(["-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot"]);
    if let Some(json) = &config.trace {
        // The debug console (port 0xe9) is where the kernel dumps its trace;
        // QEMU's file backend truncates the file when it opens it.
        let raw = crate::trace::raw_path(json);
        command.arg("-debugcon").arg(format!("file:{}", raw.display()));
    }
    let kernel_args = config.effective_kernel_args().join(" ");
    if !kernel_args.is_empty() && config.linux.is_none() {
        command
            .arg("-fw_cfg")
            .arg(format!("name={FW_CFG_FILE},string={}", escape_qemu_option_value(&kernel_args)));
    }
    if config.gdb {
        command.args(["-s", "-S"]);
    }
    command.args(&config.qemu_args);
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arguments(command: &Command) -> Vec<String> {
        command.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn kernel_args_reach_fw_cfg_with_commas_escaped() {
        let config = RunConfig {
            kernel_args: vec!["test=a,b".into(), "log=debug".into()],
            ..RunConfig::default()
        };
        let args = arguments(&qemu_command(&config).unwrap());
        let position = args.iter().position(|a| a == "-fw_cfg").expect("no -fw_cfg");
        assert_eq!(args[position + 1], "name=opt/kernel/args,string=test=a,,b log=debug");
        assert!(args.contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04".to_string()));
    }

    #[test]
    fn a_trace_adds_the_debug_console_and_trace_all() {
        let config = RunConfig { trace: Some("out/run.json".into()), ..RunConfig::default() };
        let args = arguments(&qemu_command(&config).unwrap());
        assert!(args.windows(2).any(|w| w == ["-debugcon", "file:out/run.ktrace"]), "{args:?}");
        assert!(args.contains(&"name=opt/kernel/args,string=trace=all".to_string()), "{args:?}");
        let chosen = RunConfig { kernel_args: vec!["trace=tlb,ipi".into()], ..config.clone() };
        let args = arguments(&qemu_command(&chosen).unwrap());
        assert!(args.contains(&"name=opt/kernel/args,string=trace=tlb,,ipi".to_string()));
        let untraced = arguments(&qemu_command(&RunConfig::default()).unwrap());
        assert!(!untraced.iter().any(|a| a == "-debugcon" || a.contains("trace=")));
    }

    #[test]
    fn pvpanic_is_there_unless_left_out_and_does_not_end_the_guest() {
        let args = arguments(&qemu_command(&RunConfig::default()).unwrap());
        assert!(args.windows(2).any(|w| w == ["-device", "pvpanic"]), "{args:?}");
        assert!(args.windows(2).any(|w| w == ["-action", "panic=none"]), "{args:?}");
        let without = RunConfig { pvpanic: false, ..RunConfig::default() };
        let args = arguments(&qemu_command(&without).unwrap());
        assert!(!args.iter().any(|a| a == "pvpanic" || a == "panic=none"), "{args:?}");
    }

    #[test]
    fn tcg_is_multi_threaded_and_threads_are_named() {
        let args = arguments(&qemu_command(&RunConfig::default()).unwrap());
        assert!(
            args.windows(4).any(|w| w == ["-accel", "tcg,thread=multi", "-cpu", "max"]),
            "{args:?}"
        );
        assert!(args.windows(2).any(|w| w == ["-name", "debug-threads=on"]), "{args:?}");
    }

    #[test]
    fn linux_boots_with_kernel_initrd_and_append_and_the_same_machine() {
        let linux = crate::LinuxBoot {
            kernel: "/cache/vmlinuz".into(),
            initrd: "/cache/ramdisk.cpio".into(),
            append: "rdinit=/bench console=ttyS0".into(),
        };
        let ours = RunConfig { kernel_args: vec!["run=bench".into()], ..RunConfig::default() };
        let theirs = RunConfig { linux: Some(linux), ..ours.clone() };
        let (ours, theirs) =
            (arguments(&qemu_command(&ours).unwrap()), arguments(&qemu_command(&theirs).unwrap()));
        assert!(
            theirs.windows(6).any(|w| w
                == [
                    "-kernel",
                    "/cache/vmlinuz",
                    "-initrd",
                    "/cache/ramdisk.cpio",
                    "-append",
                    "rdinit=/bench console=ttyS0"
                ]),
            "{theirs:?}"
        );
        assert!(!theirs.iter().any(|a| a == "-drive" || a == "-fw_cfg"), "{theirs:?}");
        // Everything after the kernel and its arguments is the same machine.
        let machine = |args: &[String]| -> Vec<String> {
            let mut args = args.to_vec();
            for flag in ["-drive", "-fw_cfg", "-kernel", "-initrd", "-append"] {
                while let Some(i) = args.iter().position(|a| a == flag) {
                    args.drain(i..i + 2);
                }
            }
            args
        };
        assert_eq!(machine(&ours), machine(&theirs));
    }
}
