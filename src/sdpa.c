/*
 * Scaled dot-product attention: validation and the flash-style driver.
 *
 * Work is split into tasks. A task owns a set of query rows (a block of
 * block_q rows of one head; or, when every query row of a KV group fits in
 * one block — decoding — all rows of all query heads sharing that KV head,
 * so each K/V row is read once for the group) and a range of keys. It packs
 * its query rows (times the scale) into scratch, then walks its keys in
 * blocks of block_k with an online softmax:
 *
 *     S   = Qrows * Kblk^T                       kt->gemm_packed (gemm_nt,
 *                                                qk_stream for few rows)
 *     S   = softcap(S) + mask + ALiBi; blocked := -INFINITY   (only where needed)
 *     P   = 2^(S - M'), alpha = 2^(M - M')      kt->softmax_tile
 *     Acc = diag(alpha) Acc + P * Vblk          kt->pv_tile (pv_stream)
 *
 * and finally out = Acc / rowsum (0 for a row that saw no key), after a
 * sink, if any, has joined M and rowsum (fold_sink). S is kept in
 * base-2 units (the natural logits times log2 e, folded into the query
 * scale) because the vector units compute 2^x in fewer operations than
 * e^x; mask, softcap, ALiBi, sinks and lse convert at the edges
 * (add_base2, qkv_to_base2 in kernels.h). Key blocks
 * that every row of the task has blocked (causal, window, kv_len) are never
 * visited, so the Lq x Lk matrix is never stored. weights, when asked for,
 * come from a second walk over the same blocks that rescales with the final
 * max and sum.
 *
 * Key blocks start at multiples of block_k. A thread keeps the blocks it
 * has prepared (K packed by kt->pack_nt; V converted from F16/BF16 or
 * copied out of strided rows) in per-thread caches for the next tasks of
 * the same head, which walk the same keys.
 *
 * Split keys: when a task would hold all query rows of its head (few rows,
 * as in decoding) and the keys are many, the keys are cut into chunks whose
 * boundaries depend only on Lk; each (rows, chunk) is a task that leaves
 * its partial (max, sum, Acc) in a buffer, and a second phase merges the
 * chunks of each row by log-sum-exp in chunk order.
 *
 * Tasks are independent and their blocking never depends on the thread
 * count, so neither do the results.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "qkv_config.h"

#if QKV_HAVE_OPENMP
#include <omp.h>
#endif

/* Split keys only for problems with at least this many keys, into at most
   SPLIT_MAX_CHUNKS chunks of at least SPLIT_MIN_CHUNK keys (a multiple of
   SPLIT_ALIGN). */
enum { SPLIT_MIN_CHUNK = 2048, SPLIT_MAX_CHUNKS = 64, SPLIT_ALIGN = 256 };

/* Tasks with at most this many query rows prefetch K and V a tile ahead
   (the stream kernels, or prefetch_next_tile). */
enum { PREFETCH_MAX_ROWS = 16 };

/* Tasks with at least this many query rows keep the key blocks they
   prepare (K packed for gemm_packed; V converted or copied) for the next
   task of the same head, in per-thread caches of at most CACHE_MAX_FLOATS
   each of keys' data, plus each packed block's padding (rings: block b
   takes the slot of block b - slots). 1 MiB holds the 16 blocks of 2048
   keys at D = 128 whole; a ring one slot short of a head's blocks would
   miss twice on every walk. */
enum { CACHE_MIN_ROWS = 16, CACHE_MAX_FLOATS = 1 << 18 };

/* Cached V blocks are stored in panels of at most V_PANEL_COLS columns
   (the widest column block of any pv_tile: 4 zmm of AVX-512): panel c
   holds columns [c, c + w) of the block's keys, row after row, so that a
   chunk of keys that pv_tile keeps in L1 is contiguous. Rows of V wider
   than a panel are 512 bytes or more apart in the tensor, and a chunk of
   them would crowd into half of the L1 sets (measured: pv_tile 5-8% faster
   at D = 128 on panels than on rows). */
enum { V_PANEL_COLS = 64 };

/* Tasks with at most this many query rows stream K and V rows straight
   from the tensors (kt->qk_stream, kt->pv_stream). */
enum { STREAM_MAX_ROWS = 8 };

/* Rows per slab on tiles that some rows see only in part: one 16-row group
   of the AVX-512 softmax (the gemm and pv micro-kernels take it as 6 + 6 +
   4 rows). A slab computes the keys of its first to its last row, so
   taller slabs compute more blocked logits: with a window of 256 keys a
   48-row slab computes 16% more than its rows see, a 16-row one 6%.
   Measured on a sliding window (H=8, L=8192, D=64, window 256, one
   thread, 12 alternating rounds): 16 rows 6.8% faster than 48 (median
   ratio), 12, 18 and 24 rows 1-4%; causal (L=2048) within noise. */
enum { SLAB_ROWS = 16 };

/* The row loops around the kernels (copying strided K/V rows, loading the
   scaled query rows, writing the output rows) ask for the row this many
   rows ahead. Their rows are 256 bytes to a few KiB apart, in the
   token-major buffers of the multi-head layer each in another 4 KiB page,
   where the hardware prefetchers do not follow, so each row waited on
   memory. Measured by perf samples (one thread, AVX-512, 3 runs each):
   the loops, prefetches included, fell from 3.7-3.9% to 2.4-3.1% of the
   layer's calls (d_model 512, 8 heads, 2048 tokens) and from 2.9-3.1% to
   2.0-2.5% of causal attention's (H=8, L=2048, D=64); 4 and 16 rows
   ahead did as well as 8. What is left is the memory's latency with at
   most a few rows in flight. */
enum { ROW_PREFETCH_AHEAD = 8 };

/* Asks for the cache lines of `bytes` bytes at p, for reading or for
   writing. A prefetch never faults, but every address asked for here is
   inside a tensor anyway. */
static void prefetch_read(const void *p, int64_t bytes)
{
    for (int64_t off = 0; off < bytes; off += 64)
        __builtin_prefetch((const char *)p + off, 0, 3);
}

static void prefetch_write(void *p, int64_t bytes)
{
    for (int64_t off = 0; off < bytes; off += 64)
        __builtin_prefetch((char *)p + off, 1, 3);
}

/* A validated call, with sizes and element strides resolved. */
typedef struct sdpa_problem {
    int64_t batch, heads, kv_heads, lq, lk, d, dv, group;
    const float *q;   int64_t q_stride[4];
    const void *k;    int64_t k_stride[4]; qkv_dtype k_dtype;
    const void *v;    int64_t v_stride[4]; qkv_dtype v_dtype;
    float *out;       int64_t out_stride[4];
    const float *mask; int64_t mask_stride[4];   /* 0 where broadcast */
    const int32_t *kv_len;
    float *weights, *lse;
    float scale, softcap;
    float scale_base2;   /* scale * log2(e); +inf when that overflows */
    const float *alibi_slopes, *sinks;
    qkv_causal causal;
    int window;
    int64_t window_left, window_right;
    int num_threads;
} sdpa_problem;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

#define LOG2_E 1.44269504088896340736
#define LN_2 0.69314718055994530942

/* ------------------------------------------------------------------ */
/* Validation                                                         */
/* ------------------------------------------------------------------ */

static int shape_positive(const qkv_tensor *t)
{
    for (int d = 0; d < 4; d++)
        if (t->shape[d] <= 0)
            return 0;
    return 1;
}

/* stride[3] == 1 and every other stride >= 0; a zero stride on a
   dimension longer than 1 only if broadcast_ok. */
static int strides_valid(const qkv_tensor *t, int broadcast_ok)
{
    if (t->stride[3] != 1)
        return 0;
    for (int d = 0; d < 3; d++) {
        if (t->stride[d] < 0)
            return 0;
        if (t->stride[d] == 0 && t->shape[d] > 1 && !broadcast_ok)
            return 0;
    }
    return 1;
}

