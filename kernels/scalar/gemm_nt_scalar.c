/*
 * gemm_nt, scalar: C = A * B^T (+ bias), the reference twin of every SIMD
 * gemm_nt (see kernels.h for the contract).
 *
 * Each C[i][j] is one dot product accumulated in float in order p = 0..k-1,
 * then the bias is added. No packing: scratch is unused. No alignment
 * requirement, no over-read.
 *
 * pack_nt and gemm_packed, the twins of every SIMD pair: the "packed"
 * layout is B's n rows copied contiguously (packed[j*k + p] = B[j][p],
 * n*k <= QKV_GEMM_SCRATCH_FLOATS(n, k) floats), and gemm_packed is the
 * same dot product, started from C[i][j] when accumulating.
 */
#include "kernels_scalar.h"

void qkv_gemm_nt_scalar(int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda,
                        const float *b, int64_t ldb,
                        const float *bias,
                        float *c, int64_t ldc, float *scratch)
{
    (void)scratch;
    for (int64_t i = 0; i < m; i++) {
        const float *a_row = a + i * lda;
        float *c_row = c + i * ldc;
        for (int64_t j = 0; j < n; j++) {
            const float *b_row = b + j * ldb;
            float dot = 0.0f;
            for (int64_t p = 0; p < k; p++)
                dot += a_row[p] * b_row[p];
            c_row[j] = bias ? dot + bias[j] : dot;
        }
    }
}

void qkv_pack_nt_scalar(int64_t n, int64_t k, const float *b, int64_t ldb,
                        float *packed)
{
    for (int64_t j = 0; j < n; j++)
        for (int64_t p = 0; p < k; p++)
            packed[j * k + p] = b[j * ldb + p];
}

void qkv_gemm_packed_scalar(int64_t m, int64_t n, int64_t k,
                            const float *a, int64_t lda, const float *packed,
                            const float *bias, int accumulate,
                            float *c, int64_t ldc)
{
    for (int64_t i = 0; i < m; i++) {
        const float *a_row = a + i * lda;
        float *c_row = c + i * ldc;
        for (int64_t j = 0; j < n; j++) {
            const float *b_row = packed + j * k;
            float dot = accumulate ? c_row[j] : 0.0f;
            for (int64_t p = 0; p < k; p++)
                dot += a_row[p] * b_row[p];
            c_row[j] = bias ? dot + bias[j] : dot;
        }
    }
}
