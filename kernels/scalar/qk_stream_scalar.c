/*
 * qk_stream, scalar: C = A * float(B)^T for B stored as F32, F16 or BF16
 * (see kernels.h), the twin of every SIMD qk_stream.
 *
 * Each element of B is widened exactly (kv_elem_scalar), then each C[i][j]
 * is one dot product accumulated in float in order p = 0..k-1, as in
 * qkv_gemm_nt_scalar without bias: the result is bit for bit that of
 * converting B with cvt_*_f32 (F32 rows as they are) and calling gemm_nt.
 * No alignment requirement, no over-read.
 */
#include "kernels_scalar.h"

void qkv_qk_stream_scalar(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda,
                          const void *b, int64_t ldb,
                          float *c, int64_t ldc,
                          const void *b_next)
{
    (void)b_next;   /* a prefetch hint: nothing to do in scalar code */
    for (int64_t i = 0; i < m; i++) {
        const float *a_row = a + i * lda;
        for (int64_t j = 0; j < n; j++) {
            float dot = 0.0f;
            for (int64_t p = 0; p < k; p++)
                dot += a_row[p] * qkv_kv_elem_scalar(dt, b, j * ldb + p);
            c[i * ldc + j] = dot;
        }
    }
}