static int dtype_valid(qkv_dtype dt)
{
    return dt == QKV_F32 || dt == QKV_F16 || dt == QKV_BF16;
}

static qkv_status check_pointers(const qkv_tensor *q, const qkv_tensor *k,
                                 const qkv_tensor *v, const qkv_tensor *out,
                                 const qkv_sdpa_params *p)
{
    if (!q || !k || !v || !out || !q->data || !k->data || !v->data || !out->data)
        return QKV_E_NULL;
    if (p->mask && !p->mask->data)
        return QKV_E_NULL;
    return QKV_OK;
}

static qkv_status check_enums(const qkv_tensor *q, const qkv_tensor *k,
                              const qkv_tensor *v, const qkv_tensor *out,
                              const qkv_sdpa_params *p)
{
    if (q->dtype != QKV_F32 || out->dtype != QKV_F32 ||
        !dtype_valid(k->dtype) || !dtype_valid(v->dtype))
        return QKV_E_ARG;
    if (p->mask && p->mask->dtype != QKV_F32)
        return QKV_E_ARG;
    if ((int)p->causal < QKV_CAUSAL_NONE || (int)p->causal > QKV_CAUSAL_TOP_LEFT)
        return QKV_E_ARG;
    if (p->num_threads < 0 || !isfinite(p->scale))
        return QKV_E_ARG;
    if (!isfinite(p->softcap) || p->softcap < 0.0f)
        return QKV_E_ARG;
    return QKV_OK;
}

static qkv_status check_shapes(const qkv_tensor *q, const qkv_tensor *k,
                               const qkv_tensor *v, const qkv_tensor *out,
                               const qkv_tensor *mask)
{
    if (!shape_positive(q) || !shape_positive(k) || !shape_positive(v) ||
        !shape_positive(out) || (mask && !shape_positive(mask)))
        return QKV_E_SHAPE;
    const int64_t b = q->shape[0], h = q->shape[1], lq = q->shape[2];
    const int64_t hkv = k->shape[1], lk = k->shape[2];
    if (k->shape[0] != b || k->shape[3] != q->shape[3])
        return QKV_E_SHAPE;
    if (v->shape[0] != b || v->shape[1] != hkv || v->shape[2] != lk)
        return QKV_E_SHAPE;
    if (out->shape[0] != b || out->shape[1] != h || out->shape[2] != lq ||
        out->shape[3] != v->shape[3])
        return QKV_E_SHAPE;
    if (h % hkv != 0)
        return QKV_E_SHAPE;
    if (mask && ((mask->shape[0] != b && mask->shape[0] != 1) ||
                 (mask->shape[1] != h && mask->shape[1] != 1) ||
                 mask->shape[2] != lq || mask->shape[3] != lk))
        return QKV_E_SHAPE;
    return QKV_OK;
}

static qkv_status check_strides(const qkv_tensor *q, const qkv_tensor *k,
                                const qkv_tensor *v, const qkv_tensor *out,
                                const qkv_tensor *mask)
{
    if (!strides_valid(q, 0) || !strides_valid(k, 0) || !strides_valid(v, 0) ||
        !strides_valid(out, 0) || (mask && !strides_valid(mask, 1)))
        return QKV_E_ARG;
    return QKV_OK;
}

/* Spans of every buffer; outputs must not overlap inputs or each other,
   and out must not overlap itself. */
static qkv_status check_memory(const qkv_tensor *q, const qkv_tensor *k,
                               const qkv_tensor *v, const qkv_tensor *out,
                               const qkv_sdpa_params *p)
{
    const int64_t b = q->shape[0], h = q->shape[1], lq = q->shape[2];
    const int64_t lk = k->shape[2];
    qkv_span inputs[7], outputs[3];
    int n_in = 0, n_out = 0;
    qkv_status st;

    if ((st = qkv_tensor_span(q, &inputs[n_in++])) ||
        (st = qkv_tensor_span(k, &inputs[n_in++])) ||
        (st = qkv_tensor_span(v, &inputs[n_in++])) ||
        (st = qkv_tensor_span(out, &outputs[n_out++])))
        return st;
    if (p->mask && (st = qkv_tensor_span(p->mask, &inputs[n_in++])))
        return st;
    if (p->kv_len && (st = qkv_array_span(p->kv_len, b, sizeof(int32_t), &inputs[n_in++])))
        return st;
    if (p->alibi_slopes && (st = qkv_array_span(p->alibi_slopes, h, sizeof(float), &inputs[n_in++])))
        return st;
    if (p->sinks && (st = qkv_array_span(p->sinks, h, sizeof(float), &inputs[n_in++])))
        return st;

    int64_t rows, cells;
    if (!qkv_mul_ok(b, h, &rows) || !qkv_mul_ok(rows, lq, &rows) ||
        !qkv_mul_ok(rows, lk, &cells))
        return QKV_E_OVERFLOW;
    if (p->weights && (st = qkv_array_span(p->weights, cells, sizeof(float), &outputs[n_out++])))
        return st;
    if (p->lse && (st = qkv_array_span(p->lse, rows, sizeof(float), &outputs[n_out++])))
        return st;

    if (!qkv_tensor_is_non_overlapping(out))
        return QKV_E_ALIAS;
    for (int o = 0; o < n_out; o++) {
        for (int i = 0; i < n_in; i++)
            if (qkv_spans_overlap(outputs[o], inputs[i]))
                return QKV_E_ALIAS;
        for (int o2 = o + 1; o2 < n_out; o2++)
            if (qkv_spans_overlap(outputs[o], outputs[o2]))
                return QKV_E_ALIAS;
    }
    return QKV_OK;
}

/* Values of the small per-batch and per-head arrays. */
static qkv_status check_values(const qkv_sdpa_params *p, int64_t batch,
                               int64_t heads, int64_t lk)
{
    for (int64_t b = 0; p->kv_len && b < batch; b++)
        if (p->kv_len[b] < 0 || p->kv_len[b] > lk)
            return QKV_E_ARG;
    for (int64_t h = 0; p->alibi_slopes && h < heads; h++)
        if (!isfinite(p->alibi_slopes[h]))
            return QKV_E_ARG;
    for (int64_t h = 0; p->sinks && h < heads; h++)
        if (isnan(p->sinks[h]) || p->sinks[h] == INFINITY)
            return QKV_E_ARG;
    return QKV_OK;
}

static qkv_status validate(const qkv_tensor *q, const qkv_tensor *k,
                           const qkv_tensor *v, const qkv_tensor *out,
                           const qkv_sdpa_params *p)
{
    qkv_status st;
    if ((st = check_pointers(q, k, v, out, p)) ||
        (st = check_enums(q, k, v, out, p)) ||
        (st = check_shapes(q, k, v, out, p->mask)) ||
        (st = check_strides(q, k, v, out, p->mask)) ||
        (st = check_memory(q, k, v, out, p)) ||
        (st = check_values(p, q->shape[0], q->shape[1], k->shape[2])))
        return st;
    return QKV_OK;
}

/* Element strides with the stride of every size-1 dimension set to 0, so
   that offsets never depend on a stride the caller was free to leave
   arbitrary. */
static void resolve_strides(const qkv_tensor *t, int64_t stride[4])
{
    for (int d = 0; d < 4; d++)
        stride[d] = t->shape[d] > 1 ? t->stride[d] : 0;
}

