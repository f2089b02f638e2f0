/*
 * bench: microbenchmarks, so the same binary can be compared on two kernels.
 *
 * Usage: bench [PART [SCALE]]
 *   PART   syscall, thread, futex, shootdown, wakeup, or all (default)
 *   SCALE  multiplies every iteration count (default 1.0); the defaults take
 *          a second or two natively and well under 30 s on an emulated
 *          4-CPU machine
 *
 * Every result is one line "BENCH user METRIC VALUE UNIT":
 *   BENCH user cpus N count                      CPUs this process may use
 *   BENCH user getpid_ns X ns                    one getpid round trip
 *   BENCH user thread_create_join_us X us        pthread_create + join
 *   BENCH user futex_pingpong_us X us            one FUTEX_WAKE/FUTEX_WAIT
 *                                                round trip between 2 CPUs
 *   BENCH user madvise_dontneed_targets_K_us X us
 *                                                MADV_DONTNEED of a page
 *                                                that K other CPUs have in
 *                                                their TLBs (K = 0..N-1)
 *   BENCH user wakeup_p50_us / wakeup_p99_us / wakeup_max_us X us
 *                                                lateness of a SCHED_FIFO
 *                                                thread's periodic wake-ups
 *                                                while its CPU is busy with
 *                                                shootdowns
 *   BENCH user wakeup_shootdowns N count         shootdowns meanwhile
 *   BENCH user wakeup_missed_periods N count     1 ms periods skipped
 *                                                because a wake-up came
 *                                                more than a period late
 *   BENCH user wakeup_samples N count            wake-ups measured (1000
 *                                                unless very late ones
 *                                                cut the run short)
 * and a last line "bench: done". Times are medians over batches or samples
 * unless the name says otherwise. A failure prints "FAILED: ..." and exits 1.
 *
 * The main thread stays pinned on the first CPU; with a single CPU, every
 * thread shares it and the cross-CPU numbers are same-CPU numbers.
 */
#include "utest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

/* Every wait has a partner; this bound only turns a kernel bug into a
 * failure line instead of a hang. */
#define WAIT_TIMEOUT_NS (30 * 1000000000ull)
#define WAKEUP_PERIOD_NS 1000000
#define WAKEUP_PRIORITY 50
#define WAKEUP_PAGES 16
#define MAX_SAMPLES 100000

static double scale = 1.0;
static struct cpu_list cpus;

/* ---- helpers ------------------------------------------------------------ */

static long scaled(long n)
{
	long v = (long)(n * scale);

	return v < 1 ? 1 : v > MAX_SAMPLES ? MAX_SAMPLES : v;
}

/* The k-th CPU we may use, wrapping around when there are fewer. */
static int cpu_at(int k)
{
	return cpus.id[k % cpus.n];
}

static void pin_or_fail(int cpu)
{
	int err = pin_self(cpu);

	if (err)
		fail("sched_setaffinity(cpu %d): %s", cpu, strerror(err));
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The value below which a fraction p of the samples lie (sorts them). */
static double percentile(double *v, long n, double p)
{
	long i = (long)(p * (n - 1) + 0.5);

	qsort(v, n, sizeof *v, by_value);
	return v[i];
}

static void bench_line(const char *metric, double value, const char *unit)
{
	printf("BENCH user %s %.3f %s\n", metric, value, unit);
}

static pthread_t start_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	int err = pthread_create(&t, NULL, fn, arg);

	if (err)
		fail("pthread_create: %s", strerror(err));
	return t;
}

/* Sleep on a futex word until it holds want. The partner that changes it
 * always wakes; the timeout only bounds a lost wake-up, and the clock is
 * read only when about to sleep. */
static void wait_for(_Atomic uint32_t *word, uint32_t want)
{
	static const struct timespec slice = { 0, 100 * 1000000 };
	uint64_t deadline = 0;
	uint32_t v;

	while ((v = atomic_load_explicit(word, memory_order_acquire)) != want) {
		uint64_t now = now_ns();

		if (!deadline)
			deadline = now + WAIT_TIMEOUT_NS;
		else if (now > deadline)
			fail("futex partner silent for %llu s",
			     WAIT_TIMEOUT_NS / 1000000000ull);
		futex_wait(word, v, &slice);
	}
}

/* ---- syscall: the cost of entering and leaving the kernel --------------- */

