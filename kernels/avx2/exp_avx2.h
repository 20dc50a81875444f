/*
 * Shared AVX2 + FMA helpers of the avx2 kernels: the vector exp2 and the
 * lane mask of a row tail. Static inline only; every file that includes
 * this is compiled with -mavx2 -mfma -mf16c.
 *
 * 2^t for 8 floats (the softmax kernels take logits in base-2 units, see
 * kernels.h). The scalar twin is libm's exp2f.
 *
 *   n = ceil(t - 2^-15)     (an integer; the small bias keeps t = 0
 *                            exactly at n = 0)
 *   r = t - n               in [-1, 2^-15], exact
 *   2^t = (2 * 2^r) * 2^(n-1)
 *
 * 2 * 2^r is a degree-5 polynomial with constant term exactly 2 (so
 * 2^0 == 1 exactly, as exp2f gives), fitted by Remez for relative error
 * (8.6e-8 with its coefficients rounded to float). 2^(n-1) is built by
 * putting n + 126 in the exponent field. Because 2 * 2^r > 1 whenever
 * n - 1 is at the bottom of the exponent range, every non-zero result is a
 * normal float. Against the natural exp this saves the two-step Cody-Waite
 * reduction (r = t - n is exact): one operation fewer per 8 values.
 *
 * Maximum relative error against exp2() in double, measured by
 * tests/checkkern.c over every 4093rd float bit pattern and densely at the
 * ends of the range: 2.23e-7 (1.9 ulp of 2^-23, for results just above 1,
 * where r is near -1).
 *
 * Special inputs:
 *   t < -126 (where 2^t < FLT_MIN), -inf -> +0, never a denormal: t is
 *       clamped to -126.5 first, where n + 126 = 0, i.e. 2^(n-1) = 0. The
 *       bias in n moves the cut up to the floats in [-126, -126 + 2^-15]:
 *       those (2^t within 2.2e-5 of FLT_MIN) also give +0;
 *   t >= 128, +inf -> +inf: t is clamped to 128.5, where n + 126 = 255
 *       puts +inf in the scale;
 *   NaN -> NaN: max/min return their second operand when either is NaN,
 *       so the clamps keep a NaN t, and the polynomial of a NaN is NaN.
 */
#ifndef QKV_EXP_AVX2_H
#define QKV_EXP_AVX2_H

#include <string.h>
#include <immintrin.h>
#include <stdint.h>

/* The core, for t already clamped to [-126.5, 128.5] (or NaN). */
static inline __m256 qkv_exp2_clamped_avx2(__m256 t)
{
    /* 1.5 * 2^23 + 126: adding it rounds y to an integer n and leaves
       n + 126 in the low mantissa bits. It is even, so rounding ties
       behave as they do for y itself. */
    const __m256 round_magic = _mm256_set1_ps(12583038.0f);
    const __m256 ceil_bias = _mm256_set1_ps(0.5f - 0x1p-15f);
    const __m256 y = _mm256_add_ps(t, ceil_bias);
    const __m256 biased = _mm256_add_ps(y, round_magic);
    const __m256 n = _mm256_sub_ps(biased, round_magic);
    const __m256 r = _mm256_sub_ps(t, n);
    __m256 p = _mm256_set1_ps(0x1.ef66d4p-10f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.2da7d6p-6f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.c4fef8p-4f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.ebe392p-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0x1.62e3bcp+0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(2.0f));
    /* (n + 126) << 23 is the float 2^(n-1); the upper bits of the magic
       number shift out of the word. */
    const __m256 scale = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_castps_si256(biased), 23));
    return _mm256_mul_ps(p, scale);
}

/* 2^t for any t. */
static inline __m256 qkv_exp2_avx2(__m256 t)
{
    t = _mm256_max_ps(_mm256_set1_ps(-126.5f), t);   /* keeps a NaN t */
    t = _mm256_min_ps(_mm256_set1_ps(128.5f), t);
    return qkv_exp2_clamped_avx2(t);
}

/* 2^t for t <= 0 or NaN (softmax: logit minus the row maximum); saves
   the upper clamp. */
static inline __m256 qkv_exp2_nonpositive_avx2(__m256 t)
{
    t = _mm256_max_ps(_mm256_set1_ps(-126.5f), t);   /* keeps a NaN t */
    return qkv_exp2_clamped_avx2(t);
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