static void make_problem(const qkv_tensor *q, const qkv_tensor *k,
                         const qkv_tensor *v, const qkv_tensor *out,
                         const qkv_sdpa_params *p, sdpa_problem *pr)
{
    memset(pr, 0, sizeof *pr);
    pr->batch = q->shape[0];
    pr->heads = q->shape[1];
    pr->lq = q->shape[2];
    pr->d = q->shape[3];
    pr->kv_heads = k->shape[1];
    pr->lk = k->shape[2];
    pr->dv = v->shape[3];
    pr->group = pr->heads / pr->kv_heads;
    pr->q = q->data;
    pr->k = k->data;
    pr->v = v->data;
    pr->out = out->data;
    pr->k_dtype = k->dtype;
    pr->v_dtype = v->dtype;
    resolve_strides(q, pr->q_stride);
    resolve_strides(k, pr->k_stride);
    resolve_strides(v, pr->v_stride);
    resolve_strides(out, pr->out_stride);
    if (p->mask) {
        pr->mask = p->mask->data;
        resolve_strides(p->mask, pr->mask_stride);
    }
    pr->kv_len = p->kv_len;
    pr->weights = p->weights;
    pr->lse = p->lse;
    pr->causal = p->causal;
    pr->window = p->window != 0;
    /* A side wider than lq + lk already reaches every key; clamping keeps
       the bounds of visible_keys from overflowing. */
    pr->window_left = min64(p->window_left, pr->lq + pr->lk);
    pr->window_right = min64(p->window_right, pr->lq + pr->lk);
    pr->softcap = p->softcap;
    pr->alibi_slopes = p->alibi_slopes;
    pr->sinks = p->sinks;
    pr->num_threads = p->num_threads;
    /* The float nearest to 1/sqrt(d), as PyTorch computes it. */
    pr->scale = p->scale != 0.0f ? p->scale : (float)(1.0 / sqrt((double)pr->d));
    pr->scale_base2 = (float)((double)pr->scale * LOG2_E);
}

/* ------------------------------------------------------------------ */
/* Visibility: which keys a query row may see                         */
/* ------------------------------------------------------------------ */

/* Keys [*lo, *hi) are the only ones row i of batch b may see (causal,
   window and kv_len); *lo >= *hi when it sees none. The mask tensor and
   -INFINITY logits can block more. */
static void visible_keys(const sdpa_problem *pr, int64_t b, int64_t i,
                         int64_t *lo, int64_t *hi)
{
    const int64_t diag = i + pr->lk - pr->lq;   /* bottom-right diagonal */
    int64_t first = 0;
    int64_t end = pr->kv_len ? pr->kv_len[b] : pr->lk;
    if (pr->causal == QKV_CAUSAL_BOTTOM_RIGHT)
        end = min64(end, diag + 1);
    else if (pr->causal == QKV_CAUSAL_TOP_LEFT)
        end = min64(end, i + 1);
    if (pr->window) {
        if (pr->window_left >= 0)
            first = max64(first, diag - pr->window_left);
        if (pr->window_right >= 0)
            end = min64(end, diag + pr->window_right + 1);
    }
    *lo = first;
    *hi = max64(end, first);
}

/* ------------------------------------------------------------------ */
/* Tasks                                                              */
/* ------------------------------------------------------------------ */

/* How the problem is cut into tasks; depends on the shape only. */
typedef struct task_plan {
    int64_t rows_per_head;   /* query rows of one head in a task */
    int64_t heads_per_task;  /* consecutive query heads in a task (1, or group) */
    int64_t row_blocks;      /* tasks along the query rows of one head */
    int64_t row_sets;        /* batch * (heads / heads_per_task) * row_blocks */
    int64_t chunk;           /* keys per chunk (lk when not split) */
    int64_t chunks;
    int64_t tasks;           /* row_sets * chunks */
    int split;               /* chunks > 1: partials merged afterwards */
} task_plan;

static qkv_status plan_tasks(const qkv_kernels *kt, const sdpa_problem *pr,
                             task_plan *tp)
{
    const int64_t bq = kt->block_q;
    memset(tp, 0, sizeof *tp);
    int64_t group_rows;
    if (qkv_mul_ok(pr->lq, pr->group, &group_rows) && group_rows <= bq) {
        /* Decoding-like: all rows of a KV group in one task. */
        tp->rows_per_head = pr->lq;
        tp->heads_per_task = pr->group;
        tp->row_blocks = 1;
    } else {
        tp->rows_per_head = min64(bq, pr->lq);
        tp->heads_per_task = 1;
        tp->row_blocks = (pr->lq + bq - 1) / bq;
    }
    tp->chunk = pr->lk;
    tp->chunks = 1;
    /* Split keys when a head's rows are one task: weights need the final
       statistics during the walk, so they keep one chunk. */
    if (tp->row_blocks == 1 && !pr->weights && pr->lk >= 2 * SPLIT_MIN_CHUNK) {
        int64_t chunk = max64(SPLIT_MIN_CHUNK, (pr->lk + SPLIT_MAX_CHUNKS - 1) / SPLIT_MAX_CHUNKS);
        chunk = (chunk + SPLIT_ALIGN - 1) / SPLIT_ALIGN * SPLIT_ALIGN;
        tp->chunk = chunk;
        tp->chunks = (pr->lk + chunk - 1) / chunk;
        tp->split = tp->chunks > 1;
    }
    if (!qkv_mul_ok(pr->batch, pr->heads / tp->heads_per_task, &tp->row_sets) ||
        !qkv_mul_ok(tp->row_sets, tp->row_blocks, &tp->row_sets) ||
        !qkv_mul_ok(tp->row_sets, tp->chunks, &tp->tasks))
        return QKV_E_OVERFLOW;
    return QKV_OK;
}

/* Offsets (in floats) of each buffer inside one thread's scratch. */
typedef struct scratch_layout {
    int64_t q, s, acc, k, v, gemm, row_max, row_sum, alpha;
    /* The block caches: k_slots packed blocks of k_block_floats, v_slots
       blocks of block_k rows of V, and the tag of each slot (K first). */
    int64_t k_cache, v_cache, tags;
    int64_t k_slots, v_slots, k_block_floats;
    int64_t total;
} scratch_layout;

static int64_t round_up_floats(int64_t n)
{
    const int64_t a = QKV_SCRATCH_ALIGN / (int64_t)sizeof(float);
    return (n + a - 1) / a * a;
}

/* Rows a multiple of 2 KiB apart (token-major views of fused QKV buffers,
   e.g. 3 * 8 * 64 floats) fall into the same few L1 sets, and the kernels'
   passes over a block of them thrash L1 (measured: 20% slower attention
   at H=8, D=64, stride 1536). Such blocks are copied to packed scratch
   first, as F16/BF16 blocks are converted. */
static int rows_share_l1_sets(int64_t stride, int64_t width)
{
    return stride != width && (stride * (int64_t)sizeof(float)) % 2048 == 0;
}

/* Whether blocks of K or V go through the per-thread row buffer. */
static int needs_row_buffer(qkv_dtype dt, const int64_t stride[4], int64_t width)
{
    return dt != QKV_F32 || rows_share_l1_sets(stride[2], width);
}

/* How many blocks (slots) of each cache a thread keeps (0: no cache). */
static void plan_caches(const sdpa_problem *pr, int64_t rows, int64_t bk,
                        scratch_layout *l)
{
    const int64_t blocks = (pr->lk + bk - 1) / bk;
    l->k_slots = l->v_slots = l->k_block_floats = 0;
    if (rows < CACHE_MIN_ROWS || pr->d > CACHE_MAX_FLOATS / bk)
        return;   /* (the second test also keeps the sizes below small) */
    l->k_block_floats = round_up_floats(QKV_GEMM_SCRATCH_FLOATS(bk, pr->d));
    l->k_slots = min64(blocks, CACHE_MAX_FLOATS / (bk * pr->d));
    if ((needs_row_buffer(pr->v_dtype, pr->v_stride, pr->dv) || pr->dv > V_PANEL_COLS) &&
        pr->dv <= CACHE_MAX_FLOATS / bk)
        l->v_slots = min64(blocks, CACHE_MAX_FLOATS / (bk * pr->dv));
}

