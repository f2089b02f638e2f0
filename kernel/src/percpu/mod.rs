//! Per-CPU variables, each declared by the module that owns it.
//!
//! A module writes
//!
//! ```ignore
//! cpu_local! {
//!     /// Nesting depth of `preempt::disable()`.
//!     static PREEMPT_COUNT: AtomicU32 = AtomicU32::new(0);
//! }
//! ```
//!
//! and gets one `AtomicU32` per CPU: `PREEMPT_COUNT.get()` is this CPU's,
//! `PREEMPT_COUNT.on(3)` is CPU 3's. This is Linux's `DEFINE_PER_CPU()` with
//! `this_cpu_ptr()` and `per_cpu()`; no central structure lists the fields.
//!
//! How it works:
//! - **The template.** `cpu_local!` puts each static in the linker section
//!   `cpu_local`. The linker gathers them from every module into one block and
//!   defines `__start_cpu_local` and `__stop_cpu_local` around it (rust-lld, as
//!   GNU ld, does this for any section whose name is a C identifier). The
//!   statics themselves are never used as variables: they are the template,
//!   the initial value of every CPU's copy.
//! - **One area per CPU.** A CPU's area is a byte copy of the template, so a
//!   variable sits at the same offset in every area: its address minus
//!   `__start_cpu_local`. The boot CPU's area is a static buffer (it is needed
//!   before the heap exists: the first spinlock reads the preempt count); each
//!   AP's is allocated by `smp` before the AP is started, so it exists before
//!   the AP's first Rust code, which installs it.
//! - **The GS base.** Each CPU points its GS base (`IA32_GS_BASE`, SDM Vol. 3A
//!   "Segment Loading Instructions in IA-32e Mode"; see `arch::x86::gs`) at its
//!   own area. The area's `AREA_SELF` variable holds the area's address, so
//!   `get()` is a `gs:`-relative load of that pointer plus the offset.
//! - **Other CPUs' copies.** `on(cpu)` looks the area up in a table filled
//!   as areas are made.
//! - **The TSS first.** Every area begins with [`gdt::TSS_SPACE`] bytes
//!   that are not a variable: the CPU's task state segment lives there, at
//!   `gs:[0]` (see `arch::x86::gdt`). The template's copy starts after them,
//!   so a variable's offset is its place in the template plus that space.
//!
//! A reference from `get()` stays this CPU's only while the thread cannot move:
//! with preemption or interrupts disabled, or for values the owner reads
//! knowing it may be stale. For the preempt count, whose owner changes it while
//! preemptible, [`CpuLocal::add_on_this_cpu`] is one `add gs:[offset], delta`
//! instruction, as Linux's `this_cpu_add()` on x86: the offset is the same on
//! every CPU, so computing it first is harmless, and the instruction itself
//! reads the GS base and changes memory without an interrupt in between.
//!
//! What a variable's type must allow: copying its initial value byte by byte
//! must give a valid value (no pointer into itself; an empty `Vec` is fine),
//! and it is shared between CPUs (`Sync`), mutable only through atomics or
//! locks. Its alignment is at most [`AREA_ALIGN`].
//!
//! Nothing is dropped by the linker's garbage collection (`--gc-sections`):
//! `#[used(linker)]` makes rustc mark the section `SHF_GNU_RETAIN` (`readelf -S` shows
//! `cpu_local` with flags `WAR`), so even a variable no code names yet stays
//! in the template. The offsets come from the final layout, so they match the
//! areas.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::arch::x86::{gdt, gs};

pub mod cpu_set;

pub use cpu_set::{AtomicCpuSet, CpuSet, MAX_CPUS};

/// Alignment of every area, and the largest a per-CPU variable may ask for
/// (one cache line, so the copies of different CPUs never share one).
pub const AREA_ALIGN: usize = 64;

/// Room for the boot CPU's area, its TSS included. `install_boot_cpu` checks
/// that the template fits.
const BOOT_AREA_SIZE: usize = 4096;

/// Where the template's copy begins in an area: after the TSS.
const TEMPLATE_START: usize = gdt::TSS_SPACE;
const _: () = assert!(TEMPLATE_START.is_multiple_of(AREA_ALIGN));

/// One per-CPU variable: the template copy, reached only through [`get`] and [`on`].
///
/// [`get`]: CpuLocal::get
/// [`on`]: CpuLocal::on
#[repr(transparent)]
pub struct CpuLocal<T>(T);

/// Declares per-CPU variables; see the module documentation.
macro_rules! cpu_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $ty:ty = $init:expr;)*) => {$(
        $(#[$attr])*
        #[unsafe(link_section = "cpu_local")]
        #[used(linker)]
        $vis static $name: $crate::percpu::CpuLocal<$ty> =
            // SAFETY: the attribute above places this static in the template section.
            unsafe { $crate::percpu::CpuLocal::new($init) };
    )*};
}
pub(crate) use cpu_local;

unsafe extern "C" {
    // Defined by the linker around the `cpu_local` section; only their addresses are used.
    static __start_cpu_local: u8;
    static __stop_cpu_local: u8;
}

