/*
 * The multi-head attention layer (PyTorch nn.MultiheadAttention,
 * batch_first=True):
 *
 *     Q = x_q W_q^T + b_q     K = x_k W_k^T + b_k     V = x_v W_v^T + b_v
 *     head h = sdpa(Q_h, K_g, V_g), g = h / (n_heads / n_kv_heads)
 *     y = concat(heads) W_o^T + b_o
 *
 * The projections are qkv_gemm_nt_blocked calls that write token-major
 * [batch, seq, heads, head_dim] buffers, which the attention driver reads
 * in place through strided views; it writes its output token-major too, so
 * that buffer already is the concatenation of the heads and feeds the W_o
 * GEMM without a copy.
 *
 * The layer stores W_q, W_k, W_v back to back (and b_q, b_k, b_v), so when
 * the inputs coincide one GEMM computes several projections at once:
 * self-attention (x_q == x_k == x_v) runs a single fused QKV GEMM, and
 * x_k == x_v a fused KV GEMM. Fewer, wider GEMMs read the input once and
 * give the threads more blocks to share.
 *
 * Every per-call buffer is allocated by the call, so a layer is never
 * written after qkv_mha_create and concurrent forwards are safe. Every
 * check and every allocation happens before the first write into a
 * caller's buffer; the attention weights go through an internal buffer
 * and reach the caller only once the last fallible step has succeeded.
 */
#include <string.h>

#include "internal.h"

struct qkv_mha {
    int64_t d_model, n_heads, n_kv_heads, head_dim, kdim, vdim;
    int64_t q_width;    /* n_heads * head_dim: the width of Q and of concat */
    int64_t kv_width;   /* n_kv_heads * head_dim: the width of K and V */
    /* nn.Linear layout. w_k follows w_q and w_v follows w_k in memory
       (likewise b_q, b_k, b_v), which the fused projections rely on. */
    const float *w_q, *w_k, *w_v, *w_o;
    const float *b_q, *b_k, *b_v, *b_o;   /* NULL without bias */
};

/* Floats per QKV_SCRATCH_ALIGN bytes: offsets rounded to this keep every
   array of an allocation aligned. */
enum { ALIGN_FLOATS = QKV_SCRATCH_ALIGN / sizeof(float) };

/* Appends an array of n floats to a layout whose size so far is *total
   floats: its offset goes to *offset, and *total grows to the next aligned
   end. 0 on overflow. */
static int layout_push(int64_t *total, int64_t n, int64_t *offset)
{
    int64_t end;
    if (!qkv_add_ok(*total, n, &end) || !qkv_add_ok(end, ALIGN_FLOATS - 1, &end))
        return 0;
    *offset = *total;
    *total = end / ALIGN_FLOATS * ALIGN_FLOATS;
    return 1;
}

/* Bytes of n floats, if that fits in size_t. */
static int float_bytes_ok(int64_t n, size_t *bytes)
{
    if (n < 0 || (uint64_t)n > SIZE_MAX / sizeof(float))
        return 0;
    *bytes = (size_t)n * sizeof(float);
    return 1;
}

/* ------------------------------------------------------------------ */
/* Creation                                                           */
/* ------------------------------------------------------------------ */

static qkv_status check_create_pointers(qkv_mha **out, const qkv_mha_config *cfg,
                                        const qkv_mha_weights *w)
{
    if (!out || !cfg || !w || !w->w_q || !w->w_k || !w->w_v || !w->w_o)
        return QKV_E_NULL;
    if (cfg->bias && (!w->b_q || !w->b_k || !w->b_v || !w->b_o))
        return QKV_E_NULL;
    return QKV_OK;
}

/* cfg with its defaults filled in (into the fields of m), or the reason
   it is not a layer. */
