/*
 * gemm_nt, AVX2 + FMA: C = A * B^T (+ bias), i.e.
 *
 *   C[i][j] = sum_{p<k} A[i][p] * B[j][p]  (+ bias[j])
 *
 * for i < m, j < n (see kernels.h). Each C[i][j] is accumulated in order
 * p = 0..k-1 with fused multiply-adds, then the bias is added, as in the
 * scalar twin.
 *
 * B is first packed into scratch, transposed, in panels of 16 rows:
 * panel[p*16 + jj] = B[j0 + jj][p], zero-filled past row n (16 * k floats
 * per panel, at most QKV_GEMM_SCRATCH_FLOATS(n, k) in all). Full panels
 * are transposed 8 x 8 at a time with in-lane AVX shuffles. The micro-kernel then
 * keeps a 6 x 16 block of C in 12 ymm registers: per p, two aligned
 * loads of the panel, 6 broadcasts of A, 12 FMAs. A last block of fewer
 * than 6 rows re-reads its last A row in the missing slots and stores
 * only the real rows; a last panel of fewer than 16 columns stores with
 * masks. Exactly A[i][0..k-1], B[j][0..k-1], bias[0..n-1] are read and
 * C[i][0..n-1] written; A, B, bias and C may have any alignment (the
 * scratch is QKV_SCRATCH_ALIGN-aligned).
 *
 * qkv_pack_nt_avx2 (all panels) and qkv_gemm_packed_avx2 (the micro-kernel
 * over them; with accumulate its 12 accumulators start from C, so a k
 * split into blocks sums in the same order as one call) are the two halves
 * on their own, for callers that reuse a packed block; twins
 * qkv_pack_nt_scalar and qkv_gemm_packed_scalar.
 *
 * Small m (m <= SMALL_M, as in decoding): packing B would cost more than
 * the product, so each dot product is computed straight from the rows of A
 * and B by qk_stream's F32 path (kernels/avx2/qk_stream_avx2.c: 8 partial
 * sums per (row, key) in a ymm accumulator over p, reduced horizontally at
 * the end), and the bias added after. The summation order differs from the
 * twin's: results agree within float rounding. scratch is unused.
 *
 * Scalar twin: qkv_gemm_nt_scalar in kernels/scalar/gemm_nt_scalar.c.
 */
#include <immintrin.h>

#include "exp_avx2.h"
#include "kernels_avx2.h"

enum { MR = 6, NR = 16, SMALL_M = 8 };

/* Loops over the rows of a block are unrolled by pragma: GCC 12 keeps an
   array of accumulators in registers only when every index is a constant
   early on, and otherwise spills it to the stack on every step. */

/* An 8 x 8 block of B (row stride ldb), transposed: column q of the block
   goes to dst + q * NR. Each register is loaded with rows i and i + 4 in
   its two 128-bit lanes, so one in-lane 4 x 4 transpose per half yields
   whole columns and no lane-crossing shuffle is needed. */
static void transpose_8x8(const float *b, int64_t ldb, float *dst)
{
    for (int half = 0; half < 8; half += 4) {
        __m256 r[4], t[4];
        for (int i = 0; i < 4; i++)
            r[i] = _mm256_insertf128_ps(
                _mm256_castps128_ps256(_mm_loadu_ps(b + i * ldb + half)),
                _mm_loadu_ps(b + (i + 4) * ldb + half), 1);
        t[0] = _mm256_unpacklo_ps(r[0], r[1]);
        t[1] = _mm256_unpackhi_ps(r[0], r[1]);
        t[2] = _mm256_unpacklo_ps(r[2], r[3]);
        t[3] = _mm256_unpackhi_ps(r[2], r[3]);
        _mm256_store_ps(dst + (half + 0) * NR, _mm256_shuffle_ps(t[0], t[2], 0x44));
        _mm256_store_ps(dst + (half + 1) * NR, _mm256_shuffle_ps(t[0], t[2], 0xee));
        _mm256_store_ps(dst + (half + 2) * NR, _mm256_shuffle_ps(t[1], t[3], 0x44));
        _mm256_store_ps(dst + (half + 3) * NR, _mm256_shuffle_ps(t[1], t[3], 0xee));
    }
}

/* One panel: rows j0 .. j0+rows-1 of B (rows <= NR), transposed. */
static void pack_panel(int64_t rows, int64_t k, const float *b, int64_t ldb,
                       float *panel)
{
    int64_t p = 0;
    if (rows == NR) {
        for (; p + 8 <= k; p += 8) {
            transpose_8x8(b + p, ldb, panel + p * NR);
            transpose_8x8(b + 8 * ldb + p, ldb, panel + p * NR + 8);
        }
    }
    for (; p < k; p++)
        for (int64_t jj = 0; jj < NR; jj++)
            panel[p * NR + jj] = jj < rows ? b[jj * ldb + p] : 0.0f;
}

/* Stores one row of a block: 16 sums (plus bias) into c[0..cols-1]. */
static void store_row(__m256 lo, __m256 hi, const float *bias, int64_t cols,
                      float *c)
{
    if (cols == NR) {
        if (bias) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(bias));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(bias + 8));
        }
        _mm256_storeu_ps(c, lo);
        _mm256_storeu_ps(c + 8, hi);
        return;
    }
    const __m256i mask_lo = qkv_tail_mask_avx2(cols < 8 ? cols : 8);
    const __m256i mask_hi = qkv_tail_mask_avx2(cols > 8 ? cols - 8 : 0);
    if (bias) {
        lo = _mm256_add_ps(lo, qkv_tail_load_avx2(bias, mask_lo));
        hi = _mm256_add_ps(hi, qkv_tail_load_avx2(bias + 8, mask_hi));
    }
    qkv_tail_store_avx2(c, mask_lo, lo);
    qkv_tail_store_avx2(c + 8, mask_hi, hi);
}