static qkv_status plan_scratch(const sdpa_problem *pr, int64_t rows,
                               int64_t bk, scratch_layout *l)
{
    int64_t sizes[12], off = 0;
    if (!qkv_mul_ok(rows, pr->d, &sizes[0]) || !qkv_mul_ok(rows, bk, &sizes[1]) ||
        !qkv_mul_ok(rows, pr->dv, &sizes[2]) ||
        !qkv_mul_ok(needs_row_buffer(pr->k_dtype, pr->k_stride, pr->d) ? bk : 0,
                    pr->d, &sizes[3]) ||
        !qkv_mul_ok(needs_row_buffer(pr->v_dtype, pr->v_stride, pr->dv) ? bk : 0,
                    pr->dv, &sizes[4]) ||
        !qkv_mul_ok((bk + 31) / 32 * 32, pr->d, &sizes[5]))
        return QKV_E_OVERFLOW;
    sizes[5] += 64;   /* QKV_GEMM_SCRATCH_FLOATS(bk, d) */
    sizes[6] = sizes[7] = sizes[8] = rows;
    plan_caches(pr, rows, bk, l);
    sizes[9] = l->k_slots * l->k_block_floats;
    sizes[10] = l->v_slots * bk * pr->dv;
    sizes[11] = (l->k_slots + l->v_slots) * (int64_t)(sizeof(int64_t) / sizeof(float));
    int64_t *fields[12] = {&l->q, &l->s, &l->acc, &l->k, &l->v, &l->gemm,
                           &l->row_max, &l->row_sum, &l->alpha,
                           &l->k_cache, &l->v_cache, &l->tags};
    for (int i = 0; i < 12; i++) {
        *fields[i] = off;
        if (!qkv_add_ok(off, round_up_floats(sizes[i]), &off))
            return QKV_E_OVERFLOW;
    }
    l->total = off;
    return QKV_OK;
}

/* One task: rows r = 0..rows-1 are query (head h0 + r / rows_per_head,
   index i0 + r % rows_per_head) of batch b, all on KV head g; the task
   sees keys [key_begin, key_end) at most. */
typedef struct task_ctx {
    const qkv_kernels *kt;
    const sdpa_problem *pr;
    int64_t b, g, h0, i0, rows, rows_per_head;
    int64_t key_begin, key_end;
    int64_t bk;
    /* Keys every row sees: tiles inside [all_lo, all_hi) need no per-row
       bounds. */
    int64_t all_lo, all_hi;
    int transform;        /* softcap, mask, ALiBi or natural_logits */
    /* The scale is too large to carry log2(e) (scale_base2 is +inf): the
       queries take the natural scale and transform_row converts S. */
    int natural_logits;
    float *scratch;
    const scratch_layout *lay;
    /* The (batch, KV head) whose blocks the caches hold; -1: none. Kept
       from one task to the next of the same thread. */
    int64_t cache_b, cache_g;
} task_ctx;

/* The head and query index of row r of the task. A task of one head
   (rows <= rows_per_head) needs no division: these run for every row of
   every slab, and a 64-bit division was a quarter of score_tile's time
   on a sliding window. */
static int64_t row_head(const task_ctx *t, int64_t r)
{
    return t->rows <= t->rows_per_head ? t->h0 : t->h0 + r / t->rows_per_head;
}

static int64_t row_index(const task_ctx *t, int64_t r)
{
    return t->rows <= t->rows_per_head ? t->i0 + r : t->i0 + r % t->rows_per_head;
}

/* Pointer to (and row stride of) n rows of K or V starting at key j0,
   as floats: the tensor itself when it is F32, else converted to buf. */
static const float *kv_rows_f32(const qkv_kernels *kt, const void *base,
                                qkv_dtype dt, const int64_t stride[4],
                                int64_t b, int64_t g, int64_t j0, int64_t n,
                                int64_t width, float *buf, int64_t *ld)
{
    const int64_t off = b * stride[0] + g * stride[1] + j0 * stride[2];
    if (dt == QKV_F32) {
        if (n > 1 && rows_share_l1_sets(stride[2], width)) {
            const float *src = (const float *)base + off;
            for (int64_t j = 0; j < n; j++) {
                if (j + ROW_PREFETCH_AHEAD < n)
                    prefetch_read(src + (j + ROW_PREFETCH_AHEAD) * stride[2],
                                  width * (int64_t)sizeof *src);
                memcpy(buf + j * width, src + j * stride[2], (size_t)width * sizeof *buf);
            }
            *ld = width;
            return buf;
        }
        *ld = n > 1 ? stride[2] : width;
        return (const float *)base + off;
    }
    const uint16_t *src = (const uint16_t *)base + off;
    void (*cvt)(int64_t, const uint16_t *, float *) =
        dt == QKV_F16 ? kt->cvt_f16_f32 : kt->cvt_bf16_f32;
    if (n == 1 || stride[2] == width)
        cvt(n * width, src, buf);   /* contiguous rows: one call for the block */
    else
        for (int64_t j = 0; j < n; j++) {
            if (j + ROW_PREFETCH_AHEAD < n)
                prefetch_read(src + (j + ROW_PREFETCH_AHEAD) * stride[2],
                              width * (int64_t)sizeof *src);
            cvt(width, src + j * stride[2], buf + j * width);
        }
    *ld = width;
    return buf;
}

/* ------------------------------------------------------------------ */
/* Block caches                                                       */
/* ------------------------------------------------------------------ */

/* The tasks of a head (its query blocks) all walk the same key blocks, and
   a thread runs several of them in a row. A block of keys that a task
   prepares — K packed for gemm_packed, V converted to F32 or copied out of
   rows that share L1 sets — is kept in the thread's scratch for the next
   task of the same (batch, KV head). Block b lives in slot b % slots, so
   the blocks a task walks in order stay cached when they fit (a causal
   task's keys from 0, a sliding window's run of keys). Which path a tile
   takes depends only on the tile (where it starts in its block), never
   on what the cache holds, so results do not depend on the order of
   tasks or the thread count. */

/* Keys in the block that starts at key j0 (a multiple of block_k). */
static int64_t block_keys(const task_ctx *t, int64_t j0)
{
    return min64(t->bk, t->pr->lk - j0);
}

/* The end of the tile that starts at key j0: the next multiple of
   block_k, or the task's last key. Tiles are aligned to the blocks even
   when a task's keys start elsewhere (a sliding window): only its first
   tile is then a part of a block, every other one is a cached block or a
   prefix of one. */
static int64_t tile_end(const task_ctx *t, int64_t j0)
{
    return min64((j0 / t->bk + 1) * t->bk, t->key_end);
}

/* Whether keys from j0 on (tiles never cross a block boundary) come from a
   cache of `slots` blocks: any run of keys that starts a multiple of
   QKV_PACK_COLUMN_ALIGN keys into its block, where a packed block can be
   entered (the diagonal slabs of a causal or windowed task, a tile cut
   short by kv_len, as well as whole blocks). */
static int cache_serves(const task_ctx *t, int64_t j0, int64_t slots)
{
    return slots > 0 && (j0 % t->bk) % QKV_PACK_COLUMN_ALIGN == 0;
}

/* The block each slot holds (-1: none), K slots first. */
static int64_t *slot_tags(const task_ctx *t)
{
    return (int64_t *)(void *)(t->scratch + t->lay->tags);
}

/* Empties the caches when this task is on another head than they hold. */
static void claim_caches(task_ctx *t)
{
    const scratch_layout *lay = t->lay;
    if (lay->k_slots + lay->v_slots == 0 ||
        (t->cache_b == t->b && t->cache_g == t->g))
        return;
    int64_t *tags = slot_tags(t);
    for (int64_t i = 0; i < lay->k_slots + lay->v_slots; i++)
        tags[i] = -1;
    t->cache_b = t->b;
    t->cache_g = t->g;
}

/* Whether the task streams its K and V rows through the stream kernels,
   which read them where they are (widening F16/BF16 in registers) and ask
   for the next tile's rows a key at a time as they go. For few rows
   (decoding) that replaces a conversion pass over the block into scratch
   and a second read of it, and keeps the memory busy while they compute;
   more rows would widen every row again for each group of rows, where one
   conversion per block is cheaper. Decided per task, never per thread, so
   results do not depend on the thread count. */
