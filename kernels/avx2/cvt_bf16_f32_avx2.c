/*
 * cvt_bf16_f32, AVX2: dst[j] = (float)src[j] for bfloat16 src, j < n.
 *
 * A bfloat16 is the upper half of a float, so the widening is exact:
 * zero-extend 8 halves to 32 bits and shift them left by 16. The last
 * n % 8 elements go through the scalar conversion, so nothing past
 * src[n-1] is read and nothing past dst[n-1] written. Any alignment.
 *
 * Scalar twin: qkv_cvt_bf16_f32_scalar in kernels/scalar/cvt_scalar.c.
 */
#include <immintrin.h>

#include "kernels_avx2.h"
#include "kernels_scalar.h"

void qkv_cvt_bf16_f32_avx2(int64_t n, const uint16_t *src, float *dst)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m128i half = _mm_loadu_si128((const __m128i *)(src + j));
        const __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16);
        _mm256_storeu_ps(dst + j, _mm256_castsi256_ps(wide));
    }
    for (; j < n; j++)
        dst[j] = qkv_bf16_to_f32_scalar(src[j]);
}
