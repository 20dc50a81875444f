/*
 * qk_stream, AVX-512: C = A * float(B)^T with B stored as F32, F16 or
 * BF16, i.e.
 *   C[i*ldc + j] = sum_{p<k} A[i*lda + p] * float(B[j*ldb + p])
 * for i < m, j < n (see kernels.h). Twin: qkv_qk_stream_scalar in
 * kernels/scalar/qk_stream_scalar.c.
 *
 * The small-m path of gemm_nt (kernels/avx512/gemm_nt_avx512.c) with B
 * read in its storage kind: each dot product keeps 16 partial sums in a
 * zmm accumulator over p, fed by 16 elements of a row of B (halves
 * widened in registers, exactly: kv_load_avx512.h), and is reduced
 * horizontally at the end.
 * A step takes 4 keys x up to 4 rows; keys are the outer loop, so each row
 * of B is read from memory once and, for m > 4, read (and widened) again
 * from L1 for the next 4 rows. The summation order differs from the twin's: results
 * agree within float rounding.
 *
 * b_next: before each group of keys, the same keys' rows of the next
 * call are asked for (stream_common.h), so that memory keeps streaming
 * while this call computes.
 *
 * Tails: the last k % 16 columns of A and B are read with masked loads
 * (full vectors with plain ones, which the widening takes as operand)
 * (nothing past A[i][k-1] or B[j][k-1]); n % 4 keys go one at a time;
 * exactly C[i][0..n-1] is written. No alignment requirement.
 */
#include "kv_load_avx512.h"
#include "kernels_avx512.h"

#define LANES QKV_AVX512_LANES
#define DOT_ROWS 4
#define DOT_KEYS 4

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The four horizontal sums of a, b, c, d, in that order. */
static ALWAYS_INLINE __m128 sum4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    /* Per 128-bit lane: ab = (a0+a2, b0+b2, a1+a3, b1+b3), cd likewise. */
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    /* Per lane: (sum a, sum b, sum c, sum d) of that lane's 4 elements. */
    const __m512d abd = _mm512_castps_pd(ab), cdd = _mm512_castps_pd(cd);
    const __m512 quad = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(abd, cdd)),
                                      _mm512_castpd_ps(_mm512_unpackhi_pd(abd, cdd)));
    const __m256 half = _mm256_add_ps(_mm512_castps512_ps256(quad),
                                      _mm512_extractf32x8_ps(quad, 1));
    return _mm_add_ps(_mm256_castps256_ps128(half), _mm256_extractf128_ps(half, 1));
}

/* C[i][j] for ROWS rows of A and KEYS (4 or 1) rows of B from element
   b0 of b on; KIND, ROWS and KEYS are compile-time constants, so acc
   lives in registers. */
static ALWAYS_INLINE void dot_tile(const int KIND, const int ROWS, const int KEYS,
                                   int64_t k, const float *a, int64_t lda,
                                   const void *b, int64_t b0, int64_t ldb,
                                   float *c, int64_t ldc)
{
    __m512 acc[DOT_ROWS][DOT_KEYS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < KEYS; j++)
            acc[i][j] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + LANES <= k; p += LANES) {
        __m512 bv[DOT_KEYS];
        for (int j = 0; j < KEYS; j++)
            bv[j] = qkv_load16_kv_avx512(KIND, b, b0 + j * ldb + p);
        for (int i = 0; i < ROWS; i++) {
            const __m512 av = _mm512_loadu_ps(a + i * lda + p);
            for (int j = 0; j < KEYS; j++)
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    if (p < k) {   /* the k % 16 tail: masked loads */
        const __mmask16 lanes = qkv_lanes_avx512(k - p);
        __m512 bv[DOT_KEYS];
        for (int j = 0; j < KEYS; j++)
            bv[j] = qkv_load_kv_avx512(KIND, b, b0 + j * ldb + p, lanes);
        for (int i = 0; i < ROWS; i++) {
            const __m512 av = _mm512_maskz_loadu_ps(lanes, a + i * lda + p);
            for (int j = 0; j < KEYS; j++)
                acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < ROWS; i++) {
        if (KEYS == DOT_KEYS)
            _mm_storeu_ps(c + i * ldc, sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
        else
            c[i * ldc] = _mm512_reduce_add_ps(acc[i][0]);
    }
}

/* Instantiates dot_tile for a run-time row count (1..DOT_ROWS). */
static ALWAYS_INLINE void dot_rows(const int KIND, int rows, const int KEYS,
                                   int64_t k, const float *a, int64_t lda,
                                   const void *b, int64_t b0, int64_t ldb,
                                   float *c, int64_t ldc)
{
    switch (rows) {
    case 4:  dot_tile(KIND, 4, KEYS, k, a, lda, b, b0, ldb, c, ldc); break;
    case 3:  dot_tile(KIND, 3, KEYS, k, a, lda, b, b0, ldb, c, ldc); break;
    case 2:  dot_tile(KIND, 2, KEYS, k, a, lda, b, b0, ldb, c, ldc); break;
    default: dot_tile(KIND, 1, KEYS, k, a, lda, b, b0, ldb, c, ldc); break;
    }
}

/* All of C for one storage kind: keys outer, groups of rows inner. */
static ALWAYS_INLINE void qk_all(const int KIND, int64_t m, int64_t n, int64_t k,
                                 const float *a, int64_t lda,
                                 const void *b, int64_t ldb,
                                 float *c, int64_t ldc, const void *b_next)
{
    const int64_t row_bytes = k * qkv_kind_bytes(KIND);
    int64_t j = 0;
    for (; j + DOT_KEYS <= n; j += DOT_KEYS) {
        for (int jj = 0; b_next && jj < DOT_KEYS; jj++)
            qkv_prefetch_row(qkv_kind_at(KIND, b_next, (j + jj) * ldb), row_bytes);
        for (int64_t i0 = 0; i0 < m; i0 += DOT_ROWS)
            dot_rows(KIND, (int)(m - i0 < DOT_ROWS ? m - i0 : DOT_ROWS), DOT_KEYS, k,
                     a + i0 * lda, lda, b, j * ldb, ldb, c + i0 * ldc + j, ldc);
    }
    for (; j < n; j++) {
        if (b_next)
            qkv_prefetch_row(qkv_kind_at(KIND, b_next, j * ldb), row_bytes);
        for (int64_t i0 = 0; i0 < m; i0 += DOT_ROWS)
            dot_rows(KIND, (int)(m - i0 < DOT_ROWS ? m - i0 : DOT_ROWS), 1, k,
                     a + i0 * lda, lda, b, j * ldb, ldb, c + i0 * ldc + j, ldc);
    }
}

void qkv_qk_stream_avx512(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda,
                          const void *b, int64_t ldb,
                          float *c, int64_t ldc,
                          const void *b_next)
{
    switch (qkv_stream_kind(dt)) {
    case QKV_KIND_F32:  qk_all(QKV_KIND_F32, m, n, k, a, lda, b, ldb, c, ldc, b_next); break;
    case QKV_KIND_BF16: qk_all(QKV_KIND_BF16, m, n, k, a, lda, b, ldb, c, ldc, b_next); break;
    default:            qk_all(QKV_KIND_F16, m, n, k, a, lda, b, ldb, c, ldc, b_next); break;
    }
}
