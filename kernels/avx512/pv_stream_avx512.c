/*
 * pv_stream, AVX-512: acc = diag(alpha) * acc + P * float(V) with V stored
 * as F32, F16 or BF16, i.e.
 *   acc[i*ldacc + c] = alpha[i] * acc[i*ldacc + c]
 *                      + sum_{j<n} p[i*ldp + j] * float(v[j*ldv + c])
 * for i < m, c < dv (see kernels.h). Twin: qkv_pv_stream_scalar in
 * kernels/scalar/pv_stream_scalar.c: rescale first, then the rows of V in
 * order j = 0..n-1; here each step is one FMA, so results agree within
 * float rounding. Zero weights are multiplied in like in the twin.
 *
 * The blocking of pv_tile (kernels/avx512/pv_tile_avx512.c) with V read in
 * its storage kind (halves widened in registers, exactly: kv_load_avx512.h).
 * One row (decoding) takes up to 128 columns per pass (8 accumulators),
 * so each row of V is loaded once. More rows go in blocks of up to 4 rows
 * x 64 columns (16 accumulators); for m <= 4 each part of a row of V is
 * still loaded once, larger m load (and widen) it again from L1 for each
 * block of rows.
 *
 * v_next: the first pass over the keys asks, per key, for the same row
 * of the next call (stream_common.h), so that memory keeps streaming
 * while this call computes.
 *
 * Tails: the last block of columns has as many vectors as it needs, the
 * last one with masked loads of V (the others plain loads, which a
 * widening takes as operand) and masked loads/stores of acc; nothing
 * outside the m x dv block of acc is touched and V is read only in its
 * first dv columns. No alignment requirement.
 */
#include "kv_load_avx512.h"
#include "kernels_avx512.h"

#define LANES QKV_AVX512_LANES
#define ROW_VECS 8     /* vectors per pass of a single row */
#define BLOCK_ROWS 4   /* rows per pass when m > 1 ... */
#define BLOCK_VECS 4   /* ... and their vectors */

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ROWS rows x `cols` columns (VECS vectors, cols > (VECS-1)*16) of acc over
   keys 0..n-1. KIND, ROWS and VECS are compile-time constants at every
   call, so the sums live in registers. */
static ALWAYS_INLINE void pv_block(const int KIND, const int ROWS, const int VECS,
                                   int64_t n, const float *p, int64_t ldp,
                                   const void *v, int64_t ldv,
                                   const float *alpha, float *acc,
                                   int64_t ldacc, int64_t cols,
                                   const void *next, int64_t width)
{
    __mmask16 lanes[ROW_VECS];
    __m512 sum[BLOCK_ROWS][ROW_VECS];
    for (int c = 0; c < VECS; c++)
        lanes[c] = qkv_lanes_avx512(cols - c * LANES);
    for (int i = 0; i < ROWS; i++) {
        const __m512 scale = _mm512_set1_ps(alpha[i]);
        for (int c = 0; c < VECS; c++)
            sum[i][c] = _mm512_mul_ps(scale, _mm512_maskz_loadu_ps(
                                                 lanes[c], acc + i * ldacc + c * LANES));
    }
    for (int64_t j = 0; j < n; j++) {
        if (next)
            qkv_prefetch_row(qkv_kind_at(KIND, next, j * ldv), width * qkv_kind_bytes(KIND));
        __m512 vv[ROW_VECS];
        for (int c = 0; c < VECS - 1; c++)
            vv[c] = qkv_load16_kv_avx512(KIND, v, j * ldv + c * LANES);
        vv[VECS - 1] = qkv_load_kv_avx512(KIND, v, j * ldv + (VECS - 1) * LANES,
                                            lanes[VECS - 1]);
        for (int i = 0; i < ROWS; i++) {
            const __m512 w = _mm512_set1_ps(p[i * ldp + j]);
            for (int c = 0; c < VECS; c++)
                sum[i][c] = _mm512_fmadd_ps(w, vv[c], sum[i][c]);
        }
    }
    for (int i = 0; i < ROWS; i++)
        for (int c = 0; c < VECS; c++)
            _mm512_mask_storeu_ps(acc + i * ldacc + c * LANES, lanes[c], sum[i][c]);
}