static void bench_syscall(void)
{
	enum { BATCHES = 11 };
	double per_call[BATCHES];
	long n = scaled(20000);

	for (int b = -1; b < BATCHES; b++) {	/* batch -1 warms up */
		uint64_t t0 = now_ns();

		for (long i = 0; i < n; i++)
			sys0(SYS_getpid);
		if (b >= 0)
			per_call[b] = (double)(now_ns() - t0) / n;
	}
	bench_line("getpid_ns", percentile(per_call, BATCHES, 0.5), "ns");
}

/* ---- thread: create and join one thread --------------------------------- */

static void *nothing(void *arg)
{
	return arg;
}

static void bench_thread(void)
{
	static double us[MAX_SAMPLES];
	long n = scaled(200);

	for (long i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		pthread_join(start_thread(nothing, NULL), NULL);
		us[i] = (now_ns() - t0) / 1e3;
	}
	bench_line("thread_create_join_us", percentile(us, n, 0.5), "us");
}

/* ---- futex: wake-up latency between two CPUs ---------------------------- */

/* The main thread stores i into ping and wakes the partner; the partner,
 * woken, stores i into pong and wakes the main thread. Release stores and
 * acquire loads make each side see the other's number before acting. */
static _Atomic uint32_t ping, pong;

static void *pong_side(void *arg)
{
	long rounds = *(long *)arg;

	pin_or_fail(cpu_at(1));
	for (uint32_t i = 1; i <= rounds; i++) {
		wait_for(&ping, i);
		atomic_store_explicit(&pong, i, memory_order_release);
		futex_wake(&pong, 1);
	}
	return NULL;
}

static void bench_futex(void)
{
	enum { BATCHES = 21 };
	double per_round[BATCHES];
	long per = scaled(200), rounds = per * BATCHES;
	pthread_t partner;
	uint32_t i = 0;

	atomic_store_explicit(&ping, 0, memory_order_relaxed);
	atomic_store_explicit(&pong, 0, memory_order_relaxed);
	partner = start_thread(pong_side, &rounds);
	for (int b = 0; b < BATCHES; b++) {
		uint64_t t0 = now_ns();

		for (long r = 0; r < per; r++) {
			atomic_store_explicit(&ping, ++i, memory_order_release);
			futex_wake(&ping, 1);
			wait_for(&pong, i);
		}
		per_round[b] = (now_ns() - t0) / 1e3 / per;
	}
	pthread_join(partner, NULL);
	bench_line("futex_pingpong_us", percentile(per_round, BATCHES, 0.5),
		   "us");
}

/* ---- shootdown: MADV_DONTNEED of a page other CPUs have cached ---------- */

struct toucher {
	pthread_t thread;
	int cpu;
	/* Reads done; release after each read, so a count seen with acquire
	 * means the read (and the TLB fill it needed) already happened. */
	_Atomic uint64_t reads;
} __attribute__((aligned(64)));

static volatile uint32_t *touched_page;
static _Atomic bool touching_done;

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	pin_or_fail(t->cpu);
	while (!atomic_load_explicit(&touching_done, memory_order_relaxed)) {
		(void)*touched_page;
		atomic_fetch_add_explicit(&t->reads, 1, memory_order_release);
	}
	return NULL;
}

/* Wait until every toucher has read the page since now, so the page is in
 * every target CPU's TLB when the madvise starts. */
static void wait_touched(struct toucher *t, int k)
{
	uint64_t deadline = now_ns() + WAIT_TIMEOUT_NS;

	for (int i = 0; i < k; i++) {
		uint64_t from = atomic_load_explicit(&t[i].reads,
						     memory_order_acquire);

		while (atomic_load_explicit(&t[i].reads,
					    memory_order_acquire) < from + 2) {
			__builtin_ia32_pause();
			if (now_ns() > deadline)
				fail("toucher on cpu %d stopped", t[i].cpu);
		}
	}
}

static double time_madvise(struct toucher *t, int k, long n)
{
	static double us[MAX_SAMPLES];

	for (long i = 0; i < n; i++) {
		uint64_t t0;

		/* Since the last madvise, the touchers' reads mapped the
		 * shared zero page; this write gives the page its own frame
		 * again (a shootdown too, but not the one timed). */
		*touched_page = i;
		wait_touched(t, k);
		t0 = now_ns();
		if (madvise((void *)touched_page, PAGE_SIZE, MADV_DONTNEED))
			fail("madvise(MADV_DONTNEED): %s", strerror(errno));
		us[i] = (now_ns() - t0) / 1e3;
	}
	return percentile(us, n, 0.5);
}

