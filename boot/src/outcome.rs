//! How a run ended, read from QEMU's exit status, and the runner's own exit
//! status for each ending.

/// QEMU's exit status for the kernel's debug-exit codes
/// (kernel/src/arch/x86/qemu_exit.rs): `(code << 1) | 1`.
const QEMU_STATUS_KERNEL_SUCCESS: i32 = 33;
const QEMU_STATUS_KERNEL_FAILURE: i32 = 35;
const QEMU_STATUS_KERNEL_PANICKED: i32 = 37;

/// How a run ended. The runner's exit status is [`Outcome::exit_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel exited through isa-debug-exit with its success code.
    KernelSuccess,
    /// The kernel exited with its failure code (a failed or hung test).
    KernelFailure,
    /// The kernel panicked: QEMU said so (the pvpanic device's QMP event),
    /// or the kernel exited with its panic code (`panic=exit`). Whatever
    /// ended the run afterwards, the panic is what the run's status reports.
    /// `ended_by_runner`: QEMU was still running when the runner ended it
    /// (`--exit-on-panic`, `--timeout`), as a halted guest should be; false
    /// when QEMU ended by itself (`panic=exit`, or `panic=N`'s reboot).
    Panicked { ended_by_runner: bool },
    /// The run was killed after --timeout.
    TimedOut,
    /// The guest reset or powered off (QEMU runs with -no-reboot): a triple
    /// fault, a reboot request, or a power-off.
    GuestReset,
    /// QEMU itself failed; `message` is what it printed on stderr.
    QemuFailed { status: Option<i32>, message: String },
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::KernelSuccess => 0,
            Outcome::KernelFailure => 1,
            Outcome::Panicked { .. } => 4,
            Outcome::QemuFailed { .. } => 2,
            Outcome::GuestReset => 3,
            Outcome::TimedOut => 124,
        }
    }

    pub(crate) fn from_status(status: Option<i32>, stderr: String) -> Outcome {
        match status {
            Some(QEMU_STATUS_KERNEL_SUCCESS) => Outcome::KernelSuccess,
            Some(QEMU_STATUS_KERNEL_FAILURE) => Outcome::KernelFailure,
            Some(QEMU_STATUS_KERNEL_PANICKED) => Outcome::Panicked { ended_by_runner: false },
            Some(0) => Outcome::GuestReset,
            status => Outcome::QemuFailed { status, message: stderr },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::KernelSuccess => "the kernel exited with success".into(),
            Outcome::KernelFailure => "the kernel exited with failure".into(),
            Outcome::Panicked { ended_by_runner: false } => "the kernel panicked".into(),
            Outcome::Panicked { ended_by_runner: true } => {
                "the kernel panicked, and was still running when the runner ended QEMU".into()
            }
            Outcome::TimedOut => "timed out: QEMU was killed".into(),
            Outcome::GuestReset => {
                "the guest reset or powered off without reporting through isa-debug-exit".into()
            }
            Outcome::QemuFailed { status, message } => {
                format!("QEMU failed (exit status {status:?}): {}", message.trim())
            }
        }
    }
}

/// A problem found before QEMU could run, with what to do about it.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_exit_statuses_map_to_outcomes() {
        assert_eq!(Outcome::from_status(Some(33), String::new()).exit_code(), 0);
        assert_eq!(Outcome::from_status(Some(35), String::new()).exit_code(), 1);
        let panicked = Outcome::from_status(Some(37), String::new());
        assert_eq!(panicked, Outcome::Panicked { ended_by_runner: false });
        assert_eq!(panicked.exit_code(), 4);
        assert_eq!(Outcome::from_status(Some(0), String::new()), Outcome::GuestReset);
        assert_eq!(Outcome::from_status(Some(1), "boom".into()).exit_code(), 2);
        assert_eq!(Outcome::TimedOut.exit_code(), 124);
    }
}
