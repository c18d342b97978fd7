/* The process-wide thread team (see team.h).  Workers 1..n-1 are pthreads;
 * worker 0 is whichever thread calls team_run().  Part p of a region runs
 * on worker p % n.  A region: the caller publishes (fn, arg, nparts), bumps
 * the generation counter and wakes sleeping workers; every worker runs its
 * parts and counts down `pending`; the caller runs its own parts and waits
 * for pending == 0. */
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

enum { MAX_THREADS = 64 };
#define SPIN_NS 50000.0   /* spin this long before sleeping */

typedef struct team {
    int n;                      /* threads including the caller; 0 = not created */
    pthread_t th[MAX_THREADS];
    pthread_mutex_t mu;         /* guards the condition variables */
    pthread_cond_t go, done;
    pthread_mutex_t busy;       /* one region at a time */
    atomic_uint gen;            /* region generation */
    atomic_int pending;         /* workers still running the current region */
    int quit;
    unsigned gen0;              /* generation when the workers were started */
    team_fn fn;                 /* current region, published before gen++ */
    void *arg;
    int nparts;
} team;

static team T = {
    .mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER, .busy = PTHREAD_MUTEX_INITIALIZER,
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

static void *worker(void *p)
{
    int id = (int)(intptr_t)p;
    unsigned seen = T.gen0; /* the generation before this worker existed */
    inside = 1;
    for (;;) {
        unsigned g = atomic_load_explicit(&T.gen, memory_order_acquire);
        if (g == seen) {
            double t0 = now_ns();
            for (int i = 1; g == seen; i++) {
                relax();
                g = atomic_load_explicit(&T.gen, memory_order_acquire);
                if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS)
                    break;
            }
        }
        if (g == seen) {
            pthread_mutex_lock(&T.mu);
            while ((g = atomic_load_explicit(&T.gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&T.go, &T.mu);
            pthread_mutex_unlock(&T.mu);
        }
        seen = g;
        if (T.quit)
            return NULL;
        for (int part = id; part < T.nparts; part += T.n)
            T.fn(T.arg, part, T.nparts);
        if (atomic_fetch_sub_explicit(&T.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&T.mu);
            pthread_cond_signal(&T.done);
            pthread_mutex_unlock(&T.mu);
        }
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

/* with init_mu held */
static void start(int n)
{
    blas_set_threads(1);
    T.quit = 0;
    T.gen0 = atomic_load(&T.gen);
    T.n = 1;
    for (int i = 1; i < n; i++) {
        if (pthread_create(&T.th[i], NULL, worker, (void *)(intptr_t)i) != 0)
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
        T.quit = 1;
        atomic_fetch_add_explicit(&T.gen, 1, memory_order_release);
        pthread_cond_broadcast(&T.go);
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
    if (nparts == 1 || inside || team_threads() == 1 || pthread_mutex_trylock(&T.busy) != 0) {
        run_serial(fn, arg, nparts);
        return;
    }
    T.fn = fn, T.arg = arg, T.nparts = nparts;
    atomic_store_explicit(&T.pending, T.n - 1, memory_order_relaxed);
    pthread_mutex_lock(&T.mu);
    atomic_fetch_add_explicit(&T.gen, 1, memory_order_release);
    pthread_cond_broadcast(&T.go);
    pthread_mutex_unlock(&T.mu);

    inside = 1;
    for (int p = 0; p < nparts; p += T.n)
        fn(arg, p, nparts);
    inside = 0;

    if (atomic_load_explicit(&T.pending, memory_order_acquire) != 0) {
        double t0 = now_ns();
        for (int i = 1; atomic_load_explicit(&T.pending, memory_order_acquire) != 0; i++) {
            relax();
            if ((i & 63) == 0 && now_ns() - t0 > SPIN_NS)
                break;
        }
        pthread_mutex_lock(&T.mu);
        while (atomic_load_explicit(&T.pending, memory_order_acquire) != 0)
            pthread_cond_wait(&T.done, &T.mu);
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