static void bench_shootdown(void)
{
	static struct toucher touchers[CPU_SETSIZE];
	/* Few samples: on an emulated machine with more virtual CPUs than
	 * host cores each one can take tens of milliseconds. */
	long n = scaled(40);

	touched_page = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (touched_page == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	for (int k = 0; k < cpus.n; k++) {
		char metric[64];

		atomic_store_explicit(&touching_done, false,
				      memory_order_relaxed);
		for (int i = 0; i < k; i++) {
			touchers[i].cpu = cpu_at(i + 1);
			atomic_store_explicit(&touchers[i].reads, 0,
					      memory_order_relaxed);
			touchers[i].thread = start_thread(toucher_main,
							  &touchers[i]);
		}
		snprintf(metric, sizeof metric,
			 "madvise_dontneed_targets_%d_us", k);
		bench_line(metric, time_madvise(touchers, k, n), "us");
		atomic_store_explicit(&touching_done, true,
				      memory_order_relaxed);
		for (int i = 0; i < k; i++)
			pthread_join(touchers[i].thread, NULL);
	}
	munmap((void *)touched_page, PAGE_SIZE);
}

/* ---- wakeup: a real-time thread's timer latency under shootdowns -------- */

/*
 * CPU 1 runs a SCHED_FIFO thread that sleeps until the next 1 ms tick with
 * clock_nanosleep(TIMER_ABSTIME) and records how late it woke, and a normal
 * thread that writes and MADV_DONTNEEDs pages in a loop. The other CPUs
 * (the main thread on CPU 0 included) keep reading those pages, so each
 * madvise is a shootdown that interrupts them. A kernel that keeps
 * interrupts or preemption off too long while shooting down makes the
 * real-time thread late.
 */
struct wakeup {
	long samples;			/* wanted, then taken */
	double late_us[MAX_SAMPLES];
	int setscheduler_error;		/* errno, 0 if it worked */
	long early;			/* wake-ups before their time */
	long missed;			/* periods skipped after a late one */
};

static char *wakeup_pages;
/* Set by the real-time thread when it is done; the others then stop.
 * Release/acquire is for the main thread, which reads w afterwards (the
 * joins order it too); the others only need to see it eventually. */
static _Atomic bool wakeup_done;
static _Atomic long shootdowns;

static void read_wakeup_pages(void)
{
	for (int i = 0; i < WAKEUP_PAGES; i++)
		(void)*(volatile char *)(wakeup_pages + i * PAGE_SIZE);
}

static void *wakeup_reader(void *arg)
{
	pin_or_fail(*(int *)arg);
	while (!atomic_load_explicit(&wakeup_done, memory_order_relaxed))
		read_wakeup_pages();
	return NULL;
}

static void *shootdown_maker(void *arg)
{
	long n = 0;

	(void)arg;
	pin_or_fail(cpu_at(1));
	while (!atomic_load_explicit(&wakeup_done, memory_order_relaxed)) {
		char *page = wakeup_pages + (n % WAKEUP_PAGES) * PAGE_SIZE;

		*(volatile char *)page = 1;
		if (madvise(page, PAGE_SIZE, MADV_DONTNEED))
			fail("madvise(MADV_DONTNEED): %s", strerror(errno));
		n++;
	}
	atomic_store_explicit(&shootdowns, n, memory_order_relaxed);
	return NULL;
}

/* Become SCHED_FIFO. A raw syscall: musl's sched_setscheduler() always
 * fails with ENOSYS (POSIX wants it per process); pid 0 is this thread.
 * Returns 0 or an errno value. */
static int become_fifo(void)
{
	struct sched_param param = { .sched_priority = WAKEUP_PRIORITY };

	return -sys3(SYS_sched_setscheduler, 0, SCHED_FIFO, (long)&param);
}

/* Sleep to each period's end and record how late it woke. A wake-up more
 * than a period late skips the periods it missed instead of catching up
 * with sleeps that return at once, so every sample is a real timer
 * wake-up; so that very late wake-ups cannot stretch the run, it stops
 * after three times the planned time. Ends the run for the other threads
 * when done, whether or not it could start. */
static void *periodic(void *arg)
{
	struct wakeup *w = arg;
	uint64_t target, end;
	long i;

	pin_or_fail(cpu_at(1));
	w->setscheduler_error = become_fifo();
	target = now_ns();
	end = target + 3 * w->samples * WAKEUP_PERIOD_NS;
	for (i = 0; i < w->samples && target < end && !w->setscheduler_error;
	     i++) {
		struct timespec ts;
		int64_t late;
		int err;

		target += WAKEUP_PERIOD_NS;
		ts.tv_sec = target / 1000000000;
		ts.tv_nsec = target % 1000000000;
		while ((err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
					      &ts, NULL)) == EINTR)
			;
		if (err)
			fail("clock_nanosleep: %s", strerror(err));
		late = (int64_t)(now_ns() - target);
		w->early += late < 0;
		w->late_us[i] = late / 1e3;
		if (late >= WAKEUP_PERIOD_NS) {
			w->missed += late / WAKEUP_PERIOD_NS;
			target += late / WAKEUP_PERIOD_NS * WAKEUP_PERIOD_NS;
		}
	}
	w->samples = i;
	atomic_store_explicit(&wakeup_done, true, memory_order_release);
	return NULL;
}

