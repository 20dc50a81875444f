/*
 * pv_half, scalar: acc = diag(alpha) * acc + P * float(V) for V stored as
 * F16 or BF16 (see kernels.h), the twin of every SIMD pv_half.
 *
 * Each element of V is widened exactly (kernels/scalar/cvt_scalar.c);
 * then, as in qkv_pv_tile_scalar, each accumulator row is rescaled once
 * and the rows of V are added in order j = 0..n-1, a zero weight
 * multiplied in like any other: the result is bit for bit that of
 * converting V with cvt_*_f32 and calling pv_tile. No alignment
 * requirement, no over-read.
 */
#include "kernels_scalar.h"

static float widen(qkv_dtype dt, uint16_t h)
{
    return dt == QKV_BF16 ? qkv_bf16_to_f32_scalar(h) : qkv_f16_to_f32_scalar(h);
}

void qkv_pv_half_scalar(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                        const float *p, int64_t ldp,
                        const uint16_t *v, int64_t ldv,
                        const float *alpha, float *acc, int64_t ldacc,
                        const uint16_t *v_next)
{
    (void)v_next;   /* a prefetch hint: nothing to do in scalar code */
    for (int64_t i = 0; i < m; i++) {
        float *acc_row = acc + i * ldacc;
        const float *p_row = p + i * ldp;
        for (int64_t c = 0; c < dv; c++)
            acc_row[c] *= alpha[i];
        for (int64_t j = 0; j < n; j++) {
            const float w = p_row[j];
            const uint16_t *v_row = v + j * ldv;
            for (int64_t c = 0; c < dv; c++)
                acc_row[c] += w * widen(dt, v_row[c]);
        }
    }
}
