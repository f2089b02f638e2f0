/*
 * The AP start-up trampoline: real mode -> protected mode -> long mode -> Rust.
 *
 * A SIPI with vector VV starts the AP in real mode at CS:IP = VV00:0000, that
 * is, at physical address VV000 (Intel SDM Vol. 3A 9.4.4.1 "Typical BSP
 * Initialization Sequence" and 9.4.4.2 "Typical AP Initialization Sequence").
 * The kernel copies this code to such a page below 1 MiB and fills in the
 * parameter block at offset {PARAMS} of that page (see trampoline.rs here; smp::trampoline places it):
 * everything that depends on where things are in memory comes from there, so
 * the code itself needs no relocation.
 *
 * Every AP runs this at the same time in parallel bring-up, so it uses no
 * stack and writes no memory until it has found its own stack. (Linux's
 * trampoline needs a real-mode stack and guards it with a bit spinlock.)
 */

.section .text.ap_trampoline, "ax"
.global ap_trampoline_start
.global ap_trampoline_protected_mode
.global ap_trampoline_long_mode
.global ap_trampoline_end

.code16
ap_trampoline_start:
    cli
    cld
    /* Address the page through DS; EBX = the page's physical address, kept
     * through every mode switch for base-relative addressing. */
    movw    %cs, %ax
    movw    %ax, %ds
    movzwl  %ax, %ebx
    shll    $4, %ebx

    /* Load the trampoline's GDT (flat 32-bit code and data, 64-bit code),
     * set CR0.PE, and far-jump to reload CS with the 32-bit code segment
     * (SDM Vol. 3A 10.9.1 "Switching to Protected Mode"). */
    lgdtl   {GDT_POINTER}
    movl    %cr0, %eax
    orl     $1, %eax
    movl    %eax, %cr0
    ljmpl   *{PROTECTED_MODE_JUMP}

.code32
ap_trampoline_protected_mode:
    movw    ${DATA_SELECTOR}, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss

    /* Enter IA-32e mode (SDM Vol. 3A 10.8.5 "Initializing IA-32e Mode"):
     * CR4.PAE, CR3 = a 4-level table, EFER.LME (and NXE, as the boot CPU has
     * it: the kernel's page tables use the NX bit), then CR0.PG. */
    movl    %cr4, %eax
    orl     $(1 << 5), %eax
    movl    %eax, %cr4
    movl    {CR3}(%ebx), %eax
    movl    %eax, %cr3
    movl    $0xc0000080, %ecx
    movl    {EFER}(%ebx), %eax
    xorl    %edx, %edx
    wrmsr
    movl    %cr0, %eax
    orl     $0x80000000, %eax
    movl    %eax, %cr0
    /* Paging is on and we run in compatibility mode; a far jump to the 64-bit
     * code segment enters 64-bit mode. */
    ljmpl   *{LONG_MODE_JUMP}(%ebx)

.code64
ap_trampoline_long_mode:
    movw    ${DATA_SELECTOR}, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss

    /* Who am I? The 32-bit x2APIC id from CPUID leaf 0BH where the CPU has the
     * leaf, else the 8-bit id in CPUID.01H:EBX[31:24] (SDM Vol. 3A 9.4.5
     * "Identifying Logical Processors in an MP System"). Same rule as
     * cpu::initial_apic_id(). */
    xorl    %eax, %eax
    cpuid
    cmpl    $0xb, %eax
    jb      2f
    movl    $0xb, %eax
    xorl    %ecx, %ecx
    cpuid
    testl   %ebx, %ebx
    jz      1f
    movl    %edx, %edi
    jmp     3f
1:  /* CPUID clobbered EBX: recompute the page address from the code address. */
2:  movl    $1, %eax
    cpuid
    shrl    $24, %ebx
    movl    %ebx, %edi
3:  leaq    ap_trampoline_start(%rip), %rbx

    /* Look the APIC id up in the table the boot CPU prepared: entries of
     * {{u32 apic_id, u32 pad, u64 stack_top, u64 percpu}}. */
    movq    {CPU_TABLE}(%rbx), %rsi
    movq    {CPU_COUNT}(%rbx), %rcx
4:  testq   %rcx, %rcx
    jz      6f
    cmpl    %edi, (%rsi)
    je      5f
    addq    ${CPU_ENTRY_SIZE}, %rsi
    decq    %rcx
    jmp     4b

5:  /* Found: switch to this CPU's own stack and call the Rust entry with its
     * per-CPU data. RBP = 0 ends the frame-pointer chain for backtraces. */
    movq    8(%rsi), %rsp
    movq    16(%rsi), %rdi
    xorl    %ebp, %ebp
    callq   *{RUST_ENTRY}(%rbx)
    ud2

6:  /* Not in the table: this CPU was not meant to start. Stop. */
    cli
    hlt
    jmp     6b
ap_trampoline_end:
