/*
 * kernbench: every kernel of the ops table (kernels/kernels.h), for every
 * ISA this CPU and build have, at the sizes the drivers call it with (in
 * the manner of dav1d's checkasm --bench):
 *
 *   gemm_nt       block_q x block_k x D   (Q K^T tile of src/sdpa.c)
 *                 1 x block_k x 128       (the same tile when decoding)
 *                 64 x 64 x 512 + bias    (the old projection block)
 *   pack_nt       block_k x D             (a K block of src/sdpa.c)
 *                 64 x 512                (a panel of nn.Linear weights)
 *   gemm_packed   block_q x block_k x D   (Q K^T tile from a packed K block)
 *                 96 x 64 x 128 + acc     (one k-block of src/gemm.c)
 *   gemm (driver) 2048 x 1536 x 512 + bias, 2048 x 512 x 512 + bias: the
 *                 multi-head layer's fused QKV and output projections
 *                 through qkv_gemm_nt_blocked_in, one thread (SIMD tables
 *                 only; no scalar comparison, which would take seconds)
 *   softmax_tile  block_q x block_k
 *   pv_tile       block_q x block_k x D, 1 x block_k x 128 (decode)
 *   exp_shift_scale  block_k and 2048 elements (the weights output)
 *   add_base2     block_k elements (one row of a mask on a score tile)
 *   softcap       block_k elements (a row of a score tile, Gemma 2's cap)
 *   alibi         block_k elements (a row of a score tile)
 *   scale_row     64 elements (a query row scaled into scratch, an output
 *                 row divided by its sum)
 *   cvt_f16_f32, cvt_bf16_f32   one K/V row: D elements
 *   qk_stream, pv_stream  1 x block_k x 128 and 4 x block_k x 128, K/V in
 *                 F32, F16 and BF16 (decoding, one query row or a KV group)
 *   walk          one head, Lq = Lk = 2048, D = 64 and 128: the key loop of
 *                 src/sdpa.c reduced to its three kernels (gemm_packed on
 *                 K packed beforehand, softmax_tile, pv_tile, tile after
 *                 tile for each block of block_q query rows), with the
 *                 share of softmax_tile in the note: what the kernels reach
 *                 together, without the driver (SIMD tables only)
 *
 * where block_q and block_k are the table's own. Each line gives the
 * median nanoseconds per call, the throughput (GFLOP/s and % of the ISA's
 * single-thread FMA peak for the two GEMM-like kernels, elements per
 * nanosecond for the others), and the speed-up over the scalar kernel at
 * the same size.
 *
 *   kernbench [--isa NAME] [--kernel SUBSTRING]
 */
#include <assert.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "internal.h"
#include "kernels.h"
#include "peak.h"
#include "qkv.h"

/* ------------------------------------------------------------------ */
/* Cases                                                              */
/* ------------------------------------------------------------------ */

typedef enum kernel_id {
    K_GEMM_NT, K_SOFTMAX_TILE, K_PV_TILE, K_EXP_SHIFT_SCALE, K_ADD_BASE2, K_SOFTCAP, K_ALIBI,
    K_SCALE_ROW, K_CVT_F16, K_CVT_BF16,
    K_QK_STREAM_F32, K_QK_STREAM_F16, K_QK_STREAM_BF16,
    K_PV_STREAM_F32, K_PV_STREAM_F16, K_PV_STREAM_BF16,
    K_PACK_NT, K_GEMM_PACKED, K_GEMM_PROJ, K_WALK
} kernel_id;

static const char *const kernel_names[] = {
    "gemm_nt", "softmax_tile", "pv_tile", "exp_shift_scale", "add_base2", "softcap", "alibi",
    "scale_row", "cvt_f16_f32", "cvt_bf16_f32",
    "qk_stream_f32", "qk_stream_f16", "qk_stream_bf16",
    "pv_stream_f32", "pv_stream_f16", "pv_stream_bf16",
    "pack_nt", "gemm_packed", "gemm (driver)", "walk",
};

/* One call: sizes as the kernel names them (m, n, k or dv). */
typedef struct kcase {
    kernel_id kernel;
    int64_t m, n, k;
    int bias;              /* gemm_packed: accumulate instead */
    const char *note;      /* where the driver uses this size */
} kcase;

