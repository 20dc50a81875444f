/*
 * alibi, AVX2: s[c] -= slope * (float)|diag - c| for c < n (see
 * kernels.h). Twin: qkv_alibi_scalar (kernels/scalar/alibi_scalar.c),
 * which also takes the rows outside qkv_alibi_vector_row.
 *
 * The distances diag - c of 8 logits are a float vector that steps down by
 * 8 (exact: every value is an integer of at most 2^24); then |d| by
 * clearing the sign, the product and the difference, rounded once each as
 * in the twin, so the results are bitwise equal.
 *
 * Tail: the last n % 8 logits go through the stack-buffer tail load and
 * store of exp_avx2.h; nothing outside s[0..n-1] is touched. No alignment
 * requirement.
 */
#include "exp_avx2.h"
#include "kernels_avx2.h"
#include "kernels_scalar.h"

static inline __m256 alibi8(__m256 s, __m256 dist, __m256 slope)
{
    const __m256 abs_dist = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), dist);
    return _mm256_sub_ps(s, _mm256_mul_ps(slope, abs_dist));
}

void qkv_alibi_avx2(int64_t n, float *s, float slope, int64_t diag)
{
    if (!qkv_alibi_vector_row(n, diag)) {
        qkv_alibi_scalar(n, s, slope, diag);
        return;
    }
    const __m256 slope_v = _mm256_set1_ps(slope), step = _mm256_set1_ps(8.0f);
    __m256 dist = _mm256_sub_ps(_mm256_set1_ps((float)diag),
                                _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        _mm256_storeu_ps(s + c, alibi8(_mm256_loadu_ps(s + c), dist, slope_v));
        dist = _mm256_sub_ps(dist, step);
    }
    if (c < n) {
        const __m256i mask = qkv_tail_mask_avx2(n - c);
        qkv_tail_store_avx2(s + c, mask, alibi8(qkv_tail_load_avx2(s + c, mask), dist, slope_v));
    }
}
