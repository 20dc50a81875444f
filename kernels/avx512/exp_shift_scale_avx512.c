/*
 * exp_shift_scale, AVX-512: dst[j] = 2^(src[j] - shift) * mul, j < n
 * (see kernels.h), with the vector exp2 of exp_avx512.h (2^-inf = +0,
 * NaN stays NaN). src may equal dst: each vector is loaded before it is
 * stored. Twin: qkv_exp_shift_scale_scalar in
 * kernels/scalar/exp_shift_scale_scalar.c (libm exp2f; the two agree to
 * about one ulp).
 *
 * Tail: masked load and store of the last n % 16 elements; no over-read,
 * no write past dst[n-1]. No alignment requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"

void qkv_exp_shift_scale_avx512(int64_t n, const float *src, float shift,
                                float mul, float *dst)
{
    const __m512 shift_v = _mm512_set1_ps(shift);
    const __m512 mul_v = _mm512_set1_ps(mul);
    int64_t j = 0;
    for (; j + QKV_AVX512_LANES <= n; j += QKV_AVX512_LANES) {
        const __m512 x = _mm512_sub_ps(_mm512_loadu_ps(src + j), shift_v);
        _mm512_storeu_ps(dst + j, _mm512_mul_ps(qkv_exp2_avx512(x), mul_v));
    }
    if (j < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, src + j), shift_v);
        _mm512_mask_storeu_ps(dst + j, tail, _mm512_mul_ps(qkv_exp2_avx512(x), mul_v));
    }
}
