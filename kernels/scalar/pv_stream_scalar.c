/*
 * pv_stream, scalar: acc = diag(alpha) * acc + P * float(V) for V stored
 * as F32, F16 or BF16 (see kernels.h), the twin of every SIMD pv_stream.
 *
 * Each element of V is widened exactly (kv_elem_scalar); then, as in
 * qkv_pv_tile_scalar, each accumulator row is rescaled once and the rows
 * of V are added in order j = 0..n-1, a zero weight multiplied in like
 * any other: the result is bit for bit that of converting V with
 * cvt_*_f32 (F32 rows as they are) and calling pv_tile. No alignment
 * requirement, no over-read.
 */
#include "kernels_scalar.h"

void qkv_pv_stream_scalar(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                          const float *p, int64_t ldp,
                          const void *v, int64_t ldv,
                          const float *alpha, float *acc, int64_t ldacc,
                          const void *v_next)
{
    (void)v_next;   /* a prefetch hint: nothing to do in scalar code */
    for (int64_t i = 0; i < m; i++) {
        float *acc_row = acc + i * ldacc;
        const float *p_row = p + i * ldp;
        for (int64_t c = 0; c < dv; c++)
            acc_row[c] *= alpha[i];
        for (int64_t j = 0; j < n; j++) {
            const float w = p_row[j];
            for (int64_t c = 0; c < dv; c++)
                acc_row[c] += w * qkv_kv_elem_scalar(dt, v, j * ldv + c);
        }
    }
}
