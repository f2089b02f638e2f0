/*
 * tlb-torture: after munmap, mmap(MAP_FIXED), mprotect or madvise returns, no
 * CPU may still reach the old page through a stale TLB entry.
 *
 * Usage: tlb-torture [MODE [ROUNDS [PAGES]]]
 *   MODE   remap, munmap, mprotect, madvise, or all (default: each in turn)
 *   ROUNDS rounds per mode (default 50), PAGES region size (default 8)
 *
 * Cost: a round is one or two changes, and each change needs every reader
 * CPU two or three times (an acknowledgement before a change that can take
 * pages away, the shootdown, one pass over the new state). Natively that
 * is tens of microseconds; on an emulated 4-CPU machine running on 2 host
 * cores, where a busy virtual CPU waits for a host time slice, it is about
 * 10-30 ms, hence the small default. Ask for more rounds natively.
 *
 * The main thread, pinned on the first CPU, is the "changer". One reader
 * thread is pinned on every other CPU (on a single CPU, one reader shares it).
 * Readers loop over every page of a shared region, so each reader's TLB
 * holds every page, while the changer changes pages; the kernel must turn
 * each change into a TLB shootdown of the readers' CPUs before the syscall
 * returns. Each page's first 32-bit word holds the "generation" that last
 * wrote it. A round changes all pages (even rounds) or one page (odd rounds),
 * so both a range flush and a single-page flush are exercised:
 *   remap     mmap(MAP_FIXED) fresh pages over them, write a new generation.
 *             A reader reading the freed old frame sees an older generation.
 *   munmap    munmap them: a read through the kernel must then give -EFAULT;
 *             then mmap them back and write a new generation.
 *   mprotect  make them read-only: a write through the kernel must give
 *             -EFAULT; then make them writable and write a new generation.
 *   madvise   MADV_DONTNEED them: a read must give 0, never the old
 *             generation; then write a new generation.
 *
 * How a reader checks without ever faulting (a fault kills the process):
 * it reads a page directly (a load through its TLB) only while the page is
 * mapped and cannot be unmapped under it; otherwise it asks the kernel with
 * probe_read (FUTEX_WAIT compares the word with a value; -EFAULT if
 * unmapped) or probe_write (clock_gettime stores into the reader's own
 * 64-byte slot of the page; -EFAULT if not writable). In a stable state it
 * does both: a direct read, a probe asking whether the word still holds the
 * value a stale mapping would show, and, for mapped pages, a probe write.
 * The kernel's accesses go through the same CPU's TLB on real hardware;
 * under QEMU TCG kernel-mode accesses have TLB entries of their own, which
 * the probes keep hot too.
 *
 * The protocol, on the shared sequence number seq:
 *   even seq: a stable state. expect[page] says what each page must hold
 *             (read-write with generation G, read-only with G, unmapped, or
 *             zero). Readers read directly and check everything.
 *   odd seq:  a change is under way. Readers use the probes only, and only
 *             check that pages never disappear in modes where they cannot.
 * Before a step that can take a page away (munmap; MAP_FIXED and DONTNEED,
 * which replace or drop the frame), the changer waits until every reader has
 * acknowledged the odd value, so no reader is still reading directly. After
 * each step it publishes the next even value and waits (asleep on a futex)
 * until every reader has checked the new state once. A reader's pass counts
 * only if seq did not change during it (as in a seqlock): a pass that
 * overlapped a change may legitimately see either state.
 *
 * Linux replaces pages atomically in MAP_FIXED, MADV_DONTNEED and mprotect:
 * a concurrent access never finds the address unmapped. Readers only probe
 * during those changes, so a kernel that leaves such a window is reported
 * ("holes") instead of killing the process.
 *
 * Output:
 *   tlb-torture: changer on cpu C, R readers, P pages, N rounds per mode
 *   tlb-torture: MODE: N rounds, X checks, S stale        (one per mode)
 *   tlb-torture: no stale read                            (exit 0)
 * or, on a failure, up to 5 lines describing stale reads, then
 *   FAILED: S stale reads                                 (exit 1)
 * A stale line names the CPU, the state (seq), the page, what the page
 * should be, and which access disagreed: "read" (a direct load: the value),
 * "probe read" (0 unmapped, 1 different, 2 equal: the kernel found the old
 * value) or "probe write" (0 or -14). Holes get a line of their own after
 * the mode's line, and the run ends "FAILED: H holes".
 */
