/*
 * threads: one thread per CPU, each pinned to its CPU and proven to run there.
 *
 * Usage: threads [N]   N defaults to sysconf(_SC_NPROCESSORS_ONLN). If fewer
 * CPUs are available than asked for, it says so and uses those it has.
 *
 * What it exercises, in the order a thread meets it:
 *  - pthread_create: mmap + mprotect for the stack, clone with CLONE_SETTLS,
 *    CLONE_CHILD_CLEARTID and the rest of musl's thread flags;
 *  - sched_setaffinity to exactly one CPU, then getcpu to check the thread
 *    moved there;
 *  - a futex barrier: every thread sleeps in FUTEX_WAIT until the last one
 *    arrives and wakes them all, so all N threads are alive at once, and each
 *    must wake up again on its own CPU;
 *  - thread exit (pthread_exit with a value) and pthread_join, which sleeps
 *    in FUTEX_WAIT until the thread has exited and the kernel has cleared
 *    the clear-child-tid word.
 *
 * Output, one line per thread in whatever order they run, then a summary:
 *   threads: thread I on cpu C (tid T)
 *   threads: N threads ran on N CPUs
 * Exit status 0 iff every thread ran where it was pinned, before and after
 * the barrier; otherwise lines explain each problem and the last line is
 * "FAILED: ...".
 */
#include "utest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

/* Generous: on an emulated machine all threads start within milliseconds. */
#define BARRIER_TIMEOUT_NS (10 * 1000000000ull)

struct worker {
	int index;
	int cpu;		/* where it must run */
	int seen_cpu;		/* where it found itself, -1 if it never knew */
	pthread_t thread;
};

static int nthreads;

/* Threads that reached the barrier. The futex word is this counter itself:
 * a sleeper passes the value it saw, so a wake-up between its check and its
 * sleep makes FUTEX_WAIT return -EAGAIN instead of sleeping forever. */
static _Atomic uint32_t arrived;
/* Threads that finished every check. Read by main after pthread_join,
 * which orders it after the threads' increments. */
static _Atomic int ran_ok;

/* Wait until every thread has arrived. Returns false on timeout. */
static bool barrier(void)
{
	static const struct timespec slice = { 0, 100 * 1000000 };
	uint64_t deadline = now_ns() + BARRIER_TIMEOUT_NS;
	/* acq_rel: the last arrival's wake must come after every increment,
	 * and what each thread did before arriving (its checks) is visible to
	 * the others after the barrier, as a barrier promises. */
	uint32_t n = atomic_fetch_add_explicit(&arrived, 1,
					       memory_order_acq_rel) + 1;

	if (n == (uint32_t)nthreads) {
		futex_wake(&arrived, INT_MAX);
		return true;
	}
	while ((n = atomic_load_explicit(&arrived, memory_order_acquire)) <
	       (uint32_t)nthreads) {
		if (now_ns() > deadline)
			return false;
		futex_wait(&arrived, n, &slice);
	}
	return true;
}

/* Is the caller on CPU want? Says why not on stdout. */
static bool on_cpu(const struct worker *w, const char *when)
{
	int cpu = sched_getcpu();

	if (cpu == w->cpu)
		return true;
	printf("threads: thread %d pinned to cpu %d runs on cpu %d %s\n",
	       w->index, w->cpu, cpu, when);
	return false;
}

static void *worker(void *arg)
{
	struct worker *w = arg;
	int err = pin_self(w->cpu);
	bool ok = true;

	if (err) {
		printf("threads: thread %d: sched_setaffinity(cpu %d): %s\n",
		       w->index, w->cpu, strerror(err));
		ok = false;
	}
	ok = on_cpu(w, "after pinning") && ok;
	w->seen_cpu = sched_getcpu();
	if (!barrier()) {
		printf("threads: thread %d: the others did not arrive\n",
		       w->index);
		ok = false;
	}
	ok = on_cpu(w, "after the futex wake-up") && ok;
	printf("threads: thread %d on cpu %d (tid %ld)\n", w->index,
	       w->seen_cpu, sys0(SYS_gettid));
	if (ok)
		atomic_fetch_add_explicit(&ran_ok, 1, memory_order_relaxed);
	/* Exit through pthread_exit with a value the joiner checks. */
	pthread_exit(w);
}

/* How many different CPUs the workers found themselves on. */
static int distinct_cpus(const struct worker *w, int n)
{
	int count = 0;

	for (int i = 0; i < n; i++) {
		bool first = w[i].seen_cpu >= 0;

		for (int j = 0; j < i && first; j++)
			first = w[j].seen_cpu != w[i].seen_cpu;
		count += first;
	}
	return count;
}

int main(int argc, char **argv)
{
	static struct worker workers[CPU_SETSIZE];
	static struct cpu_list cpus;
	long want;
	int joined_ok = 0, ncpus;

	stdout_lines();
	cpus_available(&cpus);
	want = arg_long(argc, argv, 1, sysconf(_SC_NPROCESSORS_ONLN));
	if (want < 1)
		fail("need at least one thread, asked for %ld", want);
	nthreads = want;
	if (nthreads > cpus.n) {
		printf("threads: asked for %d CPUs, %d available: using %d\n",
		       nthreads, cpus.n, cpus.n);
		nthreads = cpus.n;
	}
	for (int i = 0; i < nthreads; i++) {
		workers[i] = (struct worker){ .index = i, .cpu = cpus.id[i],
					      .seen_cpu = -1 };
		int err = pthread_create(&workers[i].thread, NULL, worker,
					 &workers[i]);
		if (err)
			fail("pthread_create of thread %d: %s", i,
			     strerror(err));
	}
	for (int i = 0; i < nthreads; i++) {
		void *result;
		int err = pthread_join(workers[i].thread, &result);

		if (err)
			printf("threads: pthread_join of thread %d: %s\n", i,
			       strerror(err));
		else if (result != &workers[i])
			printf("threads: thread %d exited with %p, not %p\n",
			       i, result, (void *)&workers[i]);
		else
			joined_ok++;
	}
	ncpus = distinct_cpus(workers, nthreads);
	printf("threads: %d threads ran on %d CPUs\n", nthreads, ncpus);
	if (atomic_load_explicit(&ran_ok, memory_order_relaxed) != nthreads ||
	    joined_ok != nthreads || ncpus != nthreads)
		fail("%d of %d threads ran where pinned, %d joined cleanly",
		     atomic_load_explicit(&ran_ok, memory_order_relaxed),
		     nthreads, joined_ok);
	return 0;
}