static int streams_rows(const task_ctx *t)
{
    return t->rows <= STREAM_MAX_ROWS;
}

/* Element `at` of a K or V tensor of type dt, as an address. */
static const void *kv_at(const void *base, qkv_dtype dt, int64_t at)
{
    return (const char *)base + at * (int64_t)qkv_dtype_size(dt);
}

/* The n rows one tile after key j0 of K or V, which the stream kernels
   ask the caches for while they compute on keys j0..j0+n-1
   (prefetch_next_tile's job on the other paths: a whole tile of requests
   at once stalls the core until most of it has arrived, so memory and
   arithmetic would take turns); NULL past the task's keys. */
static const void *stream_rows_next(const task_ctx *t, const void *base, qkv_dtype dt,
                                    const int64_t stride[4], int64_t j0, int64_t n)
{
    const int64_t next = tile_end(t, j0);
    if (next + n > t->key_end)
        return NULL;
    return kv_at(base, dt, t->b * stride[0] + t->g * stride[1] + next * stride[2]);
}

/* n rows of K or V from key j0 on, and their stride in elements (any
   stride when n == 1, as kv_rows_f32 does). */
static const void *stream_rows(const task_ctx *t, const void *base, qkv_dtype dt,
                               const int64_t stride[4], int64_t j0, int64_t n,
                               int64_t width, int64_t *ld)
{
    *ld = n > 1 ? stride[2] : width;
    return kv_at(base, dt, t->b * stride[0] + t->g * stride[1] + j0 * stride[2]);
}

/* softcap, then mask and ALiBi, on row r of a tile of keys j0..j0+n-1, all
   in base-2 units: the row itself first when the GEMM left it natural
   (natural_logits), the cap, the mask entries and the slope converted by
   qkv_to_base2 (softcap commutes with the scaling: L cap tanh(x / cap) =
   (L cap) tanh(L x / (L cap))). */
static void transform_row(const task_ctx *t, int64_t r, int64_t j0, int64_t n,
                          float *s_row)
{
    const sdpa_problem *pr = t->pr;
    const int64_t h = row_head(t, r), i = row_index(t, r);
    if (t->natural_logits)
        for (int64_t c = 0; c < n; c++)
            s_row[c] = qkv_to_base2(s_row[c]);
    if (pr->softcap > 0.0f)
        t->kt->softcap(n, s_row, qkv_to_base2(pr->softcap));
    if (pr->mask) {
        const float *m = pr->mask + t->b * pr->mask_stride[0] +
                         h * pr->mask_stride[1] + i * pr->mask_stride[2] + j0;
        t->kt->add_base2(n, s_row, m);
    }
    if (pr->alibi_slopes)
        t->kt->alibi(n, s_row, qkv_to_base2(pr->alibi_slopes[h]), i + pr->lk - pr->lq - j0);
}

/* Sets to -INFINITY the logits of keys j0..j0+n-1 that row i of batch b
   may not see: a run at the start of the tile and a run at its end. */
static void block_outside(const sdpa_problem *pr, int64_t b, int64_t i,
                          int64_t j0, int64_t n, float *s_row)
{
    int64_t lo, hi;
    visible_keys(pr, b, i, &lo, &hi);
    const int64_t first = min64(max64(lo - j0, 0), n);
    const int64_t end = max64(min64(hi - j0, n), first);
    for (int64_t c = 0; c < first; c++)
        s_row[c] = -INFINITY;
    for (int64_t c = end; c < n; c++)
        s_row[c] = -INFINITY;
}

/* The cached, packed block of K that holds key j0, packed whole when its
   slot holds another block, entered at key j0. */
static const float *packed_k_block(const task_ctx *t, int64_t j0)
{
    const sdpa_problem *pr = t->pr;
    const int64_t blk = j0 / t->bk, start = blk * t->bk, slot = blk % t->lay->k_slots;
    float *packed = t->scratch + t->lay->k_cache + slot * t->lay->k_block_floats;
    int64_t *tag = slot_tags(t) + slot;
    if (*tag != blk) {
        const int64_t n = block_keys(t, start);
        int64_t ldk;
        const float *k = kv_rows_f32(t->kt, pr->k, pr->k_dtype, pr->k_stride,
                                     t->b, t->g, start, n, pr->d,
                                     t->scratch + t->lay->k, &ldk);
        t->kt->pack_nt(n, pr->d, k, ldk, packed);
        *tag = blk;
    }
    return packed + (j0 - start) * pr->d;
}

/* Copies `keys` rows of V (F32, row stride ld) into the panels of a
   cached block (see V_PANEL_COLS): panel c0 at block + c0 * bk. */
static void store_v_panels(const float *src, int64_t ld, int64_t keys,
                           int64_t dv, int64_t bk, float *block)
{
    for (int64_t c0 = 0; c0 < dv; c0 += V_PANEL_COLS) {
        const int64_t w = min64(V_PANEL_COLS, dv - c0);
        float *panel = block + c0 * bk;
        for (int64_t j = 0; j < keys; j++)
            memcpy(panel + j * w, src + j * ld + c0, (size_t)w * sizeof *panel);
    }
}

/* The cached block of V that holds key j0, in panels, filled when its slot
   holds another block. */
static const float *v_block_panels(const task_ctx *t, int64_t j0)
{
    const sdpa_problem *pr = t->pr;
    const scratch_layout *lay = t->lay;
    const int64_t blk = j0 / t->bk, start = blk * t->bk, slot = blk % lay->v_slots;
    float *block = t->scratch + lay->v_cache + slot * t->bk * pr->dv;
    int64_t *tag = slot_tags(t) + lay->k_slots + slot;
    if (*tag != blk) {
        /* One panel is the row layout: rows are converted (or copied)
           straight into it; wider rows go through the row buffer, or are
           read from the tensor. */
        float *rows = pr->dv <= V_PANEL_COLS ? block : t->scratch + lay->v;
        int64_t ld;
        const int64_t keys = block_keys(t, start);
        const float *src = kv_rows_f32(t->kt, pr->v, pr->v_dtype, pr->v_stride,
                                       t->b, t->g, start, keys, pr->dv, rows, &ld);
        if (src != block)
            store_v_panels(src, ld, keys, pr->dv, t->bk, block);
        *tag = blk;
    }
    return block;
}

/* acc = diag(alpha) acc + P V for rows [r0, r1) of the task and keys
   j0..j0+n-1, V from the cache (a pv_tile call per panel: the same
   arithmetic per element as one call over whole rows) or the rows. */
static void pv_tile_rows(const task_ctx *t, int64_t r0, int64_t r1, int64_t j0,
                         int64_t n, const float *p)
{
    const sdpa_problem *pr = t->pr;
    const scratch_layout *lay = t->lay;
    const float *alpha = t->scratch + lay->alpha + r0;
    float *acc = t->scratch + lay->acc + r0 * pr->dv;
    if (!cache_serves(t, j0, lay->v_slots)) {
        int64_t ldv;
        const float *v = kv_rows_f32(t->kt, pr->v, pr->v_dtype, pr->v_stride, t->b,
                                     t->g, j0, n, pr->dv, t->scratch + lay->v, &ldv);
        t->kt->pv_tile(r1 - r0, n, pr->dv, p, t->bk, v, ldv, alpha, acc, pr->dv);
        return;
    }
    const float *block = v_block_panels(t, j0);
    const int64_t first = j0 % t->bk;
    for (int64_t c0 = 0; c0 < pr->dv; c0 += V_PANEL_COLS) {
        const int64_t w = min64(V_PANEL_COLS, pr->dv - c0);
        t->kt->pv_tile(r1 - r0, n, w, p, t->bk, block + c0 * t->bk + first * w, w,
                       alpha, acc + c0, pr->dv);
    }
}

