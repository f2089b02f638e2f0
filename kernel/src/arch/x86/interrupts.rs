//! Masking maskable interrupts on this CPU: RFLAGS.IF, set by `sti`, cleared
//! by `cli` (SDM Vol. 3A "Maskable Hardware Interrupts"). NMIs and exceptions
//! are not masked by it.

/// Whether this CPU takes maskable interrupts now.
#[inline]
pub fn are_enabled() -> bool {
    x86_64::instructions::interrupts::are_enabled()
}

/// `cli`.
#[inline]
pub fn disable() {
    x86_64::instructions::interrupts::disable();
}

/// `sti`.
#[inline]
pub fn enable() {
    x86_64::instructions::interrupts::enable();
}

/// Runs `f` with interrupts disabled, then restores what was there before.
#[inline]
pub fn without_interrupts<R>(f: impl FnOnce() -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(f)
}
