/*
 * utest.h: small helpers shared by the user programs.
 *
 * The same static binaries run on Linux and on the teaching kernel, so
 * everything here uses only the kernel's syscall subset: console writes,
 * clock_gettime(CLOCK_MONOTONIC), sched_{get,set}affinity, futex.
 *
 * Include this header FIRST in every program: it defines _GNU_SOURCE, which
 * must be set before any libc header is read.
 *
 * Conventions every program follows:
 *  - stdout is line buffered (stdout_lines()), so each line leaves in one
 *    writev and lines from different threads do not mix;
 *  - a detected failure prints one line "FAILED: reason" and exits with 1
 *    (fail());
 *  - syscalls whose exact return value matters go through sys6() and friends,
 *    which return the kernel's raw result (-errno on error) without touching
 *    errno.
 */
#ifndef UTEST_H
#define UTEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>

/* PAGE_SIZE (4096) comes from musl's <limits.h>. */

/* futex operations (musl-gcc has no <linux/futex.h>: these are the ABI). */
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE_FLAG 128
#define FUTEX_WAIT_PRIVATE (FUTEX_WAIT | FUTEX_PRIVATE_FLAG)
#define FUTEX_WAKE_PRIVATE (FUTEX_WAKE | FUTEX_PRIVATE_FLAG)

/* An address no user program can own: the start of the kernel half of the
 * address space. */
#define KERNEL_ADDR ((void *)0xffff800000000000UL)

/* ---- raw syscalls ------------------------------------------------------- */

/* The x86_64 syscall instruction: number in rax, arguments in rdi, rsi, rdx,
 * r10, r8, r9; the kernel clobbers rcx (return rip) and r11 (rflags). The
 * result is returned as the kernel gave it: -errno on failure. */
static inline long sys6(long nr, long a1, long a2, long a3, long a4, long a5,
			long a6)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10),
			   "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

static inline long sys0(long nr)
{
	return sys6(nr, 0, 0, 0, 0, 0, 0);
}

static inline long sys3(long nr, long a1, long a2, long a3)
{
	return sys6(nr, a1, a2, a3, 0, 0, 0);
}

static inline long sys4(long nr, long a1, long a2, long a3, long a4)
{
	return sys6(nr, a1, a2, a3, a4, 0, 0);
}

/* ---- futex -------------------------------------------------------------- */

/* Sleep while *word == val, at most timeout (NULL: no bound). Returns the
 * raw result: 0 woken, -EAGAIN *word != val, -ETIMEDOUT, -EINTR. */
static inline long futex_wait(_Atomic uint32_t *word, uint32_t val,
			      const struct timespec *timeout)
{
	return sys4(SYS_futex, (long)word, FUTEX_WAIT_PRIVATE, val,
		    (long)timeout);
}

/* Wake up to n threads sleeping on word; returns how many were woken. */
static inline long futex_wake(_Atomic uint32_t *word, int n)
{
	return sys3(SYS_futex, (long)word, FUTEX_WAKE_PRIVATE, n);
}

/* ---- probing user memory without faulting ------------------------------- */

/*
 * A fault in user mode kills the process on the teaching kernel (there are
 * no signals), so a program that wants to know whether an address is mapped
 * asks the kernel to touch it instead: a syscall that copies from or to user
 * memory returns -EFAULT rather than faulting the caller.
 */
enum probe { PROBE_UNMAPPED, PROBE_DIFFERENT, PROBE_EQUAL };

/* Read the 32-bit word at addr through the kernel: FUTEX_WAIT compares it
 * with expect. -EFAULT: unmapped; -EAGAIN: readable and different; anything
 * else (-ETIMEDOUT once the zero timeout expires): readable and equal. */
static inline enum probe probe_read(const void *addr, uint32_t expect)
{
	static const struct timespec zero = { 0, 0 };
	long r = sys4(SYS_futex, (long)addr, FUTEX_WAIT_PRIVATE, expect,
		      (long)&zero);

	if (r == -EFAULT)
		return PROBE_UNMAPPED;
	return r == -EAGAIN ? PROBE_DIFFERENT : PROBE_EQUAL;
}

/* Write 16 bytes at addr through the kernel (clock_gettime stores the time
 * there). 0: writable; -EFAULT: not mapped or not writable. It clobbers the
 * 16 bytes, so point it at scratch space. */
static inline long probe_write(void *addr)
{
	return sys3(SYS_clock_gettime, CLOCK_MONOTONIC, (long)addr, 0);
}

/* ---- time --------------------------------------------------------------- */

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- output ------------------------------------------------------------- */

/* One writev per line, whatever stdout is (a pipe would otherwise be fully
 * buffered, and a crash would lose the lines that explain it). */
static inline void stdout_lines(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}

__attribute__((format(printf, 1, 2), noreturn)) static inline void
fail(const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	printf("FAILED: %s\n", why);
	exit(1);
}

/* The symbolic name of the errno values these programs meet; "E?" for the
 * others, so callers print the number too. */
static inline const char *errno_name(int e)
{
	switch (e) {
	case 0: return "OK";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ESRCH: return "ESRCH";
	case EINTR: return "EINTR";
	case EBADF: return "EBADF";
	case ECHILD: return "ECHILD";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ERANGE: return "ERANGE";
	case EDEADLK: return "EDEADLK";
	case ENOSYS: return "ENOSYS";
	case EOVERFLOW: return "EOVERFLOW";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return "E?";
	}
}

/* ---- CPUs --------------------------------------------------------------- */

/* The CPUs this process may run on, in increasing order. On the teaching
 * kernel that is 0..N-1; on a host it may be any subset (taskset, cgroups). */
struct cpu_list {
	int n;
	int id[CPU_SETSIZE];
};

static inline void cpus_available(struct cpu_list *l)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	l->n = 0;
	if (sched_getaffinity(0, sizeof set, &set) != 0)
		fail("sched_getaffinity: %s", errno_name(errno));
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			l->id[l->n++] = c;
	/* musl keeps only as many bytes of the mask as the syscall says it
	 * wrote (its return value) and clears the rest. */
	if (!l->n)
		fail("sched_getaffinity gave no CPU: it must return the number "
		     "of bytes of the mask it wrote");
}

/* Pin the calling thread to exactly one CPU (pid 0 = this thread). Returns 0
 * or an errno value. */
static inline int pin_self(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
}

/* ---- arguments ---------------------------------------------------------- */

/* argv[i] as a number, or def when absent; a malformed one is a failure. */
static inline long arg_long(int argc, char **argv, int i, long def)
{
	char *end;
	long v;

	if (i >= argc)
		return def;
	errno = 0;
	v = strtol(argv[i], &end, 0);
	if (errno || end == argv[i] || *end)
		fail("argument %d (\"%s\") is not a number", i, argv[i]);
	return v;
}

#endif