/* Largest sizes any case uses, for the shared buffers. */
enum { MAX_ROWS = 256, MAX_COLS = 2048, MAX_DEPTH = 512 };

/* The walk's head (K_WALK): WALK_LEN queries and keys, up to WALK_DEPTH. */
enum { WALK_LEN = 2048, WALK_DEPTH = 128 };
/* Room for the packed blocks of K for any block_k of 32 or more (checked
   in walk_pack). */
enum { WALK_PACKED_FLOATS = 2 * WALK_LEN * WALK_DEPTH };

/* The projection-sized GEMM's operands (K_GEMM_PROJ). */
enum { PROJ_ROWS = 2048, PROJ_COLS = 1536, PROJ_DEPTH = 512 };

typedef struct buffers {
    float *a, *b, *bias, *c, *scratch;
    float *proj_a, *proj_b, *proj_bias, *proj_c, *proj_scratch;
    float *s, *row_max, *row_sum, *alpha, *acc;
    float *src, *dst;
    uint16_t *f16, *bf16;
    uint16_t *kv_f16, *kv_bf16;   /* a block of K or V rows, for the stream kernels */
    float *walk_q, *walk_k, *walk_v, *walk_packed;   /* the walk's head */
    /* The walk's own scores and softmax state, so that it leaves the
       buffers of the softmax_tile and pv_tile cases as they expect. */
    float *walk_s, *walk_acc, *walk_max, *walk_sum, *walk_alpha;
} buffers;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* At least the number of rows cases_for makes (checked there). */
enum { MAX_CASES = 48 };

/* The cases of one table: sized by its block_q and block_k. */
static int cases_for(const qkv_kernels *kt, kcase *out)
{
    const int64_t bq = min64(kt->block_q, MAX_ROWS), bk = min64(kt->block_k, MAX_COLS);
    int n = 0;
    out[n++] = (kcase){K_GEMM_NT, bq, bk, 64, 0, "Q K^T tile, D=64"};
    out[n++] = (kcase){K_GEMM_NT, bq, bk, 128, 0, "Q K^T tile, D=128"};
    out[n++] = (kcase){K_GEMM_NT, 1, bk, 128, 0, "decode Q K^T, D=128"};
    out[n++] = (kcase){K_GEMM_NT, 64, 64, 512, 1, "old projection block"};
    out[n++] = (kcase){K_PACK_NT, 1, bk, 64, 0, "K block, D=64"};
    out[n++] = (kcase){K_PACK_NT, 1, 64, 512, 0, "weights panel"};
    out[n++] = (kcase){K_GEMM_PACKED, bq, bk, 64, 0, "Q K^T tile, packed K"};
    out[n++] = (kcase){K_GEMM_PACKED, 96, 64, 128, 1, "projection k-block"};
    if (kt->isa != QKV_ISA_SCALAR) {
        out[n++] = (kcase){K_GEMM_PROJ, PROJ_ROWS, PROJ_COLS, PROJ_DEPTH, 1, "QKV projection"};
        out[n++] = (kcase){K_GEMM_PROJ, PROJ_ROWS, 512, PROJ_DEPTH, 1, "output projection"};
        out[n++] = (kcase){K_WALK, bq, bk, 64, 0, "one head, L=2048, D=64"};
        out[n++] = (kcase){K_WALK, bq, bk, 128, 0, "one head, L=2048, D=128"};
    }
    out[n++] = (kcase){K_SOFTMAX_TILE, bq, bk, 0, 0, "score tile"};
    out[n++] = (kcase){K_PV_TILE, bq, bk, 64, 0, "P V tile, D=64"};
    out[n++] = (kcase){K_PV_TILE, bq, bk, 128, 0, "P V tile, D=128"};
    out[n++] = (kcase){K_PV_TILE, 1, bk, 128, 0, "decode P V, D=128"};
    out[n++] = (kcase){K_EXP_SHIFT_SCALE, 1, bk, 0, 0, "weights, one tile row"};
    out[n++] = (kcase){K_EXP_SHIFT_SCALE, 1, 2048, 0, 0, "weights, a long row"};
    out[n++] = (kcase){K_ADD_BASE2, 1, bk, 0, 0, "mask row on a score tile"};
    out[n++] = (kcase){K_SOFTCAP, 1, bk, 0, 0, "softcap row of a score tile"};
    out[n++] = (kcase){K_ALIBI, 1, bk, 0, 0, "ALiBi bias on a row of a score tile"};
    out[n++] = (kcase){K_SCALE_ROW, 1, 64, 0, 0, "a scaled query row, an output row, D=64"};
    out[n++] = (kcase){K_CVT_F16, 1, 64, 0, 0, "K/V row, D=64"};
    out[n++] = (kcase){K_CVT_F16, 1, 128, 0, 0, "K/V row, D=128"};
    out[n++] = (kcase){K_CVT_BF16, 1, 64, 0, 0, "K/V row, D=64"};
    out[n++] = (kcase){K_CVT_BF16, 1, 128, 0, 0, "K/V row, D=128"};
    for (kernel_id k = K_QK_STREAM_F32; k <= K_PV_STREAM_BF16; k++) {
        out[n++] = (kcase){k, 1, bk, 128, 0, "decode, D=128"};
        out[n++] = (kcase){k, 4, bk, 128, 0, "decode, KV group of 4, D=128"};
    }
    assert(n <= MAX_CASES);
    return n;
}