static qkv_status resolve_config(const qkv_mha_config *cfg, qkv_mha *m)
{
    if (cfg->d_model <= 0 || cfg->n_heads <= 0 || cfg->head_dim < 0 ||
        cfg->n_kv_heads < 0 || cfg->kdim < 0 || cfg->vdim < 0)
        return QKV_E_SHAPE;
    m->d_model = cfg->d_model;
    m->n_heads = cfg->n_heads;
    m->n_kv_heads = cfg->n_kv_heads ? cfg->n_kv_heads : cfg->n_heads;
    m->kdim = cfg->kdim ? cfg->kdim : cfg->d_model;
    m->vdim = cfg->vdim ? cfg->vdim : cfg->d_model;
    if (m->n_heads % m->n_kv_heads != 0)
        return QKV_E_SHAPE;
    if (cfg->head_dim == 0 && cfg->d_model % cfg->n_heads != 0)
        return QKV_E_SHAPE;
    m->head_dim = cfg->head_dim ? cfg->head_dim : cfg->d_model / cfg->n_heads;
    if (!qkv_mul_ok(m->n_heads, m->head_dim, &m->q_width) ||
        !qkv_mul_ok(m->n_kv_heads, m->head_dim, &m->kv_width))
        return QKV_E_OVERFLOW;
    return QKV_OK;
}

/* Where each array lives in the layer's weight block, in floats. */
typedef struct weight_layout {
    int64_t w_q, w_k, w_v, w_o, b_q, b_k, b_v, b_o, total;
    int64_t n_wq, n_wk, n_wv, n_wo;   /* element counts */
} weight_layout;

static qkv_status plan_weights(const qkv_mha *m, int bias, weight_layout *l)
{
    memset(l, 0, sizeof *l);
    int64_t n_wqkv, n_bqkv;
    if (!qkv_mul_ok(m->q_width, m->d_model, &l->n_wq) ||
        !qkv_mul_ok(m->kv_width, m->kdim, &l->n_wk) ||
        !qkv_mul_ok(m->kv_width, m->vdim, &l->n_wv) ||
        !qkv_mul_ok(m->d_model, m->q_width, &l->n_wo) ||
        !qkv_add_ok(l->n_wq, l->n_wk, &n_wqkv) ||
        !qkv_add_ok(n_wqkv, l->n_wv, &n_wqkv) ||
        !qkv_add_ok(m->q_width, m->kv_width, &n_bqkv) ||
        !qkv_add_ok(n_bqkv, m->kv_width, &n_bqkv))
        return QKV_E_OVERFLOW;
    if (!layout_push(&l->total, n_wqkv, &l->w_q) ||
        !layout_push(&l->total, l->n_wo, &l->w_o))
        return QKV_E_OVERFLOW;
    l->w_k = l->w_q + l->n_wq;
    l->w_v = l->w_k + l->n_wk;
    if (bias) {
        if (!layout_push(&l->total, n_bqkv, &l->b_q) ||
            !layout_push(&l->total, m->d_model, &l->b_o))
            return QKV_E_OVERFLOW;
        l->b_k = l->b_q + m->q_width;
        l->b_v = l->b_k + m->kv_width;
    }
    return QKV_OK;
}

static float *copy_floats(float *dst, const float *src, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof *dst);
    return dst;
}

qkv_status qkv_mha_create(qkv_mha **out, const qkv_mha_config *cfg, const qkv_mha_weights *w)
{
    qkv_status st = check_create_pointers(out, cfg, w);
    if (st)
        return st;
    qkv_mha shape;
    weight_layout l;
    if ((st = resolve_config(cfg, &shape)) || (st = plan_weights(&shape, cfg->bias, &l)))
        return st;

    /* One allocation: the struct, padded to the alignment, then the
       weight block. */
    const int64_t header = (int64_t)((sizeof(qkv_mha) + QKV_SCRATCH_ALIGN - 1) /
                                     QKV_SCRATCH_ALIGN * QKV_SCRATCH_ALIGN);
    size_t block_bytes;
    if (!float_bytes_ok(l.total, &block_bytes) || block_bytes > SIZE_MAX - (size_t)header)
        return QKV_E_OVERFLOW;
    char *mem = qkv_alloc((size_t)header + block_bytes);
    if (!mem)
        return QKV_E_NOMEM;
    float *block = (float *)(mem + header);

    qkv_mha *m = (qkv_mha *)mem;
    *m = shape;
    m->w_q = copy_floats(block + l.w_q, w->w_q, l.n_wq);
    m->w_k = copy_floats(block + l.w_k, w->w_k, l.n_wk);
    m->w_v = copy_floats(block + l.w_v, w->w_v, l.n_wv);
    m->w_o = copy_floats(block + l.w_o, w->w_o, l.n_wo);
    m->b_q = m->b_k = m->b_v = m->b_o = NULL;
    if (cfg->bias) {
        m->b_q = copy_floats(block + l.b_q, w->b_q, m->q_width);
        m->b_k = copy_floats(block + l.b_k, w->b_k, m->kv_width);
        m->b_v = copy_floats(block + l.b_v, w->b_v, m->kv_width);
        m->b_o = copy_floats(block + l.b_o, w->b_o, m->d_model);
    }
    *out = m;
    return QKV_OK;
}

