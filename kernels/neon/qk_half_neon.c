/*
 * qk_half, NEON: C = A * float(B)^T with B stored as F16 or BF16,
 *   C[i][j] = sum_{p<k} A[i][p] * float(B[j][p])   for i < m, j < n
 * (see kernels.h). Scalar twin: qkv_qk_half_scalar
 * (kernels/scalar/qk_half_scalar.c).
 *
 * Dot products straight from the rows (no packing: the kernel is for few
 * rows of A, as in decoding). A step takes 4 keys x up to 4 rows: each
 * (row, key) keeps 4 partial sums in a vector accumulator, fed per 8
 * columns by two FMAs with 8 halves of the key's row widened in registers
 * (half_neon.h: exact), then one 4-column step, then a scalar tail; the
 * partial sums are reduced at the end. Keys are the outer loop, so each
 * row of B is read from memory once and widened again from L1 for each
 * further group of 4 rows. The summation order differs from the twin's:
 * results agree within float rounding.
 *
 * b_next: before each group of keys, the same keys' rows of the next
 * call are asked for (half_prefetch.h), so that memory keeps streaming
 * while this call computes.
 *
 * Tails: the last k % 4 columns are scalar fmaf (nothing past A[i][k-1] or
 * B[j][k-1] is read); n % 4 keys go one at a time; exactly C[i][0..n-1] is
 * written. Any alignment.
 */
#include <arm_neon.h>
#include <math.h>

#include "half_neon.h"
#include "half_prefetch.h"
#include "kernels_neon.h"

#define DOT_ROWS 4
#define DOT_KEYS 4

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* C[i][j] for ROWS (1..4) rows of A and KEYS (4 or 1) rows of B; BF16,
   ROWS and KEYS are compile-time constants, so the sums stay in
   registers. */
static ALWAYS_INLINE void dot_tile(const int BF16, const int ROWS, const int KEYS,
                                   int64_t k, const float *a, int64_t lda,
                                   const uint16_t *b, int64_t ldb,
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
            qkv_load8_half_neon(BF16, b + j * ldb + p, &lo[j], &hi[j]);
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
            bv[j] = qkv_load4_half_neon(BF16, b + j * ldb + p);
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
                dot = fmaf(a[i * lda + q], qkv_half_to_f32_neon(BF16, b[j * ldb + q]), dot);
            c[i * ldc + j] = dot;
        }
}

/* Instantiates dot_tile for a run-time row count (1..DOT_ROWS). */
static ALWAYS_INLINE void dot_rows(const int BF16, int rows, const int KEYS,
                                   int64_t k, const float *a, int64_t lda,
                                   const uint16_t *b, int64_t ldb,
                                   float *c, int64_t ldc)
{
    switch (rows) {
    case 4:  dot_tile(BF16, 4, KEYS, k, a, lda, b, ldb, c, ldc); break;
    case 3:  dot_tile(BF16, 3, KEYS, k, a, lda, b, ldb, c, ldc); break;
    case 2:  dot_tile(BF16, 2, KEYS, k, a, lda, b, ldb, c, ldc); break;
    default: dot_tile(BF16, 1, KEYS, k, a, lda, b, ldb, c, ldc); break;
    }
}

/* All of C for one storage type: keys outer, groups of rows inner. */
static ALWAYS_INLINE void qk_all(const int BF16, int64_t m, int64_t n, int64_t k,
                                 const float *a, int64_t lda,
                                 const uint16_t *b, int64_t ldb,
                                 float *c, int64_t ldc, const uint16_t *b_next)
{
    int64_t j = 0;
    for (; j + DOT_KEYS <= n; j += DOT_KEYS) {
        for (int jj = 0; b_next && jj < DOT_KEYS; jj++)
            qkv_prefetch_halves(b_next + (j + jj) * ldb, k);
        for (int64_t i0 = 0; i0 < m; i0 += DOT_ROWS)
            dot_rows(BF16, (int)(m - i0 < DOT_ROWS ? m - i0 : DOT_ROWS), DOT_KEYS, k,
                     a + i0 * lda, lda, b + j * ldb, ldb, c + i0 * ldc + j, ldc);
    }
    for (; j < n; j++) {
        if (b_next)
            qkv_prefetch_halves(b_next + j * ldb, k);
        for (int64_t i0 = 0; i0 < m; i0 += DOT_ROWS)
            dot_rows(BF16, (int)(m - i0 < DOT_ROWS ? m - i0 : DOT_ROWS), 1, k,
                     a + i0 * lda, lda, b + j * ldb, ldb, c + i0 * ldc + j, ldc);
    }
}

void qkv_qk_half_neon(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda,
                      const uint16_t *b, int64_t ldb,
                      float *c, int64_t ldc,
                      const uint16_t *b_next)
{
    if (dt == QKV_BF16)
        qk_all(1, m, n, k, a, lda, b, ldb, c, ldc, b_next);
    else
        qk_all(0, m, n, k, a, lda, b, ldb, c, ldc, b_next);
}
