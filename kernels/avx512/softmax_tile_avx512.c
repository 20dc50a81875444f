/*
 * softmax_tile, AVX-512: one online-softmax step over an m x n tile of
 * logits (the recurrence is in kernels.h). Twin:
 * qkv_softmax_tile_scalar in kernels/scalar/softmax_tile_scalar.c.
 *
 * Per row, two sweeps over n floats that sit in L1:
 *   1. M' = max(M, max_j s[j]) with MAXPS(s, acc), which returns its second
 *      operand when s[j] is NaN: a NaN logit never becomes the max, exactly
 *      like the scalar `if (s[j] > M)` (and a NaN M stays NaN);
 *   2. s[j] = exp(s[j] - M') with the vector exp of exp_avx512.h and the
 *      row sum in four vector accumulators; alpha = exp(M - M') by the same
 *      exp. A NaN logit gives a NaN weight and so a NaN row_sum in its own
 *      row only. A row whose M' is -inf is zeroed with alpha = 1.
 * Sums are in a different order than the scalar twin: results agree within
 * float rounding, not bitwise.
 *
 * Tail: masked loads (-inf filled for the max) and masked stores; exactly n
 * floats per row are read and written. No alignment requirement.
 */
#include <math.h>

#include "exp_avx512.h"
#include "kernels_avx512.h"

static float row_max_of(int64_t n, const float *s, float start)
{
    const __m512 start_v = _mm512_set1_ps(start);
    __m512 m0 = start_v, m1 = start_v, m2 = start_v, m3 = start_v;
    int64_t j = 0;
    for (; j + 4 * QKV_AVX512_LANES <= n; j += 4 * QKV_AVX512_LANES) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(s + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(s + j + 16), m1);
        m2 = _mm512_max_ps(_mm512_loadu_ps(s + j + 32), m2);
        m3 = _mm512_max_ps(_mm512_loadu_ps(s + j + 48), m3);
    }
    for (; j < n; j += QKV_AVX512_LANES) {
        const __mmask16 lanes = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), lanes, s + j);
        m0 = _mm512_max_ps(x, m0);
    }
    /* No lane is NaN unless start is, and then every lane is. */
    m0 = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
    return _mm512_reduce_max_ps(m0);
}

/* s[j] = exp(s[j] - max) for j < n; returns the sum of the new s[j]. */
static float exp_and_sum(int64_t n, float *s, float max)
{
    const __m512 max_v = _mm512_set1_ps(max);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 2 * QKV_AVX512_LANES <= n; j += 2 * QKV_AVX512_LANES) {
        const __m512 e0 = qkv_exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j), max_v));
        const __m512 e1 = qkv_exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), max_v));
        _mm512_storeu_ps(s + j, e0);
        _mm512_storeu_ps(s + j + 16, e1);
        sum0 = _mm512_add_ps(sum0, e0);
        sum1 = _mm512_add_ps(sum1, e1);
    }
    for (; j < n; j += QKV_AVX512_LANES) {
        const __mmask16 lanes = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_maskz_loadu_ps(lanes, s + j);
        const __m512 e = qkv_exp_avx512(_mm512_sub_ps(x, max_v));
        _mm512_mask_storeu_ps(s + j, lanes, e);
        sum0 = _mm512_mask_add_ps(sum0, lanes, sum0, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

static void zero_row(int64_t n, float *s)
{
    for (int64_t j = 0; j < n; j += QKV_AVX512_LANES)
        _mm512_mask_storeu_ps(s + j, qkv_lanes_avx512(n - j), _mm512_setzero_ps());
}

void qkv_softmax_tile_avx512(int64_t m, int64_t n, float *s, int64_t lds,
                             float *row_max, float *row_sum, float *alpha)
{
    for (int64_t i = 0; i < m; i++) {
        float *s_row = s + i * lds;
        const float new_max = row_max_of(n, s_row, row_max[i]);
        if (new_max == -INFINITY) {
            /* Every logit so far is blocked: nothing to accumulate. */
            zero_row(n, s_row);
            alpha[i] = 1.0f;
            continue;
        }
        const float sum = exp_and_sum(n, s_row, new_max);
        alpha[i] = qkv_exp1_avx512(row_max[i] - new_max);
        row_sum[i] = row_sum[i] * alpha[i] + sum;
        row_max[i] = new_max;
    }
}
