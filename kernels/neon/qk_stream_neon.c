/*
 * qk_stream, NEON: C = A * float(B)^T with B stored as F32, F16 or BF16,
 *   C[i][j] = sum_{p<k} A[i][p] * float(B[j][p])   for i < m, j < n
 * (see kernels.h). Scalar twin: qkv_qk_stream_scalar
 * (kernels/scalar/qk_stream_scalar.c).
 *
 * Dot products straight from the rows (no packing: the kernel is for few
 * rows of A, as in decoding). A step takes 4 keys x up to 4 rows: each
 * (row, key) keeps 4 partial sums in a vector accumulator, fed per 8
 * columns by two FMAs with 8 elements of the key's row (halves widened in
 * registers, exactly: kv_load_neon.h), then one 4-column step, then a
 * scalar tail; the partial sums are reduced at the end. Keys are the outer
 * loop, so each row of B is read from memory once and read (and widened)
 * again from L1 for each further group of 4 rows. The summation order differs from the twin's:
 * results agree within float rounding.
 *
 * b_next: before each group of keys, the same keys' rows of the next
 * call are asked for (stream_common.h), so that memory keeps streaming
 * while this call computes.
 *
 * Tails: the last k % 4 columns are scalar fmaf (nothing past A[i][k-1] or
 * B[j][k-1] is read); n % 4 keys go one at a time; exactly C[i][0..n-1] is
 * written. Any alignment.
 */
#include <arm_neon.h>
#include <math.h>

#include "kv_load_neon.h"
#include "kernels_neon.h"

#define DOT_ROWS 4
#define DOT_KEYS 4

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* C[i][j] for ROWS (1..4) rows of A and KEYS (4 or 1) rows of B from
   element b0 of b on; KIND, ROWS and KEYS are compile-time constants, so
   the sums stay in registers. */
static ALWAYS_INLINE void dot_tile(const int KIND, const int ROWS, const int KEYS,
                                   int64_t k, const float *a, int64_t lda,
                                   const void *b, int64_t b0, int64_t ldb,
                                   float *c, int64_t ldc)
{
    float32x4_t acc[DOT_ROWS][DOT_KEYS];
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < KEYS; j++)
            acc[i][j] = vdupq_n_f32(0.0f);
    int64_t p = 0;
    for (; p + 8 <= k; p += 8) {
        float32x4_t lo[DOT_KEYS], hi[DOT_KEYS];
        for (int j = 0; j < KEYS; j++)
            qkv_load8_kv_neon(KIND, b, b0 + j * ldb + p, &lo[j], &hi[j]);
        for (int i = 0; i < ROWS; i++) {
            const float32x4_t a_lo = vld1q_f32(a + i * lda + p);
            const float32x4_t a_hi = vld1q_f32(a + i * lda + p + 4);
            for (int j = 0; j < KEYS; j++)
                acc[i][j] = vfmaq_f32(vfmaq_f32(acc[i][j], a_lo, lo[j]), a_hi, hi[j]);
        }
    }
    if (p + 4 <= k) {
        float32x4_t bv[DOT_KEYS];
        for (int j = 0; j < KEYS; j++)
            bv[j] = qkv_load4_kv_neon(KIND, b, b0 + j * ldb + p);
        for (int i = 0; i < ROWS; i++) {
            const float32x4_t av = vld1q_f32(a + i * lda + p);
            for (int j = 0; j < KEYS; j++)
                acc[i][j] = vfmaq_f32(acc[i][j], av, bv[j]);
        }
        p += 4;
    }
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < KEYS; j++) {
            float dot = vaddvq_f32(acc[i][j]);
            for (int64_t q = p; q < k; q++)
                dot = fmaf(a[i * lda + q], qkv_kv_to_f32_neon(KIND, b, b0 + j * ldb + q), dot);
            c[i * ldc + j] = dot;
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

void qkv_qk_stream_neon(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
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