cpu_local! {
    /// This area's own address: what `get()` adds offsets to.
    static AREA_SELF: usize = 0;
    /// This CPU's logical number: 0 is the boot CPU, the others follow MADT order.
    static CPU_NUMBER: usize = 0;
    /// This CPU's local APIC id, as the CPU reports it (CPUID / the x2APIC id register).
    static APIC_ID: AtomicU32 = AtomicU32::new(0);
}

/// The address of each CPU's area (0: none yet).
static AREAS: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// How many CPUs have an area; they are numbered 0..AREA_COUNT.
static AREA_COUNT: AtomicUsize = AtomicUsize::new(0);

/// How many CPUs have come online (the boot CPU counts from the start).
static ONLINE_CPUS: AtomicUsize = AtomicUsize::new(1);

fn template() -> (usize, usize) {
    let start = &raw const __start_cpu_local as usize;
    let end = &raw const __stop_cpu_local as usize;
    (start, end - start)
}

impl<T: Sync> CpuLocal<T> {
    /// # Safety
    /// The static being initialised lies in the `cpu_local` section, so that it
    /// has an offset in every area. Only `cpu_local!` calls this.
    #[doc(hidden)]
    pub const unsafe fn new(value: T) -> CpuLocal<T> {
        const { assert!(core::mem::align_of::<T>() <= AREA_ALIGN, "per-CPU variable over-aligned") };
        CpuLocal(value)
    }

    /// Where this variable sits in every area.
    #[inline]
    fn offset(&'static self) -> usize {
        TEMPLATE_START + (self as *const Self as usize - template().0)
    }

