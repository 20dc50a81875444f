/*
 * gemm_nt, AVX-512: C = A * B^T (+ bias), i.e.
 *   C[i*ldc + j] = sum_{p<k} A[i*lda + p] * B[j*ldb + p] (+ bias[j])
 * for i < m, j < n (see kernels.h). Twin: qkv_gemm_nt_scalar in
 * kernels/scalar/gemm_nt_scalar.c. Each dot product is accumulated with
 * FMAs in order p = 0..k-1, then the bias is added: the results agree with
 * the twin within float rounding (the FMA rounds once per step).
 *
 * 1. Pack: B is split into panels of 16 rows (16 output columns); each
 *    panel is transposed into scratch as 64-byte-aligned vectors
 *    panel[p*16 + jj] = B[(j0+jj)*ldb + p], through an in-register 16x16
 *    transpose. Rows of B past n are zero. scratch needs
 *    ceil(n/16)*16*k <= QKV_GEMM_SCRATCH_FLOATS(n, k) floats.
 * 2. Compute: a micro-kernel of up to 6 rows of A by 4 panels (64
 *    columns) keeps its 24 accumulators in zmm registers; per p it loads
 *    4 packed vectors and broadcasts one A element per row (10 loads per
 *    24 FMAs; 12x32 and 8x48 measured slower). The 4 panels (64*k floats)
 *    stay in L1 while all rows of A pass.
 *
 * qkv_pack_nt_avx512 is step 1 alone and qkv_gemm_packed_avx512 step 2
 * alone (the ops table's pack_nt and gemm_packed; twins
 * qkv_pack_nt_scalar and qkv_gemm_packed_scalar): with accumulate, the 24
 * accumulators start from C (masked loads) instead of zero, so a k split
 * into blocks sums in the same order as one call.
 *
 * Small m (m <= SMALL_M, as in decoding: one query row against a block of
 * keys): packing B would cost more than the product, so each dot product
 * is computed straight from the rows of A and B by qk_stream's F32 path
 * (kernels/avx512/qk_stream_avx512.c: 16 partial sums per (row, key) in a
 * zmm accumulator over p, reduced horizontally at the end), and the bias
 * added after. The summation order differs from the twin's: results agree
 * within float rounding. scratch is unused.
 *
 * Tails: B rows and A/C are read and written through masked loads and
 * stores of exactly the documented elements (k % 16 columns of B, n % 16
 * columns of C and bias). No alignment requirement on a, b, bias or c;
 * scratch is QKV_SCRATCH_ALIGN-aligned.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"

#define LANES QKV_AVX512_LANES
#define MICRO_ROWS 6
#define MICRO_PANELS 4
#define SMALL_M 8

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* ------------------------------------------------------------------ */
/* Packing                                                            */
/* ------------------------------------------------------------------ */

/* In place: row t of the result holds column t of the 16 x 16 input. */
static ALWAYS_INLINE void transpose16(__m512 r[16])
{
    __m512 a[16], b[16];
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* b[4g + c] holds rows 4g..4g+3 of columns c, c+4, c+8, c+12 in its
       four 128-bit lanes. */
    for (int g = 0; g < 16; g += 4) {
        const __m512d lo01 = _mm512_castps_pd(a[g]), hi01 = _mm512_castps_pd(a[g + 1]);
        const __m512d lo23 = _mm512_castps_pd(a[g + 2]), hi23 = _mm512_castps_pd(a[g + 3]);
        b[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo01, lo23));
        b[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo01, lo23));
        b[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi01, hi23));
        b[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi01, hi23));
    }
    for (int c = 0; c < 4; c++) {
        const __m512 u0 = _mm512_shuffle_f32x4(b[c], b[c + 4], 0x44);
        const __m512 u1 = _mm512_shuffle_f32x4(b[c], b[c + 4], 0xee);
        const __m512 v0 = _mm512_shuffle_f32x4(b[c + 8], b[c + 12], 0x44);
        const __m512 v1 = _mm512_shuffle_f32x4(b[c + 8], b[c + 12], 0xee);
        r[c] = _mm512_shuffle_f32x4(u0, v0, 0x88);
        r[c + 4] = _mm512_shuffle_f32x4(u0, v0, 0xdd);
        r[c + 8] = _mm512_shuffle_f32x4(u1, v1, 0x88);
        r[c + 12] = _mm512_shuffle_f32x4(u1, v1, 0xdd);
    }
}

/* A full 16 x 16 block: dst[t*16 + j] = b[j*ldb + t]. Constant indices
   only, so the 16 vectors never leave the registers. */
