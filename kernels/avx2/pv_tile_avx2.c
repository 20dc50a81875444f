/*
 * pv_tile, AVX2 + FMA: acc = diag(alpha) * acc + P * V, i.e.
 *
 *   acc[i][c] = alpha[i] * acc[i][c] + sum_{j<n} p[i][j] * v[j][c]
 *
 * for i < m, c < dv (see kernels.h). Like the scalar twin, each
 * accumulator is rescaled once and then the rows of V are added in order
 * j = 0..n-1 (here with fused multiply-adds), whatever the values, so a
 * zero weight still multiplies its V row.
 *
 * Blocking: 6 rows x 16 columns of acc live in 12 ymm registers while j
 * runs over the whole tile; each step loads 16 floats of V row j,
 * broadcasts 6 weights and issues 12 FMAs. A last block of fewer than 6
 * rows re-reads its last row in the missing slots and stores only the real
 * rows. A single row (m = 1, decoding) instead takes 64 columns per pass
 * in 8 ymm registers (16 for the rest), so each row of V, streamed from
 * memory, is loaded once and no missing row is computed. When dv is not a
 * multiple of 16, the last dv % 16 columns take a
 * row-by-row path with masked loads and stores. Exactly p[i][0..n-1],
 * v[j][0..dv-1], alpha[0..m-1] and acc[i][0..dv-1] are touched; any
 * alignment.
 *
 * Scalar twin: qkv_pv_tile_scalar in kernels/scalar/pv_tile_scalar.c.
 */
#include <immintrin.h>

#include "exp_avx2.h"
#include "kernels_avx2.h"

enum { PV_ROWS = 6, PV_COLS = 16 };

/* Loops over the rows of a block are unrolled by pragma: GCC 12 keeps an
   array of accumulators in registers only when every index is a constant
   early on, and otherwise spills it to the stack on every step. */

/* acc[0..rows-1][0..15] of one block (rows <= PV_ROWS). */
static void pv_block(int64_t rows, int64_t n, const float *p, int64_t ldp,
                     const float *v, int64_t ldv, const float *alpha,
                     float *acc, int64_t ldacc)
{
    const float *p_row[PV_ROWS];
    float *acc_row[PV_ROWS];
    __m256 lo[PV_ROWS], hi[PV_ROWS];
    #pragma GCC unroll 6
    for (int r = 0; r < PV_ROWS; r++) {
        const int64_t src = r < rows ? r : rows - 1;
        p_row[r] = p + src * ldp;
        acc_row[r] = acc + src * ldacc;
        const __m256 scale = _mm256_broadcast_ss(alpha + src);
        lo[r] = _mm256_mul_ps(scale, _mm256_loadu_ps(acc_row[r]));
        hi[r] = _mm256_mul_ps(scale, _mm256_loadu_ps(acc_row[r] + 8));
    }
    /* Unrolled so that loop overhead takes fewer issue slots from the
       FMA ports. */
    #pragma GCC unroll 4
    for (int64_t j = 0; j < n; j++) {
        const __m256 v_lo = _mm256_loadu_ps(v + j * ldv);
        const __m256 v_hi = _mm256_loadu_ps(v + j * ldv + 8);
        #pragma GCC unroll 6
        for (int r = 0; r < PV_ROWS; r++) {
            const __m256 w = _mm256_broadcast_ss(p_row[r] + j);
            lo[r] = _mm256_fmadd_ps(w, v_lo, lo[r]);
            hi[r] = _mm256_fmadd_ps(w, v_hi, hi[r]);
        }
    }
    #pragma GCC unroll 6
    for (int r = 0; r < PV_ROWS; r++) {
        if (r < rows) {
            _mm256_storeu_ps(acc_row[r], lo[r]);
            _mm256_storeu_ps(acc_row[r] + 8, hi[r]);
        }
    }
}

/* Columns 0..8*VECS-1 of one row: acc = alpha * acc + sum_j p[j] v[j]. */
static inline __attribute__((always_inline))
void pv_row_cols(const int VECS, int64_t n, const float *p, const float *v,
                 int64_t ldv, float alpha, float *acc)
{
    __m256 sum[8];
    const __m256 scale = _mm256_set1_ps(alpha);
    #pragma GCC unroll 8
    for (int c = 0; c < VECS; c++)
        sum[c] = _mm256_mul_ps(scale, _mm256_loadu_ps(acc + 8 * c));
    for (int64_t j = 0; j < n; j++) {
        const __m256 w = _mm256_broadcast_ss(p + j);
        #pragma GCC unroll 8
        for (int c = 0; c < VECS; c++)
            sum[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + j * ldv + 8 * c), sum[c]);
    }
    #pragma GCC unroll 8
    for (int c = 0; c < VECS; c++)
        _mm256_storeu_ps(acc + 8 * c, sum[c]);
}

/* Columns 0..cols-1 (a multiple of 16) of a single row. */
static void pv_one_row(int64_t n, int64_t cols, const float *p, const float *v,
                       int64_t ldv, float alpha, float *acc)
{
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64)
        pv_row_cols(8, n, p, v + c, ldv, alpha, acc + c);
    for (; c < cols; c += PV_COLS)
        pv_row_cols(2, n, p, v + c, ldv, alpha, acc + c);
}

/* The last cols < 16 columns of every row, 8 at a time with masks. */
static void pv_column_tail(int64_t m, int64_t n, int64_t cols,
                           const float *p, int64_t ldp,
                           const float *v, int64_t ldv,
                           const float *alpha, float *acc, int64_t ldacc)
{
    for (int64_t c = 0; c < cols; c += 8) {
        const __m256i mask = qkv_tail_mask_avx2(cols - c < 8 ? cols - c : 8);
        for (int64_t i = 0; i < m; i++) {
            float *acc_row = acc + i * ldacc + c;
            __m256 sum = _mm256_mul_ps(_mm256_broadcast_ss(alpha + i),
                                       qkv_tail_load_avx2(acc_row, mask));
            for (int64_t j = 0; j < n; j++)
                sum = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i * ldp + j),
                                      qkv_tail_load_avx2(v + j * ldv + c, mask),
                                      sum);
            qkv_tail_store_avx2(acc_row, mask, sum);
        }
    }
}

void qkv_pv_tile_avx2(int64_t m, int64_t n, int64_t dv,
                      const float *p, int64_t ldp,
                      const float *v, int64_t ldv,
                      const float *alpha, float *acc, int64_t ldacc)
{
    const int64_t full_cols = dv / PV_COLS * PV_COLS;
    if (m == 1 && full_cols > 0)
        pv_one_row(n, full_cols, p, v, ldv, alpha[0], acc);
    for (int64_t i = 0; i < m && m > 1; i += PV_ROWS)
        for (int64_t c = 0; c < full_cols; c += PV_COLS)
            pv_block(m - i < PV_ROWS ? m - i : PV_ROWS, n,
                     p + i * ldp, ldp, v + c, ldv, alpha + i,
                     acc + i * ldacc + c, ldacc);
    if (full_cols < dv)
        pv_column_tail(m, n, dv - full_cols, p, ldp, v + full_cols, ldv,
                       alpha, acc + full_cols, ldacc);
}
