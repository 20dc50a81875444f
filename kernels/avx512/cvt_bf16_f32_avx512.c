/*
 * cvt_bf16_f32, AVX-512: dst[j] = (float)src[j] for bfloat16 src[j],
 * j < n (see kernels.h). A bfloat16 is the upper half of a float, so the
 * conversion is a zero extension to 32 bits and a 16-bit left shift: exact
 * for every pattern, NaN payloads included, like qkv_bf16_to_f32_scalar in
 * kernels/scalar/cvt_scalar.c (the twin).
 *
 * Tail: masked 16-bit load and masked store; no over-read, no write past
 * dst[n-1]. No alignment requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"

static inline __m512 bf16_to_f32(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void qkv_cvt_bf16_f32_avx512(int64_t n, const uint16_t *src, float *dst)
{
    int64_t j = 0;
    for (; j + QKV_AVX512_LANES <= n; j += QKV_AVX512_LANES) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(src + j));
        _mm512_storeu_ps(dst + j, bf16_to_f32(h));
    }
    if (j < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - j);
        const __m256i h = _mm256_maskz_loadu_epi16(tail, src + j);
        _mm512_mask_storeu_ps(dst + j, tail, bf16_to_f32(h));
    }
}
