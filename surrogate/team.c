/* The process-wide thread team (see team.h).  Workers are pthreads; the
 * thread that calls team_run() works too.
 *
 * A region: the caller publishes (fn, arg), then stores
 * claim = generation << 32 | nparts << 16 | 0 and wakes sleeping workers.
 * Every participant claims the next part with a compare-and-swap on `claim`
 * (which fails once the generation has moved on, so a late worker never
 * touches a finished region; nparts travels in the same word, so it is
 * always the region's own), runs it and counts it in `done`.  The caller claims parts
 * like everybody else and returns when done == nparts.  So the parts go to
 * whoever is running: when a worker is descheduled (a loaded machine) the
 * caller simply does its parts, and uneven parts balance themselves.  Which
 * thread runs a part never changes what the part computes. */
#define _GNU_SOURCE
#include "surrogate/team.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "surrogate/blas.h"

enum { MAX_THREADS = 64, MAX_PARTS = 65535 };
#define SPIN_NS 50000.0   /* spin this long before sleeping */

typedef struct team {
    int n;                      /* threads including the caller; 0 = not created */
    pthread_t th[MAX_THREADS];
    pthread_mutex_t mu;         /* guards the condition variables */
    pthread_cond_t go, done_cv;
    pthread_mutex_t busy;       /* one region at a time */
    _Atomic uint64_t claim;     /* generation << 32 | nparts << 16 | next part */
    atomic_int done;            /* parts finished in the current region */
    atomic_int quit;
    uint32_t gen0;              /* generation when the workers were started */
    team_fn fn;                 /* current region, published before claim */
    void *arg;
} team;

static team T = {
    .mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
    .done_cv = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER,
};
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_int created;      /* T.n once the team exists */
static _Thread_local int inside;

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e9 * (double)t.tv_sec + (double)t.tv_nsec;
}

static uint32_t gen_of(uint64_t c) { return (uint32_t)(c >> 32); }
static int parts_of(uint64_t c) { return (int)((c >> 16) & 0xffff); }
static int next_of(uint64_t c) { return (int)(c & 0xffff); }

/* Claim and run parts of generation g until none is left. */
static void work(uint32_t g)
{
    for (;;) {
        uint64_t c = atomic_load_explicit(&T.claim, memory_order_acquire);
        int np = parts_of(c), p = next_of(c);
        if (gen_of(c) != g || p >= np)
            return;
        if (!atomic_compare_exchange_weak_explicit(&T.claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        T.fn(T.arg, p, np);
        if (atomic_fetch_add_explicit(&T.done, 1, memory_order_acq_rel) + 1 == np) {
            pthread_mutex_lock(&T.mu);
            pthread_cond_broadcast(&T.done_cv);
            pthread_mutex_unlock(&T.mu);
        }
    }
}

static void *worker(void *arg)
{
    (void)arg;
    inside = 1;
    uint32_t seen = T.gen0; /* any later generation (a region, or quit) wakes it */
    for (;;) {
        uint32_t g = gen_of(atomic_load_explicit(&T.claim, memory_order_acquire));
        if (g == seen) {
            double t0 = now_ns();
            for (int i = 1; g == seen; i++) {
                relax();
                g = gen_of(atomic_load_explicit(&T.claim, memory_order_acquire));
                if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS)
                    break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&T.mu);
            while ((g = gen_of(atomic_load_explicit(&T.claim, memory_order_acquire))) == seen)
                pthread_cond_wait(&T.go, &T.mu);
            pthread_mutex_unlock(&T.mu);
        }
        seen = g;
        if (atomic_load(&T.quit))
            return NULL;
        work(g);
    }
}

static int default_threads(void)
{
    const char *env = getenv("PATCTL_THREADS");
    if (env && *env) {
        long v = strtol(env, NULL, 10);
        if (v >= 1)
            return v > MAX_THREADS ? MAX_THREADS : (int)v;
    }
    cpu_set_t set;
    int n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

/* Publish a new generation of nparts parts (with T.mu held): wakes
 * sleeping workers. */
static uint32_t next_generation(int nparts)
{
    uint32_t g = gen_of(atomic_load(&T.claim)) + 1;
    atomic_store_explicit(&T.claim, (uint64_t)g << 32 | (uint64_t)nparts << 16,
                          memory_order_release);
    pthread_cond_broadcast(&T.go);
    return g;
}

/* with init_mu held */
static void start(int n)
{
    blas_set_threads(1);
    atomic_store(&T.quit, 0);
    T.gen0 = gen_of(atomic_load(&T.claim));
    T.n = 1;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&T.th[i], NULL, worker, NULL) != 0)
            break; /* fewer threads: still correct */
        T.n = i + 1;
    }
    atomic_store(&created, T.n);
}

