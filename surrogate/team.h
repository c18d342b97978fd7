/* A fixed team of threads for the data-parallel parts of a training step
 * (the oscillator stages, large GEMMs).  One process-wide team, created on
 * first use with PATCTL_THREADS threads (default: the CPUs this process may
 * run on), the calling thread included.  While the team exists, OpenBLAS
 * runs single-threaded: the team owns the cores, so BLAS threads and team
 * threads never compete.
 *
 * Determinism: a parallel region splits its work into parts that depend
 * only on the team size, and every part computes the same values whichever
 * thread runs it; so results are identical from run to run for a given
 * team size (as OpenBLAS's are for a given thread count).
 *
 * Waiting threads spin briefly (the next region usually follows within
 * microseconds) and then sleep on a condition variable. */
#ifndef PATCTL_TEAM_H
#define PATCTL_TEAM_H

/* fn(arg, part, nparts) for part = 0 .. nparts-1 */
typedef void (*team_fn)(void *arg, int part, int nparts);

/* Runs all parts, in parallel over the team, and returns when all are done.
 * Runs them one after another in the caller when the team has one thread,
 * when nparts == 1, when called from inside a part (nesting), or when
 * another thread is using the team. */
void team_run(team_fn fn, void *arg, int nparts);

/* Threads of the team (>= 1); creates the team on first use. */
int team_threads(void);

/* Nonzero while the caller executes a part of a region. */
int team_inside(void);

/* Tests and benchmarks: stop the team and start one of n threads (n <= 0:
 * the default).  Not to be called while a region runs.  Returns the size. */
int team_resize(int n);

/* Split [0, n) into parts contiguous ranges aligned to `align` (except the
 * last end): part p gets [*lo, *hi). */
void team_split(int n, int parts, int align, int p, int *lo, int *hi);

#endif
