/*
 * pv_stream, AVX2 + FMA + F16C: acc = diag(alpha) * acc + P * float(V) with
 * V stored as F32, F16 or BF16, i.e.
 *
 *   acc[i][c] = alpha[i] * acc[i][c] + sum_{j<n} p[i][j] * float(v[j][c])
 *
 * for i < m, c < dv (see kernels.h). Twin: qkv_pv_stream_scalar in
 * kernels/scalar/pv_stream_scalar.c: each accumulator is rescaled once and
 * then the rows of V are added in order j = 0..n-1 (here with fused
 * multiply-adds), whatever the values, so a zero weight still multiplies
 * its V row; results agree within float rounding.
 *
 * The blocking of pv_tile (kernels/avx2/pv_tile_avx2.c) with V read in its
 * storage kind (halves widened in registers, exactly: kv_load_avx2.h).
 * One row (decoding) takes up to 64 columns per pass in 8 ymm
 * accumulators, so each row of V is loaded once; more rows go in pairs
 * over up to 32 columns (8 accumulators), each pair loading (and
 * widening) its part of V again from L1. The last dv % 8 columns take a
 * row-by-row path through stack buffers. v_next: the first pass over the
 * keys (when dv >= 8) asks, per key, for the same row of the next call
 * (stream_common.h), so that memory keeps streaming while this call
 * computes. Exactly p[i][0..n-1], v[j][0..dv-1], alpha[0..m-1] and
 * acc[i][0..dv-1] are touched; any alignment.
 */
#include <immintrin.h>

#include "exp_avx2.h"
#include "kv_load_avx2.h"
#include "kernels_avx2.h"

enum { ROW_VECS = 8, PAIR_VECS = 4 };

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ROWS (1 or 2) rows x VECS full vectors (8 * VECS columns) of acc over
   keys 0..n-1. KIND, ROWS and VECS are compile-time constants. */
