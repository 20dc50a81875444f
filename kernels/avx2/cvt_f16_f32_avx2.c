/*
 * cvt_f16_f32, F16C: dst[j] = (float)src[j] for IEEE binary16 src, j < n.
 *
 * VCVTPH2PS widens 8 halves at a time exactly: subnormals, inf and NaN
 * payloads are kept (a signalling NaN comes back quiet). The last n % 8
 * elements go through the scalar conversion, so nothing past src[n-1] is
 * read and nothing past dst[n-1] written. Any alignment.
 *
 * Scalar twin: qkv_cvt_f16_f32_scalar in kernels/scalar/cvt_scalar.c.
 */
#include <immintrin.h>

#include "kernels_avx2.h"
#include "kernels_scalar.h"

void qkv_cvt_f16_f32_avx2(int64_t n, const uint16_t *src, float *dst)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m128i half = _mm_loadu_si128((const __m128i *)(src + j));
        _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(half));
    }
    for (; j < n; j++)
        dst[j] = qkv_f16_to_f32_scalar(src[j]);
}
