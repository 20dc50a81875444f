/*
 * Shared AVX2 + FMA helpers of the avx2 kernels: the vector exp and the
 * lane mask of a row tail. Static inline only; every file that includes
 * this is compiled with -mavx2 -mfma -mf16c.
 *
 * exp(t) for 8 floats. The scalar twin is libm's expf.
 *
 *   n = ceil(t * log2(e) - 2^-15)   (an integer; the small bias keeps
 *                                    t = 0 exactly at n = 0)
 *   r = t - n * ln2                 in [-ln2, 2^-15 * ln2], with ln2 in two
 *                                    parts so that n * ln2_hi is exact
 *   exp(t) = (2 e^r) * 2^(n-1)
 *
 * 2 e^r is a degree-5 polynomial with constant term exactly 2 (so
 * exp(0) == 1 exactly, as expf gives), fitted by Remez for relative
 * error (8.5e-8 with its coefficients rounded to float). 2^(n-1) is built
 * by putting n + 126 in the exponent field. Because 2 e^r > 1 whenever
 * n - 1 is at the bottom of the exponent range, every non-zero result is a
 * normal float.
 *
 * Maximum relative error against exp() in double, measured over all 2^32
 * float inputs whose exp is a normal float: 2.26e-7 (1.9 ulp of 2^-23,
 * the worst case being results just above 1, where r is near -ln2).
 *
 * Special inputs:
 *   t < ln(FLT_MIN) (about -87.3365), -inf -> +0, never a denormal: t is
 *       clamped to -87.5 first, where n + 126 = 0, i.e. 2^(n-1) = 0. The
 *       bias in n moves the cut up by 3 floats: the three inputs whose exp
 *       lies in [FLT_MIN, FLT_MIN * (1 + 2e-5)) also give +0;
 *   t > ln(FLT_MAX) (about 88.72), +inf   -> +inf: t is clamped to 89,
 *       where n + 126 = 255 puts +inf in the scale;
 *   NaN -> NaN: max/min return their second operand when either is NaN,
 *       so the clamps keep a NaN t, and the polynomial of a NaN is NaN.
 */
#ifndef QKV_EXP_AVX2_H
#define QKV_EXP_AVX2_H

#include <string.h>
#include <immintrin.h>
#include <stdint.h>

/* The core, for t already clamped to [-87.5, 89] (or NaN). */
static inline __m256 qkv_exp_clamped_avx2(__m256 t)
{
    /* 1.5 * 2^23 + 126: adding it rounds y to an integer n and leaves
       n + 126 in the low mantissa bits. It is even, so rounding ties
       behave as they do for y itself. */
    const __m256 round_magic = _mm256_set1_ps(12583038.0f);
    const __m256 log2e = _mm256_set1_ps(0x1.715476p+0f);
    const __m256 ceil_bias = _mm256_set1_ps(0.5f - 0x1p-15f);
    const __m256 ln2_hi = _mm256_set1_ps(0x1.62e4p-1f);        /* 16 bits */
    const __m256 ln2_lo = _mm256_set1_ps(0x1.7f7d1cp-20f);

    const __m256 y = _mm256_fmadd_ps(t, log2e, ceil_bias);
    const __m256 biased = _mm256_add_ps(y, round_magic);
    const __m256 n = _mm256_sub_ps(biased, round_magic);
    __m256 r = _mm256_fnmadd_ps(n, ln2_hi, t);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);

    __m256 p = _mm256_set1_ps(0x1.82f1a2p-7f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.46af16p-4f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.540f44p-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.ffe6a4p-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.ffff58p+0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(2.0f));

    /* (n + 126) << 23 is the float 2^(n-1); the upper bits of the magic
       number shift out of the word. */
    const __m256 scale = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_castps_si256(biased), 23));
    return _mm256_mul_ps(p, scale);
}

/* exp(t) for any t. */
static inline __m256 qkv_exp_avx2(__m256 t)
{
    t = _mm256_max_ps(_mm256_set1_ps(-87.5f), t);   /* keeps a NaN t */
    t = _mm256_min_ps(_mm256_set1_ps(89.0f), t);
    return qkv_exp_clamped_avx2(t);
}

/* exp(t) for t <= 0 or NaN (softmax: logit minus the row maximum); saves
   the upper clamp. */
static inline __m256 qkv_exp_nonpositive_avx2(__m256 t)
{
    t = _mm256_max_ps(_mm256_set1_ps(-87.5f), t);   /* keeps a NaN t */
    return qkv_exp_clamped_avx2(t);
}

/* All-ones in the first count lanes (0 <= count <= 8), zero in the rest:
   the mask of a row tail for maskload / maskstore. */
static inline __m256i qkv_tail_mask_avx2(int64_t count)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), lane);
}

/* Horizontal sum and maximum of 8 lanes. */
static inline float qkv_hsum_avx2(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float qkv_hmax_avx2(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* Tail loads/stores of the first k lanes (mask = qkv_tail_mask_avx2(k))
   through an 8-float stack buffer instead of VMASKMOVPS, whose
   fault suppression on masked-out lanes qemu 7.2 does not emulate (the
   emulated Haswell run reads the checker's inputs at the end of a page).
   Only tails take this path. */
static inline __m256 qkv_tail_load_avx2(const float *p, __m256i mask)
{
    const int k = __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(mask)));
    float buf[8] = {0};
    memcpy(buf, p, (size_t)k * sizeof(float));
    return _mm256_loadu_ps(buf);
}
static inline void qkv_tail_store_avx2(float *p, __m256i mask, __m256 v)
{
    const int k = __builtin_popcount((unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(mask)));
    float buf[8];
    _mm256_storeu_ps(buf, v);
    memcpy(p, buf, (size_t)k * sizeof(float));
}
#endif /* QKV_EXP_AVX2_H */