/* The K/V storage type of a stream case, and its rows. */
static qkv_dtype stream_dtype(kernel_id k)
{
    const int which = (k - K_QK_STREAM_F32) % 3;
    return which == 0 ? QKV_F32 : which == 1 ? QKV_F16 : QKV_BF16;
}

static const void *stream_rows(const buffers *b, qkv_dtype dt)
{
    return dt == QKV_F32 ? (const void *)b->b : dt == QKV_F16 ? (const void *)b->kv_f16
                                                               : (const void *)b->kv_bf16;
}

/* Nanoseconds the walks have spent in softmax_tile, and in all, since the
   last reset: the share printed beside a walk. */
static double walk_softmax_ns, walk_total_ns;

/* Floats of one packed block of K in the walk. */
static int64_t walk_block_floats(int64_t bk, int64_t d)
{
    return QKV_GEMM_SCRATCH_FLOATS(bk, d);
}

/* K packed block by block (what sdpa's K cache holds), for depth d. */
static void walk_pack(const qkv_kernels *kt, const buffers *b, int64_t bk, int64_t d)
{
    assert((WALK_LEN + bk - 1) / bk * walk_block_floats(bk, d) <= WALK_PACKED_FLOATS);
    for (int64_t j0 = 0; j0 < WALK_LEN; j0 += bk)
        kt->pack_nt(min64(bk, WALK_LEN - j0), d, b->walk_k + j0 * d, d,
                    b->walk_packed + (j0 / bk) * walk_block_floats(bk, d));
}

/* Every block of m = block_q query rows over every tile of n = block_k
   keys, the online softmax state restarted per block as sdpa does. */
static void walk_head(const qkv_kernels *kt, const kcase *c, const buffers *b)
{
    const int64_t bq = c->m, bk = c->n, d = c->k;
    for (int64_t i0 = 0; i0 < WALK_LEN; i0 += bq) {
        const int64_t rows = min64(bq, WALK_LEN - i0);
        for (int64_t r = 0; r < rows; r++) {
            b->walk_max[r] = -INFINITY;
            b->walk_sum[r] = 0.0f;
        }
        memset(b->walk_acc, 0, (size_t)(rows * d) * sizeof(float));
        for (int64_t j0 = 0; j0 < WALK_LEN; j0 += bk) {
            const int64_t keys = min64(bk, WALK_LEN - j0);
            kt->gemm_packed(rows, keys, d, b->walk_q + i0 * d, d,
                            b->walk_packed + (j0 / bk) * walk_block_floats(bk, d),
                            NULL, 0, b->walk_s, bk);
            const double t0 = bench_now_ns();
            kt->softmax_tile(rows, keys, b->walk_s, bk, b->walk_max, b->walk_sum,
                             b->walk_alpha);
            walk_softmax_ns += bench_now_ns() - t0;
            kt->pv_tile(rows, keys, d, b->walk_s, bk, b->walk_v + j0 * d, d,
                        b->walk_alpha, b->walk_acc, d);
        }
    }
}

/* Calls of the alibi case so far: its sign alternates. */
static int64_t alibi_calls;