#include "utest.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#define DEFAULT_ROUNDS 50
#define DEFAULT_PAGES 8
#define MAX_PAGES 64
#define SLOT_SIZE 64
/* Slot 0 of each page holds the generation; readers own slots 1..63. */
#define MAX_READERS (PAGE_SIZE / SLOT_SIZE - 1)
#define WAIT_TIMEOUT_NS (60 * 1000000000ull)
#define STALE_REPORTS 5
/* A word value no generation ever takes: probe_read's "is it mapped?". */
#define NOT_A_GENERATION UINT32_MAX

/* What a page must hold in a stable state. */
enum kind { RW, RO, UNMAPPED, ZERO };

static const char *const kind_name[] = { "read-write", "read-only",
					  "unmapped", "zero" };

/* One step of a round: a syscall on pages [from, from + n), done by the
 * changer, which also updates expect[] for them. */
struct step {
	void (*change)(int from, int n);
	/* Can the pages be unmapped while it runs? Then readers must have
	 * stopped reading directly before it starts. */
	bool unmaps;
};

struct mode {
	const char *name;
	struct step steps[2];	/* the second one may be empty */
	/* May a probe find a page unmapped during a change? */
	bool holes_allowed;
};

/* The first mismatch of a pass, kept until the pass is known valid. */
struct mismatch {
	int page;
	const char *what;
	long saw, want;
	enum kind kind;
};

/* What one pass found, committed only if seq did not move meanwhile. */
struct tally {
	uint64_t checks, stale, holes;
	struct mismatch first;
};

struct reader {
	int index, cpu;
	bool shares_cpu;	/* with the changer: must yield */
	pthread_t thread;
	/* The value of awaited this reader last answered; its own. */
	uint64_t answered;
	/* Owned by the reader; main reads them after pthread_join. */
	struct tally total;
} __attribute__((aligned(64)));	/* no false sharing between readers */

static char *region;
static int npages;
static const struct mode *mode;	/* set before the readers start */
static struct reader readers[MAX_READERS];
static int nreaders;

/*
 * Cross-thread state. Each access says its memory order; in short:
 *  - seq: the changer publishes a stable state with a release store of the
 *    next even value, after writing the pages and expect[]; readers load it
 *    with acquire, so they see those writes. The odd value publishes
 *    nothing, but a seq_cst fence after it makes it visible before the
 *    change starts, so a reader that did not see it read before the change.
 *  - expect[] and the generation words: relaxed atomics, ordered by seq.
 *  - awaited and lagging: the changer waits for every reader to finish a
 *    pass of state awaited; lagging counts those that have not. The changer
 *    stores lagging, then awaited with release; a reader loads awaited with
 *    acquire, so its decrement applies to the fresh count. The reader
 *    decrements with release after the last access of its pass, and the
 *    changer loads lagging with acquire, so it starts a step only after the
 *    readers' direct reads are over (x86 also never moves a load after a
 *    later store: those loads have completed, not just been issued).
 *  - stop: relaxed; it only has to be seen eventually, and pthread_join
 *    orders everything after it.
 */
static _Atomic uint64_t seq = 2;
static _Atomic uint64_t expect[MAX_PAGES];	/* a struct state, packed */
static _Atomic bool stop;
static _Atomic uint64_t awaited;
static _Atomic uint32_t lagging;	/* the changer sleeps on it */
static _Atomic int reports;	/* stale lines printed so far */
static uint32_t generation;	/* the changer's alone */

/*
 * A page's published state: its kind, the generation it must hold, and the
 * "old" value, what a stale mapping would show instead: the generation
 * before the last change (the content of the frame that change replaced or
 * dropped). Generations stay below 2^31 so a state packs into 64 bits.
 */
struct state {
	enum kind kind;
	uint32_t gen, old;
};

#define GEN_BITS 31
#define GEN_MASK ((1u << GEN_BITS) - 1)
#define MAX_GENERATION GEN_MASK

static uint64_t pack(struct state st)
{
	return (uint64_t)st.kind << (2 * GEN_BITS) |
	       (uint64_t)st.old << GEN_BITS | st.gen;
}

static struct state unpack(uint64_t e)
{
	return (struct state){ .kind = e >> (2 * GEN_BITS),
			       .old = (e >> GEN_BITS) & GEN_MASK,
			       .gen = e & GEN_MASK };
}

static char *page_at(int i)
{
	return region + (size_t)i * PAGE_SIZE;
}

