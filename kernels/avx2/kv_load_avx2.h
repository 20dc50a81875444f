/*
 * Loading K and V elements of any storage kind (stream_common.h) as float
 * vectors inside the AVX2 stream kernels (qk_stream, pv_stream): F32 as it
 * is, F16 / BF16 widened. Static inline only; compiled with -mavx2 -mfma
 * -mf16c.
 *
 * Both widenings are exact, like the scalar twins in
 * kernels/scalar/cvt_scalar.c: VCVTPH2PS (F16C) turns subnormal halves
 * into normal floats, keeps infinities and a NaN's payload (quieted); a
 * bfloat16 is the upper half of a float, so a zero extension to 32 bits
 * and a 16-bit left shift give its float for every pattern.
 */
#ifndef QKV_KV_LOAD_AVX2_H
#define QKV_KV_LOAD_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "exp_avx2.h"
#include "stream_common.h"

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

/* The 8 elements of a kind (stream_common.h) at element `at` of rows;
   kind is a compile-time constant at every call. */
static inline __attribute__((always_inline)) __m256
qkv_load8_kv_avx2(const int kind, const void *rows, int64_t at)
{
    if (kind == QKV_KIND_F32)
        return _mm256_loadu_ps((const float *)rows + at);
    return qkv_widen_half_avx2(kind == QKV_KIND_BF16,
                               _mm_loadu_si128((const __m128i *)((const uint16_t *)rows + at)));
}

/* The first count (0 < count <= 8) of them, zero past count; nothing past
   them is read (short counts go through stack buffers). */
static inline __attribute__((always_inline)) __m256
qkv_load_kv_avx2(const int kind, const void *rows, int64_t at, int64_t count)
{
    if (kind == QKV_KIND_F32)
        return count >= 8 ? _mm256_loadu_ps((const float *)rows + at)
                          : qkv_tail_load_avx2((const float *)rows + at, qkv_tail_mask_avx2(count));
    return qkv_load_half_avx2(kind == QKV_KIND_BF16, (const uint16_t *)rows + at, count);
}

#endif /* QKV_KV_LOAD_AVX2_H */
