/*
 * pv_tile, scalar: acc = diag(alpha) * acc + P * V (see kernels.h). The twin
 * of every SIMD pv_tile.
 *
 * Each accumulator row is rescaled once, then the rows of V are added in
 * order j = 0..n-1, weighted by p[i][j]; a zero weight (a blocked key) is
 * still multiplied in, so the order of operations never depends on values.
 * No alignment requirement, no over-read.
 */
#include "kernels_scalar.h"

void qkv_pv_tile_scalar(int64_t m, int64_t n, int64_t dv,
                        const float *p, int64_t ldp,
                        const float *v, int64_t ldv,
                        const float *alpha, float *acc, int64_t ldacc)
{
    for (int64_t i = 0; i < m; i++) {
        float *acc_row = acc + i * ldacc;
        const float *p_row = p + i * ldp;
        for (int64_t c = 0; c < dv; c++)
            acc_row[c] *= alpha[i];
        for (int64_t j = 0; j < n; j++) {
            const float w = p_row[j];
            const float *v_row = v + j * ldv;
            for (int64_t c = 0; c < dv; c++)
                acc_row[c] += w * v_row[c];
        }
    }
}