static _Atomic uint32_t *word_at(int i)
{
	return (_Atomic uint32_t *)page_at(i);
}

/* ---- readers ------------------------------------------------------------ */

static void note(struct tally *t, bool ok, int page, enum kind k,
		 const char *what, long saw, long want)
{
	t->checks++;
	if (ok)
		return;
	if (!t->stale++)
		t->first = (struct mismatch){ page, what, saw, want, k };
}

/*
 * Check one page against its published state. Direct reads only where the
 * state says mapped: no step that unmaps can start before this pass ends.
 *
 * The kernel-side read asks "does the word still hold the OLD value?", not
 * "does it hold the new one?": FUTEX_WAIT returns at once (-EAGAIN) when the
 * word differs, but when it is equal it sleeps until the zero timeout
 * expires, and Linux rounds that up by the timer slack (50 us). So the
 * expected answer must be "different". Probe results are reported as enum
 * probe: 0 unmapped, 1 different, 2 equal.
 */
static void check_page(struct reader *r, struct tally *t, int i,
		       struct state st)
{
	uint32_t want = st.kind == ZERO ? 0 : st.gen, v;
	_Atomic uint32_t *word = word_at(i);
	void *slot = page_at(i) + SLOT_SIZE * (r->index + 1);
	enum probe p;
	long w, want_w = st.kind == RW ? 0 : -EFAULT;

	if (st.kind == UNMAPPED) {
		p = probe_read(word, NOT_A_GENERATION);
		note(t, p == PROBE_UNMAPPED, i, st.kind, "probe read", p,
		     PROBE_UNMAPPED);
		return;
	}
	v = atomic_load_explicit(word, memory_order_relaxed);
	note(t, v == want, i, st.kind, "read", v, want);
	if (st.kind != RO) {	/* read-only keeps its frame: no old value */
		p = probe_read(word, st.old);
		note(t, p == PROBE_DIFFERENT, i, st.kind,
		     "probe read of the old value", p, PROBE_DIFFERENT);
	}
	if (st.kind == ZERO)
		return;
	w = probe_write(slot);
	note(t, w == want_w, i, st.kind, "probe write", w, want_w);
}

/* A stable state: check every page. */
static void stable_pass(struct reader *r, struct tally *t)
{
	for (int i = 0; i < npages; i++)
		check_page(r, t, i,
			   unpack(atomic_load_explicit(&expect[i],
						       memory_order_relaxed)));
}

/* A change under way: probes only (the page may be going away), and pages
 * must never be missing unless the mode unmaps them. */
static void window_pass(struct tally *t)
{
	for (int i = 0; i < npages; i++) {
		bool mapped = probe_read(word_at(i), NOT_A_GENERATION) !=
			      PROBE_UNMAPPED;
		if (mode->holes_allowed)
			continue;
		t->checks++;
		t->holes += !mapped;
	}
}

static void report(const struct reader *r, const struct mismatch *m,
		   uint64_t s)
{
	if (atomic_fetch_add_explicit(&reports, 1, memory_order_relaxed) >=
	    STALE_REPORTS)
		return;
	printf("tlb-torture: %s: stale on cpu %d, state %lu, page %d (%s): "
	       "%s gave %ld, expected %ld\n",
	       mode->name, r->cpu, (unsigned long)s, m->page,
	       kind_name[m->kind], m->what, m->saw, m->want);
}

/* Tell the changer this reader finished a pass of state s, if s is the
 * state it waits for or a later one; once per wait. */
static void answer(struct reader *r, uint64_t s)
{
	uint64_t a = atomic_load_explicit(&awaited, memory_order_acquire);

	if (s < a || r->answered == a)
		return;
	r->answered = a;
	if (atomic_fetch_sub_explicit(&lagging, 1, memory_order_release) == 1)
		futex_wake(&lagging, 1);
}

static void commit(struct reader *r, const struct tally *t, uint64_t s)
{
	if (t->stale)
		report(r, &t->first, s);
	r->total.checks += t->checks;
	r->total.stale += t->stale;
	r->total.holes += t->holes;
	answer(r, s);
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	int err = pin_self(r->cpu);

	if (err)
		fail("reader %d: sched_setaffinity(cpu %d): %s", r->index,
		     r->cpu, strerror(err));
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		struct tally t = { 0 };
		uint64_t s = atomic_load_explicit(&seq, memory_order_acquire);

		if (s & 1) {
			window_pass(&t);
		} else {
			stable_pass(r, &t);
			/* The seqlock check: the pass's loads come before
			 * this reload of seq (acquire fence), so if seq
			 * is unchanged no change overlapped the pass. */
			atomic_thread_fence(memory_order_acquire);
			if (atomic_load_explicit(&seq, memory_order_relaxed) != s)
				continue;
		}
		commit(r, &t, s);
		if (r->shares_cpu)
			sched_yield();
	}
	return NULL;
}

