/*
 * Widening F16 / BF16 rows to float inside the AVX2 kernels (qk_half,
 * pv_half). Static inline only; compiled with -mavx2 -mfma -mf16c.
 *
 * Both widenings are exact, like the scalar twins in
 * kernels/scalar/cvt_scalar.c: VCVTPH2PS (F16C) turns subnormal halves
 * into normal floats, keeps infinities and a NaN's payload (quieted); a
 * bfloat16 is the upper half of a float, so a zero extension to 32 bits
 * and a 16-bit left shift give its float for every pattern.
 */
#ifndef QKV_HALF_AVX2_H
#define QKV_HALF_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/* 8 halves widened; bf16 is a compile-time constant at every call. */
static inline __attribute__((always_inline)) __m256
qkv_widen_half_avx2(const int bf16, __m128i h)
{
    if (bf16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}

/* The first count (0..8) halves at src widened, 0.0f in the other lanes;
   nothing past src[count-1] is read (a short count goes through a stack
   buffer, as the float tails of exp_avx2.h do). */
static inline __attribute__((always_inline)) __m256
qkv_load_half_avx2(const int bf16, const uint16_t *src, int64_t count)
{
    if (count >= 8)
        return qkv_widen_half_avx2(bf16, _mm_loadu_si128((const __m128i *)src));
    uint16_t buf[8] = {0};
    memcpy(buf, src, (size_t)count * sizeof *buf);
    return qkv_widen_half_avx2(bf16, _mm_loadu_si128((const __m128i *)buf));
}

#endif /* QKV_HALF_AVX2_H */
