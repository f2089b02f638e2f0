/*
 * segv: a user fault must end the process, not the kernel.
 *
 * It writes to address 0x10, in the never-mapped first page. On the teaching
 * kernel (no signals) the page fault kills the process; on Linux it dies of
 * SIGSEGV (a shell shows status 139 = 128 + 11).
 *
 * Output:
 *   segv: writing to address 0x10
 * and nothing else. If the write returns, it prints
 *   FAILED: the write did not fault
 * and exits with 1.
 */
#include "utest.h"

int main(void)
{
	/* The address goes through a volatile variable so the compiler can
	 * neither prove the store invalid (and warn or drop it) nor move it. */
	volatile uintptr_t addr = 0x10;

	stdout_lines();
	printf("segv: writing to address 0x%lx\n", (unsigned long)addr);
	*(volatile int *)addr = 1;
	fail("the write did not fault");
}
