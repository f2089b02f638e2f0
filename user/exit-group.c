/*
 * exit-group: the process ends while its other threads are busy. One thread
 * per CPU spins in user mode forever (the one on the last CPU as SCHED_FIFO,
 * where no time slice ever interrupts it, if there are two CPUs or more), another sleeps in a futex wait
 * nobody will wake; main waits 50 ms and returns 3 (musl's exit calls
 * exit_group). The kernel must stop every thread, each at its next way back
 * to user mode, after an interrupt that tells its CPU: the process then ends
 * with status 3.
 *
 * Output: "exit-group: N spinners and a sleeper started; exiting with 3".
 * Exit status 3; a kernel that loses a thread never ends the run.
 */
#include "utest.h"

#include <pthread.h>
#include <stdatomic.h>

static _Atomic int started;
static _Atomic uint32_t never;

/* arg: the CPU, plus FIFO when this one is to be SCHED_FIFO. */
enum { FIFO = 1 << 16 };

static void *spinner(void *arg)
{
	int how = (int)(intptr_t)arg;

	pin_self(how & ~FIFO);
	if (how & FIFO) {
		struct sched_param param = { .sched_priority = 50 };
		/* musl's sched_setscheduler() is a stub (ENOSYS): the call itself. */
		long r = sys3(SYS_sched_setscheduler, 0, SCHED_FIFO, (long)&param);

		if (r)
			fail("sched_setscheduler: %s", errno_name((int)-r));
	}
	atomic_fetch_add(&started, 1);
	for (;;)
		__asm__ volatile("pause");
	return NULL;
}

static void *sleeper(void *arg)
{
	pin_self((int)(intptr_t)arg);
	atomic_fetch_add(&started, 1);
	for (;;)
		futex_wait(&never, 0, NULL);
	return NULL;
}

int main(void)
{
	struct cpu_list cpus;
	pthread_t thread;

	stdout_lines();
	cpus_available(&cpus);
	/* Main and the sleeper on the first CPU, which only a normal spinner
	 * shares: the kernel moves no queued thread away from a CPU that a
	 * SCHED_FIFO spinner holds. */
	pin_self(cpus.id[0]);
	if (pthread_create(&thread, NULL, sleeper, (void *)(intptr_t)cpus.id[0]))
		fail("pthread_create");
	for (int i = 0; i < cpus.n; i++) {
		/* FIFO on the last CPU, unless it is main's too. */
		int how = cpus.id[i] | (i == cpus.n - 1 && i > 0 ? FIFO : 0);

		if (pthread_create(&thread, NULL, spinner, (void *)(intptr_t)how))
			fail("pthread_create");
	}
	while (atomic_load(&started) < cpus.n + 1)
		sched_yield();
	printf("exit-group: %d spinners and a sleeper started; exiting with 3\n", cpus.n);
	nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
	return 3;
}
