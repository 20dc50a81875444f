/*
 * Widening F16 / BF16 rows to float inside AVX-512 kernels (qk_half,
 * pv_half). Static inline only; compiled with the avx512 flags (F16C and
 * AVX-512 BW included).
 *
 * Both widenings are exact, like the scalar twins in
 * kernels/scalar/cvt_scalar.c: VCVTPH2PS turns subnormal halves into
 * normal floats (it ignores MXCSR.DAZ), keeps infinities and keeps a NaN's
 * payload (quieted); a bfloat16 is the upper half of a float, so a zero
 * extension to 32 bits and a 16-bit left shift give its float for every
 * pattern.
 */
#ifndef QKV_HALF_AVX512_H
#define QKV_HALF_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "exp_avx512.h"

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

#endif /* QKV_HALF_AVX512_H */
