/*
 * The projection GEMM of the multi-head layer: C = A * B^T (+ bias), with
 * B in nn.Linear layout [n, k]. C is cut into blocks of GEMM_BLOCK_M rows
 * by GEMM_BLOCK_N columns; each block is one kt->gemm_nt call, which packs
 * its GEMM_BLOCK_N x k panel of B into per-thread scratch (sized for L2
 * at the design shape: 64 x 512 floats = 128 KiB). Blocks are handed out
 * statically; the blocking is fixed, so results do not depend on the
 * thread count.
 *
 * The scratch comes from the caller (qkv_gemm_nt_scratch_floats says how
 * much), so a driver can reserve it in its own single allocation and the
 * GEMM itself cannot fail.
 */
#include "internal.h"
#include "qkv_config.h"

#if QKV_HAVE_OPENMP
#include <omp.h>
#endif

enum { GEMM_BLOCK_M = 64, GEMM_BLOCK_N = 64 };

/* Floats per QKV_SCRATCH_ALIGN bytes. */
enum { ALIGN_FLOATS = QKV_SCRATCH_ALIGN / sizeof(float) };

static int64_t blocks_along(int64_t size, int64_t block)
{
    return (size + block - 1) / block;
}

/* The threads of a call: never more than there are blocks of C. */
static int gemm_threads(int64_t m, int64_t n, int num_threads)
{
    const int64_t bm = blocks_along(m, GEMM_BLOCK_M), bn = blocks_along(n, GEMM_BLOCK_N);
    int64_t blocks;
    if (!qkv_mul_ok(bm, bn, &blocks))
        blocks = INT64_MAX;
    return qkv_thread_count(num_threads, blocks);
}

/* One thread's scratch: the largest panel of B, rounded up so that every
   thread's slice stays aligned. -1 on overflow. */
static int64_t per_thread_floats(int64_t n, int64_t k)
{
    const int64_t panel = n < GEMM_BLOCK_N ? n : GEMM_BLOCK_N;
    int64_t floats;
    if (!qkv_mul_ok((panel + 31) / 32 * 32, k, &floats) ||
        !qkv_add_ok(floats, 64 + ALIGN_FLOATS - 1, &floats))
        return -1;
    return floats / ALIGN_FLOATS * ALIGN_FLOATS;
}

int64_t qkv_gemm_nt_scratch_floats(int64_t m, int64_t n, int64_t k, int num_threads)
{
    if (m <= 0 || n <= 0 || k < 0)
        return 0;
    const int64_t per_thread = per_thread_floats(n, k);
    int64_t total;
    if (per_thread < 0 || !qkv_mul_ok(per_thread, gemm_threads(m, n, num_threads), &total))
        return -1;
    return total;
}

void qkv_gemm_nt_blocked_in(const qkv_kernels *kt,
                            int64_t m, int64_t n, int64_t k,
                            const float *a, int64_t lda,
                            const float *b, int64_t ldb,
                            const float *bias,
                            float *c, int64_t ldc, int num_threads,
                            float *scratch)
{
    if (m <= 0 || n <= 0 || k < 0)
        return;
    const int64_t blocks_m = blocks_along(m, GEMM_BLOCK_M);
    const int64_t blocks = blocks_m * blocks_along(n, GEMM_BLOCK_N);
    const int threads = gemm_threads(m, n, num_threads);
    const int64_t per_thread = per_thread_floats(n, k);

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
    (void)threads;   /* unused without OpenMP */
}
