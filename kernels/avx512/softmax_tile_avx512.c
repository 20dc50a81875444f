/*
 * softmax_tile, AVX-512: one online-softmax step over an m x n tile of
 * logits (the recurrence is in kernels.h). Twin:
 * qkv_softmax_tile_scalar in kernels/scalar/softmax_tile_scalar.c.
 *
 * Rows go in groups of 16; two sweeps over each group, which sits in L1:
 *   1. M' = max(M, max_j s[j]) with MAXPS(s, acc), which returns its second
 *      operand when s[j] is NaN: a NaN logit never becomes the max, exactly
 *      like the scalar `if (s[j] > M)` (and a NaN M stays NaN);
 *   2. s[j] = exp(s[j] - M') with the vector exp of exp_avx512.h (its
 *      argument is <= 0 or NaN), four vectors per step, and the row sum in
 *      vector accumulators. A NaN logit gives a NaN weight and so a NaN
 *      row_sum in its own row only. A row whose M' is -inf is zeroed.
 * The per-row bookkeeping is then done for 16 rows at once: alpha =
 * exp(M - M') by the same vector exp, row_sum = row_sum * alpha + sum and
 * row_max = M', except in rows whose M' is -inf (alpha = 1, state kept).
 * Sums are in a different order than the scalar twin: results agree within
 * float rounding, not bitwise.
 *
 * Tail: masked loads (-inf filled for the max) and masked stores; exactly n
 * floats per row are read and written, and m entries of row_max, row_sum
 * and alpha. No alignment requirement.
 */
#include <math.h>

#include "exp_avx512.h"
#include "kernels_avx512.h"

#define LANES QKV_AVX512_LANES

static float row_max_of(int64_t n, const float *s, float start)
{
    const __m512 start_v = _mm512_set1_ps(start);
    __m512 m0 = start_v, m1 = start_v, m2 = start_v, m3 = start_v;
    int64_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(s + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(s + j + LANES), m1);
        m2 = _mm512_max_ps(_mm512_loadu_ps(s + j + 2 * LANES), m2);
        m3 = _mm512_max_ps(_mm512_loadu_ps(s + j + 3 * LANES), m3);
    }
    for (; j < n; j += LANES) {
        const __mmask16 lanes = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), lanes, s + j);
        m0 = _mm512_max_ps(x, m0);
    }
    /* No lane is NaN unless start is, and then every lane is. */
    m0 = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
    return _mm512_reduce_max_ps(m0);
}

static inline __m512 exp_store(float *s, __m512 max_v)
{
    const __m512 e = qkv_exp_nonpositive_avx512(_mm512_sub_ps(_mm512_loadu_ps(s), max_v));
    _mm512_storeu_ps(s, e);
    return e;
}

/* s[j] = exp(s[j] - max) for j < n; returns the sum of the new s[j]. */
static float exp_and_sum(int64_t n, float *s, float max)
{
    const __m512 max_v = _mm512_set1_ps(max);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        const __m512 e0 = exp_store(s + j, max_v);
        const __m512 e1 = exp_store(s + j + LANES, max_v);
        const __m512 e2 = exp_store(s + j + 2 * LANES, max_v);
        const __m512 e3 = exp_store(s + j + 3 * LANES, max_v);
        sum0 = _mm512_add_ps(sum0, _mm512_add_ps(e0, e1));
        sum1 = _mm512_add_ps(sum1, _mm512_add_ps(e2, e3));
    }
    for (; j < n; j += LANES) {
        const __mmask16 lanes = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_maskz_loadu_ps(lanes, s + j);
        const __m512 e = qkv_exp_nonpositive_avx512(_mm512_sub_ps(x, max_v));
        _mm512_mask_storeu_ps(s + j, lanes, e);
        sum0 = _mm512_mask_add_ps(sum0, lanes, sum0, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

static void zero_row(int64_t n, float *s)
{
    for (int64_t j = 0; j < n; j += LANES)
        _mm512_mask_storeu_ps(s + j, qkv_lanes_avx512(n - j), _mm512_setzero_ps());
}

/* The bookkeeping of `rows` (<= 16) rows whose new maxima and tile sums
   are new_max[] and sum[]. */
static void update_rows(int64_t rows, const float *new_max, const float *sum,
                        float *row_max, float *row_sum, float *alpha)
{
    const __mmask16 lanes = qkv_lanes_avx512(rows);
    const __m512 new_v = _mm512_maskz_loadu_ps(lanes, new_max);
    const __m512 old_v = _mm512_maskz_loadu_ps(lanes, row_max);
    /* Rows that have seen an unblocked logit (NaN counts as seen). */
    const __mmask16 seen = _mm512_mask_cmp_ps_mask(
        lanes, new_v, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
    const __m512 a = _mm512_mask_blend_ps(
        seen, _mm512_set1_ps(1.0f), qkv_exp_nonpositive_avx512(_mm512_sub_ps(old_v, new_v)));
    const __m512 total = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, row_sum), a,
                                         _mm512_maskz_loadu_ps(lanes, sum));
    _mm512_mask_storeu_ps(alpha, lanes, a);
    _mm512_mask_storeu_ps(row_sum, seen, total);
    _mm512_mask_storeu_ps(row_max, seen, new_v);
}

void qkv_softmax_tile_avx512(int64_t m, int64_t n, float *s, int64_t lds,
                             float *row_max, float *row_sum, float *alpha)
{
    for (int64_t i0 = 0; i0 < m; i0 += LANES) {
        const int64_t rows = m - i0 < LANES ? m - i0 : LANES;
        float new_max[LANES], sum[LANES];
        /* All maxima of the group first: each row's horizontal reduction
           then overlaps the next row's loads instead of stalling its own
           exp sweep. The group (16 rows) stays in L1 for the second pass. */
        for (int64_t r = 0; r < rows; r++)
            new_max[r] = row_max_of(n, s + (i0 + r) * lds, row_max[i0 + r]);
        for (int64_t r = 0; r < rows; r++) {
            float *s_row = s + (i0 + r) * lds;
            if (new_max[r] == -INFINITY) {
                /* Every logit so far is blocked: nothing to accumulate. */
                zero_row(n, s_row);
                sum[r] = 0.0f;
            } else {
                sum[r] = exp_and_sum(n, s_row, new_max[r]);
            }
        }
        update_rows(rows, new_max, sum, row_max + i0, row_sum + i0, alpha + i0);
    }
}
