//! Architecture-specific code. Only x86_64 exists; everything that touches
//! registers, descriptor tables, I/O ports or the APIC lives under `x86/`.

pub mod x86;