static void run_case(const qkv_kernels *kt, const kcase *c, const buffers *b)
{
    switch (c->kernel) {
    case K_GEMM_NT:
        kt->gemm_nt(c->m, c->n, c->k, b->a, c->k, b->b, c->k,
                    c->bias ? b->bias : NULL, b->c, c->n, b->scratch);
        break;
    case K_SOFTMAX_TILE:
        /* In place: after the first call the logits are exp values in
           (0, 1] and the running max stays put, so every later call does
           the same work (no overflow, no subnormals). */
        kt->softmax_tile(c->m, c->n, b->s, c->n, b->row_max, b->row_sum, b->alpha);
        break;
    case K_PV_TILE:
        /* alpha = 0.5 keeps the accumulators bounded however often. */
        kt->pv_tile(c->m, c->n, c->k, b->a, c->n, b->b, c->k, b->alpha, b->acc, c->k);
        break;
    case K_EXP_SHIFT_SCALE:
        kt->exp_shift_scale(c->n, b->src, 4.0f, 0.5f, b->dst);
        break;
    case K_ADD_BASE2:
        /* dst drifts by src * log2(e) per call: far from overflow in any run. */
        kt->add_base2(c->n, b->dst, b->src);
        break;
    case K_SOFTCAP:
        /* In place, Gemma 2's cap of 50 in base-2 units: each call pulls
           the logits a little toward 0, never out of the normal range in
           any run. */
        kt->softcap(c->n, b->dst, 50.0f * 1.44269504f);
        break;
    case K_ALIBI:
        /* In place, with +- the same bias every other call, so that the
           logits stay where they started. */
        kt->alibi(c->n, b->dst, alibi_calls++ % 2 ? -0.0625f : 0.0625f, 1000);
        break;
    case K_SCALE_ROW:
        kt->scale_row(c->n, b->src, 0.125f, b->dst);
        break;
    case K_CVT_F16:
        kt->cvt_f16_f32(c->n, b->f16, b->dst);
        break;
    case K_CVT_BF16:
        kt->cvt_bf16_f32(c->n, b->bf16, b->dst);
        break;
    case K_QK_STREAM_F32:
    case K_QK_STREAM_F16:
    case K_QK_STREAM_BF16: {
        const qkv_dtype dt = stream_dtype(c->kernel);
        kt->qk_stream(dt, c->m, c->n, c->k, b->a, c->k, stream_rows(b, dt), c->k,
                      b->c, c->n, NULL);
        break;
    }
    case K_PV_STREAM_F32:
    case K_PV_STREAM_F16:
    case K_PV_STREAM_BF16: {
        const qkv_dtype dt = stream_dtype(c->kernel);
        kt->pv_stream(dt, c->m, c->n, c->k, b->a, c->n, stream_rows(b, dt), c->k,
                      b->alpha, b->acc, c->k, NULL);
        break;
    }
    case K_PACK_NT:
        kt->pack_nt(c->n, c->k, b->b, c->k, b->scratch);
        break;
    case K_GEMM_PACKED:
        /* scratch holds whatever pack_nt left: the timing does not care. */
        kt->gemm_packed(c->m, c->n, c->k, b->a, c->k, b->scratch, NULL, c->bias,
                        b->c, c->n);
        break;
    case K_GEMM_PROJ:
        qkv_gemm_nt_blocked_in(kt, c->m, c->n, c->k, b->proj_a, c->k, b->proj_b, c->k,
                               b->proj_bias, b->proj_c, c->n, 1, b->proj_scratch);
        break;
    case K_WALK: {
        const double t0 = bench_now_ns();
        walk_head(kt, c, b);
        walk_total_ns += bench_now_ns() - t0;
        break;
    }
    }
}

/* The stream products (qk_stream, pv_stream). */
static int is_stream_product(kernel_id k)
{
    return k >= K_QK_STREAM_F32 && k <= K_PV_STREAM_BF16;
}

/* FLOPs of one call for the GEMM-like kernels, else 0. */
static double case_flops(const kcase *c)
{
    if (c->kernel == K_GEMM_NT || c->kernel == K_PV_TILE || is_stream_product(c->kernel) ||
        c->kernel == K_GEMM_PACKED || c->kernel == K_GEMM_PROJ)
        return 2.0 * (double)(c->m * c->n * c->k);
    if (c->kernel == K_WALK)   /* two products of WALK_LEN^2 x D multiply-adds */
        return 4.0 * (double)WALK_LEN * (double)WALK_LEN * (double)c->k;
    return 0.0;
}