/* S = Q K^T for rows [r0, r1) of the task and keys j0..j0+n-1 (into rows
   r0..r1-1 of s), transformed, with keys a row may not see set to
   -INFINITY unless every row sees every key (`inside`). */
static void score_tile(const task_ctx *t, int64_t r0, int64_t r1, int64_t j0,
                       int64_t n, int inside, float *s)
{
    const sdpa_problem *pr = t->pr;
    const scratch_layout *lay = t->lay;
    const float *q = t->scratch + lay->q + r0 * pr->d;
    if (streams_rows(t)) {
        int64_t ldk;
        const void *k = stream_rows(t, pr->k, pr->k_dtype, pr->k_stride, j0, n,
                                    pr->d, &ldk);
        t->kt->qk_stream(pr->k_dtype, r1 - r0, n, pr->d, q, pr->d, k, ldk,
                         s + r0 * t->bk, t->bk,
                         stream_rows_next(t, pr->k, pr->k_dtype, pr->k_stride, j0, n));
    } else if (cache_serves(t, j0, lay->k_slots)) {
        t->kt->gemm_packed(r1 - r0, n, pr->d, q, pr->d, packed_k_block(t, j0),
                           NULL, 0, s + r0 * t->bk, t->bk);
    } else {
        int64_t ldk;
        const float *k = kv_rows_f32(t->kt, pr->k, pr->k_dtype, pr->k_stride,
                                     t->b, t->g, j0, n, pr->d,
                                     t->scratch + lay->k, &ldk);
        t->kt->gemm_nt(r1 - r0, n, pr->d, q, pr->d, k, ldk, NULL,
                       s + r0 * t->bk, t->bk, t->scratch + lay->gemm);
    }

    if (!t->transform && inside)
        return;
    for (int64_t r = r0; r < r1; r++) {
        float *s_row = s + r * t->bk;
        if (t->transform)
            transform_row(t, r, j0, n, s_row);
        if (!inside)
            block_outside(pr, t->b, row_index(t, r), j0, n, s_row);
    }
}

/* Whether the tile of keys j0..j0+n-1 is seen whole by every row. */
static int tile_inside(const task_ctx *t, int64_t j0, int64_t n)
{
    return j0 >= t->all_lo && j0 + n <= t->all_hi;
}

/* Row i of head h of batch element b in q, and in out. */
static const float *query_row(const sdpa_problem *pr, int64_t b, int64_t h, int64_t i)
{
    return pr->q + b * pr->q_stride[0] + h * pr->q_stride[1] + i * pr->q_stride[2];
}

static float *out_row(const sdpa_problem *pr, int64_t b, int64_t h, int64_t i)
{
    return pr->out + b * pr->out_stride[0] + h * pr->out_stride[1] + i * pr->out_stride[2];
}

static void load_scaled_queries(const task_ctx *t)
{
    const sdpa_problem *pr = t->pr;
    float *qbuf = t->scratch + t->lay->q;
    const float scale = t->natural_logits ? pr->scale : pr->scale_base2;
    for (int64_t r = 0; r < t->rows; r++) {
        const int64_t ahead = r + ROW_PREFETCH_AHEAD;
        if (ahead < t->rows)
            prefetch_read(query_row(pr, t->b, row_head(t, ahead), row_index(t, ahead)),
                          pr->d * (int64_t)sizeof(float));
        t->kt->scale_row(pr->d, query_row(pr, t->b, row_head(t, r), row_index(t, r)),
                         scale, qbuf + r * pr->d);
    }
}

/* The running statistics start from nothing: the sink joins them when the
   row is finished (fold_sink), so that a row whose sum stays 0 is known to
   have seen no key. */
static void start_rows(const task_ctx *t)
{
    float *row_max = t->scratch + t->lay->row_max;
    float *row_sum = t->scratch + t->lay->row_sum;
    for (int64_t r = 0; r < t->rows; r++) {
        row_max[r] = -INFINITY;
        row_sum[r] = 0.0f;
    }
    memset(t->scratch + t->lay->acc, 0, (size_t)(t->rows * t->pr->dv) * sizeof(float));
}

/* The natural log-sum-exp of a row from its base-2 statistics. A sum of
   exactly 1 at the sink's own maximum is the sink alone (no key seen, or
   none whose weight is a normal float): lse is then the sink itself, not
   its round trip through base 2. A saturated maximum stands for FLT_MAX
   (qkv_to_base2). */
static float row_lse(const sdpa_problem *pr, int64_t h, float row_max, float row_sum)
{
    if (row_sum == 0.0f)
        return -INFINITY;
    if (fabsf(row_max) == FLT_MAX)
        return row_max;   /* saturated (qkv_to_base2): the log of the sum is below its ulp */
    if (row_sum == 1.0f && pr->sinks && row_max == qkv_to_base2(pr->sinks[h]))
        return pr->sinks[h];
    return (float)(((double)row_max + log2((double)row_sum)) * LN_2);
}

/* Joins the sink of head h (a logit that adds to the denominator and no
   value) to a row's statistics over its keys, *row_max and *row_sum,
   which become those of the whole row; returns the factor, 2^(old max -
   new max), that the row's accumulators take. A NaN maximum stays NaN. */
static float fold_sink(const sdpa_problem *pr, int64_t h, float *row_max, float *row_sum)
{
    const float sink = pr->sinks ? qkv_to_base2(pr->sinks[h]) : -INFINITY;
    if (sink == -INFINITY)
        return 1.0f;
    if (*row_sum == 0.0f) {   /* no key: the sink alone */
        *row_max = sink;
        *row_sum = 1.0f;
        return 0.0f;
    }
    const float m = sink > *row_max ? sink : *row_max;
    const float factor = exp2f(*row_max - m);
    *row_sum = *row_sum * factor + exp2f(sink - m);
    *row_max = m;
    return factor;
}

/* out, lse of one row from its statistics over its keys (max, sum and
   accumulators), which then take the sink; row_max and row_sum are left
   as the whole row's, for write_weights. */
static void finish_row(const qkv_kernels *kt, const sdpa_problem *pr, int64_t b,
                       int64_t h, int64_t i, const float *acc, float *row_max,
                       float *row_sum)
{
    float *dst = out_row(pr, b, h, i);
    const float keys_sum = *row_sum;
    const float factor = fold_sink(pr, h, row_max, row_sum);
    /* keys_sum is 0 only if every key of the row was blocked: out is 0
       whatever the accumulators took from blocked V rows (0 * inf is NaN).
       A NaN sum (a NaN or +inf logit) must reach out, weights and lse. */
    if (keys_sum == 0.0f)
        memset(dst, 0, (size_t)pr->dv * sizeof *dst);
    else
        kt->scale_row(pr->dv, acc, factor / *row_sum, dst);
    if (pr->lse) {
        const int64_t row = (b * pr->heads + h) * pr->lq + i;
        pr->lse[row] = row_lse(pr, h, *row_max, *row_sum);
    }
}

/* The softmax probabilities, from a second walk over the key blocks:
   w = 2^(S - M) / sum, exactly 0 where blocked. */
static void write_weights(const task_ctx *t)
{
    const sdpa_problem *pr = t->pr;
    float *s = t->scratch + t->lay->s;
    const float *row_max = t->scratch + t->lay->row_max;
    const float *row_sum = t->scratch + t->lay->row_sum;

    for (int64_t r = 0; r < t->rows; r++) {
        float *w = pr->weights + ((t->b * pr->heads + row_head(t, r)) * pr->lq +
                                  row_index(t, r)) * pr->lk;
        memset(w, 0, (size_t)t->key_begin * sizeof *w);
        memset(w + t->key_end, 0, (size_t)(pr->lk - t->key_end) * sizeof *w);
    }
    for (int64_t j0 = t->key_begin, n; j0 < t->key_end; j0 += n) {
        n = tile_end(t, j0) - j0;
        score_tile(t, 0, t->rows, j0, n, tile_inside(t, j0, n), s);
        for (int64_t r = 0; r < t->rows; r++) {
            float *w = pr->weights + ((t->b * pr->heads + row_head(t, r)) * pr->lq +
                                      row_index(t, r)) * pr->lk + j0;
            if (row_sum[r] != 0.0f)
                t->kt->exp_shift_scale(n, s + r * t->bk, row_max[r],
                                       1.0f / row_sum[r], w);
            else
                memset(w, 0, (size_t)n * sizeof *w);
        }
    }
}