static void bench_wakeup(void)
{
	static struct wakeup w;
	static int reader_cpus[CPU_SETSIZE];
	static pthread_t readers[CPU_SETSIZE];
	pthread_t rt, maker;
	int nreaders = 0;

	wakeup_pages = mmap(NULL, WAKEUP_PAGES * PAGE_SIZE,
			    PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (wakeup_pages == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	w = (struct wakeup){ .samples = scaled(1000) };
	atomic_store_explicit(&wakeup_done, false, memory_order_relaxed);
	for (int c = 2; c < cpus.n; c++) {
		reader_cpus[nreaders] = cpus.id[c];
		readers[nreaders] = start_thread(wakeup_reader,
						 &reader_cpus[nreaders]);
		nreaders++;
	}
	maker = start_thread(shootdown_maker, NULL);
	rt = start_thread(periodic, &w);
	/* The main thread reads too, until the real-time thread is done. */
	while (!atomic_load_explicit(&wakeup_done, memory_order_acquire))
		read_wakeup_pages();
	pthread_join(rt, NULL);
	pthread_join(maker, NULL);
	for (int i = 0; i < nreaders; i++)
		pthread_join(readers[i], NULL);
	munmap(wakeup_pages, WAKEUP_PAGES * PAGE_SIZE);
	if (w.setscheduler_error)
		fail("sched_setscheduler: %s",
		     errno_name(w.setscheduler_error));
	bench_line("wakeup_p50_us", percentile(w.late_us, w.samples, 0.5),
		   "us");
	bench_line("wakeup_p99_us", percentile(w.late_us, w.samples, 0.99),
		   "us");
	bench_line("wakeup_max_us", percentile(w.late_us, w.samples, 1.0),
		   "us");
	printf("BENCH user wakeup_shootdowns %ld count\n",
	       atomic_load_explicit(&shootdowns, memory_order_relaxed));
	printf("BENCH user wakeup_missed_periods %ld count\n", w.missed);
	printf("BENCH user wakeup_samples %ld count\n", w.samples);
	if (w.early)
		fail("%ld of %ld wake-ups came before their time", w.early,
		     w.samples);
}

/* ---- main --------------------------------------------------------------- */

static const struct part {
	const char *name;
	void (*run)(void);
} parts[] = {
	{ "syscall", bench_syscall },	{ "thread", bench_thread },
	{ "futex", bench_futex },	{ "shootdown", bench_shootdown },
	{ "wakeup", bench_wakeup },
};

/* Is name a part (or "all")? */
static bool known_part(const char *name)
{
	bool known = !strcmp(name, "all");

	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		known = known || !strcmp(name, parts[i].name);
	return known;
}

int main(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "all";

	stdout_lines();
	if (!known_part(which))
		fail("unknown part \"%s\": syscall, thread, futex, shootdown, "
		     "wakeup or all", which);
	if (argc > 2 && ((scale = strtod(argv[2], NULL)) <= 0 || scale > 100))
		fail("scale \"%s\" is not in (0, 100]", argv[2]);
	cpus_available(&cpus);
	pin_or_fail(cpus.id[0]);
	printf("BENCH user cpus %d count\n", cpus.n);
	for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
		if (!strcmp(which, "all") || !strcmp(which, parts[i].name))
			parts[i].run();
	printf("bench: done\n");
	return 0;
}