static ALWAYS_INLINE void pack_full_block(const float *b, int64_t ldb, float *dst)
{
    __m512 r[16];
    for (int j = 0; j < 16; j++)
        r[j] = _mm512_loadu_ps(b + j * ldb);
    transpose16(r);
    for (int t = 0; t < 16; t++)
        _mm512_store_ps(dst + t * LANES, r[t]);
}

/* A partial block: rows j < rows and columns t < width of b; rows past
   `rows` are packed as zeros, columns past `width` are not stored. */
static void pack_partial_block(const float *b, int64_t ldb, int64_t rows,
                               int64_t width, float *dst)
{
    const __mmask16 cols = qkv_lanes_avx512(width);
    __m512 r[16];
    for (int j = 0; j < 16; j++)
        r[j] = j < rows ? _mm512_maskz_loadu_ps(cols, b + j * ldb)
                        : _mm512_setzero_ps();
    transpose16(r);
    for (int t = 0; t < width; t++)
        _mm512_store_ps(dst + t * LANES, r[t]);
}

/* One panel: rows j < rows (<= 16) of B, all k columns, transposed to
   dst[p*16 + j]; rows past `rows` are zero. */
static void pack_panel(const float *b, int64_t ldb, int64_t rows, int64_t k,
                       float *dst)
{
    int64_t p0 = 0;
    if (rows == LANES)
        for (; p0 + LANES <= k; p0 += LANES)
            pack_full_block(b + p0, ldb, dst + p0 * LANES);
    for (; p0 < k; p0 += LANES) {
        const int64_t width = k - p0 < LANES ? k - p0 : LANES;
        pack_partial_block(b + p0, ldb, rows, width, dst + p0 * LANES);
    }
}

/* ------------------------------------------------------------------ */
/* Micro-kernel                                                       */
/* ------------------------------------------------------------------ */

/* C rows 0..ROWS-1, columns 0..cols-1 (cols <= PANELS*16) from ROWS rows
   of A and PANELS packed panels (panel_floats apart); with accumulate the
   sums start from C instead of zero. ROWS and PANELS are compile-time
   constants at every call, so acc lives in registers. */
static ALWAYS_INLINE void micro_tile(const int ROWS, const int PANELS,
                                     int64_t k, const float *a, int64_t lda,
                                     const float *panel, int64_t panel_floats,
                                     const float *bias, int accumulate,
                                     float *c, int64_t ldc, int64_t cols)
{
    __m512 acc[MICRO_ROWS][MICRO_PANELS];
    for (int v = 0; v < PANELS; v++) {
        const __mmask16 lanes = qkv_lanes_avx512(cols - v * LANES);
        for (int i = 0; i < ROWS; i++)
            acc[i][v] = accumulate
                ? _mm512_maskz_loadu_ps(lanes, c + i * ldc + v * LANES)
                : _mm512_setzero_ps();
    }

    for (int64_t p = 0; p < k; p++) {
        __m512 bv[MICRO_PANELS];
        for (int v = 0; v < PANELS; v++)
            bv[v] = _mm512_load_ps(panel + v * panel_floats + p * LANES);
        for (int i = 0; i < ROWS; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * lda + p]);
            for (int v = 0; v < PANELS; v++)
                acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
        }
    }

    for (int v = 0; v < PANELS; v++) {
        const __mmask16 lanes = qkv_lanes_avx512(cols - v * LANES);
        const __m512 bias_v = bias ? _mm512_maskz_loadu_ps(lanes, bias + v * LANES)
                                   : _mm512_setzero_ps();
        for (int i = 0; i < ROWS; i++) {
            const __m512 out = bias ? _mm512_add_ps(acc[i][v], bias_v) : acc[i][v];
            _mm512_mask_storeu_ps(c + i * ldc + v * LANES, lanes, out);
        }
    }
}

/* Instantiates micro_tile for a run-time row count (1..MICRO_ROWS). */
static ALWAYS_INLINE void micro_rows(int rows, const int PANELS, int64_t k,
                                     const float *a, int64_t lda,
                                     const float *panel, int64_t panel_floats,
                                     const float *bias, int accumulate,
                                     float *c, int64_t ldc, int64_t cols)
{
    switch (rows) {
    case 6:  micro_tile(6, PANELS, k, a, lda, panel, panel_floats, bias, accumulate, c, ldc, cols); break;
    case 5:  micro_tile(5, PANELS, k, a, lda, panel, panel_floats, bias, accumulate, c, ldc, cols); break;
    case 4:  micro_tile(4, PANELS, k, a, lda, panel, panel_floats, bias, accumulate, c, ldc, cols); break;
    case 3:  micro_tile(3, PANELS, k, a, lda, panel, panel_floats, bias, accumulate, c, ldc, cols); break;
    case 2:  micro_tile(2, PANELS, k, a, lda, panel, panel_floats, bias, accumulate, c, ldc, cols); break;
    default: micro_tile(1, PANELS, k, a, lda, panel, panel_floats, bias, accumulate, c, ldc, cols); break;
    }
}