/* Asks for n rows of K or V (type dt) from key j0 on, each `width`
   elements, to be brought into the caches ahead of use. */
static void prefetch_rows(const void *base, qkv_dtype dt, const int64_t stride[4],
                          int64_t b, int64_t g, int64_t j0, int64_t n, int64_t width)
{
    const int64_t elem_bytes = (int64_t)qkv_dtype_size(dt);
    const char *row = kv_at(base, dt, b * stride[0] + g * stride[1] + j0 * stride[2]);
    const int64_t row_bytes = width * elem_bytes, step = stride[2] * elem_bytes;
    for (int64_t j = 0; j < n; j++, row += step)
        prefetch_read(row, row_bytes);
}

/* Few query rows make the walk bound by the K and V stream: with a tile
   of compute between consecutive reads, the hardware prefetchers alone
   leave the memory idle, so the next tile is requested one tile ahead.
   Tasks that stream their rows (streams_rows) have the stream kernels
   ask for them a key at a time; up to PREFETCH_MAX_ROWS rows, the whole
   tile is asked for here. */
static void prefetch_next_tile(const task_ctx *t, int64_t j0, int64_t n)
{
    const sdpa_problem *pr = t->pr;
    if (streams_rows(t) || t->rows > PREFETCH_MAX_ROWS || j0 >= t->key_end)
        return;
    n = min64(n, t->key_end - j0);
    prefetch_rows(pr->k, pr->k_dtype, pr->k_stride, t->b, t->g, j0, n, pr->d);
    prefetch_rows(pr->v, pr->v_dtype, pr->v_stride, t->b, t->g, j0, n, pr->dv);
}

/* One online-softmax step of rows [r0, r1) over keys j0..j0+n-1. */
static void step_rows(const task_ctx *t, int64_t r0, int64_t r1, int64_t j0,
                      int64_t n, int inside)
{
    const sdpa_problem *pr = t->pr;
    const scratch_layout *lay = t->lay;
    float *s = t->scratch + lay->s;
    score_tile(t, r0, r1, j0, n, inside, s);
    t->kt->softmax_tile(r1 - r0, n, s + r0 * t->bk, t->bk,
                        t->scratch + lay->row_max + r0,
                        t->scratch + lay->row_sum + r0,
                        t->scratch + lay->alpha + r0);
    if (streams_rows(t)) {
        int64_t ldv;
        const void *v = stream_rows(t, pr->v, pr->v_dtype, pr->v_stride, j0, n,
                                    pr->dv, &ldv);
        t->kt->pv_stream(pr->v_dtype, r1 - r0, n, pr->dv, s + r0 * t->bk, t->bk,
                         v, ldv, t->scratch + lay->alpha + r0,
                         t->scratch + lay->acc + r0 * pr->dv, pr->dv,
                         stream_rows_next(t, pr->v, pr->v_dtype, pr->v_stride, j0, n));
    } else {
        pv_tile_rows(t, r0, r1, j0, n, s + r0 * t->bk);
    }
}

/* A tile that some rows see only in part (the diagonal of a causal or
   windowed task): the rows go in slabs of SLAB_ROWS, each over only the
   keys of the tile that its rows see, so that logits every row of a slab
   has blocked are never computed. Visibility bounds are monotonic in the
   row index, so a slab sees [lo of its first row, hi of its last row).
   A slab that sees no key of the tile is skipped, which is the step
   softmax_tile would take for it (alpha = 1, nothing added). */
static void step_slabs(const task_ctx *t, int64_t j0, int64_t n)
{
    const sdpa_problem *pr = t->pr;
    for (int64_t r0 = 0; r0 < t->rows; r0 += SLAB_ROWS) {
        const int64_t r1 = min64(t->rows, r0 + SLAB_ROWS);
        int64_t first_lo, first_hi, last_lo, last_hi;
        visible_keys(pr, t->b, row_index(t, r0), &first_lo, &first_hi);
        visible_keys(pr, t->b, row_index(t, r1 - 1), &last_lo, &last_hi);
        const int64_t end = min64(j0 + n, last_hi);
        int64_t begin = max64(j0, first_lo);
        if (end <= begin)
            continue;
        /* Start at a key where a cached block can be entered: at most
           QKV_PACK_COLUMN_ALIGN - 1 keys more, all blocked for these rows
           (keys of the same block, never past the task's last key). */
        const int64_t block_start = begin / t->bk * t->bk;
        begin = block_start + (begin - block_start) / QKV_PACK_COLUMN_ALIGN * QKV_PACK_COLUMN_ALIGN;
        step_rows(t, r0, r1, begin, end - begin, begin >= last_lo && end <= first_hi);
    }
}

/* The online-softmax walk over the task's keys. Rows of several heads
   (heads_per_task > 1) are not monotonic in visibility and take whole
   tiles. */
static void walk_keys(const task_ctx *t)
{
    for (int64_t j0 = t->key_begin, n; j0 < t->key_end; j0 += n) {
        n = tile_end(t, j0) - j0;
        prefetch_next_tile(t, j0 + n, t->bk);
        const int inside = tile_inside(t, j0, n);
        if (inside || t->rows_per_head != t->rows)
            step_rows(t, 0, t->rows, j0, n, inside);
        else
            step_slabs(t, j0, n);
    }
}

/* Whether the keys a row sees grow with its index (causal masking, or a
   window unlimited on the left), so that later query blocks cost more. */
static int cost_grows_with_row(const sdpa_problem *pr)
{
    return pr->causal != QKV_CAUSAL_NONE || (pr->window && pr->window_left < 0);
}

/* Task index -> its rows and keys. Row sets vary slowest, chunks fastest.
   When a block's cost grows with its index, the row blocks of a head go
   0, n-1, 1, n-2, ..., so that any contiguous run of tasks (what a static
   schedule hands a thread) pairs cheap with dear; otherwise they go in
   order, so that a thread's consecutive tasks walk neighbouring keys (a
   sliding window) and find them in its block caches. */
static void setup_task(task_ctx *t, const task_plan *tp, int64_t task)
{
    const sdpa_problem *pr = t->pr;
    const int64_t chunk = task % tp->chunks;
    const int64_t set = task / tp->chunks;
    const int64_t pos = set % tp->row_blocks;
    const int64_t block = !cost_grows_with_row(pr) ? pos
                          : pos % 2 == 0 ? pos / 2 : tp->row_blocks - 1 - pos / 2;
    const int64_t head_sets = pr->heads / tp->heads_per_task;
    const int64_t hs = (set / tp->row_blocks) % head_sets;
    t->b = set / tp->row_blocks / head_sets;
    t->h0 = hs * tp->heads_per_task;
    t->g = t->h0 / pr->group;
    t->rows_per_head = tp->rows_per_head;
    t->i0 = block * tp->rows_per_head;
    const int64_t rows_here = min64(tp->rows_per_head, pr->lq - t->i0);
    if (tp->heads_per_task > 1)
        t->rows = rows_here * tp->heads_per_task;   /* rows_here == lq */
    else
        t->rows = rows_here;

    /* Visibility bounds are monotonic in the row index. */
    int64_t first_lo, first_hi, last_lo, last_hi;
    visible_keys(pr, t->b, t->i0, &first_lo, &first_hi);
    visible_keys(pr, t->b, t->i0 + rows_here - 1, &last_lo, &last_hi);
    const int64_t c0 = chunk * tp->chunk, c1 = min64(pr->lk, c0 + tp->chunk);
    t->key_begin = max64(first_lo, c0);
    t->key_end = min64(last_hi, c1);
    if (t->key_end < t->key_begin)
        t->key_end = t->key_begin;
    t->all_lo = last_lo;
    t->all_hi = first_hi;
    t->natural_logits = !isfinite(pr->scale_base2);
    t->transform = pr->softcap > 0.0f || pr->mask || pr->alibi_slopes || t->natural_logits;
}

