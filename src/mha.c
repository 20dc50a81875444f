/*
 * The multi-head attention layer (PyTorch nn.MultiheadAttention,
 * batch_first=True):
 *
 *     Q = x_q W_q^T + b_q     K = x_k W_k^T + b_k     V = x_v W_v^T + b_v
 *     head h = sdpa(Q_h, K_g, V_g), g = h / (n_heads / n_kv_heads)
 *     y = concat(heads) W_o^T + b_o
 *
 * The projections are qkv_gemm_nt_blocked_in calls that write token-major
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
 * Every per-call buffer (projections, attention output, GEMM scratch) is
 * one workspace allocated by the call, so a layer is never written after
 * qkv_mha_create and concurrent forwards are safe. Every check and the
 * allocation happen before the first write into a caller's buffer; after
 * them only the attention driver can fail (it allocates its own scratch),
 * and it writes nothing when it does, so it may write the caller's
 * weights itself and the output GEMM runs last.
 *
 * qkv_mha_forward_cached projects only the new tokens, stages their K and
 * V in the cache's storage past each element's length, attends each batch
 * element on its own (bottom-right causal aligned to its own length), and
 * commits the new lengths only after everything else has succeeded.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "kv_cache.h"

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

/* One call of qkv_mha_forward or qkv_mha_forward_cached. */
typedef struct mha_call {
    const qkv_mha *m;
    qkv_kv_cache *cache;         /* the cached forward's cache; NULL otherwise */
    int64_t batch, lq, lk;       /* lk: key rows projected (cached: lq) */
    int64_t wk;                  /* columns of weights: lk, or the cache capacity */
    const float *x_q, *x_k, *x_v;
    const int32_t *new_len;      /* cached: rows each element takes (NULL: lq) */
    float *y;
    qkv_mha_params p;
    int64_t weights_count;       /* batch * n_heads * lq * wk */
    int64_t avg_count;           /* batch * lq * wk */
    proj_gemm proj[3];
    int n_proj;
    token_major q, k, v, attn;
    int64_t scratch_offset;      /* GEMM scratch, used by one GEMM at a time */
    int64_t weights_offset;      /* -1: no internal weights buffer */
    int64_t workspace_floats;
} mha_call;

