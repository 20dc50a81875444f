/*
 * alibi, NEON: s[c] -= slope * (float)|diag - c| for c < n (see
 * kernels.h). Twin: qkv_alibi_scalar (kernels/scalar/alibi_scalar.c),
 * which also takes the rows outside qkv_alibi_vector_row.
 *
 * The distances diag - c of 4 logits are a float vector that steps down by
 * 4 (exact: every value is an integer of at most 2^24); then |d|, the
 * product and the difference, rounded once each (no fused multiply-add)
 * as in the twin, so the results are bitwise equal.
 *
 * Tail: the last n % 4 logits go through qkv_tail_load_neon and
 * qkv_tail_store_neon (kernels_neon.h); nothing outside s[0..n-1] is
 * touched. Any alignment.
 */
#include <arm_neon.h>

#include "kernels_neon.h"
#include "kernels_scalar.h"

static inline float32x4_t alibi4(float32x4_t s, float32x4_t dist, float32x4_t slope)
{
    return vsubq_f32(s, vmulq_f32(slope, vabsq_f32(dist)));
}

void qkv_alibi_neon(int64_t n, float *s, float slope, int64_t diag)
{
    if (!qkv_alibi_vector_row(n, diag)) {
        qkv_alibi_scalar(n, s, slope, diag);
        return;
    }
    static const float lane[4] = {0.0f, 1.0f, 2.0f, 3.0f};
    const float32x4_t slope_v = vdupq_n_f32(slope), step = vdupq_n_f32(4.0f);
    float32x4_t dist = vsubq_f32(vdupq_n_f32((float)diag), vld1q_f32(lane));
    int64_t c = 0;
    for (; c + 4 <= n; c += 4) {
        vst1q_f32(s + c, alibi4(vld1q_f32(s + c), dist, slope_v));
        dist = vsubq_f32(dist, step);
    }
    if (c < n)
        qkv_tail_store_neon(s + c, n - c,
                            alibi4(qkv_tail_load_neon(s + c, n - c, 0.0f), dist, slope_v));
}
