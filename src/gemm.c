/*
 * The projection GEMM of the multi-head layer: C = A * B^T (+ bias), with
 * B in nn.Linear layout [n, k], blocked in the manner of BLIS:
 *
 * 1. B is packed once per call into the caller's scratch: column blocks
 *    of TASK_N rows of B, each as ceil(k / BLOCK_K) blocks of
 *    TASK_N x BLOCK_K (kt->pack_nt), in parallel over column blocks. A
 *    wide B is packed and used one group of columns at a time (at most
 *    PACK_BUDGET_FLOATS packed), so the scratch stays bounded.
 * 2. C is cut into tasks of TASK_M rows by TASK_N columns. A task walks
 *    k: one kt->gemm_packed call per block of k over all its rows,
 *    accumulating into C from the second block on, the bias with the last.
 *    The packed block being multiplied (64 x 128 floats = 32 KiB) stays in
 *    L1 while the task's rows of A stream past it; the task's rows of A and
 *    its block of C stay in L2 across the blocks of k. Column blocks vary
 *    fastest, so a thread's consecutive tasks reuse the same rows of A from
 *    L2 and read packed B (contiguous, in L3) as a stream.
 * Measured at the design shape (2048 x 1536 x 512 and 2048 x 512 x 512,
 * AVX-512, one thread): TASK_M from 96 to 192 are within noise, 48 and 72
 * lose; BLOCK_K 128 beats 64, 96, 256 and 512 by 3-8%; TASK_N 128 is no
 * better than 64. Packing B per task (every 256 rows) instead of once per
 * call measured about 10% slower.
 *
 * gemm_packed continues each sum from C in order p = 0..k-1, so the
 * blocking does not change a single bit of the result: C is the same for
 * every thread count (tasks are handed out statically, each element of C
 * belongs to one task) and equals one kt->gemm_nt call on the whole
 * problem (large-m path).
 *
 * Few rows (m <= DIRECT_M, decoding): packing all of B would cost more
 * than the product, so each column block is one kt->gemm_nt call in
 * per-thread scratch, whose small-m path reads B in place.
 *
 * The scratch comes from the caller (qkv_gemm_nt_scratch_floats says how
 * much: about min(n x k, 1 Mi) floats, packed B), so a driver can reserve it in
 * its own single allocation and the GEMM itself cannot fail.
 */
#include "internal.h"
#include "qkv_config.h"

#if QKV_HAVE_OPENMP
#include <omp.h>
#endif

/* TASK_M is a multiple of the AVX-512 and AVX2 micro-kernels' 6 rows and
   of NEON's 4 (no row tails inside a task), TASK_N of every ISA's panel. */
enum { TASK_M = 96, TASK_N = 64, BLOCK_K = 128, DIRECT_M = 8 };

/* Most floats of packed B at a time: B is packed and used in groups of
   columns that fit (4 MiB, in L3), so the scratch stays bounded for wide
   layers. The design shape (1536 x 512 = 0.75 Mi floats) is one group. */
enum { PACK_BUDGET_FLOATS = 1 << 20 };

/* Floats per QKV_SCRATCH_ALIGN bytes. */
enum { ALIGN_FLOATS = QKV_SCRATCH_ALIGN / sizeof(float) };

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static int64_t blocks_along(int64_t size, int64_t block)
{
    return (size + block - 1) / block;
}

