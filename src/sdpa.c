/*
 * Scaled dot-product attention: validation and the flash-style driver.
 *
 * Work is split into tasks of (batch, head, block of block_q query rows).
 * A task packs its query rows (times the scale) into scratch, then walks
 * the keys in blocks of block_k with an online softmax:
 *
 *     S   = Qblk * Kblk^T                      kt->gemm_nt
 *     S  += mask; blocked keys := -INFINITY    here (only where needed)
 *     P   = exp(S - M'), alpha = exp(M - M')   kt->softmax_tile
 *     Acc = diag(alpha) Acc + P * Vblk         kt->pv_tile
 *
 * and finally out = Acc / rowsum (0 for a fully blocked row). Key blocks
 * that every row of the task has blocked (causal, kv_len) are skipped, so
 * the Lq x Lk matrix is never stored. weights, when asked for, come from a
 * second walk over the same blocks that rescales with the final max and
 * sum. Tasks are independent and their blocking does not depend on the
 * thread count, so neither do the results.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "qkv_config.h"

#if QKV_HAVE_OPENMP
#include <omp.h>
#endif

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
    float scale;
    qkv_causal causal;
    int num_threads;
} sdpa_problem;

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
    qkv_span inputs[5], outputs[3];
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

static qkv_status check_kv_len(const int32_t *kv_len, int64_t batch, int64_t lk)
{
    if (!kv_len)
        return QKV_OK;
    for (int64_t b = 0; b < batch; b++)
        if (kv_len[b] < 0 || kv_len[b] > lk)
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
        (st = check_kv_len(p->kv_len, q->shape[0], k->shape[2])))
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
    pr->num_threads = p->num_threads;
    /* The float nearest to 1/sqrt(d), as PyTorch computes it. */
    pr->scale = p->scale != 0.0f ? p->scale : (float)(1.0 / sqrt((double)pr->d));
}

/* ------------------------------------------------------------------ */
/* Per-thread scratch                                                 */
/* ------------------------------------------------------------------ */

/* Offsets (in floats) of each buffer inside one thread's scratch. */
typedef struct scratch_layout {
    int64_t q, s, acc, k, v, gemm, row_max, row_sum, alpha, total;
} scratch_layout;

static int64_t round_up_floats(int64_t n)
{
    const int64_t a = QKV_SCRATCH_ALIGN / (int64_t)sizeof(float);
    return (n + a - 1) / a * a;
}

static qkv_status plan_scratch(const sdpa_problem *pr, int64_t bq, int64_t bk,
                               scratch_layout *l)
{
    /* Sizes are bounded by the validated tensors, whose byte spans fit in
       the address space; the products below still get checked. */
    int64_t sizes[9], off = 0;
    if (!qkv_mul_ok(bq, pr->d, &sizes[0]) || !qkv_mul_ok(bq, bk, &sizes[1]) ||
        !qkv_mul_ok(bq, pr->dv, &sizes[2]) ||
        !qkv_mul_ok(pr->k_dtype == QKV_F32 ? 0 : bk, pr->d, &sizes[3]) ||
        !qkv_mul_ok(pr->v_dtype == QKV_F32 ? 0 : bk, pr->dv, &sizes[4]) ||
        !qkv_mul_ok((bk + 31) / 32 * 32, pr->d, &sizes[5]))
        return QKV_E_OVERFLOW;
    sizes[5] += 64;   /* QKV_GEMM_SCRATCH_FLOATS(bk, d) */
    sizes[6] = sizes[7] = sizes[8] = bq;
    int64_t *fields[9] = {&l->q, &l->s, &l->acc, &l->k, &l->v, &l->gemm,
                          &l->row_max, &l->row_sum, &l->alpha};
    for (int i = 0; i < 9; i++) {
        *fields[i] = off;
        if (!qkv_add_ok(off, round_up_floats(sizes[i]), &off))
            return QKV_E_OVERFLOW;
    }
    l->total = off;
    return QKV_OK;
}

/* ------------------------------------------------------------------ */
/* One task: a block of query rows of one (batch, head)               */
/* ------------------------------------------------------------------ */

typedef struct task_ctx {
    const qkv_kernels *kt;
    const sdpa_problem *pr;
    int64_t b, h, g;          /* batch, query head, its KV head */
    int64_t i0, rows;         /* first query row, rows in the block */
    int64_t bk;               /* keys per block */
    int64_t key_end;          /* keys >= key_end are blocked for every row */
    int64_t causal_shift;     /* row i sees keys j <= i + causal_shift */
    float *scratch;
    const scratch_layout *lay;
} task_ctx;

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Pointer to (and row stride of) n rows of K or V starting at key j0,
   as floats: the tensor itself when it is F32, else converted to buf. */