void qkv_mha_destroy(qkv_mha *m)
{
    qkv_free(m);   /* the struct heads the layer's single allocation */
}

/* ------------------------------------------------------------------ */
/* Forward: the plan of one call                                      */
/* ------------------------------------------------------------------ */

/* One projection GEMM: C [m, n] = A [m, k] * B^T + bias. */
typedef struct proj_gemm {
    int64_t m, n, k;
    const float *a, *b, *bias;
    int64_t c_offset, ldc;   /* C inside the workspace */
} proj_gemm;

/* A token-major [batch, seq, heads, head_dim] operand inside the
   workspace: element (b, s, h, d) at offset + (b*seq + s)*ld + h*head_dim + d. */
typedef struct token_major {
    int64_t offset, ld;
} token_major;

typedef struct mha_call {
    const qkv_mha *m;
    int64_t batch, lq, lk;
    const float *x_q, *x_k, *x_v;
    float *y;
    qkv_mha_params p;
    int64_t weights_count;       /* batch * n_heads * lq * lk */
    int64_t avg_count;           /* batch * lq * lk */
    proj_gemm proj[3];
    int n_proj;
    token_major q, k, v, attn;
    int64_t weights_offset;      /* -1: attention weights not needed */
    int64_t workspace_floats;
} mha_call;

static qkv_status check_forward_args(const mha_call *c)
{
    if ((int)c->p.causal < QKV_CAUSAL_NONE || (int)c->p.causal > QKV_CAUSAL_TOP_LEFT ||
        c->p.num_threads < 0)
        return QKV_E_ARG;
    if (c->batch <= 0 || c->lq <= 0 || c->lk <= 0)
        return QKV_E_SHAPE;
    return QKV_OK;
}

/* Reserves a token-major buffer of rows x width floats for a projection
   (or several fused ones) in the workspace. */
static int push_projection(mha_call *c, int64_t rows, const float *a, int64_t k,
                           const float *b, const float *bias, int64_t width)
{
    proj_gemm *g = &c->proj[c->n_proj++];
    int64_t floats;
    *g = (proj_gemm){.m = rows, .n = width, .k = k, .a = a, .b = b,
                     .bias = bias, .ldc = width};
    return qkv_mul_ok(rows, width, &floats) &&
           layout_push(&c->workspace_floats, floats, &g->c_offset);
}

/* Chooses fused or separate projections and lays out the workspace:
   the projection outputs, the attention output (concat) and, when the
   caller wants weights of any kind, the per-head weights. */
