/* The body of the vectorised sin/cos (see trig.h), included by trig.c once
 * per vector width.  Before including, define:
 *   TRIG_W     lanes (4: SSE2 baseline, 8: AVX2)
 *   TRIG_NAME  name of the array function to define
 *   TRIG_ATTR  function attributes (target ISA) or nothing
 * The arithmetic is the same at every width (no FMA contraction in ISO C
 * mode), so both widths give bitwise identical results. */
#define TRIG_CAT_(a, b) a##b
#define TRIG_CAT(a, b) TRIG_CAT_(a, b)
#define VF TRIG_CAT(vf, TRIG_W)
#define VU TRIG_CAT(vu, TRIG_W)
#define VI TRIG_CAT(vi, TRIG_W)
#define KERNEL TRIG_CAT(TRIG_NAME, _kernel)

typedef float VF __attribute__((vector_size(4 * TRIG_W)));
typedef int32_t VI __attribute__((vector_size(4 * TRIG_W)));  /* comparison results */
typedef uint32_t VU __attribute__((vector_size(4 * TRIG_W))); /* bit manipulation */

/* *out = sin(*in) (want_cos = 0) or cos(*in) (want_cos = 1) lane by lane;
 * *big gets the lanes with |x| > TRIG_MAX_ARG (redone by libm).  Vectors go
 * through pointers: no dependence on the vector calling convention. */
TRIG_ATTR static inline void KERNEL(VF *out, const VF *in, int want_cos, VI *big)
{
    const VF two_over_pi = (VF){0} + 0.63661977236758134f;
    const VF magic = (VF){0} + 12582912.0f; /* 1.5 * 2^23: round to nearest */
    const VF dp1 = (VF){0} + 1.5703125f;    /* pi/2 = dp1 + dp2 + dp3 */
    const VF dp2 = (VF){0} + 4.837512969970703125e-4f;
    const VF dp3 = (VF){0} + 7.54978995489188216e-8f;
    const VF s1 = (VF){0} - 1.9515295891e-4f, s2 = (VF){0} + 8.3321608736e-3f,
             s3 = (VF){0} - 1.6666654611e-1f;
    const VF c1 = (VF){0} + 2.443315711809948e-5f, c2 = (VF){0} - 1.388731625493765e-3f,
             c3 = (VF){0} + 4.166664568298827e-2f, half = (VF){0} + 0.5f, one = (VF){0} + 1.0f;
    const VF maxarg = (VF){0} + TRIG_MAX_ARG;
    const VU absmask = (VU){0} + 0x7fffffffu;

    VF x = *in;
    VF ax = (VF)((VU)x & absmask);
    *big |= ax > maxarg;
    VF t = x * two_over_pi + magic;
    VU ji = (VU)t;                  /* low bits: the integer j, two's complement */
    VF j = t - magic;
    VF r = ((x - j * dp1) - j * dp2) - j * dp3;
    VF z = r * r;
    VF sp = ((s1 * z + s2) * z + s3) * z * r + r;
    VF cp = ((c1 * z + c2) * z + c3) * z * z - half * z + one;
    /* sin: quadrant 0 s, 1 c, 2 -s, 3 -c;  cos: 0 c, 1 -s, 2 -c, 3 s */
    VU q = want_cos ? ji + 1 : ji;
    VU odd = (VU)((q & 1) == 1);   /* all ones where the cosine polynomial is used */
    VU res = ((VU)sp & ~odd) | ((VU)cp & odd);
    res ^= (q & 2) << 30;           /* negate in quadrants 2 and 3 */
    *out = (VF)res;
}

/* out[i] = sin or cos of (w * x[i]); returns nonzero when some |w x[i]| was
 * beyond TRIG_MAX_ARG (the caller redoes those with libm). */
TRIG_ATTR static int TRIG_NAME(float *out, const float *x, float w, long n, int want_cos)
{
    const VF wv = (VF){0} + w;
    VI big = {0};
    long i = 0;
    for (; i + TRIG_W <= n; i += TRIG_W) {
        VF v, r;
        memcpy(&v, x + i, sizeof(v));
        v = v * wv;
        KERNEL(&r, &v, want_cos, &big);
        memcpy(out + i, &r, sizeof(r));
    }
    if (i < n) {
        float buf[TRIG_W] = {0};
        long rest = n - i;
        memcpy(buf, x + i, sizeof(float) * (size_t)rest);
        VF v, r;
        memcpy(&v, buf, sizeof(v));
        v = v * wv;
        KERNEL(&r, &v, want_cos, &big);
        memcpy(buf, &r, sizeof(r));
        memcpy(out + i, buf, sizeof(float) * (size_t)rest);
    }
    int any = 0;
    for (int k = 0; k < TRIG_W; k++)
        any |= big[k];
    return any;
}

#undef VF
#undef VU
#undef VI
#undef KERNEL
#undef TRIG_CAT
#undef TRIG_CAT_