    /// This CPU's copy. Stable only while the thread cannot move to another CPU.
    #[inline]
    pub fn get(&'static self) -> &'static T {
        // SAFETY: every CPU installs its area before its first per-CPU access
        // (the boot CPU first thing, an AP before its first per-CPU access in
        // `ap_entry`; the panic path checks `is_installed()` first), and the
        // area's AREA_SELF holds the area's address, 8-byte aligned. (Were GS
        // still 0, this would read an address near 0: unmapped in the
        // kernel's tables, but mapped by the trampoline's, which an AP runs
        // on until `ap_entry` adopts the kernel's. So no code may get here
        // before the install; the panic path and the trace check.)
        let area = unsafe { gs::read_u64(AREA_SELF.offset()) } as usize;
        // SAFETY: the area is a 'static copy of the template, aligned as it, so
        // a T lies at this offset; T is Sync and only ever shared.
        unsafe { &*((area + self.offset()) as *const T) }
    }

    /// CPU `cpu`'s copy.
    pub fn on(&'static self, cpu: usize) -> &'static T {
        let area = Area::of(cpu).0;
        // SAFETY: as in get(): the area is a 'static copy of the template.
        unsafe { &*((area + self.offset()) as *const T) }
    }
}

impl CpuLocal<AtomicU32> {
    /// This CPU's value, read in one instruction (`mov eax, gs:[offset]`): a
    /// thread that may move reads one CPU's copy, not a value from the CPU it
    /// moved to through the area of the CPU it left. For values the owner
    /// reads while preemptible (the preempt count, the interrupt depth).
    #[inline]
    pub fn load_on_this_cpu(&'static self) -> u32 {
        // SAFETY: GS points at this CPU's installed area, where an AtomicU32
        // lies at this variable's offset, 4-byte aligned.
        unsafe { gs::read_u32(self.offset()) }
    }

    /// Adds `delta` to this CPU's copy in one instruction; see the module documentation.
    #[inline]
    pub fn add_on_this_cpu(&'static self, delta: i32) {
        // SAFETY: GS points at this CPU's installed area, where an AtomicU32
        // lies at this variable's offset.
        unsafe { gs::add_u32(self.offset(), delta) };
    }
}

/// The boot CPU's area, in the kernel image's zeroed data.
#[repr(C, align(64))]
struct BootArea(UnsafeCell<[u8; BOOT_AREA_SIZE]>);

// SAFETY: the bytes are written directly only once, by `install_boot_cpu`
// before anything else uses them; after that every access goes through the
// per-CPU variables at their offsets, whose types are `Sync` (atomics and
// locks), through pointers derived from the `UnsafeCell`.
unsafe impl Sync for BootArea {}

static BOOT_AREA: BootArea = BootArea(UnsafeCell::new([0; BOOT_AREA_SIZE]));

/// Copies the template to `area` and registers it as CPU `cpu`'s.
///
/// # Safety
/// `area` is 'static, AREA_ALIGN-aligned, writable memory of
/// `TEMPLATE_START` plus the template's size that nothing else uses.
unsafe fn make_area(area: *mut u8, cpu: usize) {
    let (start, len) = template();
    // SAFETY: the caller gives TEMPLATE_START + `len` writable bytes; the
    // template is readable and does not overlap them. The TSS space starts
    // zeroed; `gdt::init_this_cpu` fills it.
    unsafe {
        core::ptr::write_bytes(area, 0, TEMPLATE_START);
        core::ptr::copy_nonoverlapping(start as *const u8, area.add(TEMPLATE_START), len);
    }
    let base = area as usize;
    // SAFETY: the copy holds a usize at each variable's offset; nothing reads
    // this area yet.
    unsafe {
        *((base + AREA_SELF.offset()) as *mut usize) = base;
        *((base + CPU_NUMBER.offset()) as *mut usize) = cpu;
    }
    AREAS[cpu].store(base, Ordering::Release);
    AREA_COUNT.fetch_max(cpu + 1, Ordering::AcqRel);
}

/// Makes the boot CPU's area and installs it. Runs first thing at boot.
pub fn install_boot_cpu() {
    assert!(
        TEMPLATE_START + template().1 <= BOOT_AREA_SIZE,
        "per-CPU template larger than BOOT_AREA_SIZE"
    );
    // SAFETY: BOOT_AREA is static, 64-byte aligned, large enough (checked) and
    // used by nothing else; this runs once, before any per-CPU access.
    unsafe { make_area(BOOT_AREA.0.get().cast(), 0) };
    gs::set_base(BOOT_AREA.0.get() as u64);
}

/// A CPU's area. An AP's is made before the AP starts and installed by the
/// AP's first Rust code.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Area(usize);

impl Area {
    /// CPU `cpu`'s area, which must exist.
    pub fn of(cpu: usize) -> Area {
        let area = AREAS[cpu].load(Ordering::Acquire);
        assert!(area != 0, "CPU {cpu} has no per-CPU area");
        Area(area)
    }

    /// The area this CPU's GS base points at.
    pub fn this() -> Area {
        Area(*AREA_SELF.get())
    }

    /// Allocates and registers CPU `cpu`'s area (needs the heap).
    pub fn new(cpu: usize) -> Area {
        let (_, len) = template();
        // Whole cache lines: no other heap data shares the area's last line.
        let size = (TEMPLATE_START + len).next_multiple_of(AREA_ALIGN);
        let layout = core::alloc::Layout::from_size_align(size, AREA_ALIGN).unwrap();
        // SAFETY: the layout has a non-zero size.
        let area = unsafe { alloc::alloc::alloc(layout) };
        assert!(!area.is_null(), "no memory for CPU {cpu}'s per-CPU area");
        // SAFETY: freshly allocated, never freed (so 'static), aligned,
        // TEMPLATE_START + `len` bytes.
        unsafe { make_area(area, cpu) };
        Area(area as usize)
    }

    /// The address the trampoline hands to the AP.
    pub fn address(self) -> u64 {
        self.0 as u64
    }

    /// The area at `address`, as handed over by the trampoline.
    ///
    /// # Safety
    /// `address` came from [`Area::address`].
    pub unsafe fn from_address(address: u64) -> Area {
        Area(address as usize)
    }

    /// The number of the CPU this area belongs to; readable before it is installed.
    pub fn cpu(self) -> usize {
        // SAFETY: the area holds CPU_NUMBER at its offset (make_area wrote it).
        unsafe { *((self.0 + CPU_NUMBER.offset()) as *const usize) }
    }

    /// Points this CPU's GS base at the area: from here on `get()` works.
    pub fn install(self) {
        gs::set_base(self.0 as u64);
    }
}

/// Whether this CPU has installed its area (an AP in its first instructions
/// has not: INIT leaves the GS base at 0, SDM Vol. 3A 9.1.1 Table 9-1). Reads
/// the MSR: for the panic and exception paths, which may run that early.
pub fn is_installed() -> bool {
    gs::base() != 0
}

/// This CPU's logical number.
#[inline]
pub fn cpu_number() -> usize {
    *CPU_NUMBER.get()
}

/// This CPU's local APIC id, as recorded by `set_apic_id`.
pub fn apic_id() -> u32 {
    APIC_ID.get().load(Ordering::Relaxed)
}

/// CPU `cpu`'s local APIC id: where to send it an IPI.
pub fn apic_id_of(cpu: usize) -> u32 {
    APIC_ID.on(cpu).load(Ordering::Relaxed)
}

/// Records CPU `cpu`'s local APIC id (from the MADT before it starts, from
/// the hardware once it runs).
pub fn set_apic_id(cpu: usize, apic_id: u32) {
    APIC_ID.on(cpu).store(apic_id, Ordering::Relaxed);
}

/// The CPUs that have a per-CPU area: every CPU `smp` manages, online or not.
pub fn cpus_with_area() -> core::ops::Range<usize> {
    0..AREA_COUNT.load(Ordering::Acquire)
}

pub fn online_count() -> usize {
    ONLINE_CPUS.load(Ordering::Acquire)
}

/// Records that one more CPU is online.
pub fn mark_online() {
    ONLINE_CPUS.fetch_add(1, Ordering::AcqRel);
}

/// Records that a CPU went offline (parked).
pub fn mark_offline() {
    ONLINE_CPUS.fetch_sub(1, Ordering::AcqRel);
}