static const float *kv_rows_f32(const qkv_kernels *kt, const void *base,
                                qkv_dtype dt, const int64_t stride[4],
                                int64_t b, int64_t g, int64_t j0, int64_t n,
                                int64_t width, float *buf, int64_t *ld)
{
    const int64_t off = b * stride[0] + g * stride[1] + j0 * stride[2];
    if (dt == QKV_F32) {
        *ld = n > 1 ? stride[2] : width;
        return (const float *)base + off;
    }
    const uint16_t *src = (const uint16_t *)base + off;
    for (int64_t j = 0; j < n; j++) {
        if (dt == QKV_F16)
            kt->cvt_f16_f32(width, src + j * stride[2], buf + j * width);
        else
            kt->cvt_bf16_f32(width, src + j * stride[2], buf + j * width);
    }
    *ld = width;
    return buf;
}

/* S = (scale * Qblk) Kblk^T for keys j0 .. j0+n-1, then the mask is added
   and keys blocked by the causal rule are set to -INFINITY. kv_len needs
   no work here: key_end already stops the walk before it. */
static void score_tile(const task_ctx *t, int64_t j0, int64_t n, float *s)
{
    const sdpa_problem *pr = t->pr;
    const scratch_layout *lay = t->lay;
    int64_t ldk;
    const float *k = kv_rows_f32(t->kt, pr->k, pr->k_dtype, pr->k_stride,
                                 t->b, t->g, j0, n, pr->d,
                                 t->scratch + lay->k, &ldk);
    t->kt->gemm_nt(t->rows, n, pr->d, t->scratch + lay->q, pr->d, k, ldk,
                   NULL, s, t->bk, t->scratch + lay->gemm);

    if (pr->mask) {
        const float *m = pr->mask + t->b * pr->mask_stride[0] +
                         t->h * pr->mask_stride[1] + j0;
        for (int64_t r = 0; r < t->rows; r++) {
            const float *m_row = m + (t->i0 + r) * pr->mask_stride[2];
            float *s_row = s + r * t->bk;
            for (int64_t c = 0; c < n; c++)
                s_row[c] += m_row[c];
        }
    }
    if (pr->causal != QKV_CAUSAL_NONE) {
        for (int64_t r = 0; r < t->rows; r++) {
            /* First blocked column of this row inside the tile. */
            const int64_t first = max64(0, t->i0 + r + t->causal_shift + 1 - j0);
            float *s_row = s + r * t->bk;
            for (int64_t c = first; c < n; c++)
                s_row[c] = -INFINITY;
        }
    }
}

static void load_scaled_queries(const task_ctx *t)
{
    const sdpa_problem *pr = t->pr;
    float *qbuf = t->scratch + t->lay->q;
    const float *q = pr->q + t->b * pr->q_stride[0] + t->h * pr->q_stride[1];
    for (int64_t r = 0; r < t->rows; r++) {
        const float *src = q + (t->i0 + r) * pr->q_stride[2];
        for (int64_t c = 0; c < pr->d; c++)
            qbuf[r * pr->d + c] = pr->scale * src[c];
    }
}

static void write_outputs(const task_ctx *t)
{
    const sdpa_problem *pr = t->pr;
    const float *acc = t->scratch + t->lay->acc;
    const float *row_max = t->scratch + t->lay->row_max;
    const float *row_sum = t->scratch + t->lay->row_sum;
    float *out = pr->out + t->b * pr->out_stride[0] + t->h * pr->out_stride[1];
    for (int64_t r = 0; r < t->rows; r++) {
        float *dst = out + (t->i0 + r) * pr->out_stride[2];
        const float sum = row_sum[r];
        /* sum is 0 only if every key of the row was blocked. */
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        for (int64_t c = 0; c < pr->dv; c++)
            dst[c] = sum > 0.0f ? acc[r * pr->dv + c] * inv : 0.0f;
        if (pr->lse) {
            const int64_t row = (t->b * pr->heads + t->h) * pr->lq + t->i0 + r;
            pr->lse[row] = sum > 0.0f ? row_max[r] + logf(sum) : -INFINITY;
        }
    }
}

/* The softmax probabilities, from a second walk over the key blocks:
   w = exp(S - M) / sum, exactly 0 where blocked. */
static void write_weights(const task_ctx *t)
{
    const sdpa_problem *pr = t->pr;
    float *s = t->scratch + t->lay->s;
    const float *row_max = t->scratch + t->lay->row_max;
    const float *row_sum = t->scratch + t->lay->row_sum;
    float *w = pr->weights + ((t->b * pr->heads + t->h) * pr->lq + t->i0) * pr->lk;

    for (int64_t j0 = 0; j0 < t->key_end; j0 += t->bk) {
        const int64_t n = min64(t->bk, t->key_end - j0);
        score_tile(t, j0, n, s);
        for (int64_t r = 0; r < t->rows; r++) {
            float *w_row = w + r * pr->lk + j0;
            if (row_sum[r] > 0.0f)
                t->kt->exp_shift_scale(n, s + r * t->bk, row_max[r],
                                       1.0f / row_sum[r], w_row);
            else
                memset(w_row, 0, (size_t)n * sizeof *w_row);
        }
    }
    for (int64_t r = 0; r < t->rows; r++)
        memset(w + r * pr->lk + t->key_end, 0,
               (size_t)(pr->lk - t->key_end) * sizeof(float));
}