/* with init_mu held */
static void stop(void)
{
    if (T.n > 1) {
        pthread_mutex_lock(&T.mu);
        atomic_store(&T.quit, 1);
        next_generation(0);
        pthread_mutex_unlock(&T.mu);
        for (int i = 1; i < T.n; i++)
            pthread_join(T.th[i], NULL);
    }
    T.n = 0;
    atomic_store(&created, 0);
}

int team_threads(void)
{
    int n = atomic_load(&created);
    if (n)
        return n;
    pthread_mutex_lock(&init_mu);
    if (!T.n)
        start(default_threads());
    n = T.n;
    pthread_mutex_unlock(&init_mu);
    return n;
}

int team_resize(int n)
{
    pthread_mutex_lock(&init_mu);
    pthread_mutex_lock(&T.busy);
    stop();
    start(n > 0 ? (n > MAX_THREADS ? MAX_THREADS : n) : default_threads());
    n = T.n;
    pthread_mutex_unlock(&T.busy);
    pthread_mutex_unlock(&init_mu);
    return n;
}

int team_inside(void) { return inside; }

static void run_serial(team_fn fn, void *arg, int nparts)
{
    int was = inside;
    inside = 1;
    for (int p = 0; p < nparts; p++)
        fn(arg, p, nparts);
    inside = was;
}

void team_run(team_fn fn, void *arg, int nparts)
{
    if (nparts <= 0)
        return;
    if (nparts == 1 || nparts > MAX_PARTS || inside || team_threads() == 1 ||
        pthread_mutex_trylock(&T.busy) != 0) {
        run_serial(fn, arg, nparts);
        return;
    }
    T.fn = fn, T.arg = arg;
    atomic_store_explicit(&T.done, 0, memory_order_relaxed);
    pthread_mutex_lock(&T.mu);
    uint32_t g = next_generation(nparts);
    pthread_mutex_unlock(&T.mu);

    inside = 1;
    work(g);
    inside = 0;

    if (atomic_load_explicit(&T.done, memory_order_acquire) != nparts) {
        double t0 = now_ns();
        for (int i = 1; atomic_load_explicit(&T.done, memory_order_acquire) != nparts; i++) {
            relax();
            if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS)
                break;
        }
        pthread_mutex_lock(&T.mu);
        while (atomic_load_explicit(&T.done, memory_order_acquire) != nparts)
            pthread_cond_wait(&T.done_cv, &T.mu);
        pthread_mutex_unlock(&T.mu);
    }
    pthread_mutex_unlock(&T.busy);
}

void team_split(int n, int parts, int align, int p, int *lo, int *hi)
{
    if (parts <= 1) {
        *lo = 0, *hi = n;
        return;
    }
    if (align < 1)
        align = 1;
    long chunk = ((long)n + parts - 1) / parts;
    chunk = (chunk + align - 1) / align * align;
    long a = chunk * p, b = chunk * (p + 1);
    *lo = (int)(a < n ? a : n);
    *hi = (int)(b < n ? b : n);
}