static ALWAYS_INLINE void pv_block(const int KIND, const int ROWS, const int VECS,
                                   int64_t n, const float *p, int64_t ldp,
                                   const void *v, int64_t ldv,
                                   const float *alpha, float *acc, int64_t ldacc,
                                   const void *next, int64_t width)
{
    __m256 sum[2][ROW_VECS];
#pragma GCC unroll 2
    for (int i = 0; i < ROWS; i++) {
        const __m256 scale = _mm256_broadcast_ss(alpha + i);
#pragma GCC unroll 8
        for (int c = 0; c < VECS; c++)
            sum[i][c] = _mm256_mul_ps(scale, _mm256_loadu_ps(acc + i * ldacc + 8 * c));
    }
    for (int64_t j = 0; j < n; j++) {
        if (next)
            qkv_prefetch_row(qkv_kind_at(KIND, next, j * ldv), width * qkv_kind_bytes(KIND));
        __m256 vv[ROW_VECS];
#pragma GCC unroll 8
        for (int c = 0; c < VECS; c++)
            vv[c] = qkv_load8_kv_avx2(KIND, v, j * ldv + 8 * c);
#pragma GCC unroll 2
        for (int i = 0; i < ROWS; i++) {
            const __m256 w = _mm256_broadcast_ss(p + i * ldp + j);
#pragma GCC unroll 8
            for (int c = 0; c < VECS; c++)
                sum[i][c] = _mm256_fmadd_ps(w, vv[c], sum[i][c]);
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < ROWS; i++)
#pragma GCC unroll 8
        for (int c = 0; c < VECS; c++)
            _mm256_storeu_ps(acc + i * ldacc + 8 * c, sum[i][c]);
}

/* One row, `vecs` (1..ROW_VECS) full vectors. */
static ALWAYS_INLINE void pv_one_row(const int KIND, int vecs, int64_t n,
                                     const float *p, const void *v, int64_t ldv,
                                     const float *alpha, float *acc,
                                     const void *next, int64_t width)
{
    switch (vecs) {
    case 8:  pv_block(KIND, 1, 8, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    case 7:  pv_block(KIND, 1, 7, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    case 6:  pv_block(KIND, 1, 6, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    case 5:  pv_block(KIND, 1, 5, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    case 4:  pv_block(KIND, 1, 4, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    case 3:  pv_block(KIND, 1, 3, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    case 2:  pv_block(KIND, 1, 2, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    default: pv_block(KIND, 1, 1, n, p, 0, v, ldv, alpha, acc, 0, next, width); break;
    }
}

/* Two rows, `vecs` (1..PAIR_VECS) full vectors. */
static ALWAYS_INLINE void pv_two_rows(const int KIND, int vecs, int64_t n,
                                      const float *p, int64_t ldp,
                                      const void *v, int64_t ldv,
                                      const float *alpha, float *acc, int64_t ldacc,
                                      const void *next, int64_t width)
{
    switch (vecs) {
    case 4:  pv_block(KIND, 2, 4, n, p, ldp, v, ldv, alpha, acc, ldacc, next, width); break;
    case 3:  pv_block(KIND, 2, 3, n, p, ldp, v, ldv, alpha, acc, ldacc, next, width); break;
    case 2:  pv_block(KIND, 2, 2, n, p, ldp, v, ldv, alpha, acc, ldacc, next, width); break;
    default: pv_block(KIND, 2, 1, n, p, ldp, v, ldv, alpha, acc, ldacc, next, width); break;
    }
}

/* The last cols < 8 columns of every row, through stack buffers. */
static ALWAYS_INLINE void pv_column_tail(const int KIND, int64_t m, int64_t n,
                                         int64_t cols, const float *p, int64_t ldp,
                                         const void *v, int64_t ldv,
                                         const float *alpha, float *acc,
                                         int64_t ldacc)
{
    const __m256i mask = qkv_tail_mask_avx2(cols);
    for (int64_t i = 0; i < m; i++) {
        float *acc_row = acc + i * ldacc;
        __m256 sum = _mm256_mul_ps(_mm256_broadcast_ss(alpha + i),
                                   qkv_tail_load_avx2(acc_row, mask));
        for (int64_t j = 0; j < n; j++)
            sum = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i * ldp + j),
                                  qkv_load_kv_avx2(KIND, v, j * ldv, cols), sum);
        qkv_tail_store_avx2(acc_row, mask, sum);
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
    const int64_t full_vecs = dv / 8;
    if (m == 1) {
        for (int64_t c = 0; c < full_vecs; c += ROW_VECS)
            pv_one_row(KIND, (int)(full_vecs - c < ROW_VECS ? full_vecs - c : ROW_VECS),
                       n, p, qkv_kind_at(KIND, v, 8 * c), ldv, alpha, acc + 8 * c,
                       c == 0 ? v_next : NULL, dv);
    } else {
        for (int64_t c = 0; c < full_vecs; c += PAIR_VECS) {
            const int vecs = (int)(full_vecs - c < PAIR_VECS ? full_vecs - c : PAIR_VECS);
            int64_t i = 0;
            for (; i + 2 <= m; i += 2)
                pv_two_rows(KIND, vecs, n, p + i * ldp, ldp, qkv_kind_at(KIND, v, 8 * c), ldv,
                            alpha + i, acc + i * ldacc + 8 * c, ldacc,
                            c == 0 && i == 0 ? v_next : NULL, dv);
            if (i < m)
                pv_one_row(KIND, vecs, n, p + i * ldp, qkv_kind_at(KIND, v, 8 * c), ldv,
                           alpha + i, acc + i * ldacc + 8 * c, NULL, dv);
        }
    }
    if (dv % 8)
        pv_column_tail(KIND, m, n, dv % 8, p, ldp, qkv_kind_at(KIND, v, 8 * full_vecs), ldv,
                       alpha, acc + 8 * full_vecs, ldacc);
}

void qkv_pv_stream_avx2(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
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
