/*
 * fpu: each thread has its own SSE registers. Two threads pinned on the same
 * CPU each put their own value in xmm0 and xmm15, give the CPU to the other
 * (sched_yield), and check the values are still theirs. The kernel keeps
 * every user thread's x87/SSE state (fxsave at the switch away, fxrstor at
 * the switch back); without that the threads would read each other's.
 *
 * Output:
 *   fpu: 2 threads on cpu C, R yields each, registers kept
 * Exit status 0, or 1 with "FAILED: thread T read X in xmm0, expected Y".
 */
#include "utest.h"

#include <pthread.h>
#include <stdatomic.h>

enum { ROUNDS = 2000 };

static _Atomic int failures;

/* Loads `value` into xmm0 and xmm15, yields, reads them back. The asm keeps
 * the compiler from using the registers in between. */
static void yield_keeping(uint64_t value, uint64_t *xmm0, uint64_t *xmm15)
{
	long ret;

	__asm__ volatile("movq %[v], %%xmm0\n\t"
			 "movq %[v], %%xmm15\n\t"
			 "syscall\n\t"
			 "movq %%xmm0, %[a]\n\t"
			 "movq %%xmm15, %[b]"
			 : [a] "=r"(*xmm0), [b] "=r"(*xmm15), "=a"(ret)
			 : [v] "r"(value), "a"((long)SYS_sched_yield)
			 : "rcx", "r11", "xmm0", "xmm15", "memory");
	(void)ret;
}

static void *worker(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; i < ROUNDS; i++) {
		uint64_t want = (uint64_t)id << 32 | (uint64_t)i, a, b;

		yield_keeping(want, &a, &b);
		if (a != want || b != want) {
			if (!atomic_fetch_add(&failures, 1))
				printf("FAILED: thread %d read %#llx, %#llx in xmm0, xmm15, expected %#llx\n",
				       id, (unsigned long long)a, (unsigned long long)b,
				       (unsigned long long)want);
			break;
		}
	}
	return NULL;
}

int main(void)
{
	pthread_t threads[2];
	int cpu;

	stdout_lines();
	if (pin_self(0))
		fail("pinning to cpu 0");
	cpu = sched_getcpu();
	/* The new threads inherit the pinning: both share this CPU. */
	for (intptr_t i = 0; i < 2; i++)
		if (pthread_create(&threads[i], NULL, worker, (void *)(i + 1)))
			fail("pthread_create");
	for (int i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);
	if (failures)
		return 1;
	printf("fpu: 2 threads on cpu %d, %d yields each, registers kept\n", cpu, ROUNDS);
	return 0;
}
