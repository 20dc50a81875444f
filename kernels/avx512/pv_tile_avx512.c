/*
 * pv_tile, AVX-512: acc = diag(alpha) * acc + P * V, i.e.
 *   acc[i*ldacc + c] = alpha[i] * acc[i*ldacc + c]
 *                      + sum_{j<n} p[i*ldp + j] * v[j*ldv + c]
 * for i < m, c < dv (see kernels.h). Twin: qkv_pv_tile_scalar in
 * kernels/scalar/pv_tile_scalar.c: rescale first, then the rows of V in
 * order j = 0..n-1 (here each step is one FMA, so results agree within
 * float rounding). Zero weights are multiplied in like in the twin.
 *
 * Register blocking: a block of up to PV_ROWS rows of acc by up to 64
 * columns (4 zmm per row, 24 accumulators) is loaded, updated with a chunk
 * of PV_KEYS rows of V (4 loads and PV_ROWS broadcasts of P per j) and
 * stored; the chunk of V stays in L1 while every row block passes. acc is
 * rescaled by alpha when it is loaded for the first chunk, so each element
 * still sees alpha * acc first and then the keys in order.
 *
 * A single row (m = 1, decoding) takes up to 128 columns per pass instead
 * (8 accumulators), so each row of V, streamed from memory, is loaded once.
 *
 * Tails: dv % 16 columns use masked loads of V and masked loads/stores of
 * acc; nothing outside the m x dv block of acc is touched, and V is read
 * only in its first dv columns. No alignment requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"

#define LANES QKV_AVX512_LANES
#define PV_ROWS 6
#define PV_VECS 4
#define ROW_M 1       /* up to this many rows: pv_one_row */
#define ROW_VECS 8
#define PV_KEYS 128   /* keys per chunk: 128 rows of V (32 KB at dv = 64) */

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ROWS x (VECS*16 columns, the last one `last` lanes wide) of acc, over
   keys 0..n-1; acc is first scaled by alpha unless alpha is NULL. ROWS and
   VECS are compile-time constants at every call. */
static ALWAYS_INLINE void pv_block(const int ROWS, const int VECS, int64_t n,
                                   const float *p, int64_t ldp,
                                   const float *v, int64_t ldv,
                                   const float *alpha, float *acc,
                                   int64_t ldacc, __mmask16 last)
{
    __m512 sum[PV_ROWS][PV_VECS];
    for (int i = 0; i < ROWS; i++)
        for (int c = 0; c < VECS; c++) {
            const __mmask16 lanes = c == VECS - 1 ? last : (__mmask16)0xffff;
            sum[i][c] = _mm512_maskz_loadu_ps(lanes, acc + i * ldacc + c * LANES);
        }
    if (alpha)
        for (int i = 0; i < ROWS; i++) {
            const __m512 a = _mm512_set1_ps(alpha[i]);
            for (int c = 0; c < VECS; c++)
                sum[i][c] = _mm512_mul_ps(a, sum[i][c]);
        }
    for (int64_t j = 0; j < n; j++) {
        __m512 vv[PV_VECS];
        for (int c = 0; c < VECS; c++) {
            const __mmask16 lanes = c == VECS - 1 ? last : (__mmask16)0xffff;
            vv[c] = _mm512_maskz_loadu_ps(lanes, v + j * ldv + c * LANES);
        }
        for (int i = 0; i < ROWS; i++) {
            const __m512 w = _mm512_set1_ps(p[i * ldp + j]);
            for (int c = 0; c < VECS; c++)
                sum[i][c] = _mm512_fmadd_ps(w, vv[c], sum[i][c]);
        }
    }
    for (int i = 0; i < ROWS; i++)
        for (int c = 0; c < VECS; c++) {
            const __mmask16 lanes = c == VECS - 1 ? last : (__mmask16)0xffff;
            _mm512_mask_storeu_ps(acc + i * ldacc + c * LANES, lanes, sum[i][c]);
        }
}

/* Instantiates pv_block for a run-time row count (1..PV_ROWS). */
static ALWAYS_INLINE void pv_rows(int rows, const int VECS, int64_t n,
                                  const float *p, int64_t ldp,
                                  const float *v, int64_t ldv,
                                  const float *alpha, float *acc,
                                  int64_t ldacc, __mmask16 last)
{
    switch (rows) {
    case 6:  pv_block(6, VECS, n, p, ldp, v, ldv, alpha, acc, ldacc, last); break;
    case 5:  pv_block(5, VECS, n, p, ldp, v, ldv, alpha, acc, ldacc, last); break;
    case 4:  pv_block(4, VECS, n, p, ldp, v, ldv, alpha, acc, ldacc, last); break;
    case 3:  pv_block(3, VECS, n, p, ldp, v, ldv, alpha, acc, ldacc, last); break;
    case 2:  pv_block(2, VECS, n, p, ldp, v, ldv, alpha, acc, ldacc, last); break;
    default: pv_block(1, VECS, n, p, ldp, v, ldv, alpha, acc, ldacc, last); break;
    }
}

