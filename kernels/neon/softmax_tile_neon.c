/*
 * softmax_tile, NEON: one online-softmax step over an m x n tile of logits
 * (row stride lds), in base-2 units (kernels.h). Per row, with M = row_max
 * on entry:
 *   M' = max(M, max_j s[j]);
 *   M' == -inf: s[j] = 0, alpha = 1, row_max and row_sum unchanged;
 *   else:       s[j] = 2^(s[j] - M'), alpha = 2^(M - M'),
 *               row_sum = row_sum * alpha + sum_j s[j], row_max = M'.
 * Scalar twin: qkv_softmax_tile_scalar (kernels/scalar/softmax_tile_scalar.c).
 *
 * The max uses compare-and-select (x > max ? x : max) rather than FMAX, so
 * a NaN logit is skipped exactly as in the twin; it then turns into NaN
 * through exp2 and reaches only this row's sum. 2^(s - M') is the vector
 * exp2 of exp_neon.h (about one ulp, no denormals); alpha, one per row,
 * uses exp2f like the twin. The sum is accumulated in four lanes,
 * so it differs from the twin's left-to-right sum by float rounding only.
 *
 * Tails: the last n % 4 logits of a row go through a 4-float stack copy
 * padded with -inf (neutral for the max, exp2 gives 0 for the sum), so
 * exactly n entries per row are read and written. Any alignment.
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "exp_neon.h"
#include "kernels_neon.h"

/* Lane-wise max that ignores NaN in x, as the twin's `if (x > max)`. */
static inline float32x4_t max_skip_nan(float32x4_t max, float32x4_t x)
{
    return vbslq_f32(vcgtq_f32(x, max), x, max);
}

/* The last n % 4 logits of a row (rest in 1..3), padded with -inf. */
static inline float32x4_t load_tail(const float *s, int64_t rest)
{
    float tail[4] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    memcpy(tail, s, (size_t)rest * sizeof(float));
    return vld1q_f32(tail);
}

static float row_max_of(int64_t n, const float *s, float start)
{
    float32x4_t vmax = vdupq_n_f32(start);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        vmax = max_skip_nan(vmax, vld1q_f32(s + j));
    if (j < n)
        vmax = max_skip_nan(vmax, load_tail(s + j, n - j));
    float lanes[4];
    vst1q_f32(lanes, vmax);
    float max = lanes[0];
    for (int l = 1; l < 4; l++)
        if (lanes[l] > max)
            max = lanes[l];
    return max;
}

/* s[j] = 2^(s[j] - max) for j < n; returns their sum. */
static float exp_row_and_sum(int64_t n, float *s, float max)
{
    const float32x4_t vmax = vdupq_n_f32(max);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const float32x4_t x = vsubq_f32(vld1q_f32(s + j), vmax);
        const float32x4_t e = qkv_exp2_f32x4_neon(x);
        vst1q_f32(s + j, e);
        vsum = vaddq_f32(vsum, e);
    }
    const int64_t rest = n - j;
    if (rest > 0) {
        float tail[4];
        const float32x4_t x = vsubq_f32(load_tail(s + j, rest), vmax);
        const float32x4_t e = qkv_exp2_f32x4_neon(x);
        vst1q_f32(tail, e);
        memcpy(s + j, tail, (size_t)rest * sizeof(float));
        vsum = vaddq_f32(vsum, e);   /* the -inf padding adds exact zeros */
    }
    return vaddvq_f32(vsum);
}

static void softmax_row(int64_t n, float *s, float *row_max, float *row_sum,
                        float *alpha)
{
    const float new_max = row_max_of(n, s, *row_max);
    if (new_max == -INFINITY) {
        /* Every logit so far is blocked: nothing to accumulate. */
        memset(s, 0, (size_t)n * sizeof(float));
        *alpha = 1.0f;
        return;
    }
    const float sum = exp_row_and_sum(n, s, new_max);
    *alpha = exp2f(*row_max - new_max);
    *row_sum = *row_sum * *alpha + sum;
    *row_max = new_max;
}

void qkv_softmax_tile_neon(int64_t m, int64_t n, float *s, int64_t lds,
                           float *row_max, float *row_sum, float *alpha)
{
    for (int64_t i = 0; i < m; i++)
        softmax_row(n, s + i * lds, &row_max[i], &row_sum[i], &alpha[i]);
}
