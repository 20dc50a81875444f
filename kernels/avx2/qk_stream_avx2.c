/*
 * qk_stream, AVX2 + FMA + F16C: C = A * float(B)^T with B stored as F32,
 * F16 or BF16, i.e.
 *
 *   C[i][j] = sum_{p<k} A[i][p] * float(B[j][p])
 *
 * for i < m, j < n (see kernels.h). Twin: qkv_qk_stream_scalar in
 * kernels/scalar/qk_stream_scalar.c.
 *
 * The small-m path of gemm_nt (kernels/avx2/gemm_nt_avx2.c) with B read in
 * its storage kind: each dot product keeps 8 partial sums in a ymm
 * accumulator over p, fed by 8 elements of a row of B (halves widened in
 * registers, exactly: kv_load_avx2.h), reduced horizontally at the end. A
 * step takes 4 keys x up to 2 rows (8 accumulators); keys are the outer
 * loop, so each row of B is read from memory once and read (and widened)
 * again from L1 for each further pair of rows. The summation order differs from the twin's:
 * results agree within float rounding.
 *
 * b_next: before each group of keys, the same keys' rows of the next
 * call are asked for (stream_common.h), so that memory keeps streaming
 * while this call computes.
 *
 * Tails: the last k % 8 columns of A and B go through stack buffers
 * (qkv_tail_load_avx2, qkv_load_kv_avx2), so nothing past A[i][k-1] or
 * B[j][k-1] is read; n % 4 keys go one at a time; exactly C[i][0..n-1] is
 * written. No alignment requirement.
 */
#include <immintrin.h>

#include "exp_avx2.h"
#include "kv_load_avx2.h"
#include "kernels_avx2.h"

enum { DOT_ROWS = 2, DOT_KEYS = 4 };

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* The four horizontal sums of a, b, c, d, in that order. */
static ALWAYS_INLINE __m128 sum4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

/* One step over columns p..p+7 (p..k-1 when TAIL: zero past k, through
   stack buffers) of ROWS rows of A and KEYS rows of B into acc. */
static ALWAYS_INLINE void dot_step(const int KIND, const int ROWS, const int KEYS,
                                   const int TAIL, int64_t p, int64_t k,
                                   const float *a, int64_t lda,
                                   const void *b, int64_t b0, int64_t ldb,
                                   __m256 acc[][DOT_KEYS])
{
    __m256 bv[DOT_KEYS];
#pragma GCC unroll 4
    for (int j = 0; j < KEYS; j++)
        bv[j] = TAIL ? qkv_load_kv_avx2(KIND, b, b0 + j * ldb + p, k - p)
                     : qkv_load8_kv_avx2(KIND, b, b0 + j * ldb + p);
#pragma GCC unroll 2
    for (int i = 0; i < ROWS; i++) {
        const __m256 av = TAIL ? qkv_tail_load_avx2(a + i * lda + p, qkv_tail_mask_avx2(k - p))
                               : _mm256_loadu_ps(a + i * lda + p);
#pragma GCC unroll 4
        for (int j = 0; j < KEYS; j++)
            acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
}

/* C[i][j] for ROWS (1 or 2) rows of A and KEYS (4 or 1) rows of B from
   element b0 of b on; all three parameters in capitals are compile-time
   constants. */
static ALWAYS_INLINE void dot_tile(const int KIND, const int ROWS, const int KEYS,
                                   int64_t k, const float *a, int64_t lda,
                                   const void *b, int64_t b0, int64_t ldb,
                                   float *c, int64_t ldc)
{
    __m256 acc[DOT_ROWS][DOT_KEYS];
#pragma GCC unroll 2
    for (int i = 0; i < ROWS; i++)
#pragma GCC unroll 4
        for (int j = 0; j < KEYS; j++)
            acc[i][j] = _mm256_setzero_ps();
    int64_t p = 0;
    for (; p + 8 <= k; p += 8)
        dot_step(KIND, ROWS, KEYS, 0, p, k, a, lda, b, b0, ldb, acc);
    if (p < k)
        dot_step(KIND, ROWS, KEYS, 1, p, k, a, lda, b, b0, ldb, acc);
#pragma GCC unroll 2
    for (int i = 0; i < ROWS; i++) {
        if (KEYS == DOT_KEYS)
            _mm_storeu_ps(c + i * ldc, sum4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]));
        else
            c[i * ldc] = qkv_hsum_avx2(acc[i][0]);
    }
}

/* All of C for one storage kind: keys outer, pairs of rows inner. */
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
        int64_t i = 0;
        for (; i + 2 <= m; i += 2)
            dot_tile(KIND, 2, DOT_KEYS, k, a + i * lda, lda, b, j * ldb, ldb,
                     c + i * ldc + j, ldc);
        if (i < m)
            dot_tile(KIND, 1, DOT_KEYS, k, a + i * lda, lda, b, j * ldb, ldb,
                     c + i * ldc + j, ldc);
    }
    for (; j < n; j++) {
        if (b_next)
            qkv_prefetch_row(qkv_kind_at(KIND, b_next, j * ldb), row_bytes);
        for (int64_t i = 0; i < m; i++)
            dot_tile(KIND, 1, 1, k, a + i * lda, lda, b, j * ldb, ldb,
                     c + i * ldc + j, ldc);
    }
}

void qkv_qk_stream_avx2(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
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