static qkv_status plan_forward(mha_call *c)
{
    const qkv_mha *m = c->m;
    const int64_t qw = m->q_width, kvw = m->kv_width;
    int64_t rows_q, rows_k, attn_floats;
    if (!qkv_mul_ok(c->batch, c->lq, &rows_q) || !qkv_mul_ok(c->batch, c->lk, &rows_k) ||
        !qkv_mul_ok(rows_q, c->lk, &c->avg_count) ||
        !qkv_mul_ok(c->avg_count, m->n_heads, &c->weights_count) ||
        !qkv_mul_ok(rows_q, qw, &attn_floats))
        return QKV_E_OVERFLOW;

    const int same_kv = c->x_k == c->x_v && m->kdim == m->vdim;
    const int self_attn = same_kv && c->x_q == c->x_k && c->lq == c->lk &&
                          m->kdim == m->d_model;
    int ok;
    c->n_proj = 0;
    c->workspace_floats = 0;
    if (self_attn) {
        const int64_t width = qw + 2 * kvw;   /* no overflow: the weights fit */
        ok = push_projection(c, rows_q, c->x_q, m->d_model, m->w_q, m->b_q, width);
        c->q = (token_major){c->proj[0].c_offset, width};
        c->k = (token_major){c->q.offset + qw, width};
        c->v = (token_major){c->k.offset + kvw, width};
    } else if (same_kv) {
        ok = push_projection(c, rows_q, c->x_q, m->d_model, m->w_q, m->b_q, qw) &&
             push_projection(c, rows_k, c->x_k, m->kdim, m->w_k, m->b_k, 2 * kvw);
        c->q = (token_major){c->proj[0].c_offset, qw};
        c->k = (token_major){c->proj[1].c_offset, 2 * kvw};
        c->v = (token_major){c->k.offset + kvw, 2 * kvw};
    } else {
        ok = push_projection(c, rows_q, c->x_q, m->d_model, m->w_q, m->b_q, qw) &&
             push_projection(c, rows_k, c->x_k, m->kdim, m->w_k, m->b_k, kvw) &&
             push_projection(c, rows_k, c->x_v, m->vdim, m->w_v, m->b_v, kvw);
        c->q = (token_major){c->proj[0].c_offset, qw};
        c->k = (token_major){c->proj[1].c_offset, kvw};
        c->v = (token_major){c->proj[2].c_offset, kvw};
    }
    c->attn.ld = qw;
    ok = ok && layout_push(&c->workspace_floats, attn_floats, &c->attn.offset);
    c->weights_offset = -1;
    if (c->p.weights || c->p.weights_avg)
        ok = ok && layout_push(&c->workspace_floats, c->weights_count, &c->weights_offset);
    size_t bytes;
    if (!ok || !float_bytes_ok(c->workspace_floats, &bytes))
        return QKV_E_OVERFLOW;
    return QKV_OK;
}

/* Outputs (y, weights, weights_avg) must not overlap any input or each
   other; inputs may overlap each other (self-attention). */
static qkv_status check_forward_memory(const mha_call *c)
{
    const qkv_mha *m = c->m;
    qkv_span in[4], out[3];
    int n_in = 0, n_out = 0;
    int64_t n_xq, n_xk, n_xv;
    if (!qkv_mul_ok(c->batch * c->lq, m->d_model, &n_xq) ||
        !qkv_mul_ok(c->batch * c->lk, m->kdim, &n_xk) ||
        !qkv_mul_ok(c->batch * c->lk, m->vdim, &n_xv))
        return QKV_E_OVERFLOW;   /* batch * lq and batch * lk: checked by the plan */
    qkv_status st;
    if ((st = qkv_array_span(c->x_q, n_xq, sizeof(float), &in[n_in++])) ||
        (st = qkv_array_span(c->x_k, n_xk, sizeof(float), &in[n_in++])) ||
        (st = qkv_array_span(c->x_v, n_xv, sizeof(float), &in[n_in++])) ||
        (st = qkv_array_span(c->y, n_xq, sizeof(float), &out[n_out++])))
        return st;
    if (c->p.kv_len &&
        (st = qkv_array_span(c->p.kv_len, c->batch, sizeof(int32_t), &in[n_in++])))
        return st;
    if (c->p.weights &&
        (st = qkv_array_span(c->p.weights, c->weights_count, sizeof(float), &out[n_out++])))
        return st;
    if (c->p.weights_avg &&
        (st = qkv_array_span(c->p.weights_avg, c->avg_count, sizeof(float), &out[n_out++])))
        return st;

    for (int o = 0; o < n_out; o++) {
        for (int i = 0; i < n_in; i++)
            if (qkv_spans_overlap(out[o], in[i]))
                return QKV_E_ALIAS;
        for (int o2 = o + 1; o2 < n_out; o2++)
            if (qkv_spans_overlap(out[o], out[o2]))
                return QKV_E_ALIAS;
    }
    return QKV_OK;
}

static qkv_status check_kv_len(const mha_call *c)
{
    if (!c->p.kv_len)
        return QKV_OK;
    for (int64_t b = 0; b < c->batch; b++)
        if (c->p.kv_len[b] < 0 || c->p.kv_len[b] > c->lk)
            return QKV_E_ARG;
    return QKV_OK;
}

/* ------------------------------------------------------------------ */
/* Forward: the computation                                           */
/* ------------------------------------------------------------------ */

/* A token-major operand as the logical [batch, heads, seq, head_dim] view
   that the attention driver takes. */