/* ---- the changer -------------------------------------------------------- */

/* Wait until every reader has finished a pass of state s (or later). The
 * changer sleeps meanwhile: on an emulated machine with more virtual CPUs
 * than host cores, a spinning changer would take host time the readers and
 * the kernel's shootdowns need. */
static void wait_readers(uint64_t s)
{
	static const struct timespec slice = { 0, 10 * 1000000 };
	uint64_t deadline = now_ns() + WAIT_TIMEOUT_NS;
	uint32_t left;

	atomic_store_explicit(&lagging, nreaders, memory_order_relaxed);
	atomic_store_explicit(&awaited, s, memory_order_release);
	while ((left = atomic_load_explicit(&lagging, memory_order_acquire))) {
		if (now_ns() > deadline)
			fail("%u readers made no progress for %llu s", left,
			     WAIT_TIMEOUT_NS / 1000000000ull);
		futex_wait(&lagging, left, &slice);
	}
}

static struct state state_of(int i)
{
	return unpack(atomic_load_explicit(&expect[i], memory_order_relaxed));
}

static void publish(int i, struct state st)
{
	atomic_store_explicit(&expect[i], pack(st), memory_order_relaxed);
}

/* Give pages a new generation: write it, then say so in expect[]. The old
 * value is the generation the page held before this round's change. */
static void write_generations(int from, int n)
{
	for (int i = from; i < from + n; i++) {
		struct state st = state_of(i);
		uint32_t g = ++generation;

		atomic_store_explicit(word_at(i), g, memory_order_relaxed);
		publish(i, (struct state){ RW, g,
					   st.kind == RW ? st.gen : st.old });
	}
}

/* A new kind for pages whose frame was dropped or protected: the
 * generation they held becomes the value a stale mapping would show. */
static void set_kind(int from, int n, enum kind k)
{
	for (int i = from; i < from + n; i++) {
		struct state st = state_of(i);

		publish(i, (struct state){ k, st.gen, st.gen });
	}
}