static int64_t round_up_aligned(int64_t floats)
{
    return (floats + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* The threads of a call: never more than there are tasks. */
static int gemm_threads(int64_t m, int64_t n, int num_threads)
{
    int64_t tasks;
    if (!qkv_mul_ok(m <= DIRECT_M ? 1 : blocks_along(m, TASK_M), blocks_along(n, TASK_N), &tasks))
        tasks = INT64_MAX;
    return qkv_thread_count(num_threads, tasks);
}

/* Floats of one packed block of `cols` x `depth` floats, keeping the next
   block aligned. */
static int64_t packed_block_floats(int64_t cols, int64_t depth)
{
    return round_up_aligned(QKV_GEMM_SCRATCH_FLOATS(cols, depth));
}

/* Floats of one column block of packed B: all its blocks of k, each sized
   for TASK_N columns (or n, if fewer). -1 on overflow. */
static int64_t packed_slab_floats(int64_t n, int64_t k)
{
    const int64_t cols = min64(n, TASK_N), tail = k % BLOCK_K;
    int64_t floats;
    if (!qkv_mul_ok(k / BLOCK_K, packed_block_floats(cols, BLOCK_K), &floats) ||
        !qkv_add_ok(floats, tail > 0 ? packed_block_floats(cols, tail) : 0, &floats))
        return -1;
    return floats;
}

/* Floats of gemm_nt's scratch for one column block (few rows). */
static int64_t direct_floats(int64_t n, int64_t k)
{
    int64_t floats;
    if (!qkv_mul_ok((min64(n, TASK_N) + 31) / 32 * 32, k, &floats) ||
        !qkv_add_ok(floats, 64 + ALIGN_FLOATS - 1, &floats))
        return -1;
    return floats / ALIGN_FLOATS * ALIGN_FLOATS;
}

/* Columns of B per group: a multiple of TASK_N, at least one block. */
static int64_t group_columns(int64_t n, int64_t k)
{
    const int64_t blocks = PACK_BUDGET_FLOATS / TASK_N / (k > 0 ? k : 1);
    return min64(n, (blocks > 1 ? blocks : 1) * TASK_N);
}

int64_t qkv_gemm_nt_scratch_floats(int64_t m, int64_t n, int64_t k, int num_threads)
{
    if (m <= 0 || n <= 0 || k < 0)
        return 0;
    int64_t total;
    if (m <= DIRECT_M || k == 0) {
        const int64_t per_thread = direct_floats(n, k);
        if (per_thread < 0 ||
            !qkv_mul_ok(per_thread, gemm_threads(m, n, num_threads), &total))
            return -1;
        return total;
    }
    const int64_t group = group_columns(n, k), slab = packed_slab_floats(group, k);
    if (slab < 0 || !qkv_mul_ok(slab, blocks_along(group, TASK_N), &total))
        return -1;
    return total;
}

/* Packs column block jb of B, every block of k, into its slab. */
static void pack_slab(const qkv_kernels *kt, int64_t jb, int64_t n, int64_t k,
                      const float *b, int64_t ldb, float *slab)
{
    const int64_t j0 = jb * TASK_N, cols = min64(n - j0, TASK_N);
    for (int64_t p0 = 0; p0 < k; p0 += BLOCK_K) {
        const int64_t depth = min64(k - p0, BLOCK_K);
        kt->pack_nt(cols, depth, b + j0 * ldb + p0, ldb, slab);
        slab += packed_block_floats(min64(n, TASK_N), depth);
    }
}

/* One task: C rows [i0, i0 + rows) by column block jb, from its packed
   slab, one gemm_packed call per block of k. */
static void gemm_task(const qkv_kernels *kt, int64_t rows, int64_t jb,
                      int64_t n, int64_t k, const float *a, int64_t lda,
                      const float *slab, const float *bias, float *c, int64_t ldc)
{
    const int64_t j0 = jb * TASK_N, cols = min64(n - j0, TASK_N);
    for (int64_t p0 = 0; p0 < k; p0 += BLOCK_K) {
        const int64_t depth = min64(k - p0, BLOCK_K);
        const int last = p0 + depth == k;
        kt->gemm_packed(rows, cols, depth, a + p0, lda, slab,
                        last && bias ? bias + j0 : NULL, p0 > 0, c + j0, ldc);
        slab += packed_block_floats(min64(n, TASK_N), depth);
    }
}

/* Few rows: each column block is one gemm_nt call in per-thread scratch. */
static void gemm_direct(const qkv_kernels *kt, int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda, const float *b, int64_t ldb,
                        const float *bias, float *c, int64_t ldc, int threads,
                        float *scratch)
{
    const int64_t blocks_n = blocks_along(n, TASK_N), per_thread = direct_floats(n, k);
#if QKV_HAVE_OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
    for (int64_t jb = 0; jb < blocks_n; jb++) {
        int tid = 0;
#if QKV_HAVE_OPENMP
        tid = omp_get_thread_num();
#endif
        const int64_t j0 = jb * TASK_N;
        kt->gemm_nt(m, min64(n - j0, TASK_N), k, a, lda, b + j0 * ldb, ldb,
                    bias ? bias + j0 : NULL, c + j0, ldc,
                    scratch + (int64_t)tid * per_thread);
    }
    (void)threads;   /* unused without OpenMP */
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
    const int threads = gemm_threads(m, n, num_threads);
    if (m <= DIRECT_M || k == 0) {
        gemm_direct(kt, m, n, k, a, lda, b, ldb, bias, c, ldc, threads, scratch);
        return;
    }
    const int64_t group = group_columns(n, k), blocks_m = blocks_along(m, TASK_M);

#if QKV_HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    for (int64_t g0 = 0; g0 < n; g0 += group) {
        /* Every thread walks the groups; each loop below ends in a barrier,
           so a group's packed B is complete before it is used and in use
           until every task of the group is done. */
        const int64_t cols = min64(n - g0, group), blocks_n = blocks_along(cols, TASK_N);
        const int64_t slab = packed_slab_floats(cols, k);
#if QKV_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t jb = 0; jb < blocks_n; jb++)
            pack_slab(kt, jb, cols, k, b + g0 * ldb, ldb, scratch + jb * slab);

        /* Column blocks vary fastest: a thread's consecutive tasks share
           their rows of A, which stay in L2. */
#if QKV_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t t = 0; t < blocks_m * blocks_n; t++) {
            const int64_t i0 = (t / blocks_n) * TASK_M, jb = t % blocks_n;
            gemm_task(kt, min64(m - i0, TASK_M), jb, cols, k, a + i0 * lda, lda,
                      scratch + jb * slab, bias ? bias + g0 : NULL,
                      c + i0 * ldc + g0, ldc);
        }
    }
    (void)threads;   /* unused without OpenMP */
}
