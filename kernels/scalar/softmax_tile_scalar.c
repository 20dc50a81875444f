/*
 * softmax_tile, scalar: one online-softmax step over an m x n tile of
 * logits (see kernels.h for the exact recurrence). The twin of every SIMD
 * softmax_tile.
 *
 * Logits are in base-2 units (kernels.h): the exponential is libm's exp2f
 * (within 1 ulp on glibc). Rows are independent: a NaN in row i reaches
 * only row_sum[i]. No alignment requirement; reads and writes exactly n
 * entries per row.
 */
#include <math.h>

#include "kernels_scalar.h"

static void softmax_row(int64_t n, float *s, float *row_max, float *row_sum,
                        float *alpha)
{
    float new_max = *row_max;
    for (int64_t j = 0; j < n; j++)
        if (s[j] > new_max)
            new_max = s[j];
    if (new_max == -INFINITY) {
        /* Every logit so far is blocked: nothing to accumulate. */
        for (int64_t j = 0; j < n; j++)
            s[j] = 0.0f;
        *alpha = 1.0f;
        return;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = exp2f(s[j] - new_max);
        sum += s[j];
    }
    *alpha = exp2f(*row_max - new_max);
    *row_sum = *row_sum * *alpha + sum;
    *row_max = new_max;
}

void qkv_softmax_tile_scalar(int64_t m, int64_t n, float *s, int64_t lds,
                             float *row_max, float *row_sum, float *alpha)
{
    for (int64_t i = 0; i < m; i++)
        softmax_row(n, s + i * lds, &row_max[i], &row_sum[i], &alpha[i]);
}