static double case_elements(const kcase *c)
{
    return (double)(c->m * c->n * (c->kernel == K_PACK_NT ? c->k : 1));
}

/* Buffers that never share their address bits 6..11: the cores compare
   only the low 12 bits of a load with older stores (4K aliasing), so two
   buffers at the same offset in their pages make a kernel that reads one
   and writes the other look several times slower than it is (first seen
   as a 4x slowdown of cvt_f16_f32). Each buffer starts a different number
   of cache lines into its allocation. They live until the process ends. */
static void *staggered_alloc(size_t bytes)
{
    static unsigned count;
    const size_t offset = (size_t)(count++ * 7 % 64) * 64;
    return (char *)bench_alloc(bytes + 4096) + offset;
}

static void buffers_init(buffers *b)
{
    uint64_t seed = 1;
    const size_t big = (size_t)MAX_ROWS * MAX_DEPTH > (size_t)MAX_ROWS * MAX_COLS
                           ? (size_t)MAX_ROWS * MAX_DEPTH : (size_t)MAX_ROWS * MAX_COLS;
    const size_t kv = (size_t)MAX_COLS * MAX_DEPTH;
    b->a = staggered_alloc(big * sizeof(float));
    bench_fill_f32(b->a, big, 0.0f, 1.0f, &seed);       /* also P: weights >= 0 */
    b->b = staggered_alloc(kv * sizeof(float));
    bench_fill_f32(b->b, kv, -1.0f, 1.0f, &seed);
    b->bias = staggered_alloc(MAX_COLS * sizeof(float));
    bench_fill_f32(b->bias, MAX_COLS, -0.1f, 0.1f, &seed);
    b->c = staggered_alloc(big * sizeof(float));
    b->scratch = staggered_alloc((size_t)QKV_GEMM_SCRATCH_FLOATS(MAX_COLS, MAX_DEPTH) * sizeof(float));
    b->s = staggered_alloc(big * sizeof(float));
    bench_fill_f32(b->s, big, -4.0f, 4.0f, &seed);
    b->row_max = staggered_alloc(MAX_ROWS * sizeof(float));
    b->row_sum = staggered_alloc(MAX_ROWS * sizeof(float));
    b->alpha = staggered_alloc(MAX_ROWS * sizeof(float));
    for (int i = 0; i < MAX_ROWS; i++) {
        b->row_max[i] = 0.0f;
        b->row_sum[i] = 0.0f;
        b->alpha[i] = 0.5f;
    }
    b->acc = staggered_alloc((size_t)MAX_ROWS * MAX_DEPTH * sizeof(float));
    memset(b->acc, 0, (size_t)MAX_ROWS * MAX_DEPTH * sizeof(float));
    b->src = staggered_alloc(MAX_COLS * sizeof(float));
    bench_fill_f32(b->src, MAX_COLS, -4.0f, 4.0f, &seed);
    b->dst = staggered_alloc(MAX_COLS * sizeof(float));
    b->f16 = staggered_alloc(MAX_COLS * sizeof(uint16_t));
    bench_fill_f16(b->f16, MAX_COLS, -1.0f, 1.0f, &seed);
    b->bf16 = staggered_alloc(MAX_COLS * sizeof(uint16_t));
    bench_fill_bf16(b->bf16, MAX_COLS, -1.0f, 1.0f, &seed);
    b->kv_f16 = staggered_alloc(kv * sizeof(uint16_t));
    bench_fill_f16(b->kv_f16, kv, -1.0f, 1.0f, &seed);
    b->kv_bf16 = staggered_alloc(kv * sizeof(uint16_t));
    bench_fill_bf16(b->kv_bf16, kv, -1.0f, 1.0f, &seed);

    const size_t proj_a = (size_t)PROJ_ROWS * PROJ_DEPTH, proj_b = (size_t)PROJ_COLS * PROJ_DEPTH;
    b->proj_a = staggered_alloc(proj_a * sizeof(float));
    bench_fill_f32(b->proj_a, proj_a, -1.0f, 1.0f, &seed);
    b->proj_b = staggered_alloc(proj_b * sizeof(float));
    bench_fill_f32(b->proj_b, proj_b, -0.05f, 0.05f, &seed);
    b->proj_bias = staggered_alloc(PROJ_COLS * sizeof(float));
    bench_fill_f32(b->proj_bias, PROJ_COLS, -0.1f, 0.1f, &seed);
    b->proj_c = staggered_alloc((size_t)PROJ_ROWS * PROJ_COLS * sizeof(float));
    const int64_t scratch = qkv_gemm_nt_scratch_floats(PROJ_ROWS, PROJ_COLS, PROJ_DEPTH, 1);
    b->proj_scratch = staggered_alloc((size_t)scratch * sizeof(float));

    /* Q and K in +-0.3: logits of a few tenths, so that the softmax sees
       new row maxima now and then and rescales, as real heads do. */
    const size_t walk = (size_t)WALK_LEN * WALK_DEPTH;
    b->walk_q = staggered_alloc(walk * sizeof(float));
    bench_fill_f32(b->walk_q, walk, -0.3f, 0.3f, &seed);
    b->walk_k = staggered_alloc(walk * sizeof(float));
    bench_fill_f32(b->walk_k, walk, -0.3f, 0.3f, &seed);
    b->walk_v = staggered_alloc(walk * sizeof(float));
    bench_fill_f32(b->walk_v, walk, -1.0f, 1.0f, &seed);
    b->walk_packed = staggered_alloc((size_t)WALK_PACKED_FLOATS * sizeof(float));
    b->walk_s = staggered_alloc((size_t)MAX_ROWS * MAX_COLS * sizeof(float));
    b->walk_acc = staggered_alloc((size_t)MAX_ROWS * WALK_DEPTH * sizeof(float));
    b->walk_max = staggered_alloc(MAX_ROWS * sizeof(float));
    b->walk_sum = staggered_alloc(MAX_ROWS * sizeof(float));
    b->walk_alpha = staggered_alloc(MAX_ROWS * sizeof(float));
}

