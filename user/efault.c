/*
 * efault: a syscall given a bad user pointer must fail with -EFAULT (-14),
 * not crash the kernel, not kill the process, and not read or write memory
 * the process may not touch.
 *
 * Each case is a raw syscall (no libc wrapper: musl's clock_gettime would
 * use the vDSO on Linux and fault in user mode instead of asking the kernel):
 *   write(kernel address)            write(1, 0xffff800000000000, 16)
 *   write(unmapped low page)         write(1, 0x10, 16)
 *   write(munmapped page)            write(1, p, 16), p mmap'd then munmap'd
 *   clock_gettime(kernel address)    the kernel must not store the time there
 *   clock_gettime(read-only page)    p mprotect'ed to PROT_READ
 *   writev(bad iovec array)          the iovec array itself at 0x10
 *   writev(bad iov_base)             a good array whose buffer is at 0x10
 *
 * Output: one line per case, "efault: CASE = RESULT", where RESULT is the
 * raw return value and its errno name, e.g.
 *   efault: write(kernel address) = -14 (EFAULT)
 * then "efault: all 7 cases returned -EFAULT" and exit 0, or
 * "FAILED: N of 7 cases did not return -EFAULT" and exit 1.
 *
 * On Linux, stdout must be a terminal, a pipe or a file: /dev/null accepts
 * any write without reading the buffer, so the bad-buffer writes succeed.
 */
#include "utest.h"

#include <sys/mman.h>
#include <sys/uio.h>

static int cases, bad_cases;

/* Report one case: it passes iff the kernel answered -EFAULT. */
static void expect_efault(const char *name, long r)
{
	cases++;
	if (r < 0)
		printf("efault: %s = %ld (%s)\n", name, r, errno_name(-r));
	else
		printf("efault: %s = %ld (success)\n", name, r);
	bad_cases += r != -EFAULT;
}

/* A page that was mapped and is not any more. It must be made after every
 * other mapping: the next mmap would likely reuse the hole. */
static void *munmapped_page(void)
{
	void *p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		fail("mmap: %s", errno_name(errno));
	if (munmap(p, PAGE_SIZE))
		fail("munmap: %s", errno_name(errno));
	return p;
}

/* A mapped page the process may read but not write. The same store is
 * tried while it is still writable, so an -EFAULT later can only come from
 * the protection change. */
static void *read_only_page(void)
{
	void *p = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	long r;

	if (p == MAP_FAILED)
		fail("mmap: %s", errno_name(errno));
	r = probe_write(p);
	if (r != 0)
		fail("clock_gettime into a writable page = %ld (%s)", r,
		     errno_name(-r));
	if (mprotect(p, PAGE_SIZE, PROT_READ))
		fail("mprotect: %s", errno_name(errno));
	return p;
}

int main(void)
{
	void *low = (void *)0x10;
	void *ro = read_only_page();
	void *gone = munmapped_page();
	struct iovec bad_base = { .iov_base = low, .iov_len = 16 };

	stdout_lines();
	expect_efault("write(kernel address)",
		      sys3(SYS_write, 1, (long)KERNEL_ADDR, 16));
	expect_efault("write(unmapped low page)",
		      sys3(SYS_write, 1, (long)low, 16));
	expect_efault("write(munmapped page)",
		      sys3(SYS_write, 1, (long)gone, 16));
	expect_efault("clock_gettime(kernel address)",
		      sys3(SYS_clock_gettime, CLOCK_MONOTONIC,
			   (long)KERNEL_ADDR, 0));
	expect_efault("clock_gettime(read-only page)",
		      sys3(SYS_clock_gettime, CLOCK_MONOTONIC, (long)ro, 0));
	expect_efault("writev(bad iovec array)",
		      sys3(SYS_writev, 1, (long)low, 1));
	expect_efault("writev(bad iov_base)",
		      sys3(SYS_writev, 1, (long)&bad_base, 1));
	if (bad_cases)
		fail("%d of %d cases did not return -EFAULT", bad_cases,
		     cases);
	printf("efault: all %d cases returned -EFAULT\n", cases);
	return 0;
}