static void run_task(task_ctx *t)
{
    const sdpa_problem *pr = t->pr;
    const scratch_layout *lay = t->lay;
    float *s = t->scratch + lay->s;
    float *acc = t->scratch + lay->acc;
    float *row_max = t->scratch + lay->row_max;
    float *row_sum = t->scratch + lay->row_sum;
    float *alpha = t->scratch + lay->alpha;

    load_scaled_queries(t);
    for (int64_t r = 0; r < t->rows; r++) {
        row_max[r] = -INFINITY;
        row_sum[r] = 0.0f;
    }
    memset(acc, 0, (size_t)(t->rows * pr->dv) * sizeof *acc);

    for (int64_t j0 = 0; j0 < t->key_end; j0 += t->bk) {
        const int64_t n = min64(t->bk, t->key_end - j0);
        score_tile(t, j0, n, s);
        t->kt->softmax_tile(t->rows, n, s, t->bk, row_max, row_sum, alpha);
        int64_t ldv;
        const float *v = kv_rows_f32(t->kt, pr->v, pr->v_dtype, pr->v_stride,
                                     t->b, t->g, j0, n, pr->dv,
                                     t->scratch + lay->v, &ldv);
        t->kt->pv_tile(t->rows, n, pr->dv, s, t->bk, v, ldv, alpha, acc, pr->dv);
    }
    write_outputs(t);
    if (pr->weights)
        write_weights(t);
}

/* Task index -> (batch, head, query block), and the keys it may see. */
static void setup_task(task_ctx *t, int64_t task, int64_t q_blocks, int64_t bq)
{
    const sdpa_problem *pr = t->pr;
    /* Query blocks of a head go 0, n-1, 1, n-2, ...: with causal masking a
       block's cost grows with its index, so any contiguous run of tasks
       (what a static schedule hands a thread) pairs cheap with dear. */
    const int64_t pos = task % q_blocks;
    const int64_t qb = pos % 2 == 0 ? pos / 2 : q_blocks - 1 - pos / 2;
    const int64_t bh = task / q_blocks;
    t->h = bh % pr->heads;
    t->b = bh / pr->heads;
    t->g = t->h / pr->group;
    t->i0 = qb * bq;
    t->rows = min64(bq, pr->lq - t->i0);

    int64_t end = pr->kv_len ? pr->kv_len[t->b] : pr->lk;
    t->causal_shift = pr->lk;   /* no causal limit */
    if (pr->causal == QKV_CAUSAL_BOTTOM_RIGHT)
        t->causal_shift = pr->lk - pr->lq;
    else if (pr->causal == QKV_CAUSAL_TOP_LEFT)
        t->causal_shift = 0;
    if (pr->causal != QKV_CAUSAL_NONE)
        end = min64(end, t->i0 + t->rows - 1 + t->causal_shift + 1);
    t->key_end = max64(end, 0);
}

static qkv_status run(const qkv_kernels *kt, const sdpa_problem *pr)
{
    const int64_t bq = kt->block_q, bk = kt->block_k;
    const int64_t q_blocks = (pr->lq + bq - 1) / bq;
    int64_t tasks;
    if (!qkv_mul_ok(pr->batch, pr->heads, &tasks) || !qkv_mul_ok(tasks, q_blocks, &tasks))
        return QKV_E_OVERFLOW;

    scratch_layout lay;
    qkv_status st = plan_scratch(pr, bq, bk, &lay);
    if (st)
        return st;
    const int threads = qkv_thread_count(pr->num_threads, tasks);
    int64_t floats;
    if (!qkv_mul_ok(lay.total, threads, &floats) ||
        (uint64_t)floats > SIZE_MAX / sizeof(float))
        return QKV_E_OVERFLOW;
    float *scratch = qkv_alloc((size_t)floats * sizeof(float));
    if (!scratch)
        return QKV_E_NOMEM;

#if QKV_HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        int tid = 0;
#if QKV_HAVE_OPENMP
        tid = omp_get_thread_num();
#endif
        task_ctx t = {.kt = kt, .pr = pr, .bk = bk, .lay = &lay,
                      .scratch = scratch + (int64_t)tid * lay.total};
#if QKV_HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t task = 0; task < tasks; task++) {
            setup_task(&t, task, q_blocks, bq);
            run_task(&t);
        }
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