/* A chunk's partial result of one row: max, sum, then dv accumulators. */
static int64_t partial_floats(const sdpa_problem *pr) { return pr->dv + 2; }

static void store_partials(const task_ctx *t, const task_plan *tp,
                           int64_t task, float *partials)
{
    const int64_t width = partial_floats(t->pr);
    const int64_t set = task / tp->chunks, chunk = task % tp->chunks;
    const int64_t rows_per_set = tp->rows_per_head * tp->heads_per_task;
    const float *row_max = t->scratch + t->lay->row_max;
    const float *row_sum = t->scratch + t->lay->row_sum;
    const float *acc = t->scratch + t->lay->acc;
    for (int64_t r = 0; r < t->rows; r++) {
        float *dst = partials + ((set * rows_per_set + r) * tp->chunks + chunk) * width;
        dst[0] = row_max[r];
        dst[1] = row_sum[r];
        memcpy(dst + 2, acc + r * t->pr->dv, (size_t)t->pr->dv * sizeof(float));
    }
}

/* Merges the chunks of one row by log-sum-exp, in chunk order, and writes
   out and lse (the sink joins in finish_row). acc is dv floats of
   scratch. */
static void merge_row(const qkv_kernels *kt, const sdpa_problem *pr,
                      const task_plan *tp, int64_t item, const float *partials,
                      float *acc)
{
    const int64_t width = partial_floats(pr);
    const int64_t rows_per_set = tp->rows_per_head * tp->heads_per_task;
    const int64_t set = item / rows_per_set, r = item % rows_per_set;
    const int64_t head_sets = pr->heads / tp->heads_per_task;
    const int64_t b = set / head_sets;   /* row_blocks == 1 when split */
    const int64_t h = (set % head_sets) * tp->heads_per_task + r / tp->rows_per_head;
    const int64_t i = r % tp->rows_per_head;
    const float *part = partials + item * tp->chunks * width;

    float m = -INFINITY;
    for (int64_t c = 0; c < tp->chunks; c++)
        if (part[c * width] > m)
            m = part[c * width];
    float sum = 0.0f;
    memset(acc, 0, (size_t)pr->dv * sizeof *acc);
    for (int64_t c = 0; c < tp->chunks; c++) {
        const float *p = part + c * width;
        if (p[1] == 0.0f)
            continue;   /* the chunk saw no key; any other has a maximum
                           above -inf, or NaN (which the factor carries) */
        const float f = exp2f(p[0] - m);
        sum += p[1] * f;
        for (int64_t d = 0; d < pr->dv; d++)
            acc[d] += p[2 + d] * f;
    }
    finish_row(kt, pr, b, h, i, acc, &m, &sum);
}

static void run_task(task_ctx *t, const task_plan *tp, int64_t task,
                     float *partials)
{
    setup_task(t, tp, task);
    claim_caches(t);
    load_scaled_queries(t);
    start_rows(t);
    walk_keys(t);
    if (tp->split) {
        store_partials(t, tp, task, partials);
        return;
    }
    const float *acc = t->scratch + t->lay->acc;
    float *row_max = t->scratch + t->lay->row_max;
    float *row_sum = t->scratch + t->lay->row_sum;
    for (int64_t r = 0; r < t->rows; r++) {
        const int64_t ahead = r + ROW_PREFETCH_AHEAD;
        if (ahead < t->rows)
            prefetch_write(out_row(t->pr, t->b, row_head(t, ahead), row_index(t, ahead)),
                           t->pr->dv * (int64_t)sizeof(float));
        finish_row(t->kt, t->pr, t->b, row_head(t, r), row_index(t, r),
                   acc + r * t->pr->dv, row_max + r, row_sum + r);
    }
    if (t->pr->weights)
        write_weights(t);
}

static qkv_status run(const qkv_kernels *kt, const sdpa_problem *pr)
{
    task_plan tp;
    scratch_layout lay;
    qkv_status st;
    if ((st = plan_tasks(kt, pr, &tp)) ||
        (st = plan_scratch(pr, tp.rows_per_head * tp.heads_per_task, kt->block_k, &lay)))
        return st;

    const int threads = qkv_thread_count(pr->num_threads, tp.tasks);
    int64_t scratch_floats, partial_count = 0, merge_items = 0;
    if (!qkv_mul_ok(lay.total, threads, &scratch_floats))
        return QKV_E_OVERFLOW;
    if (tp.split) {
        merge_items = tp.row_sets * tp.rows_per_head * tp.heads_per_task;
        if (!qkv_mul_ok(merge_items, tp.chunks * partial_floats(pr), &partial_count) ||
            !qkv_add_ok(scratch_floats, partial_count, &scratch_floats))
            return QKV_E_OVERFLOW;
    }
    if ((uint64_t)scratch_floats > SIZE_MAX / sizeof(float))
        return QKV_E_OVERFLOW;
    float *scratch = qkv_alloc((size_t)scratch_floats * sizeof(float));
    if (!scratch)
        return QKV_E_NOMEM;
    float *partials = scratch + lay.total * threads;

#if QKV_HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        int tid = 0;
#if QKV_HAVE_OPENMP
        tid = omp_get_thread_num();
#endif
        float *mine = scratch + (int64_t)tid * lay.total;
        task_ctx t = {.kt = kt, .pr = pr, .bk = kt->block_k, .lay = &lay,
                      .scratch = mine, .cache_b = -1, .cache_g = -1};
#if QKV_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t task = 0; task < tp.tasks; task++)
            run_task(&t, &tp, task, partials);
        /* (implicit barrier) then merge the chunks of every row. */
#if QKV_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t item = 0; item < merge_items; item++)
            merge_row(kt, pr, &tp, item, partials, mine + lay.acc);
    }
    qkv_free(scratch);
    return QKV_OK;
}

/* ------------------------------------------------------------------ */
/* Entry points                                                       */
/* ------------------------------------------------------------------ */

qkv_status qkv_sdpa_with(const qkv_kernels *kt,
                         const qkv_tensor *q, const qkv_tensor *k,
                         const qkv_tensor *v, const qkv_tensor *out,
                         const qkv_sdpa_params *params)
{
    static const qkv_sdpa_params defaults;
    const qkv_sdpa_params *p = params ? params : &defaults;
    qkv_status st = validate(q, k, v, out, p);
    if (st)
        return st;
    sdpa_problem pr;
    make_problem(q, k, v, out, p, &pr);
    return run(kt, &pr);
}

qkv_status qkv_sdpa(const qkv_tensor *q, const qkv_tensor *k,
                    const qkv_tensor *v, const qkv_tensor *out,
                    const qkv_sdpa_params *params)
{
    return qkv_sdpa_with(qkv_kernels_active(), q, k, v, out, params);
}

qkv_status qkv_alibi_slopes(int64_t n_heads, float *slopes)
{
    if (!slopes)
        return QKV_E_NULL;
    if (n_heads <= 0)
        return QKV_E_SHAPE;
    int64_t pow2 = 1;
    while (pow2 * 2 <= n_heads)
        pow2 *= 2;
    /* Slopes of a power of two p: 2^(-8/p), 2^(-16/p), ... */
    for (int64_t h = 0; h < pow2; h++)
        slopes[h] = (float)exp2(-8.0 * (double)(h + 1) / (double)pow2);
    /* The rest: the odd-numbered slopes of 2p (1st, 3rd, ...). */
    for (int64_t h = pow2; h < n_heads; h++)
        slopes[h] = (float)exp2(-8.0 * (double)(2 * (h - pow2) + 1) / (double)(2 * pow2));
    return QKV_OK;
}
