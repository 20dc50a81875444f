/*
 * pv_tile, NEON: acc = diag(alpha) * acc + P * V, i.e.
 *   acc[i][c] = alpha[i] * acc[i][c] + sum_{j<n} p[i][j] * v[j][c]
 * for i < m, c < dv. Scalar twin: qkv_pv_tile_scalar
 * (kernels/scalar/pv_tile_scalar.c).
 *
 * Register blocking: a block of up to 4 rows x up to 16 columns of acc
 * (up to 16 vector registers) stays in registers for the whole j loop; each
 * step loads one row slice of V and four weights of each P row, and feeds
 * every accumulator with vfmaq_laneq_f32. Every accumulator is rescaled
 * once, then sums its terms in order j = 0..n-1 with fused multiply-adds,
 * so it differs from the twin (separate multiply and add) by float
 * rounding only; a zero weight is multiplied in all the same, so the order
 * of operations never depends on values, as in the twin.
 *
 * Tails: rows beyond the last multiple of 4 use 1-row blocks; columns
 * beyond the last multiple of 16 use 4-column blocks, and the last dv % 4
 * columns a scalar fmaf loop; the last n % 4 weights are broadcast one at a
 * time. Exactly the documented elements are read and written; any
 * alignment.
 */
#include <arm_neon.h>
#include <math.h>

#include "kernels_neon.h"

#define PV_MAX_ROWS 4
#define PV_MAX_VECS 4

/* One block of `rows` rows (1..4) x `vecs` 4-float columns (1..4) of acc,
   starting at acc[0][0], p[0][0] and v[0][0]. Always inlined with constant
   rows and vecs, so the arrays below live in registers. */
static inline __attribute__((always_inline)) void
pv_block(int rows, int vecs, int64_t n,
         const float *p, int64_t ldp, const float *v, int64_t ldv,
         const float *alpha, float *acc, int64_t ldacc)
{
    float32x4_t sum[PV_MAX_ROWS][PV_MAX_VECS];
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < vecs; c++)
            sum[r][c] = vmulq_n_f32(vld1q_f32(acc + r * ldacc + 4 * c),
                                    alpha[r]);

    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        float32x4_t w[PV_MAX_ROWS];
        for (int r = 0; r < rows; r++)
            w[r] = vld1q_f32(p + r * ldp + j);
        for (int l = 0; l < 4; l++) {
            const float *v_row = v + (j + l) * ldv;
            for (int c = 0; c < vecs; c++) {
                const float32x4_t vc = vld1q_f32(v_row + 4 * c);
                for (int r = 0; r < rows; r++)
                    sum[r][c] = qkv_fma_lane_neon(sum[r][c], vc, w[r], l);
            }
        }
    }
    for (; j < n; j++) {
        const float *v_row = v + j * ldv;
        for (int c = 0; c < vecs; c++) {
            const float32x4_t vc = vld1q_f32(v_row + 4 * c);
            for (int r = 0; r < rows; r++)
                sum[r][c] = vfmaq_n_f32(sum[r][c], vc, p[r * ldp + j]);
        }
    }

    for (int r = 0; r < rows; r++)
        for (int c = 0; c < vecs; c++)
            vst1q_f32(acc + r * ldacc + 4 * c, sum[r][c]);
}

/* The last dv % 4 columns (cols in 1..3) of one row, in scalar code. */
static void pv_row_tail(int64_t cols, int64_t n, const float *p_row,
                        const float *v, int64_t ldv, float alpha,
                        float *acc_row)
{
    for (int64_t c = 0; c < cols; c++) {
        float sum = acc_row[c] * alpha;
        for (int64_t j = 0; j < n; j++)
            sum = fmaf(p_row[j], v[j * ldv + c], sum);
        acc_row[c] = sum;
    }
}

/* `rows` rows (4 or 1, a constant after inlining) over all dv columns. */
static inline __attribute__((always_inline)) void
pv_rows(int rows, int64_t n, int64_t dv,
        const float *p, int64_t ldp, const float *v, int64_t ldv,
        const float *alpha, float *acc, int64_t ldacc)
{
    int64_t c = 0;
    for (; c + 16 <= dv; c += 16)
        pv_block(rows, 4, n, p, ldp, v + c, ldv, alpha, acc + c, ldacc);
    for (; c + 4 <= dv; c += 4)
        pv_block(rows, 1, n, p, ldp, v + c, ldv, alpha, acc + c, ldacc);
    if (c < dv)
        for (int r = 0; r < rows; r++)
            pv_row_tail(dv - c, n, p + r * ldp, v + c, ldv, alpha[r],
                        acc + r * ldacc + c);
}

void qkv_pv_tile_neon(int64_t m, int64_t n, int64_t dv,
                      const float *p, int64_t ldp,
                      const float *v, int64_t ldv,
                      const float *alpha, float *acc, int64_t ldacc)
{
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        pv_rows(4, n, dv, p + i * ldp, ldp, v, ldv, alpha + i,
                acc + i * ldacc, ldacc);
    for (; i < m; i++)
        pv_rows(1, n, dv, p + i * ldp, ldp, v, ldv, alpha + i,
                acc + i * ldacc, ldacc);
}
