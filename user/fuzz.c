/*
 * fuzz: a bounded syscall fuzzer. Every call must return, and the process
 * must survive all of them: the kernel may refuse an argument, never crash
 * or corrupt the caller.
 *
 * Usage: fuzz [CALLS [SEED [-v]]]   defaults: 2000 calls, seed 1; -v prints
 * every call before making it and its result after, so the last line before
 * a crash names the culprit.
 *
 * It also runs on a Linux host during development, as root, so it must not
 * be able to harm anything but itself. The design is an allowlist:
 *  - calls that only read, or only fail: getppid, uname, sysinfo, times,
 *    getrusage, sched_getparam, clock_getres, ...;
 *  - the kernel's own subset (read, write, futex, mmap, ...), with the
 *    arguments that could block, end or damage the process forced safe:
 *      read, pread64, readv, close, epoll_wait(2): only bad fds;
 *      write, writev on fds 0-2: only bad buffers, or nothing to write;
 *      ioctl: only requests that read (TIOCGWINSZ, TCGETS, FIONREAD...);
 *      mmap (always MAP_FIXED | MAP_ANONYMOUS), munmap, mprotect, madvise,
 *      msync, mincore: only inside the fuzzer's scratch region (or at
 *      addresses the kernel must refuse); madvise only with advice that
 *      cannot poison or offline a page;
 *      brk: only 0 (a query) and addresses that must fail;
 *      futex, futex_wait(v), nanosleep, clock_nanosleep: timeouts are a
 *      zero or 1 us timespec or a bad pointer, never NULL (= forever), and
 *      sleeps only on the real-time clocks (a sleep on the process's own CPU
 *      clock would never end); no PI futex ops (they attach to whatever task
 *      a random word names);
 *      sched_setaffinity: only this thread, only all-CPU masks;
 *  - numbers no Linux defines, with any arguments: they must give -ENOSYS.
 *    The x86_64 table reserves 387..423 (never to be used there), and
 *    nothing is above 470 yet; 1000..1023 stand for those. Not 335..386:
 *    Linux 6.11 made 335 uretprobe (it kills its caller with SIGILL) and
 *    6.16 made 336 uprobe.
 * Left out entirely: exit, exit_group, kill, tkill, tgkill, clone, clone3,
 * fork, vfork, execve(at), rt_sigreturn, rt_sigaction, arch_prctl,
 * set_tid_address, rseq, set_robust_list, sched_setscheduler, prlimit64,
 * prctl, seccomp, ptrace, personality, the set*id family, files, sockets,
 * mounts, modules, keys, bpf, perf, io_uring, timers that deliver signals.
 *
 * Arguments come from interesting values: 0, small numbers, -1, huge
 * numbers, kernel addresses, unmapped user addresses (each checked at start
 * to be unmapped here), a non-canonical address, pointers into a scratch
 * region the fuzzer owns, and pointers into a 16 KiB buffer on its stack. A
 * syscall may write through a "good" pointer: every one has at least 12 KiB
 * of the fuzzer's own memory after it, and no allowed call writes more (the
 * most is poll's 1025 entries: 8200 bytes).
 *
 * Output:
 *   fuzz: seed S, N calls
 *   fuzz: N calls, E errors by errno: ENOSYS=a EINVAL=b ... other=z
 *   fuzz: survived N calls
 * and exit status 0.
 */
#include "utest.h"

#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>

#define SCRATCH_PAGES 16
#define STACK_BUF_SIZE 16384
#define BAD_IOVS 8
#define TOP_ERRNOS 5

/* ---- the generator ------------------------------------------------------ */

static uint64_t rng_state;

/* xorshift64*: small, fast, and the same sequence for the same seed. */
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ull;
}