static qkv_tensor head_view(float *ws, token_major op, int64_t batch, int64_t seq,
                            int64_t heads, int64_t head_dim)
{
    qkv_tensor t = qkv_tensor_bshd(ws + op.offset, QKV_F32, batch, seq, heads, head_dim);
    /* Fused projections interleave Q, K and V in each token's row. */
    t.stride[0] = seq * op.ld;
    t.stride[2] = op.ld;
    return t;
}

/* Q, K, V, then the attention of every head into the workspace. Writes
   nothing the caller can see. */
static qkv_status project_and_attend(const qkv_kernels *kt, const mha_call *c, float *ws)
{
    const qkv_mha *m = c->m;
    qkv_status st;
    for (int i = 0; i < c->n_proj; i++) {
        const proj_gemm *g = &c->proj[i];
        st = qkv_gemm_nt_blocked(kt, g->m, g->n, g->k, g->a, g->k, g->b, g->k,
                                 g->bias, ws + g->c_offset, g->ldc, c->p.num_threads);
        if (st)
            return st;
    }
    const qkv_tensor q = head_view(ws, c->q, c->batch, c->lq, m->n_heads, m->head_dim);
    const qkv_tensor k = head_view(ws, c->k, c->batch, c->lk, m->n_kv_heads, m->head_dim);
    const qkv_tensor v = head_view(ws, c->v, c->batch, c->lk, m->n_kv_heads, m->head_dim);
    const qkv_tensor attn = head_view(ws, c->attn, c->batch, c->lq, m->n_heads, m->head_dim);
    const qkv_sdpa_params sp = {
        .scale = 0.0f,   /* 1/sqrt(head_dim) */
        .causal = c->p.causal,
        .kv_len = c->p.kv_len,
        .weights = c->weights_offset >= 0 ? ws + c->weights_offset : NULL,
        .num_threads = c->p.num_threads,
    };
    return qkv_sdpa_with(kt, &q, &k, &v, &attn, &sp);
}

/* avg[b, i, j] = (sum over h in increasing order of w[b, h, i, j]) / heads:
   a fixed order, so the result does not depend on the thread count. */
static void average_heads(const float *w, int64_t batch, int64_t heads,
                          int64_t cells, float *avg)
{
    for (int64_t b = 0; b < batch; b++) {
        const float *wb = w + b * heads * cells;
        float *ab = avg + b * cells;
        memcpy(ab, wb, (size_t)cells * sizeof *ab);
        for (int64_t h = 1; h < heads; h++)
            for (int64_t x = 0; x < cells; x++)
                ab[x] += wb[h * cells + x];
        for (int64_t x = 0; x < cells; x++)
            ab[x] /= (float)heads;
    }
}

qkv_status qkv_mha_forward(const qkv_mha *m, int64_t batch,
                           const float *x_q, int64_t lq,
                           const float *x_k, const float *x_v, int64_t lk,
                           float *y, const qkv_mha_params *params)
{
    static const qkv_mha_params defaults;
    if (!m || !x_q || !x_k || !x_v || !y)
        return QKV_E_NULL;
    mha_call c = {.m = m, .batch = batch, .lq = lq, .lk = lk,
                  .x_q = x_q, .x_k = x_k, .x_v = x_v, .y = y,
                  .p = params ? *params : defaults};
    qkv_status st;
    if ((st = check_forward_args(&c)) || (st = plan_forward(&c)) ||
        (st = check_forward_memory(&c)) || (st = check_kv_len(&c)))
        return st;

    const qkv_kernels *kt = qkv_kernels_active();   /* one table per call */
    float *ws = qkv_alloc((size_t)c.workspace_floats * sizeof(float));
    if (!ws)
        return QKV_E_NOMEM;
    st = project_and_attend(kt, &c, ws);
    /* The last fallible step; on failure it leaves y untouched. */
    if (!st)
        st = qkv_gemm_nt_blocked(kt, batch * lq, m->d_model, m->q_width,
                                 ws + c.attn.offset, c.attn.ld, m->w_o, m->q_width,
                                 m->b_o, y, m->d_model, c.p.num_threads);
    if (!st && c.p.weights)
        memcpy(c.p.weights, ws + c.weights_offset, (size_t)c.weights_count * sizeof(float));
    if (!st && c.p.weights_avg)
        average_heads(ws + c.weights_offset, batch, m->n_heads, lq * lk, c.p.weights_avg);
    qkv_free(ws);
    return st;
}
