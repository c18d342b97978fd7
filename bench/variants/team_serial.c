/* Benchmark variant only (bench/variants.sh): a "team" of one thread that
 * leaves OpenBLAS's own threading alone, to measure the step with the fused
 * stages and vectorised sin/cos but without patctl's thread team (GEMMs
 * threaded by OpenBLAS, elementwise work on one thread, PAT device and
 * surrogate one after the other).  Same interface as surrogate/team.c. */
#include "surrogate/team.h"

static _Thread_local int inside;

void team_run(team_fn fn, void *arg, int nparts)
{
    int was = inside;
    inside = 1;
    for (int p = 0; p < nparts; p++)
        fn(arg, p, nparts);
    inside = was;
}

int team_threads(void) { return 1; }

int team_inside(void) { return inside; }

int team_resize(int n)
{
    (void)n;
    return 1;
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
