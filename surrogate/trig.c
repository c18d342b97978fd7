/* Vectorised sinf/cosf (see trig.h).  The kernel (trig_impl.h) is written
 * with GCC/Clang vector extensions and compiled twice: four lanes for the
 * x86-64 baseline (SSE2) and eight lanes for CPUs with AVX2, chosen at run
 * time.  No FMA contraction (ISO C mode), so both give the same bits. */
#include "surrogate/trig.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define TRIG_W 4
#define TRIG_NAME trig_w4
#define TRIG_ATTR
#include "surrogate/trig_impl.h"
#undef TRIG_W
#undef TRIG_NAME
#undef TRIG_ATTR

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TRIG_HAVE_W8 1
#define TRIG_W 8
#define TRIG_NAME trig_w8
#define TRIG_ATTR __attribute__((target("avx2")))
#include "surrogate/trig_impl.h"
#undef TRIG_W
#undef TRIG_NAME
#undef TRIG_ATTR
#endif

static int forced;    /* trig_set_width(): 4 or 8; 0 = by CPU */

static int cpu_w8(void)
{
#ifdef TRIG_HAVE_W8
    static int cached = -1;   /* benign race: every thread computes the same */
    if (cached < 0)
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    return cached;
#else
    return 0;
#endif
}

static int use_w8(void) { return forced ? forced == 8 : cpu_w8(); }

int trig_set_width(int lanes)
{
    forced = lanes == 4 ? 4 : lanes == 8 && cpu_w8() ? 8 : 0;
    return trig_vector_width();
}

static void trig_scaled(float *out, const float *x, float w, long n, int want_cos)
{
    int big;
#ifdef TRIG_HAVE_W8
    if (use_w8())
        big = trig_w8(out, x, w, n, want_cos);
    else
#endif
        big = trig_w4(out, x, w, n, want_cos);
    if (!big)
        return;
    for (long k = 0; k < n; k++) { /* rare: beyond the reduction's range */
        float a = w * x[k];
        if (fabsf(a) > TRIG_MAX_ARG)
            out[k] = want_cos ? cosf(a) : sinf(a);
    }
}

void trig_sin_scaled(float *out, const float *x, float w, long n) { trig_scaled(out, x, w, n, 0); }

void trig_cos_scaled(float *out, const float *x, float w, long n) { trig_scaled(out, x, w, n, 1); }

int trig_vector_width(void) { return use_w8() ? 8 : 4; }