static qkv_status check_forward_args(const mha_call *c)
{
    /* The cached forward ignores causal. */
    if (!c->cache &&
        ((int)c->p.causal < QKV_CAUSAL_NONE || (int)c->p.causal > QKV_CAUSAL_TOP_LEFT))
        return QKV_E_ARG;
    if (c->p.num_threads < 0 || !isfinite(c->p.softcap) || c->p.softcap < 0.0f)
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

/* Fused or separate projections, and where Q, K and V land. */
static int plan_projections(mha_call *c, int64_t rows_q, int64_t rows_k)
{
    const qkv_mha *m = c->m;
    const int64_t qw = m->q_width, kvw = m->kv_width;
    const int same_kv = c->x_k == c->x_v && m->kdim == m->vdim;
    const int self_attn = same_kv && c->x_q == c->x_k && c->lq == c->lk &&
                          m->kdim == m->d_model;
    int ok;
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
    return ok;
}

/* Scratch for the largest of the call's GEMMs (they run one at a time). */
static int plan_gemm_scratch(mha_call *c, int64_t rows_q)
{
    const qkv_mha *m = c->m;
    int64_t most = qkv_gemm_nt_scratch_floats(rows_q, m->d_model, m->q_width,
                                              c->p.num_threads);   /* W_o */
    for (int i = 0; i < c->n_proj && most >= 0; i++) {
        const proj_gemm *g = &c->proj[i];
        const int64_t floats = qkv_gemm_nt_scratch_floats(g->m, g->n, g->k,
                                                          c->p.num_threads);
        most = floats < 0 ? -1 : floats > most ? floats : most;
    }
    return most >= 0 && layout_push(&c->workspace_floats, most, &c->scratch_offset);
}

/* Lays out the workspace: the projection outputs, the attention output
   (concat), the GEMM scratch and, when the caller's buffers cannot take
   the per-head weights straight from the attention driver, a buffer for
   them. */
static qkv_status plan_forward(mha_call *c)
{
    const qkv_mha *m = c->m;
    int64_t rows_q, rows_k, attn_floats;
    if (!qkv_mul_ok(c->batch, c->lq, &rows_q) || !qkv_mul_ok(c->batch, c->lk, &rows_k) ||
        !qkv_mul_ok(rows_q, c->wk, &c->avg_count) ||
        !qkv_mul_ok(c->avg_count, m->n_heads, &c->weights_count) ||
        !qkv_mul_ok(rows_q, m->q_width, &attn_floats))
        return QKV_E_OVERFLOW;
    c->n_proj = 0;
    c->workspace_floats = 0;
    int ok = plan_projections(c, rows_q, rows_k);
    c->attn.ld = m->q_width;
    ok = ok && layout_push(&c->workspace_floats, attn_floats, &c->attn.offset) &&
         plan_gemm_scratch(c, rows_q);
    /* The cached forward's weights have the cache's row length, which the
       driver (writing each element's own length) cannot produce in place. */
    const int internal_weights = c->cache ? c->p.weights || c->p.weights_avg
                                          : c->p.weights_avg && !c->p.weights;
    c->weights_offset = -1;
    if (internal_weights)
        ok = ok && layout_push(&c->workspace_floats, c->weights_count, &c->weights_offset);
    size_t bytes;
    if (!ok || !float_bytes_ok(c->workspace_floats, &bytes))
        return QKV_E_OVERFLOW;
    return QKV_OK;
}

/* Outputs (y, weights, weights_avg, the cache) must not overlap any input
   or each other; inputs may overlap each other (self-attention). */
static qkv_status check_forward_memory(const mha_call *c)
{
    const qkv_mha *m = c->m;
    qkv_span in[6], out[4];
    int n_in = 0, n_out = 0;
    int64_t n_xq, n_xk, n_xv;
    if (!qkv_mul_ok(c->batch * c->lq, m->d_model, &n_xq) ||
        !qkv_mul_ok(c->batch * c->lk, m->kdim, &n_xk) ||
        !qkv_mul_ok(c->batch * c->lk, m->vdim, &n_xv))
        return QKV_E_OVERFLOW;   /* batch * lq and batch * lk: checked by the plan */
    const int32_t *lens = c->cache ? c->new_len : c->p.kv_len;
    qkv_status st;
    if ((st = qkv_array_span(c->x_q, n_xq, sizeof(float), &in[n_in++])) ||
        (st = qkv_array_span(c->x_k, n_xk, sizeof(float), &in[n_in++])) ||
        (st = qkv_array_span(c->x_v, n_xv, sizeof(float), &in[n_in++])) ||
        (st = qkv_array_span(c->y, n_xq, sizeof(float), &out[n_out++])))
        return st;
    if (lens && (st = qkv_array_span(lens, c->batch, sizeof(int32_t), &in[n_in++])))
        return st;
    if (c->p.alibi_slopes &&
        (st = qkv_array_span(c->p.alibi_slopes, m->n_heads, sizeof(float), &in[n_in++])))
        return st;
    if (c->p.sinks &&
        (st = qkv_array_span(c->p.sinks, m->n_heads, sizeof(float), &in[n_in++])))
        return st;
    if (c->p.weights &&
        (st = qkv_array_span(c->p.weights, c->weights_count, sizeof(float), &out[n_out++])))
        return st;
    if (c->p.weights_avg &&
        (st = qkv_array_span(c->p.weights_avg, c->avg_count, sizeof(float), &out[n_out++])))
        return st;
    if (c->cache)
        out[n_out++] = c->cache->storage;

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

/* Values of the per-batch and per-head arrays, as qkv_sdpa checks them. */
static qkv_status check_values(const mha_call *c)
{
    for (int64_t b = 0; c->p.kv_len && b < c->batch; b++)
        if (c->p.kv_len[b] < 0 || c->p.kv_len[b] > c->lk)
            return QKV_E_ARG;
    for (int64_t h = 0; c->p.alibi_slopes && h < c->m->n_heads; h++)
        if (!isfinite(c->p.alibi_slopes[h]))
            return QKV_E_ARG;
    for (int64_t h = 0; c->p.sinks && h < c->m->n_heads; h++)
        if (isnan(c->p.sinks[h]) || c->p.sinks[h] == INFINITY)
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

/* The first `rows` tokens of batch element b of a token-major operand
   with `seq` tokens per element, as a [1, heads, rows, head_dim] view. */
static qkv_tensor element_view(float *ws, token_major op, int64_t b, int64_t seq,
                               int64_t rows, int64_t heads, int64_t head_dim)
{
    const token_major at = {op.offset + b * seq * op.ld, op.ld};
    return head_view(ws, at, 1, rows, heads, head_dim);
}

/* The options of the attention driver for this call. */
static qkv_sdpa_params sdpa_params_of(const qkv_mha_params *p, qkv_causal causal,
                                      const int32_t *kv_len, float *weights)
{
    const qkv_sdpa_params sp = {
        .scale = 0.0f,   /* 1/sqrt(head_dim) */
        .causal = causal,
        .kv_len = kv_len,
        .weights = weights,
        .num_threads = p->num_threads,
        .window = p->window,
        .window_left = p->window_left,
        .window_right = p->window_right,
        .softcap = p->softcap,
        .alibi_slopes = p->alibi_slopes,
        .sinks = p->sinks,
    };
    return sp;
}

/* Q, K, V into the workspace. */
static void project(const qkv_kernels *kt, const mha_call *c, float *ws)
{
    for (int i = 0; i < c->n_proj; i++) {
        const proj_gemm *g = &c->proj[i];
        qkv_gemm_nt_blocked_in(kt, g->m, g->n, g->k, g->a, g->k, g->b, g->k,
                               g->bias, ws + g->c_offset, g->ldc, c->p.num_threads,
                               ws + c->scratch_offset);
    }
}

/* y = concat W_o^T + b_o over every row of the call. */
static void project_output(const qkv_kernels *kt, const mha_call *c, float *ws)
{
    const qkv_mha *m = c->m;
    qkv_gemm_nt_blocked_in(kt, c->batch * c->lq, m->d_model, m->q_width,
                           ws + c->attn.offset, c->attn.ld, m->w_o, m->q_width,
                           m->b_o, c->y, m->d_model, c->p.num_threads,
                           ws + c->scratch_offset);
}

/* dst[i*ld + j] = (the sum over h, in increasing order, of
   w[(h*rows + i)*cols + j]) / heads for i < rows, j < cols: a fixed order,
   so the result does not depend on the thread count. */
static void average_heads(const float *w, int64_t heads, int64_t rows, int64_t cols,
                          float *dst, int64_t ld)
{
    const int64_t cells = rows * cols;
    for (int64_t i = 0; i < rows; i++) {
        float *d = dst + i * ld;
        memcpy(d, w + i * cols, (size_t)cols * sizeof *d);
        for (int64_t h = 1; h < heads; h++)
            for (int64_t j = 0; j < cols; j++)
                d[j] += w[h * cells + i * cols + j];
        for (int64_t j = 0; j < cols; j++)
            d[j] /= (float)heads;
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
    mha_call c = {.m = m, .batch = batch, .lq = lq, .lk = lk, .wk = lk,
                  .x_q = x_q, .x_k = x_k, .x_v = x_v, .y = y,
                  .p = params ? *params : defaults};
    qkv_status st;
    if ((st = check_forward_args(&c)) || (st = plan_forward(&c)) ||
        (st = check_forward_memory(&c)) || (st = check_values(&c)))
        return st;

    const qkv_kernels *kt = qkv_kernels_active();   /* one table per call */
    float *ws = qkv_alloc((size_t)c.workspace_floats * sizeof(float));
    if (!ws)
        return QKV_E_NOMEM;
    project(kt, &c, ws);
    /* The attention is the last step that can fail (it allocates), and it
       writes nothing when it does; it writes the caller's weights itself. */
    float *weights = c.p.weights ? c.p.weights
                   : c.weights_offset >= 0 ? ws + c.weights_offset : NULL;
    const qkv_tensor q = head_view(ws, c.q, batch, lq, m->n_heads, m->head_dim);
    const qkv_tensor k = head_view(ws, c.k, batch, lk, m->n_kv_heads, m->head_dim);
    const qkv_tensor v = head_view(ws, c.v, batch, lk, m->n_kv_heads, m->head_dim);
    const qkv_tensor attn = head_view(ws, c.attn, batch, lq, m->n_heads, m->head_dim);
    const qkv_sdpa_params sp = sdpa_params_of(&c.p, c.p.causal, c.p.kv_len, weights);
    st = qkv_sdpa_with(kt, &q, &k, &v, &attn, &sp);
    if (!st) {
        project_output(kt, &c, ws);
        for (int64_t b = 0; c.p.weights_avg && b < batch; b++)
            average_heads(weights + b * m->n_heads * lq * lk, m->n_heads, lq, lk,
                          c.p.weights_avg + b * lq * lk, lk);
    }
    qkv_free(ws);
    return st;
}

/* ------------------------------------------------------------------ */
/* Cached forward                                                     */
/* ------------------------------------------------------------------ */

/* The rows of x_new that batch element b takes. */
static int64_t new_rows(const mha_call *c, int64_t b)
{
    return c->new_len ? c->new_len[b] : c->lq;
}

/* The cache must be this layer's, for this batch, in self-attention. */
static qkv_status check_cache_shape(const mha_call *c)
{
    const qkv_mha *m = c->m;
    const qkv_kv_cache *kv = c->cache;
    if (kv->batch != c->batch || kv->n_kv_heads != m->n_kv_heads ||
        kv->head_dim != m->head_dim || kv->v_dim != m->head_dim ||
        m->kdim != m->d_model || m->vdim != m->d_model)
        return QKV_E_SHAPE;
    return QKV_OK;
}

/* Every new_len in [0, n_new], and room for it in the cache. */
static qkv_status check_room(const mha_call *c)
{
    for (int64_t b = 0; b < c->batch; b++) {
        const int64_t rows = new_rows(c, b);
        if (rows < 0 || rows > c->lq || c->cache->lengths[b] + rows > c->cache->capacity)
            return QKV_E_ARG;
    }
    return QKV_OK;
}

/* The projected K and V of the new tokens into the cache's storage, not
   yet part of the cache. */
static void stage_new_keys(const mha_call *c, float *ws)
{
    const qkv_mha *m = c->m;
    const qkv_tensor k = head_view(ws, c->k, c->batch, c->lq, m->n_kv_heads, m->head_dim);
    const qkv_tensor v = head_view(ws, c->v, c->batch, c->lq, m->n_kv_heads, m->head_dim);
    qkv_kv_cache_write(c->cache, &k, &v, c->new_len);
}

/* 1 if every element has the same length and takes all n_new tokens: then
   one attention call covers the whole batch (more tasks for the threads
   when decoding a batch), with the same results as one call per element. */
static int uniform_step(const mha_call *c)
{
    for (int64_t b = 0; b < c->batch; b++)
        if (new_rows(c, b) != c->lq || c->cache->lengths[b] != c->cache->lengths[0])
            return 0;
    return 1;
}

/* Batch element b's compact weights [n_heads, rows, len] in the workspace:
   where one call over the batch writes them, or, per element, at the
   start of the element's share. */
static float *element_weights(const mha_call *c, float *ws, int64_t b)
{
    if (c->weights_offset < 0)
        return NULL;
    const int64_t row_len = uniform_step(c) ? c->cache->lengths[0] + c->lq : c->wk;
    return ws + c->weights_offset + b * c->m->n_heads * c->lq * row_len;
}

/* The whole batch in one call: every element's keys end at the same row. */
static qkv_status attend_uniform(const qkv_kernels *kt, const mha_call *c, float *ws)
{
    const qkv_mha *m = c->m;
    const int64_t len = c->cache->lengths[0] + c->lq;
    qkv_tensor k, v;
    qkv_kv_cache_rows_views(c->cache, 0, c->batch, len, &k, &v);
    const qkv_tensor q = head_view(ws, c->q, c->batch, c->lq, m->n_heads, m->head_dim);
    const qkv_tensor out = head_view(ws, c->attn, c->batch, c->lq, m->n_heads, m->head_dim);
    const qkv_sdpa_params sp = sdpa_params_of(&c->p, QKV_CAUSAL_BOTTOM_RIGHT, NULL,
                                              element_weights(c, ws, 0));
    return qkv_sdpa_with(kt, &q, &k, &v, &out, &sp);
}

/* Each element's new queries over its cached and new keys, bottom-right
   causal on its own length; the attention rows of tokens an element does
   not take are 0. */
static qkv_status attend_cached(const qkv_kernels *kt, const mha_call *c, float *ws)
{
    const qkv_mha *m = c->m;
    if (uniform_step(c))
        return attend_uniform(kt, c, ws);
    for (int64_t b = 0; b < c->batch; b++) {
        const int64_t rows = new_rows(c, b);
        float *attn_rows = ws + c->attn.offset + (b * c->lq + rows) * c->attn.ld;
        memset(attn_rows, 0, (size_t)((c->lq - rows) * c->attn.ld) * sizeof(float));
        if (rows == 0)
            continue;
        const int64_t len = c->cache->lengths[b] + rows;
        qkv_tensor k, v;
        qkv_kv_cache_rows_views(c->cache, b, 1, len, &k, &v);
        const qkv_tensor q = element_view(ws, c->q, b, c->lq, rows, m->n_heads, m->head_dim);
        const qkv_tensor out = element_view(ws, c->attn, b, c->lq, rows, m->n_heads,
                                            m->head_dim);
        const qkv_sdpa_params sp = sdpa_params_of(&c->p, QKV_CAUSAL_BOTTOM_RIGHT, NULL,
                                                  element_weights(c, ws, b));
        const qkv_status st = qkv_sdpa_with(kt, &q, &k, &v, &out, &sp);
        if (st)
            return st;
    }
    return QKV_OK;
}

/* Zeroes floats [from, to) of row. */
static void zero_floats(float *row, int64_t from, int64_t to)
{
    if (to > from)
        memset(row + from, 0, (size_t)(to - from) * sizeof *row);
}

/* The caller's weights and weights_avg of element b, [.., lq, capacity],
   from its compact weights [n_heads, rows, len]; 0 elsewhere. */
static void emit_element_weights(const mha_call *c, const float *w, int64_t b)
{
    const int64_t heads = c->m->n_heads, lq = c->lq, wk = c->wk;
    const int64_t rows = new_rows(c, b);
    const int64_t len = rows ? c->cache->lengths[b] + rows : 0;
    if (c->p.weights) {
        float *dst = c->p.weights + b * heads * lq * wk;
        for (int64_t h = 0; h < heads; h++)
            for (int64_t i = 0; i < lq; i++) {
                float *row = dst + (h * lq + i) * wk;
                const int64_t filled = i < rows ? len : 0;
                if (filled)
                    memcpy(row, w + (h * rows + i) * len, (size_t)len * sizeof *row);
                zero_floats(row, filled, wk);
            }
    }
    if (c->p.weights_avg) {
        float *dst = c->p.weights_avg + b * lq * wk;
        if (rows)
            average_heads(w, heads, rows, len, dst, wk);
        for (int64_t i = 0; i < lq; i++)
            zero_floats(dst + i * wk, i < rows ? len : 0, wk);
    }
}

/* The caller's outputs once the attention has succeeded: y (0 in the rows
   an element does not take) and the weights. */
static void emit_cached_outputs(const qkv_kernels *kt, const mha_call *c, float *ws)
{
    const int64_t d_model = c->m->d_model;
    project_output(kt, c, ws);
    for (int64_t b = 0; b < c->batch; b++) {
        const int64_t rows = new_rows(c, b);
        zero_floats(c->y + b * c->lq * d_model, rows * d_model, c->lq * d_model);
        if (c->weights_offset >= 0)
            emit_element_weights(c, element_weights(c, ws, b), b);
    }
}

qkv_status qkv_mha_forward_cached(const qkv_mha *m, qkv_kv_cache *cache,
                                  int64_t batch, const float *x_new,
                                  int64_t n_new, const int32_t *new_len,
                                  float *y, const qkv_mha_params *params)
{
    static const qkv_mha_params defaults;
    if (!m || !cache || !x_new || !y)
        return QKV_E_NULL;
    mha_call c = {.m = m, .cache = cache, .batch = batch, .lq = n_new, .lk = n_new,
                  .wk = cache->capacity, .x_q = x_new, .x_k = x_new, .x_v = x_new,
                  .new_len = new_len, .y = y, .p = params ? *params : defaults};
    c.p.kv_len = NULL;   /* ignored: the cache decides */
    qkv_status st;
    if ((st = check_forward_args(&c)) || (st = check_cache_shape(&c)) ||
        (st = plan_forward(&c)) || (st = check_forward_memory(&c)) ||
        (st = check_values(&c)) || (st = check_room(&c)))
        return st;

    const qkv_kernels *kt = qkv_kernels_active();   /* one table per call */
    float *ws = qkv_alloc((size_t)c.workspace_floats * sizeof(float));
    if (!ws)
        return QKV_E_NOMEM;
    project(kt, &c, ws);
    /* The new rows go into the cache's storage past each length, where
       the attention reads them; they join the cache only once nothing
       can fail any more. */
    stage_new_keys(&c, ws);
    st = attend_cached(kt, &c, ws);
    if (!st) {
        emit_cached_outputs(kt, &c, ws);
        qkv_kv_cache_commit(cache, n_new, new_len);
    }
    qkv_free(ws);
    return st;
}