static uint64_t below(uint64_t n)
{
	return rng() % n;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define PICK(a) ((a)[below(COUNT(a))])

/* ---- memory the calls may use ------------------------------------------- */

static char *scratch;			/* SCRATCH_PAGES pages, guarded */
static unsigned char *stack_buf;	/* STACK_BUF_SIZE bytes in main */
static struct iovec bad_iov[BAD_IOVS];	/* valid array, bad buffers */
static const struct timespec ts_zero = { 0, 0 }, ts_tiny = { 0, 1000 };
static unsigned char all_cpus[4096];	/* an affinity mask of every CPU */

/* Candidate bad pointers; those found mapped at start are dropped. */
static uintptr_t bad_ptrs[] = {
	0,				/* NULL */
	0x10,				/* the never-mapped first page */
	0,				/* a page we unmapped: set at start */
	0x7ffffffff000,			/* Linux's user limit (TASK_SIZE) */
	0xffff800000000000,		/* kernel half */
	0xffffffff80000000,		/* kernel image on Linux */
	0x8000000000000000,		/* non-canonical */
	0x0000800000000000,		/* first non-canonical (4-level) */
	(uintptr_t)-1,
	(uintptr_t)-4096,
};
static int nbad = COUNT(bad_ptrs);

/* Addresses mm calls may get besides scratch: all must be refused. */
static const uintptr_t refused_addrs[] = {
	0x10, 0xffff800000000000, 0x8000000000000000, (uintptr_t)-4096,
};

static const uint64_t numbers[] = {
	0, 1, 2, 3, 4, 7, 8, 16, 64, 127, 128, 255, 256, 4095, 4096, 65536,
	0x7fffffff, 0x80000000, 0xffffffff, 0x100000000, 0x7fffffffffffffff,
	(uint64_t)-1, (uint64_t)-2, (uint64_t)-4095, (uint64_t)-4096,
};

static bool is_bad(uint64_t p)
{
	for (int i = 0; i < nbad; i++)
		if (bad_ptrs[i] == p)
			return true;
	return false;
}

static uint64_t bad_ptr(void)
{
	return bad_ptrs[below(nbad)];
}

/* A pointer with at least 8 KiB of the fuzzer's memory after it. */
static uint64_t good_ptr(void)
{
	static const unsigned scratch_offsets[] = { 0, 8, 100, 4096, 4100 };
	static const unsigned stack_offsets[] = { 0, 1, 8, 64 };

	if (below(2))
		return (uint64_t)(scratch + PICK(scratch_offsets));
	return (uint64_t)(stack_buf + PICK(stack_offsets));
}

/* A bad pointer that is not NULL: where NULL means "no timeout" (forever). */
static uint64_t bad_nonnull_ptr(void)
{
	uint64_t p;

	while (!(p = bad_ptr()))
		;
	return p;
}

static uint64_t pointer(void)
{
	return below(5) < 3 ? good_ptr() : bad_ptr();
}

static uint64_t anything(void)
{
	uint64_t k = below(4);

	if (k < 2)
		return PICK(numbers);
	return k == 2 ? good_ptr() : bad_ptr();
}

/* An address for an mm call: a page of scratch, or an odd address in it,
 * or one the kernel must refuse. */
static uint64_t mm_addr(void)
{
	uint64_t k = below(20);
	char *page = scratch + below(SCRATCH_PAGES) * PAGE_SIZE;

	if (k < 15)
		return (uint64_t)page;
	if (k < 17)
		return (uint64_t)page + 1 + below(PAGE_SIZE - 1);
	return PICK(refused_addrs);
}

/* A length for an mm call at addr: never past the end of scratch. */
static uint64_t mm_len(uint64_t addr)
{
	uint64_t end = (uint64_t)scratch + SCRATCH_PAGES * PAGE_SIZE;
	uint64_t room;

	if (addr < (uint64_t)scratch || addr >= end)
		return anything();	/* refused whatever the length */
	room = end - addr;
	switch (below(4)) {
	case 0: return 0;
	case 1: return below(room) + 1;
	case 2: return room;
	default: return below(room / PAGE_SIZE + 1) * PAGE_SIZE;
	}
}

/* ---- argument kinds ----------------------------------------------------- */

/*
 * Each allowed call has a string of argument kinds, one letter per argument
 * (missing ones are 0):
 *   x  anything                      p  a pointer, good or bad
 *   0  zero                          b  a bad fd
 *   f  fd 0, 1, 2 or a bad one       n  a length up to 4096
 *   c  a count: small, 1025 or 2^32-1
 *   z  a timeout: a zero or 1 us timespec, or a bad pointer (never NULL)
 *   k  a clock to sleep on           a  an mm address (scratch or refused)
 *   l  an mm length (for the a just before it)
 *   v  madvise advice                M  mmap flags
 *   B  a brk argument                P  a pid for a setter
 *   m  an affinity mask              i  an ioctl request
 *   o  a futex op
 */
static uint64_t arg_of(char kind, uint64_t prev)
{
	static const int64_t bad_fds[] = { -1, -100, 1000000, 0x7fffffff,
					   INT32_MIN };
	static const uint64_t lengths[] = { 0, 1, 7, 8, 16, 64, 128, 1024,
					    4096 };
	static const uint64_t counts[] = { 0, 1, 2, 3, 8, 64, 128, 1025,
					   0xffffffff };
	static const uint64_t clocks[] = { CLOCK_REALTIME, CLOCK_MONOTONIC,
					   CLOCK_BOOTTIME, CLOCK_TAI,
					   CLOCK_THREAD_CPUTIME_ID, 100 };
	/* No MADV_HWPOISON (100) or MADV_SOFT_OFFLINE (101): as root they
	 * poison or offline the physical page. */
	static const uint64_t advice[] = { 0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12,
					   13, 14, 15, 16, 17, 18, 19, 20, 21,
					   22, 23, 1000 };
	static const uint64_t map_kinds[] = {
		MAP_PRIVATE, MAP_SHARED, MAP_SHARED_VALIDATE, 0,
		MAP_PRIVATE | MAP_POPULATE, MAP_PRIVATE | MAP_NORESERVE,
		MAP_PRIVATE | MAP_FIXED_NOREPLACE, MAP_PRIVATE | MAP_LOCKED,
	};
	static const uint64_t brks[] = { 0, 0xffff800000000000,
					 0x8000000000000000, (uint64_t)-1,
					 (uint64_t)-4096 };
	static const int64_t setter_pids[] = { 0, -1, 0x7fffffff };
	static const uint64_t requests[] = { TIOCGWINSZ, TCGETS, FIONREAD,
					     TIOCGPGRP, TIOCGSID };
	/* WAIT, WAKE, FD (gone), REQUEUE, CMP_REQUEUE, WAKE_OP,
	 * WAIT_BITSET, WAKE_BITSET, and two undefined ones. */
	static const uint64_t futex_ops[] = { 0, 1, 2, 3, 4, 5, 9, 10, 14,
					      0x7f };

	switch (kind) {
	case 'x': return anything();
	case 'p': return pointer();
	case '0': return 0;
	case 'b': return PICK(bad_fds);
	case 'f': return below(2) ? below(3) : (uint64_t)PICK(bad_fds);
	case 'n': return PICK(lengths);
	case 'c': return PICK(counts);
	case 'z': return below(3) ? (uint64_t)(below(2) ? &ts_zero : &ts_tiny)
				  : bad_nonnull_ptr();
	case 'k': return PICK(clocks);
	case 'a': return mm_addr();
	case 'l': return mm_len(prev);
	case 'v': return PICK(advice);
	case 'M': return MAP_FIXED | MAP_ANONYMOUS | PICK(map_kinds);
	case 'B': return PICK(brks);
	case 'P': return PICK(setter_pids);
	case 'm': return below(2) ? (uint64_t)all_cpus : bad_ptr();
	case 'i': return PICK(requests);
	case 'o': return PICK(futex_ops) |
			 (below(2) ? FUTEX_PRIVATE_FLAG : 0) |
			 (below(4) ? 0 : 256 /* FUTEX_CLOCK_REALTIME */);
	}
	fail("unknown argument kind '%c'", kind);
}

/* On the console fds, write and writev may only fail or write nothing. */
static void console_write(uint64_t *a)
{
	if (a[0] <= 2 && !is_bad(a[1]))
		a[2] = 0;
}

static void console_writev(uint64_t *a)
{
	if (a[0] > 2 || is_bad(a[1]))
		return;
	a[1] = (uint64_t)bad_iov;
	a[2] = below(BAD_IOVS + 1);
}

struct call {
	int nr;
	const char *name;
	const char *args;
	void (*fix)(uint64_t *a);	/* a last constraint, or NULL */
	int weight;			/* the kernel's subset counts more */
};

static const struct call calls[] = {
	{ 0, "read", "bxx", NULL, 4 },
	{ 1, "write", "fpx", console_write, 4 },
	{ 3, "close", "b", NULL, 1 },
	{ 7, "poll", "pc0", NULL, 1 },
	{ 9, "mmap", "alxMxx", NULL, 4 },
	{ 10, "mprotect", "alx", NULL, 4 },
	{ 11, "munmap", "al", NULL, 4 },
	{ 12, "brk", "B", NULL, 4 },
	{ 14, "rt_sigprocmask", "xppx", NULL, 4 },
	{ 16, "ioctl", "fip", NULL, 4 },
	{ 17, "pread64", "bxxx", NULL, 1 },
	{ 19, "readv", "bxx", NULL, 1 },
	{ 20, "writev", "fpc", console_writev, 4 },
	{ 24, "sched_yield", "", NULL, 4 },
	{ 26, "msync", "alx", NULL, 1 },
	{ 27, "mincore", "alp", NULL, 1 },
	{ 28, "madvise", "alv", NULL, 4 },
	{ 35, "nanosleep", "zp", NULL, 4 },
	{ 36, "getitimer", "xp", NULL, 1 },
	{ 39, "getpid", "", NULL, 4 },
	{ 63, "uname", "p", NULL, 1 },
	{ 96, "gettimeofday", "pp", NULL, 1 },
	{ 97, "getrlimit", "xp", NULL, 1 },
	{ 98, "getrusage", "xp", NULL, 1 },
	{ 99, "sysinfo", "p", NULL, 1 },
	{ 100, "times", "p", NULL, 1 },
	{ 102, "getuid", "", NULL, 1 },
	{ 104, "getgid", "", NULL, 1 },
	{ 107, "geteuid", "", NULL, 1 },
	{ 108, "getegid", "", NULL, 1 },
	{ 110, "getppid", "", NULL, 1 },
	{ 111, "getpgrp", "", NULL, 1 },
	{ 115, "getgroups", "xp", NULL, 1 },
	{ 118, "getresuid", "ppp", NULL, 1 },
	{ 120, "getresgid", "ppp", NULL, 1 },
	{ 121, "getpgid", "x", NULL, 1 },
	{ 124, "getsid", "x", NULL, 1 },
	{ 140, "getpriority", "xx", NULL, 1 },
	{ 143, "sched_getparam", "xp", NULL, 1 },
	{ 145, "sched_getscheduler", "x", NULL, 1 },
	{ 146, "sched_get_priority_max", "x", NULL, 1 },
	{ 147, "sched_get_priority_min", "x", NULL, 1 },
	{ 148, "sched_rr_get_interval", "xp", NULL, 1 },
	{ 186, "gettid", "", NULL, 4 },
	{ 201, "time", "p", NULL, 1 },
	{ 202, "futex", "poxzpx", NULL, 4 },
	{ 203, "sched_setaffinity", "Pnm", NULL, 4 },
	{ 204, "sched_getaffinity", "xnp", NULL, 4 },
	{ 219, "restart_syscall", "", NULL, 1 },
	{ 228, "clock_gettime", "xp", NULL, 4 },
	{ 229, "clock_getres", "xp", NULL, 1 },
	{ 230, "clock_nanosleep", "kxzp", NULL, 4 },
	{ 232, "epoll_wait", "bxxx", NULL, 1 },
	{ 309, "getcpu", "ppp", NULL, 4 },
	{ 315, "sched_getattr", "xpnx", NULL, 1 },
	{ 441, "epoll_pwait2", "bxxxxx", NULL, 1 },
	{ 449, "futex_waitv", "pcxzx", NULL, 1 },
	{ 454, "futex_wake", "pxxx", NULL, 1 },
	{ 455, "futex_wait", "pxxxzx", NULL, 1 },
	{ 456, "futex_requeue", "pxxx", NULL, 1 },
};

/* A syscall number no Linux defines: 387..423 or 1000..1023. */
static int undefined_nr(void)
{
	return below(4) ? 387 + below(423 - 387 + 1) : 1000 + below(24);
}

/* Build the next call: an allowed one (3 in 4) or an undefined number. */
static const struct call *next_call(int *nr, uint64_t a[6])
{
	static int total_weight;
	const struct call *c = calls;
	uint64_t prev = 0;
	int w;

	if (!total_weight)
		for (size_t i = 0; i < COUNT(calls); i++)
			total_weight += calls[i].weight;
	if (!below(4)) {
		*nr = undefined_nr();
		for (int i = 0; i < 6; i++)
			a[i] = anything();
		return NULL;
	}
	for (w = below(total_weight); w >= c->weight; c++)
		w -= c->weight;
	*nr = c->nr;
	for (int i = 0; i < 6; i++) {
		char kind = i < (int)strlen(c->args) ? c->args[i] : '0';

		a[i] = prev = arg_of(kind, prev);
	}
	if (c->fix)
		c->fix(a);
	return c;
}

/* ---- setup and the summary ---------------------------------------------- */

/* Scratch pages between two PROT_NONE guard pages: mm calls stay between
 * them, and a kernel that wrote too far would hit a guard, not our data. */
static void make_scratch(void)
{
	size_t size = (SCRATCH_PAGES + 2) * PAGE_SIZE;
	char *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	if (p == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	scratch = p + PAGE_SIZE;
	if (mprotect(scratch, SCRATCH_PAGES * PAGE_SIZE,
		     PROT_READ | PROT_WRITE))
		fail("mprotect: %s", strerror(errno));
}

/* Fill in the unmapped page, then keep only bad pointers that really are
 * unmapped here (a kernel may map its stack at the top of user space). */
static void check_bad_ptrs(void)
{
	void *hole = mmap(NULL, PAGE_SIZE, PROT_READ,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (hole == MAP_FAILED || munmap(hole, PAGE_SIZE))
		fail("mmap/munmap: %s", strerror(errno));
	bad_ptrs[2] = (uintptr_t)hole;
	nbad = 0;
	for (size_t i = 0; i < COUNT(bad_ptrs); i++) {
		/* futex wants an aligned word: probe the one holding it */
		if (probe_read((void *)(bad_ptrs[i] & ~3ul), 0) !=
		    PROBE_UNMAPPED) {
			printf("fuzz: 0x%lx is mapped here: not used\n",
			       (unsigned long)bad_ptrs[i]);
			continue;
		}
		bad_ptrs[nbad++] = bad_ptrs[i];
	}
}

/* One line: the calls, the errors, and the most frequent errno values. */
static void print_summary(long n, const long *by_errno)
{
	static long left[4096];
	char line[256];
	long errors = 0, shown = 0;
	int len;

	for (int e = 1; e < 4096; e++) {
		left[e] = by_errno[e];
		errors += left[e];
	}
	len = snprintf(line, sizeof line, "fuzz: %ld calls, %ld errors by errno:",
		       n, errors);
	for (int k = 0; k < TOP_ERRNOS; k++) {
		int top = 0;

		for (int e = 1; e < 4096; e++)
			if (left[e] > left[top])
				top = e;
		if (!top)
			break;
		if (strcmp(errno_name(top), "E?"))
			len += snprintf(line + len, sizeof line - len, " %s=%ld",
					errno_name(top), left[top]);
		else
			len += snprintf(line + len, sizeof line - len,
					" errno%d=%ld", top, left[top]);
		shown += left[top];
		left[top] = 0;
	}
	printf("%s other=%ld\n", line, errors - shown);
}

int main(int argc, char **argv)
{
	unsigned char buf[STACK_BUF_SIZE];
	static long by_errno[4096];	/* [0] counts successes */
	long n = arg_long(argc, argv, 1, 2000);
	long seed = arg_long(argc, argv, 2, 1);
	bool verbose = argc > 3 && !strcmp(argv[3], "-v");

	stdout_lines();
	/* Spread small seeds over all bits; xorshift must not start at 0. */
	rng_state = (uint64_t)seed * 0x9e3779b97f4a7c15ull | 1;
	stack_buf = buf;
	memset(buf, 0, sizeof buf);
	memset(all_cpus, 0xff, sizeof all_cpus);
	for (int i = 0; i < BAD_IOVS; i++)
		bad_iov[i] = (struct iovec){ (void *)0x10, 16 };
	make_scratch();
	check_bad_ptrs();	/* after the last mmap of our own */
	printf("fuzz: seed %ld, %ld calls\n", seed, n);
	for (long i = 0; i < n; i++) {
		uint64_t a[6];
		int nr;
		const struct call *c = next_call(&nr, a);
		long r;

		if (verbose)
			printf("fuzz: #%ld %s(%d) 0x%lx 0x%lx 0x%lx 0x%lx "
			       "0x%lx 0x%lx\n", i, c ? c->name : "undefined",
			       nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		r = sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		if (verbose)
			printf("fuzz: #%ld = %ld%s%s\n", i, r,
			       r < 0 ? " " : "", r < 0 ? errno_name(-r) : "");
		by_errno[r < 0 && r >= -4095 ? -r : 0]++;
	}
	print_summary(n, by_errno);
	printf("fuzz: survived %ld calls\n", n);
	return 0;
}
