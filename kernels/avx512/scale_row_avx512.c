/*
 * scale_row, AVX-512: dst[j] = src[j] * mul for j < n (see kernels.h).
 * Twin: qkv_scale_row_scalar (kernels/scalar/scale_row_scalar.c); one
 * rounded product per element in both, so the results are bitwise equal.
 * Rows of queries and of the output are 64 to 256 floats: 4 to 16 vectors
 * where the driver's baseline-ISA loop took 16 to 64 SSE steps.
 *
 * Tail: masked load and store of the last n % 16 elements; nothing
 * outside src[0..n-1] is read or dst[0..n-1] written. No alignment
 * requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"

void qkv_scale_row_avx512(int64_t n, const float *src, float mul, float *dst)
{
    const __m512 mul_v = _mm512_set1_ps(mul);
    int64_t j = 0;
    for (; j + QKV_AVX512_LANES <= n; j += QKV_AVX512_LANES)
        _mm512_storeu_ps(dst + j, _mm512_mul_ps(_mm512_loadu_ps(src + j), mul_v));
    if (j < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - j);
        _mm512_mask_storeu_ps(dst + j, tail,
                              _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, src + j), mul_v));
    }
}