/* ------------------------------------------------------------------ */
/* Timing                                                             */
/* ------------------------------------------------------------------ */

enum { SAMPLES = 7 };

/* Median nanoseconds per call. Calls are short, so each sample is a
   batch of calls sized to about 3 ms, after a calibration that also warms
   the caches and the clock. */
static double time_case(const qkv_kernels *kt, const kcase *c, const buffers *b)
{
    int64_t calls = 1;
    for (;;) {
        const double t0 = bench_now_ns();
        for (int64_t i = 0; i < calls; i++)
            run_case(kt, c, b);
        const double ns = bench_now_ns() - t0;
        if (ns > 1e6 || calls > ((int64_t)1 << 30)) {
            calls = (int64_t)((double)calls * 3e6 / ns) + 1;
            break;
        }
        calls *= 4;
    }
    double per_call[SAMPLES];
    for (int s = 0; s < SAMPLES; s++) {
        const double t0 = bench_now_ns();
        for (int64_t i = 0; i < calls; i++)
            run_case(kt, c, b);
        per_call[s] = (bench_now_ns() - t0) / (double)calls;
    }
    return bench_median(per_call, SAMPLES);
}

/* ------------------------------------------------------------------ */
/* Main                                                               */
/* ------------------------------------------------------------------ */

typedef struct options {
    qkv_isa only_isa;          /* QKV_ISA_AUTO: all */
    const char *kernel_filter; /* substring of the kernel name, or NULL */
} options;

