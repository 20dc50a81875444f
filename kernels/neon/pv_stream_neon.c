/*
 * pv_stream, NEON: acc = diag(alpha) * acc + P * float(V) with V stored as
 * F32, F16 or BF16,
 *   acc[i][c] = alpha[i] * acc[i][c] + sum_{j<n} p[i][j] * float(v[j][c])
 * for i < m, c < dv (see kernels.h). Scalar twin: qkv_pv_stream_scalar
 * (kernels/scalar/pv_stream_scalar.c): every accumulator is rescaled once,
 * then sums its terms in order j = 0..n-1 (here with fused multiply-adds),
 * a zero weight multiplied in like any other; results agree within float
 * rounding.
 *
 * Register blocking as in pv_tile (kernels/neon/pv_tile_neon.c), with V
 * read in its storage kind (halves widened in registers, exactly:
 * kv_load_neon.h): a block of up to 4 rows x 16 columns of acc (16
 * accumulators) stays in registers for the whole j loop, which loads 16
 * elements of row j of V per step. A single row (decoding) takes 32 columns per block (8
 * accumulators) instead, so fewer passes go over the same rows of V.
 *
 * v_next: the first pass over the keys (when dv >= 4) asks, per key, for
 * the same row of the next call (stream_common.h), so that memory keeps
 * streaming while this call computes.
 *
 * Tails: rows past the last multiple of 4 use 1-row blocks; columns past
 * the last block use 4-column blocks, and the last dv % 4 columns a scalar
 * fmaf loop. Exactly the documented elements are read and written; any
 * alignment.
 */
#include <arm_neon.h>
#include <math.h>

#include "kv_load_neon.h"
#include "kernels_neon.h"

#define PV_MAX_ROWS 4
#define PV_MAX_VECS 8

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* `rows` rows (1..4) x `vecs` 4-float columns (8, 4 or 1; 8 only for one
   row) of acc. Always inlined with constant arguments, so the arrays below
   live in registers. */
static ALWAYS_INLINE void pv_block(const int KIND, const int ROWS, const int VECS,
                                   int64_t n, const float *p, int64_t ldp,
                                   const void *v, int64_t ldv,
                                   const float *alpha, float *acc, int64_t ldacc,
                                   const void *next, int64_t width)
{
    float32x4_t sum[PV_MAX_ROWS][PV_MAX_VECS];
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < VECS; c++)
            sum[r][c] = vmulq_n_f32(vld1q_f32(acc + r * ldacc + 4 * c), alpha[r]);
    for (int64_t j = 0; j < n; j++) {
        if (next)
            qkv_prefetch_row(qkv_kind_at(KIND, next, j * ldv), width * qkv_kind_bytes(KIND));
        float32x4_t vv[PV_MAX_VECS];
        if (VECS == 1)
            vv[0] = qkv_load4_kv_neon(KIND, v, j * ldv);
        else
            for (int c = 0; c < VECS; c += 2)
                qkv_load8_kv_neon(KIND, v, j * ldv + 4 * c, &vv[c], &vv[c + 1]);
        for (int r = 0; r < ROWS; r++) {
            const float w = p[r * ldp + j];
            for (int c = 0; c < VECS; c++)
                sum[r][c] = vfmaq_n_f32(sum[r][c], vv[c], w);
        }
    }
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < VECS; c++)
            vst1q_f32(acc + r * ldacc + 4 * c, sum[r][c]);
}

/* The last dv % 4 columns (cols in 1..3) of one row, in scalar code. */
static ALWAYS_INLINE void pv_row_tail(const int KIND, int64_t cols, int64_t n,
                                      const float *p_row, const void *v,
                                      int64_t ldv, float alpha, float *acc_row)
{
    for (int64_t c = 0; c < cols; c++) {
        float sum = acc_row[c] * alpha;
        for (int64_t j = 0; j < n; j++)
            sum = fmaf(p_row[j], qkv_kv_to_f32_neon(KIND, v, j * ldv + c), sum);
        acc_row[c] = sum;
    }
}

/* ROWS rows (4 or 1, constant) over all dv columns. */
static ALWAYS_INLINE void pv_rows(const int KIND, const int ROWS, int64_t n, int64_t dv,
                                  const float *p, int64_t ldp,
                                  const void *v, int64_t ldv,
                                  const float *alpha, float *acc, int64_t ldacc,
                                  const void *next)
{
    /* Only the first block asks for the next rows of V. */
    int64_t c = 0;
    if (ROWS == 1)
        for (; c + 32 <= dv; c += 32)
            pv_block(KIND, 1, 8, n, p, ldp, qkv_kind_at(KIND, v, c), ldv, alpha, acc + c, ldacc,
                     c == 0 ? next : NULL, dv);
    for (; c + 16 <= dv; c += 16)
        pv_block(KIND, ROWS, 4, n, p, ldp, qkv_kind_at(KIND, v, c), ldv, alpha, acc + c, ldacc,
                 c == 0 ? next : NULL, dv);
    for (; c + 4 <= dv; c += 4)
        pv_block(KIND, ROWS, 1, n, p, ldp, qkv_kind_at(KIND, v, c), ldv, alpha, acc + c, ldacc,
                 c == 0 ? next : NULL, dv);
    if (c < dv)
        for (int r = 0; r < ROWS; r++)
            pv_row_tail(KIND, dv - c, n, p + r * ldp, qkv_kind_at(KIND, v, c), ldv, alpha[r],
                        acc + r * ldacc + c);
}

/* All of acc for one storage kind. */
static ALWAYS_INLINE void pv_all(const int KIND, int64_t m, int64_t n, int64_t dv,
                                 const float *p, int64_t ldp,
                                 const void *v, int64_t ldv,
                                 const float *alpha, float *acc, int64_t ldacc,
                                 const void *v_next)
{
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        pv_rows(KIND, 4, n, dv, p + i * ldp, ldp, v, ldv, alpha + i,
                acc + i * ldacc, ldacc, i == 0 ? v_next : NULL);
    for (; i < m; i++)
        pv_rows(KIND, 1, n, dv, p + i * ldp, ldp, v, ldv, alpha + i,
                acc + i * ldacc, ldacc, i == 0 ? v_next : NULL);
}

void qkv_pv_stream_neon(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                        const float *p, int64_t ldp,
                        const void *v, int64_t ldv,
                        const float *alpha, float *acc, int64_t ldacc,
                        const void *v_next)
{
    switch (qkv_stream_kind(dt)) {
    case QKV_KIND_F32:  pv_all(QKV_KIND_F32, m, n, dv, p, ldp, v, ldv, alpha, acc, ldacc, v_next); break;
    case QKV_KIND_BF16: pv_all(QKV_KIND_BF16, m, n, dv, p, ldp, v, ldv, alpha, acc, ldacc, v_next); break;
    default:            pv_all(QKV_KIND_F16, m, n, dv, p, ldp, v, ldv, alpha, acc, ldacc, v_next); break;
    }
}