/* All rows of C for one block of `cols` columns (1 to 4 panels). */
static void column_block(int panels, int64_t m, int64_t k,
                         const float *a, int64_t lda,
                         const float *panel, int64_t panel_floats,
                         const float *bias, int accumulate,
                         float *c, int64_t ldc, int64_t cols)
{
    for (int64_t i0 = 0; i0 < m; i0 += MICRO_ROWS) {
        const int rows = (int)(m - i0 < MICRO_ROWS ? m - i0 : MICRO_ROWS);
        switch (panels) {
        case 4: micro_rows(rows, 4, k, a + i0 * lda, lda, panel, panel_floats, bias, accumulate, c + i0 * ldc, ldc, cols); break;
        case 3: micro_rows(rows, 3, k, a + i0 * lda, lda, panel, panel_floats, bias, accumulate, c + i0 * ldc, ldc, cols); break;
        case 2: micro_rows(rows, 2, k, a + i0 * lda, lda, panel, panel_floats, bias, accumulate, c + i0 * ldc, ldc, cols); break;
        default: micro_rows(rows, 1, k, a + i0 * lda, lda, panel, panel_floats, bias, accumulate, c + i0 * ldc, ldc, cols); break;
        }
    }
}

/* C = A B^T (+ bias) for m <= SMALL_M: the F32 dot products of qk_stream
   (straight from the rows, keys outer, so each row of B is read from
   memory once), then the bias added to each finished dot product. */
static void gemm_small_m(int64_t m, int64_t n, int64_t k,
                         const float *a, int64_t lda,
                         const float *b, int64_t ldb,
                         const float *bias, float *c, int64_t ldc)
{
    qkv_qk_stream_avx512(QKV_F32, m, n, k, a, lda, b, ldb, c, ldc, NULL);
    for (int64_t i = 0; bias && i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] += bias[j];
}

void qkv_gemm_nt_avx512(int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda,
                        const float *b, int64_t ldb,
                        const float *bias,
                        float *c, int64_t ldc, float *scratch)
{
    if (m <= SMALL_M) {
        gemm_small_m(m, n, k, a, lda, b, ldb, bias, c, ldc);
        return;
    }
    qkv_pack_nt_avx512(n, k, b, ldb, scratch);
    qkv_gemm_packed_avx512(m, n, k, a, lda, scratch, bias, 0, c, ldc);
}

/* ------------------------------------------------------------------ */
/* The two halves, for callers that reuse a packed block              */
/* ------------------------------------------------------------------ */

/* Layout: ceil(n/16) panels of k*16 floats, panel q at packed + q*k*16,
   panel[p*16 + jj] = B[(16q + jj)*ldb + p], zero past row n. */
void qkv_pack_nt_avx512(int64_t n, int64_t k, const float *b, int64_t ldb,
                        float *packed)
{
    const int64_t panel_floats = k * LANES;
    for (int64_t j0 = 0; j0 < n; j0 += LANES) {
        const int64_t rows = n - j0 < LANES ? n - j0 : LANES;
        pack_panel(b + j0 * ldb, ldb, rows, k, packed + (j0 / LANES) * panel_floats);
    }
}

/* Blocks of 64 columns (4 panels, L1-resident for k <= 128) outer, all
   rows of A inner, micro-tiles of 6 x 64. */
void qkv_gemm_packed_avx512(int64_t m, int64_t n, int64_t k,
                            const float *a, int64_t lda, const float *packed,
                            const float *bias, int accumulate,
                            float *c, int64_t ldc)
{
    const int64_t panel_floats = k * LANES;
    const int64_t block = MICRO_PANELS * LANES;
    for (int64_t j0 = 0; j0 < n; j0 += block) {
        const int64_t cols = n - j0 < block ? n - j0 : block;
        const int panels = (int)((cols + LANES - 1) / LANES);
        column_block(panels, m, k, a, lda, packed + (j0 / LANES) * panel_floats,
                     panel_floats, bias ? bias + j0 : NULL, accumulate, c + j0,
                     ldc, cols);
    }
}