/* One row, up to ROW_VECS * 16 columns: pv_block with as many vectors as
   the columns need. */
static ALWAYS_INLINE void pv_one_row(const int KIND, int64_t n, const float *p,
                                     const void *v, int64_t ldv,
                                     const float *alpha, float *acc, int64_t cols,
                                     const void *next, int64_t width)
{
    switch ((cols + LANES - 1) / LANES) {
    case 8:  pv_block(KIND, 1, 8, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    case 7:  pv_block(KIND, 1, 7, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    case 6:  pv_block(KIND, 1, 6, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    case 5:  pv_block(KIND, 1, 5, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    case 4:  pv_block(KIND, 1, 4, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    case 3:  pv_block(KIND, 1, 3, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    case 2:  pv_block(KIND, 1, 2, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    default: pv_block(KIND, 1, 1, n, p, 0, v, ldv, alpha, acc, 0, cols, next, width); break;
    }
}

/* ROWS rows (2..BLOCK_ROWS), up to BLOCK_VECS * 16 columns. */
static ALWAYS_INLINE void pv_rows_cols(const int KIND, const int ROWS, int64_t n,
                                       const float *p, int64_t ldp,
                                       const void *v, int64_t ldv,
                                       const float *alpha, float *acc,
                                       int64_t ldacc, int64_t cols,
                                       const void *next, int64_t width)
{
    switch ((cols + LANES - 1) / LANES) {
    case 4:  pv_block(KIND, ROWS, 4, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    case 3:  pv_block(KIND, ROWS, 3, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    case 2:  pv_block(KIND, ROWS, 2, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    default: pv_block(KIND, ROWS, 1, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    }
}

/* A block of `rows` rows (1..BLOCK_ROWS) and up to BLOCK_VECS * 16 columns. */
static ALWAYS_INLINE void pv_rows(const int KIND, int rows, int64_t n,
                                  const float *p, int64_t ldp,
                                  const void *v, int64_t ldv,
                                  const float *alpha, float *acc,
                                  int64_t ldacc, int64_t cols,
                                  const void *next, int64_t width)
{
    switch (rows) {
    case 4:  pv_rows_cols(KIND, 4, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    case 3:  pv_rows_cols(KIND, 3, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    case 2:  pv_rows_cols(KIND, 2, n, p, ldp, v, ldv, alpha, acc, ldacc, cols, next, width); break;
    default: pv_one_row(KIND, n, p, v, ldv, alpha, acc, cols, next, width); break;
    }
}

/* All of acc for one storage kind. */
static ALWAYS_INLINE void pv_all(const int KIND, int64_t m, int64_t n, int64_t dv,
                                 const float *p, int64_t ldp,
                                 const void *v, int64_t ldv,
                                 const float *alpha, float *acc, int64_t ldacc,
                                 const void *v_next)
{
    /* The first pass over the keys asks for the next rows of V. */
    if (m == 1) {
        const int64_t block = ROW_VECS * LANES;
        for (int64_t c0 = 0; c0 < dv; c0 += block)
            pv_one_row(KIND, n, p, qkv_kind_at(KIND, v, c0), ldv, alpha, acc + c0,
                       dv - c0 < block ? dv - c0 : block, c0 == 0 ? v_next : NULL, dv);
        return;
    }
    const int64_t block = BLOCK_VECS * LANES;
    for (int64_t c0 = 0; c0 < dv; c0 += block)
        for (int64_t i0 = 0; i0 < m; i0 += BLOCK_ROWS)
            pv_rows(KIND, (int)(m - i0 < BLOCK_ROWS ? m - i0 : BLOCK_ROWS), n,
                    p + i0 * ldp, ldp, qkv_kind_at(KIND, v, c0), ldv, alpha + i0,
                    acc + i0 * ldacc + c0, ldacc, dv - c0 < block ? dv - c0 : block,
                    c0 == 0 && i0 == 0 ? v_next : NULL, dv);
}

void qkv_pv_stream_avx512(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
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
