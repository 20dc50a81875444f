/*
 * softmax_tile, AVX2: one online-softmax step over an m x n tile of
 * logits (the recurrence is in kernels.h). Per row i, with M = row_max[i]:
 *
 *   M' = max(M, max_j s[i][j])              NaN logits are skipped, as the
 *                                           scalar twin's `s > M'` skips them
 *   M' == -inf:  s[i][.] = 0, alpha[i] = 1, row_max / row_sum unchanged
 *   otherwise:   s[i][j] = 2^(s[i][j] - M') (base-2 logits), with the
 *                vector exp2 of exp_avx2.h (2^-inf = 0, NaN stays NaN, no
 *                denormals)
 *                alpha[i] = 2^(M - M') (the same vector exp2, 8 rows at a
 *                time; exactly 1 when M == M'), row_sum[i] = row_sum[i] * alpha[i]
 *                + sum_j s[i][j] (eight partial sums; float rounding
 *                differs from the scalar order only)
 *
 * Two passes over the tile (the maxima of all rows, then exp + sum row by
 * row), 8 logits per step; the last
 * n % 8 go through masked loads and stores, so exactly s[i][0..n-1] is read
 * and written. Any alignment; rows are independent, so a NaN reaches only
 * its own row_sum.
 *
 * Scalar twin: qkv_softmax_tile_scalar in
 * kernels/scalar/softmax_tile_scalar.c.
 */
#include <math.h>

#include "exp_avx2.h"
#include "kernels_avx2.h"

/* max(start, s[0..n-1]), NaN entries ignored. _mm256_max_ps(x, m)
   returns m when x is NaN, and m never becomes NaN. */
static float row_max_of(int64_t n, const float *s, float start)
{
    __m256 m0 = _mm256_set1_ps(start), m1 = m0;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(s + j), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(s + j + 8), m1);
    }
    for (; j + 8 <= n; j += 8)
        m0 = _mm256_max_ps(_mm256_loadu_ps(s + j), m0);
    if (j < n) {
        const __m256i mask = qkv_tail_mask_avx2(n - j);
        const __m256 x = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                          qkv_tail_load_avx2(s + j, mask),
                                          _mm256_castsi256_ps(mask));
        m1 = _mm256_max_ps(x, m1);
    }
    return qkv_hmax_avx2(_mm256_max_ps(m0, m1));
}

/* s[j] = 2^(s[j] - max) for j < n; returns the sum of the new s[j]. */
static float exp_row_and_sum(int64_t n, float *s, float max)
{
    const __m256 max_v = _mm256_set1_ps(max);
    __m256 sum = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = qkv_exp2_nonpositive_avx2(
            _mm256_sub_ps(_mm256_loadu_ps(s + j), max_v));
        _mm256_storeu_ps(s + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (j < n) {
        /* The lanes past n hold 2^(0 - max), possibly garbage: they are
           neither stored nor summed. */
        const __m256i mask = qkv_tail_mask_avx2(n - j);
        const __m256 e = qkv_exp2_nonpositive_avx2(
            _mm256_sub_ps(qkv_tail_load_avx2(s + j, mask), max_v));
        qkv_tail_store_avx2(s + j, mask, e);
        sum = _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(mask)));
    }
    return qkv_hsum_avx2(sum);
}

static void zero_row(int64_t n, float *s)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(s + j, _mm256_setzero_ps());
    if (j < n)
        qkv_tail_store_avx2(s + j, qkv_tail_mask_avx2(n - j), _mm256_setzero_ps());
}

/* Phase 2, for 8 rows (the first count of them) at a time: new_max sits
   in alpha[] on entry. row_max = new_max, and alpha = 2^(old - new_max),
   or 1 where the row is still fully blocked (new_max == -inf, hence old
   == -inf too, and row_max stays -inf). 2^0 is exactly 1. */
static void update_maxima(int64_t count, float *row_max, float *alpha)
{
    const __m256i mask = qkv_tail_mask_avx2(count);
    const __m256 old_max = qkv_tail_load_avx2(row_max, mask);
    const __m256 new_max = qkv_tail_load_avx2(alpha, mask);
    const __m256 blocked = _mm256_cmp_ps(new_max, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ);
    const __m256 scale = qkv_exp2_nonpositive_avx2(_mm256_sub_ps(old_max, new_max));
    qkv_tail_store_avx2(alpha, mask, _mm256_blendv_ps(scale, _mm256_set1_ps(1.0f), blocked));
    qkv_tail_store_avx2(row_max, mask, new_max);
}

void qkv_softmax_tile_avx2(int64_t m, int64_t n, float *s, int64_t lds,
                           float *row_max, float *row_sum, float *alpha)
{
    /* Phase 1: every row's new maximum, parked in alpha[]. */
    for (int64_t i = 0; i < m; i++)
        alpha[i] = row_max_of(n, s + i * lds, row_max[i]);
    /* Phase 2: row_max and alpha, 8 rows per vector exp2. */
    for (int64_t i = 0; i < m; i += 8)
        update_maxima(m - i < 8 ? m - i : 8, row_max + i, alpha + i);
    /* Phase 3: the exp pass of each row. Nothing in it waits on a
       reduction of the same row, so successive rows overlap in the
       pipeline. */
    for (int64_t i = 0; i < m; i++) {
        float *s_row = s + i * lds;
        if (row_max[i] == -INFINITY) {
            /* Every logit so far is blocked: nothing to accumulate. */
            zero_row(n, s_row);
            continue;
        }
        row_sum[i] = row_sum[i] * alpha[i] + exp_row_and_sum(n, s_row, row_max[i]);
    }
}