/* Loads one row of a block, c[0..cols-1], into lo and hi (zero past cols). */
static void load_row(const float *c, int64_t cols, __m256 *lo, __m256 *hi)
{
    if (cols == NR) {
        *lo = _mm256_loadu_ps(c);
        *hi = _mm256_loadu_ps(c + 8);
        return;
    }
    *lo = qkv_tail_load_avx2(c, qkv_tail_mask_avx2(cols < 8 ? cols : 8));
    *hi = qkv_tail_load_avx2(c + 8, qkv_tail_mask_avx2(cols > 8 ? cols - 8 : 0));
}

/* C[0..rows-1][0..cols-1] = A[0..rows-1] * panel (+ bias); with accumulate
   the sums start from C instead of zero. */
static void gemm_block(int64_t rows, int64_t cols, int64_t k,
                       const float *a, int64_t lda, const float *panel,
                       const float *bias, int accumulate, float *c, int64_t ldc)
{
    const float *a_row[MR];
    __m256 lo[MR], hi[MR];
    #pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        const int64_t row = r < rows ? r : rows - 1;
        a_row[r] = a + row * lda;
        if (accumulate) {
            load_row(c + row * ldc, cols, &lo[r], &hi[r]);
        } else {
            lo[r] = _mm256_setzero_ps();
            hi[r] = _mm256_setzero_ps();
        }
    }
    /* Unrolled so that loop overhead takes fewer issue slots from the
       FMA ports. */
    #pragma GCC unroll 4
    for (int64_t p = 0; p < k; p++) {
        const __m256 b_lo = _mm256_load_ps(panel + p * NR);
        const __m256 b_hi = _mm256_load_ps(panel + p * NR + 8);
        #pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 x = _mm256_broadcast_ss(a_row[r] + p);
            lo[r] = _mm256_fmadd_ps(x, b_lo, lo[r]);
            hi[r] = _mm256_fmadd_ps(x, b_hi, hi[r]);
        }
    }
    #pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
        if (r < rows)
            store_row(lo[r], hi[r], bias, cols, c + r * ldc);
}

/* All m rows of C for one panel of `cols` (<= 16) columns. */
static void panel_rows(int64_t m, int64_t cols, int64_t k,
                       const float *a, int64_t lda, const float *panel,
                       const float *bias, int accumulate, float *c, int64_t ldc)
{
    for (int64_t i0 = 0; i0 < m; i0 += MR)
        gemm_block(m - i0 < MR ? m - i0 : MR, cols, k, a + i0 * lda, lda,
                   panel, bias, accumulate, c + i0 * ldc, ldc);
}

/* C = A B^T (+ bias) for m <= SMALL_M: the F32 dot products of qk_stream
   (straight from the rows, keys outer, so each row of B is read from
   memory once), then the bias added to each finished dot product. */
static void gemm_small_m(int64_t m, int64_t n, int64_t k,
                         const float *a, int64_t lda,
                         const float *b, int64_t ldb,
                         const float *bias, float *c, int64_t ldc)
{
    qkv_qk_stream_avx2(QKV_F32, m, n, k, a, lda, b, ldb, c, ldc, NULL);
    for (int64_t i = 0; bias && i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] += bias[j];
}

void qkv_gemm_nt_avx2(int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda,
                      const float *b, int64_t ldb,
                      const float *bias,
                      float *c, int64_t ldc, float *scratch)
{
    if (m <= SMALL_M) {
        gemm_small_m(m, n, k, a, lda, b, ldb, bias, c, ldc);
        return;
    }
    /* Each panel packed just before its use, so it is in L1 for all rows. */
    for (int64_t j0 = 0; j0 < n; j0 += NR) {
        const int64_t cols = n - j0 < NR ? n - j0 : NR;
        float *panel = scratch + j0 * k;
        pack_panel(cols, k, b + j0 * ldb, ldb, panel);
        panel_rows(m, cols, k, a, lda, panel, bias ? bias + j0 : NULL, 0,
                   c + j0, ldc);
    }
}

/* Layout: ceil(n/16) panels of 16*k floats, panel q at packed + 16*q*k,
   panel[p*16 + jj] = B[16q + jj][p], zero past row n. */
void qkv_pack_nt_avx2(int64_t n, int64_t k, const float *b, int64_t ldb,
                      float *packed)
{
    for (int64_t j0 = 0; j0 < n; j0 += NR)
        pack_panel(n - j0 < NR ? n - j0 : NR, k, b + j0 * ldb, ldb, packed + j0 * k);
}

void qkv_gemm_packed_avx2(int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda, const float *packed,
                          const float *bias, int accumulate,
                          float *c, int64_t ldc)
{
    for (int64_t j0 = 0; j0 < n; j0 += NR)
        panel_rows(m, n - j0 < NR ? n - j0 : NR, k, a, lda, packed + j0 * k,
                   bias ? bias + j0 : NULL, accumulate, c + j0, ldc);
}
