/*
 * alibi, AVX-512: s[c] -= slope * (float)|diag - c| for c < n (see
 * kernels.h). Twin: qkv_alibi_scalar (kernels/scalar/alibi_scalar.c),
 * which also takes the rows outside qkv_alibi_vector_row.
 *
 * The distances diag - c of 16 logits are a float vector that steps down
 * by 16 (exact: every value is an integer of at most 2^24); then |d| by
 * clearing the sign, the product and the difference, rounded once each as
 * in the twin, so the results are bitwise equal.
 *
 * Tail: masked load and store of the last n % 16 logits; nothing outside
 * s[0..n-1] is touched. No alignment requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"
#include "kernels_scalar.h"

static inline __m512 alibi16(__m512 s, __m512 dist, __m512 slope)
{
    const __m512 abs_dist = _mm512_andnot_ps(_mm512_set1_ps(-0.0f), dist);
    return _mm512_sub_ps(s, _mm512_mul_ps(slope, abs_dist));
}

void qkv_alibi_avx512(int64_t n, float *s, float slope, int64_t diag)
{
    if (!qkv_alibi_vector_row(n, diag)) {
        qkv_alibi_scalar(n, s, slope, diag);
        return;
    }
    const __m512 slope_v = _mm512_set1_ps(slope), step = _mm512_set1_ps(QKV_AVX512_LANES);
    __m512 dist = _mm512_sub_ps(_mm512_set1_ps((float)diag),
                                _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    int64_t c = 0;
    for (; c + QKV_AVX512_LANES <= n; c += QKV_AVX512_LANES) {
        _mm512_storeu_ps(s + c, alibi16(_mm512_loadu_ps(s + c), dist, slope_v));
        dist = _mm512_sub_ps(dist, step);
    }
    if (c < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - c);
        _mm512_mask_storeu_ps(s + c, tail,
                              alibi16(_mm512_maskz_loadu_ps(tail, s + c), dist, slope_v));
    }
}
