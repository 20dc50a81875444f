/*
 * scale_row, AVX2: dst[j] = src[j] * mul for j < n (see kernels.h). Twin:
 * qkv_scale_row_scalar (kernels/scalar/scale_row_scalar.c); one rounded
 * product per element in both, so the results are bitwise equal.
 *
 * Tail: the last n % 8 elements go through the stack-buffer tail load and
 * store of exp_avx2.h; nothing outside src[0..n-1] is read or dst[0..n-1]
 * written. No alignment requirement.
 */
#include "exp_avx2.h"
#include "kernels_avx2.h"

void qkv_scale_row_avx2(int64_t n, const float *src, float mul, float *dst)
{
    const __m256 mul_v = _mm256_set1_ps(mul);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_loadu_ps(src + j), mul_v));
    if (j < n) {
        const __m256i mask = qkv_tail_mask_avx2(n - j);
        qkv_tail_store_avx2(dst + j, mask, _mm256_mul_ps(qkv_tail_load_avx2(src + j, mask), mul_v));
    }
}