static void parse_options(int argc, char **argv, options *o)
{
    static const struct option long_opts[] = {
        {"isa", required_argument, NULL, 'i'},
        {"kernel", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (options){QKV_ISA_AUTO, NULL};
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (opt == 'i') {
            for (int i = QKV_ISA_SCALAR; i <= QKV_ISA_NEON; i++)
                if (strcmp(optarg, qkv_isa_name((qkv_isa)i)) == 0)
                    o->only_isa = (qkv_isa)i;
            if (o->only_isa == QKV_ISA_AUTO || !qkv_isa_supported(o->only_isa)) {
                fprintf(stderr, "kernbench: ISA '%s' is not available here\n", optarg);
                exit(1);
            }
        } else if (opt == 'k') {
            o->kernel_filter = optarg;
        } else {
            printf("usage: kernbench [--isa scalar|avx2|avx512|neon] [--kernel SUBSTRING]\n");
            exit(opt == 'h' ? 0 : 1);
        }
    }
}

static void print_case(const qkv_kernels *kt, const kcase *c, double ns,
                       double scalar_ns, double peak)
{
    char size[48];
    if (c->kernel == K_GEMM_NT || c->kernel == K_PV_TILE || is_stream_product(c->kernel) ||
        c->kernel == K_GEMM_PROJ)
        snprintf(size, sizeof size, "%lldx%lldx%lld%s", (long long)c->m,
                 (long long)c->n, (long long)c->k, c->bias ? "+b" : "");
    else if (c->kernel == K_GEMM_PACKED)
        snprintf(size, sizeof size, "%lldx%lldx%lld%s", (long long)c->m,
                 (long long)c->n, (long long)c->k, c->bias ? "+acc" : "");
    else if (c->kernel == K_WALK)
        snprintf(size, sizeof size, "%lldx%lldxD%lld", (long long)c->m, (long long)c->n,
                 (long long)c->k);
    else if (c->kernel == K_SOFTMAX_TILE || c->kernel == K_PACK_NT)
        snprintf(size, sizeof size, "%lldx%lld", (long long)(c->kernel == K_PACK_NT ? c->n : c->m),
                 (long long)(c->kernel == K_PACK_NT ? c->k : c->n));
    else
        snprintf(size, sizeof size, "%lld", (long long)c->n);

    printf("%-7s %-16s %-13s %10.1f ", qkv_isa_name(kt->isa), kernel_names[c->kernel],
           size, ns);
    const double flops = case_flops(c);
    if (flops > 0.0) {
        const double gflops = flops / ns;
        printf("%8.2f GFLOP/s %5.1f%% ", gflops, peak > 0.0 ? 100.0 * gflops / peak : 0.0);
    } else {
        printf("%8.3f elem/ns %6s ", case_elements(c) / ns, "");
    }
    if (scalar_ns > 0.0)
        printf("%7.2fx  %s", scalar_ns / ns, c->note);
    else
        printf("%7s   %s", "-", c->note);
    if (c->kernel == K_WALK && walk_total_ns > 0.0)
        printf(" (softmax_tile %.0f%%)", 100.0 * walk_softmax_ns / walk_total_ns);
    printf("\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    options o;
    parse_options(argc, argv, &o);
    /* Single-threaded: CPU time leaves out time descheduled. */
    bench_set_clock(BENCH_CLOCK_THREAD_CPU);
    static const qkv_isa order[] = {QKV_ISA_SCALAR, QKV_ISA_AVX2, QKV_ISA_AVX512, QKV_ISA_NEON};
    const qkv_kernels *scalar = qkv_kernels_for(QKV_ISA_SCALAR);
    buffers b;
    buffers_init(&b);

    char cpu[256], date[16];
    bench_cpu_model(cpu, sizeof cpu);
    bench_date(date, sizeof date);
    printf("kernbench: %s, %s, 1 thread, %s clock\n", cpu, date, bench_clock_name());
    printf("%-7s %-16s %-13s %10s %16s %6s %8s  %s\n", "isa", "kernel", "size",
           "ns/call", "throughput", "%peak", "vs scalar", "use");

    for (int i = 0; i < 4; i++) {
        const qkv_kernels *kt = qkv_kernels_for(order[i]);
        if (!kt || (o.only_isa != QKV_ISA_AUTO && o.only_isa != order[i]))
            continue;
        const double peak = bench_fma_peak_gflops(order[i]);
        kcase cases[MAX_CASES];
        const int n = cases_for(kt, cases);
        for (int c = 0; c < n; c++) {
            if (o.kernel_filter && !strstr(kernel_names[cases[c].kernel], o.kernel_filter))
                continue;
            if (cases[c].kernel == K_WALK) {
                walk_pack(kt, &b, cases[c].n, cases[c].k);
                walk_softmax_ns = walk_total_ns = 0.0;
            }
            const double ns = time_case(kt, &cases[c], &b);
            /* The scalar twin at the same size, for the speed-up. */
            const double scalar_ns = kt == scalar ? ns
                                   : cases[c].kernel == K_GEMM_PROJ ||
                                     cases[c].kernel == K_WALK ? 0.0
                                   : time_case(scalar, &cases[c], &b);
            print_case(kt, &cases[c], ns, scalar_ns, peak);
        }
    }
    return 0;
}