static void map_fresh(int from, int n)
{
	void *want = page_at(from);
	void *got = mmap(want, (size_t)n * PAGE_SIZE, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (got != want)
		fail("mmap(MAP_FIXED) at %p gave %p: %s", want, got,
		     strerror(errno));
}

static void protect(int from, int n, int prot)
{
	if (mprotect(page_at(from), (size_t)n * PAGE_SIZE, prot))
		fail("mprotect: %s", strerror(errno));
}

static void remap_step(int from, int n)
{
	map_fresh(from, n);
	write_generations(from, n);
}

static void unmap_step(int from, int n)
{
	if (munmap(page_at(from), (size_t)n * PAGE_SIZE))
		fail("munmap: %s", strerror(errno));
	set_kind(from, n, UNMAPPED);
}

static void read_only_step(int from, int n)
{
	protect(from, n, PROT_READ);
	set_kind(from, n, RO);
}

static void read_write_step(int from, int n)
{
	protect(from, n, PROT_READ | PROT_WRITE);
	write_generations(from, n);
}

static void discard_step(int from, int n)
{
	if (madvise(page_at(from), (size_t)n * PAGE_SIZE, MADV_DONTNEED))
		fail("madvise(MADV_DONTNEED): %s", strerror(errno));
	set_kind(from, n, ZERO);
}

static const struct mode modes[] = {
	{ "remap", { { remap_step, true } }, false },
	{ "munmap", { { unmap_step, true }, { remap_step, false } }, true },
	{ "mprotect", { { read_only_step, false }, { read_write_step, false } },
	  false },
	{ "madvise", { { discard_step, true }, { write_generations, false } },
	  false },
};

/* One step, bracketed by the odd and the next even value of seq. */
static void change(const struct step *st, int from, int n)
{
	uint64_t s = atomic_load_explicit(&seq, memory_order_relaxed);

	atomic_store_explicit(&seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	if (st->unmaps)
		wait_readers(s + 1);
	st->change(from, n);
	atomic_store_explicit(&seq, s + 2, memory_order_release);
	wait_readers(s + 2);
}

static void start_readers(const struct cpu_list *cpus)
{
	for (int i = 0; i < nreaders; i++) {
		struct reader *r = &readers[i];
		int err;

		*r = (struct reader){ .index = i,
				      .cpu = cpus->id[(i + 1) % cpus->n],
				      .shares_cpu = cpus->n == 1 };
		err = pthread_create(&r->thread, NULL, reader_main, r);
		if (err)
			fail("pthread_create: %s", strerror(err));
	}
}

/* Run one mode; adds what its readers found to *found. */
static void run_mode(const struct mode *m, long rounds,
		     const struct cpu_list *cpus, struct tally *found)
{
	struct tally sum = { 0 };

	mode = m;
	write_generations(0, npages);	/* pthread_create publishes it */
	/* New readers have answered "state 0": none takes the last wait of
	 * the previous mode for one it still owes an answer to. */
	atomic_store_explicit(&awaited, 0, memory_order_relaxed);
	start_readers(cpus);
	wait_readers(atomic_load_explicit(&seq, memory_order_relaxed));
	for (long round = 0; round < rounds; round++) {
		bool all = round % 2 == 0;
		int from = all ? 0 : round / 2 % npages;
		int n = all ? npages : 1;

		for (int i = 0; i < 2 && m->steps[i].change; i++)
			change(&m->steps[i], from, n);
	}
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	for (int i = 0; i < nreaders; i++) {
		pthread_join(readers[i].thread, NULL);
		sum.checks += readers[i].total.checks;
		sum.stale += readers[i].total.stale;
		sum.holes += readers[i].total.holes;
	}
	atomic_store_explicit(&stop, false, memory_order_relaxed);
	printf("tlb-torture: %s: %ld rounds, %llu checks, %llu stale\n",
	       m->name, rounds, (unsigned long long)sum.checks,
	       (unsigned long long)sum.stale);
	if (sum.holes)
		printf("tlb-torture: %s: %llu probes found a page unmapped "
		       "during a change that must keep it mapped\n",
		       m->name, (unsigned long long)sum.holes);
	found->stale += sum.stale;
	found->holes += sum.holes;
}

/* Is name a mode (or "all")? */
static bool known_mode(const char *name)
{
	bool known = !strcmp(name, "all");

	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		known = known || !strcmp(name, modes[i].name);
	return known;
}

/* The changer's CPU, the readers, and the region. */
static void set_up(struct cpu_list *cpus)
{
	int err;

	cpus_available(cpus);
	nreaders = cpus->n > 1 ? cpus->n - 1 : 1;
	if (nreaders > (int)MAX_READERS)
		nreaders = MAX_READERS;
	err = pin_self(cpus->id[0]);
	if (err)
		fail("sched_setaffinity(cpu %d): %s", cpus->id[0],
		     strerror(err));
	region = mmap(NULL, (size_t)npages * PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	static struct cpu_list cpus;
	const char *which = argc > 1 ? argv[1] : "all";
	long rounds = arg_long(argc, argv, 2, DEFAULT_ROUNDS), max_rounds;
	struct tally found = { 0 };

	stdout_lines();
	if (!known_mode(which))
		fail("unknown mode \"%s\": remap, munmap, mprotect, madvise "
		     "or all", which);
	npages = arg_long(argc, argv, 3, DEFAULT_PAGES);
	if (npages < 1 || npages > MAX_PAGES)
		fail("need 1..%d pages", MAX_PAGES);
	/* Each of the 4 modes writes a generation into every page at its
	 * start and once per round: they must stay below 2^31. */
	max_rounds = MAX_GENERATION / (4 * npages) - 1;
	if (rounds < 1 || rounds > max_rounds)
		fail("need 1..%ld rounds with %d pages", max_rounds, npages);
	set_up(&cpus);
	printf("tlb-torture: changer on cpu %d, %d readers, %d pages, "
	       "%ld rounds per mode\n", cpus.id[0], nreaders, npages, rounds);
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (!strcmp(which, "all") || !strcmp(which, modes[i].name))
			run_mode(&modes[i], rounds, &cpus, &found);
	if (found.stale)
		fail("%llu stale reads", (unsigned long long)found.stale);
	if (found.holes)
		fail("%llu holes", (unsigned long long)found.holes);
	printf("tlb-torture: no stale read\n");
	return 0;
}