/* All m rows for one block of columns that spans `vecs` vectors. */
static void pv_columns(int vecs, int64_t m, int64_t n,
                       const float *p, int64_t ldp,
                       const float *v, int64_t ldv,
                       const float *alpha, float *acc, int64_t ldacc,
                       __mmask16 last)
{
    for (int64_t i0 = 0; i0 < m; i0 += PV_ROWS) {
        const int rows = (int)(m - i0 < PV_ROWS ? m - i0 : PV_ROWS);
        const float *p_blk = p + i0 * ldp;
        const float *alpha_blk = alpha ? alpha + i0 : NULL;
        float *acc_blk = acc + i0 * ldacc;
        switch (vecs) {
        case 4:  pv_rows(rows, 4, n, p_blk, ldp, v, ldv, alpha_blk, acc_blk, ldacc, last); break;
        case 3:  pv_rows(rows, 3, n, p_blk, ldp, v, ldv, alpha_blk, acc_blk, ldacc, last); break;
        case 2:  pv_rows(rows, 2, n, p_blk, ldp, v, ldv, alpha_blk, acc_blk, ldacc, last); break;
        default: pv_rows(rows, 1, n, p_blk, ldp, v, ldv, alpha_blk, acc_blk, ldacc, last); break;
        }
    }
}

/* One row (decoding): acc row i over keys 0..n-1 for up to 128 columns
   at once (cols of them), so each row of V is loaded exactly once. */
static void pv_one_row(int64_t n, int64_t cols, const float *p,
                       const float *v, int64_t ldv, float alpha, float *acc)
{
    const int vecs = (int)((cols + LANES - 1) / LANES);
    __mmask16 lanes[ROW_VECS];
    __m512 sum[ROW_VECS];
    for (int c = 0; c < ROW_VECS; c++) {
        lanes[c] = c < vecs ? qkv_lanes_avx512(cols - c * LANES) : 0;
        sum[c] = _mm512_mul_ps(_mm512_set1_ps(alpha),
                               _mm512_maskz_loadu_ps(lanes[c], acc + c * LANES));
    }
    for (int64_t j = 0; j < n; j++) {
        const __m512 w = _mm512_set1_ps(p[j]);
        for (int c = 0; c < ROW_VECS; c++)
            sum[c] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(lanes[c], v + j * ldv + c * LANES),
                                     sum[c]);
    }
    for (int c = 0; c < ROW_VECS; c++)
        _mm512_mask_storeu_ps(acc + c * LANES, lanes[c], sum[c]);
}

void qkv_pv_tile_avx512(int64_t m, int64_t n, int64_t dv,
                        const float *p, int64_t ldp,
                        const float *v, int64_t ldv,
                        const float *alpha, float *acc, int64_t ldacc)
{
    if (m <= ROW_M) {
        /* Decoding: V streams from memory once; whole rows per pass. */
        for (int64_t i = 0; i < m; i++)
            for (int64_t c0 = 0; c0 < dv; c0 += ROW_VECS * LANES)
                pv_one_row(n, dv - c0 < ROW_VECS * LANES ? dv - c0 : ROW_VECS * LANES,
                           p + i * ldp, v + c0, ldv, alpha[i], acc + i * ldacc + c0);
        return;
    }
    const int64_t block = PV_VECS * LANES;
    for (int64_t c0 = 0; c0 < dv; c0 += block) {
        const int64_t cols = dv - c0 < block ? dv - c0 : block;
        const int vecs = (int)((cols + LANES - 1) / LANES);
        const __mmask16 last = qkv_lanes_avx512(cols - (vecs - 1) * LANES);
        /* Keys in chunks whose rows of V stay in L1 while every row block
           passes; alpha scales acc once, before the first chunk. */
        for (int64_t j0 = 0; j0 < n; j0 += PV_KEYS) {
            const int64_t keys = n - j0 < PV_KEYS ? n - j0 : PV_KEYS;
            pv_columns(vecs, m, keys, p + j0, ldp, v + j0 * ldv + c0, ldv,
                       j0 == 0 ? alpha : NULL, acc + c0, ldacc, last);
        }
    }
}
