/*
 * exp_shift_scale, AVX2: dst[j] = 2^(src[j] - shift) * mul for j < n
 * (the weights output of sdpa). 2^x is the vector exp2 of exp_avx2.h, so
 * 2^-inf = 0, NaN stays NaN, and no result is a denormal unless mul
 * makes it one.
 *
 * 8 elements per step; the last n % 8 go through masked loads and stores,
 * so nothing outside src[0..n-1] / dst[0..n-1] is touched. Any alignment;
 * src may equal dst (each element is read before it is written).
 *
 * Scalar twin: qkv_exp_shift_scale_scalar in
 * kernels/scalar/exp_shift_scale_scalar.c.
 */
#include "exp_avx2.h"
#include "kernels_avx2.h"

void qkv_exp_shift_scale_avx2(int64_t n, const float *src, float shift,
                              float mul, float *dst)
{
    const __m256 shift_v = _mm256_set1_ps(shift);
    const __m256 mul_v = _mm256_set1_ps(mul);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 t = _mm256_sub_ps(_mm256_loadu_ps(src + j), shift_v);
        _mm256_storeu_ps(dst + j, _mm256_mul_ps(qkv_exp2_avx2(t), mul_v));
    }
    if (j < n) {
        const __m256i mask = qkv_tail_mask_avx2(n - j);
        const __m256 t = _mm256_sub_ps(qkv_tail_load_avx2(src + j, mask), shift_v);
        qkv_tail_store_avx2(dst + j, mask, _mm256_mul_ps(qkv_exp2_avx2(t), mul_v));
    }
}
