/*
 * The projection GEMM of the multi-head layer: C = A * B^T (+ bias), with
 * B in nn.Linear layout [n, k]. C is cut into blocks of GEMM_BLOCK_M rows
 * by GEMM_BLOCK_N columns; each block is one kt->gemm_nt call, which packs
 * its GEMM_BLOCK_N x k panel of B into per-thread scratch (sized for L2
 * at the design shape: 64 x 512 floats = 128 KiB). Blocks are handed out
 * statically; the blocking is fixed, so results do not depend on the
 * thread count.
 */
#include "internal.h"
#include "qkv_config.h"

#if QKV_HAVE_OPENMP
#include <omp.h>
#endif

enum { GEMM_BLOCK_M = 64, GEMM_BLOCK_N = 64 };

qkv_status qkv_gemm_nt_blocked(const qkv_kernels *kt,
                               int64_t m, int64_t n, int64_t k,
                               const float *a, int64_t lda,
                               const float *b, int64_t ldb,
                               const float *bias,
                               float *c, int64_t ldc, int num_threads)
{
    const int64_t blocks_m = (m + GEMM_BLOCK_M - 1) / GEMM_BLOCK_M;
    const int64_t blocks_n = (n + GEMM_BLOCK_N - 1) / GEMM_BLOCK_N;
    int64_t blocks, per_thread, total;
    if (!qkv_mul_ok(blocks_m, blocks_n, &blocks))
        return QKV_E_OVERFLOW;
    const int threads = qkv_thread_count(num_threads, blocks);
    if (!qkv_mul_ok((GEMM_BLOCK_N + 31) / 32 * 32, k, &per_thread) ||
        !qkv_add_ok(per_thread, 64 + QKV_SCRATCH_ALIGN / 4, &per_thread) ||
        !qkv_mul_ok(per_thread, threads, &total) ||
        (uint64_t)total > SIZE_MAX / sizeof(float))
        return QKV_E_OVERFLOW;
    /* Keep every thread's slice aligned. */
    per_thread = per_thread / (QKV_SCRATCH_ALIGN / 4) * (QKV_SCRATCH_ALIGN / 4);
    float *scratch = qkv_alloc((size_t)total * sizeof(float));
    if (!scratch)
        return QKV_E_NOMEM;

#if QKV_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (int64_t blk = 0; blk < blocks; blk++) {
        int tid = 0;
#if QKV_HAVE_OPENMP
        tid = omp_get_thread_num();
#endif
        /* Row blocks vary fastest, so neighbouring blocks share B's panel. */
        const int64_t i0 = (blk % blocks_m) * GEMM_BLOCK_M;
        const int64_t j0 = (blk / blocks_m) * GEMM_BLOCK_N;
        const int64_t rows = m - i0 < GEMM_BLOCK_M ? m - i0 : GEMM_BLOCK_M;
        const int64_t cols = n - j0 < GEMM_BLOCK_N ? n - j0 : GEMM_BLOCK_N;
        kt->gemm_nt(rows, cols, k, a + i0 * lda, lda, b + j0 * ldb, ldb,
                    bias ? bias + j0 : NULL, c + i0 * ldc + j0, ldc,
                    scratch + (int64_t)tid * per_thread);
    }
    qkv_free(scratch);
    return QKV_OK;
}
