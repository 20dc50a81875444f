/*
 * Loading K and V elements of any storage kind (stream_common.h) as float
 * vectors inside the AVX-512 stream kernels (qk_stream, pv_stream): F32
 * as it is, F16 / BF16 widened. Static inline only; compiled with the
 * avx512 flags (F16C and AVX-512 BW included).
 *
 * Both widenings are exact, like the scalar twins in
 * kernels/scalar/cvt_scalar.c: VCVTPH2PS turns subnormal halves into
 * normal floats (it ignores MXCSR.DAZ), keeps infinities and keeps a NaN's
 * payload (quieted); a bfloat16 is the upper half of a float, so a zero
 * extension to 32 bits and a 16-bit left shift give its float for every
 * pattern.
 */
#ifndef QKV_KV_LOAD_AVX512_H
#define QKV_KV_LOAD_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "exp_avx512.h"
#include "stream_common.h"

/* The first lanes (a qkv_lanes_avx512 mask) of 16 halves at src, widened;
   lanes outside the mask are 0.0f and their memory is not read. bf16 is a
   compile-time constant at every call (the kernels instantiate both). */
static inline __attribute__((always_inline)) __m512
qkv_widen_half_avx512(const int bf16, __m256i h)
{
    if (bf16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

static inline __attribute__((always_inline)) __m512
qkv_load_half_avx512(const int bf16, const uint16_t *src, __mmask16 lanes)
{
    return qkv_widen_half_avx512(bf16, _mm256_maskz_loadu_epi16(lanes, src));
}

/* All 16 halves at src, widened. A plain load, which VCVTPH2PS and
   VPMOVZXWD take as their memory operand (a masked load would be one more
   instruction): for full vectors. */
static inline __attribute__((always_inline)) __m512
qkv_load_half16_avx512(const int bf16, const uint16_t *src)
{
    return qkv_widen_half_avx512(bf16, _mm256_loadu_si256((const __m256i *)src));
}

/* The 16 elements of a kind at element `at` of rows; kind is a
   compile-time constant at every call. */
static inline __attribute__((always_inline)) __m512
qkv_load16_kv_avx512(const int kind, const void *rows, int64_t at)
{
    if (kind == QKV_KIND_F32)
        return _mm512_loadu_ps((const float *)rows + at);
    return qkv_load_half16_avx512(kind == QKV_KIND_BF16, (const uint16_t *)rows + at);
}

/* The first lanes (a qkv_lanes_avx512 mask) of them; lanes outside the
   mask are 0.0f and their memory is not read. */
static inline __attribute__((always_inline)) __m512
qkv_load_kv_avx512(const int kind, const void *rows, int64_t at, __mmask16 lanes)
{
    if (kind == QKV_KIND_F32)
        return _mm512_maskz_loadu_ps(lanes, (const float *)rows + at);
    return qkv_load_half_avx512(kind == QKV_KIND_BF16, (const uint16_t *)rows + at, lanes);
}

#endif /* QKV_KV_LOAD_AVX512_H */
