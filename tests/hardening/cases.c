/* Fixtures of the hardening tests; see cases.h. */
#include "cases.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/ref.h"

/* ------------------------------------------------------------------ */
/* sdpa                                                               */
/* ------------------------------------------------------------------ */

const sdpa_case sdpa_cases[] = {
    /* name                 b  h hkv  lq   lk   d  dv  kv dtype   causal                   mask            kvl extra */
    {"basic",               2, 3, 3,  17,  33, 16, 16, QKV_F32,  QKV_CAUSAL_NONE,         MASK_NONE,      0, 0},
    {"causal_br_blocks",    1, 2, 2,  45, 150, 24, 20, QKV_F32,  QKV_CAUSAL_BOTTOM_RIGHT, MASK_NONE,      0, 1},
    {"causal_br_empty_rows",1, 2, 1,  50,  20,  8,  8, QKV_F32,  QKV_CAUSAL_BOTTOM_RIGHT, MASK_NONE,      0, 1},
    {"causal_tl",           1, 2, 1,  70,  40,  8,  9, QKV_F32,  QKV_CAUSAL_TOP_LEFT,     MASK_NONE,      0, 0},
    {"mask_full_gqa",       2, 4, 2,  33,  65, 19,  7, QKV_F32,  QKV_CAUSAL_NONE,         MASK_FULL,      0, 1},
    {"mask_bcast_kvlen_f16",3, 2, 1,   9,  70, 32, 33, QKV_F16,  QKV_CAUSAL_NONE,         MASK_BROADCAST, 1, 1},
    {"bf16_causal_tl",      1, 4, 2,  64,  64, 64, 64, QKV_BF16, QKV_CAUSAL_TOP_LEFT,     MASK_NONE,      0, 1},
    {"decode_mqa",          2, 8, 1,   1, 200, 64, 64, QKV_F32,  QKV_CAUSAL_BOTTOM_RIGHT, MASK_NONE,      1, 0},
};
const int n_sdpa_cases = (int)(sizeof sdpa_cases / sizeof sdpa_cases[0]);

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "test: out of memory (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

/* Mask values in [-2, 2), every 11th entry -INFINITY, and (full masks)
   the first row of (0, 0) blocked entirely. */
static void fill_mask(hu_tensor *m, int full, uint64_t seed)
{
    float *x = m->t.data;
    hu_fill(x, m->count, seed, -2.0f, 2.0f);
    for (int64_t i = 0; i < m->count; i += 11)
        x[i] = -INFINITY;
    if (full)
        for (int64_t j = 0; j < m->t.shape[3]; j++)
            x[j] = -INFINITY;
}

void sdpa_fixture_init(sdpa_fixture *f, const sdpa_case *c, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->c = *c;
    f->q = hu_tensor_new(QKV_F32, c->b, c->h, c->lq, c->d, seed);
    f->k = hu_tensor_new(c->kv_dtype, c->b, c->hkv, c->lk, c->d, seed + 1);
    f->v = hu_tensor_new(c->kv_dtype, c->b, c->hkv, c->lk, c->dv, seed + 2);
    if (c->mask != MASK_NONE) {
        const int full = c->mask == MASK_FULL;
        f->mask = hu_tensor_new(QKV_F32, full ? c->b : 1, full ? c->h : 1,
                                c->lq, c->lk, seed + 3);
        fill_mask(&f->mask, full, seed + 3);
    }
    if (c->kv_len) {
        f->kv_len = xmalloc((size_t)c->b * sizeof *f->kv_len);
        for (int64_t b = 0; b < c->b; b++) {
            const int64_t n = c->lk - 3 * b - 1;
            f->kv_len[b] = (int32_t)(n < 0 ? 0 : n);
        }
    }
    f->lse_count = c->b * c->h * c->lq;
    f->out_count = f->lse_count * c->dv;
    f->weights_count = f->lse_count * c->lk;
}

void sdpa_fixture_free(sdpa_fixture *f)
{
    hu_tensor_free(&f->q);
    hu_tensor_free(&f->k);
    hu_tensor_free(&f->v);
    if (f->c.mask != MASK_NONE)
        hu_tensor_free(&f->mask);
    free(f->kv_len);
    memset(f, 0, sizeof *f);
}

static float *nan_filled(int64_t n)
{
    float *p = xmalloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

sdpa_result sdpa_result_new(const sdpa_fixture *f)
{
    sdpa_result r = {nan_filled(f->out_count), NULL, NULL};
    if (f->c.extra_outputs) {
        r.weights = nan_filled(f->weights_count);
        r.lse = nan_filled(f->lse_count);
    }
    return r;
}

void sdpa_result_free(sdpa_result *r)
{
    free(r->out);
    free(r->weights);
    free(r->lse);
    memset(r, 0, sizeof *r);
}

static qkv_sdpa_params sdpa_params_of(const sdpa_fixture *f, int num_threads,
                                      const sdpa_result *r)
{
    qkv_sdpa_params p = {
        .causal = f->c.causal,
        .mask = f->c.mask != MASK_NONE ? &f->mask.t : NULL,
        .kv_len = f->kv_len,
        .num_threads = num_threads,
    };
    if (r) {
        p.weights = r->weights;
        p.lse = r->lse;
    }
    return p;
}

qkv_status sdpa_fixture_run(const sdpa_fixture *f, int num_threads, sdpa_result *r)
{
    const sdpa_case *c = &f->c;
    const qkv_tensor out = qkv_tensor_bhsd(r->out, QKV_F32, c->b, c->h, c->lq, c->dv);
    const qkv_sdpa_params p = sdpa_params_of(f, num_threads, r);
    return qkv_sdpa(&f->q.t, &f->k.t, &f->v.t, &out, &p);
}

int sdpa_result_same(const sdpa_fixture *f, const sdpa_result *a, const sdpa_result *b)
{
    if (!hu_same_bits(a->out, b->out, (size_t)f->out_count * sizeof(float)))
        return 0;
    if (f->c.extra_outputs &&
        (!hu_same_bits(a->weights, b->weights, (size_t)f->weights_count * sizeof(float)) ||
         !hu_same_bits(a->lse, b->lse, (size_t)f->lse_count * sizeof(float))))
        return 0;
    return 1;
}

int sdpa_result_matches_ref(const sdpa_fixture *f, const sdpa_result *r)
{
    double *out = xmalloc((size_t)f->out_count * sizeof(double));
    double *w = xmalloc((size_t)f->weights_count * sizeof(double));
    double *lse = xmalloc((size_t)f->lse_count * sizeof(double));
    const qkv_sdpa_params p = sdpa_params_of(f, 0, NULL);
    int ok = ref_sdpa(&f->q.t, &f->k.t, &f->v.t, &p, out, w, lse) == 0 &&
             hu_close("out", r->out, out, f->out_count, 0.0);
    if (ok && f->c.extra_outputs)
        ok = hu_close("weights", r->weights, w, f->weights_count, 0.0) &&
             hu_close("lse", r->lse, lse, f->lse_count, 0.0);
    free(out);
    free(w);
    free(lse);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Multi-head layer                                                   */
/* ------------------------------------------------------------------ */

enum { SEPARATE_INPUTS = 0, SELF_ATTENTION = 1, SHARED_KV = 2 };

const mha_case mha_cases[] = {
    {"self_bias", {.d_model = 32, .n_heads = 4, .bias = 1},
     2, 19, 19, SELF_ATTENTION, QKV_CAUSAL_NONE, 0, 1},
    {"self_causal_gqa", {.d_model = 48, .n_heads = 6, .n_kv_heads = 2},
     1, 70, 70, SELF_ATTENTION, QKV_CAUSAL_TOP_LEFT, 0, 0},
    {"cross_gqa_kvlen", {.d_model = 24, .n_heads = 6, .n_kv_heads = 2, .head_dim = 8,
                         .kdim = 16, .vdim = 20, .bias = 1},
     2, 11, 37, SEPARATE_INPUTS, QKV_CAUSAL_BOTTOM_RIGHT, 1, 1},
    {"shared_kv", {.d_model = 16, .n_heads = 2, .kdim = 12, .vdim = 12},
     3, 5, 66, SHARED_KV, QKV_CAUSAL_NONE, 1, 1},
};
const int n_mha_cases = (int)(sizeof mha_cases / sizeof mha_cases[0]);

static float *random_floats(int64_t n, uint64_t seed, float amplitude)
{
    float *p = xmalloc((size_t)n * sizeof *p);
    hu_fill(p, n, seed, -amplitude, amplitude);
    return p;
}

qkv_status mha_fixture_init(mha_fixture *f, const mha_case *c, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    f->c = *c;
    qkv_mha_config *g = &f->cfg;
    *g = c->cfg;
    if (!g->n_kv_heads) g->n_kv_heads = g->n_heads;
    if (!g->head_dim) g->head_dim = g->d_model / g->n_heads;
    if (!g->kdim) g->kdim = g->d_model;
    if (!g->vdim) g->vdim = g->d_model;

    const int64_t qw = g->n_heads * g->head_dim, kvw = g->n_kv_heads * g->head_dim;
    const int64_t n_wq = qw * g->d_model, n_wk = kvw * g->kdim, n_wv = kvw * g->vdim;
    const int64_t n_wo = g->d_model * qw;
    const int64_t total = n_wq + n_wk + n_wv + n_wo + qw + 2 * kvw + g->d_model;
    f->weights_block = random_floats(total, seed, 0.3f);
    float *p = f->weights_block;
    f->w.w_q = p; p += n_wq;
    f->w.w_k = p; p += n_wk;
    f->w.w_v = p; p += n_wv;
    f->w.w_o = p; p += n_wo;
    f->w.b_q = p; p += qw;
    f->w.b_k = p; p += kvw;
    f->w.b_v = p; p += kvw;
    f->w.b_o = p;

    f->x_q = random_floats(c->batch * c->lq * g->d_model, seed + 1, 1.0f);
    if (c->self_attention == SELF_ATTENTION) {
        f->x_k = f->x_v = f->x_q;
    } else {
        f->x_k = random_floats(c->batch * c->lk * g->kdim, seed + 2, 1.0f);
        f->x_v = c->self_attention == SHARED_KV
                     ? f->x_k
                     : random_floats(c->batch * c->lk * g->vdim, seed + 3, 1.0f);
    }
    if (c->kv_len) {
        f->kv_len = xmalloc((size_t)c->batch * sizeof *f->kv_len);
        for (int64_t b = 0; b < c->batch; b++)
            f->kv_len[b] = (int32_t)(c->lk - b - 1);
    }
    f->y_count = c->batch * c->lq * g->d_model;
    f->avg_count = c->batch * c->lq * c->lk;
    f->weights_count = f->avg_count * g->n_heads;
    return qkv_mha_create(&f->layer, &f->c.cfg, &f->w);
}

void mha_fixture_free(mha_fixture *f)
{
    qkv_mha_destroy(f->layer);
    if (f->x_v != f->x_k && f->x_v != f->x_q)
        free(f->x_v);
    if (f->x_k != f->x_q)
        free(f->x_k);
    free(f->x_q);
    free(f->weights_block);
    free(f->kv_len);
    memset(f, 0, sizeof *f);
}

mha_result mha_result_new(const mha_fixture *f)
{
    mha_result r = {nan_filled(f->y_count), NULL, NULL};
    if (f->c.extra_outputs) {
        r.weights = nan_filled(f->weights_count);
        r.weights_avg = nan_filled(f->avg_count);
    }
    return r;
}

void mha_result_free(mha_result *r)
{
    free(r->y);
    free(r->weights);
    free(r->weights_avg);
    memset(r, 0, sizeof *r);
}

static qkv_mha_params mha_params_of(const mha_fixture *f, int num_threads,
                                    const mha_result *r)
{
    qkv_mha_params p = {
        .causal = f->c.causal,
        .kv_len = f->kv_len,
        .num_threads = num_threads,
    };
    if (r) {
        p.weights = r->weights;
        p.weights_avg = r->weights_avg;
    }
    return p;
}

qkv_status mha_fixture_run(const mha_fixture *f, int num_threads, mha_result *r)
{
    const qkv_mha_params p = mha_params_of(f, num_threads, r);
    return qkv_mha_forward(f->layer, f->c.batch, f->x_q, f->c.lq, f->x_k, f->x_v,
                           f->c.lk, r->y, &p);
}

int mha_result_same(const mha_fixture *f, const mha_result *a, const mha_result *b)
{
    if (!hu_same_bits(a->y, b->y, (size_t)f->y_count * sizeof(float)))
        return 0;
    if (f->c.extra_outputs &&
        (!hu_same_bits(a->weights, b->weights, (size_t)f->weights_count * sizeof(float)) ||
         !hu_same_bits(a->weights_avg, b->weights_avg, (size_t)f->avg_count * sizeof(float))))
        return 0;
    return 1;
}

int mha_result_matches_ref(const mha_fixture *f, const mha_result *r)
{
    double *y = xmalloc((size_t)f->y_count * sizeof(double));
    double *w = xmalloc((size_t)f->weights_count * sizeof(double));
    double *avg = xmalloc((size_t)f->avg_count * sizeof(double));
    const qkv_mha_params p = mha_params_of(f, 0, NULL);
    int ok = ref_mha(&f->c.cfg, &f->w, f->c.batch, f->x_q, f->c.lq, f->x_k, f->x_v,
                     f->c.lk, &p, y, w, avg) == 0 &&
             hu_close("y", r->y, y, f->y_count, 0.0);
    if (ok && f->c.extra_outputs)
        ok = hu_close("weights", r->weights, w, f->weights_count, 0.0) &&
             hu_close("weights_avg", r->weights_avg, avg, f->avg_count, 0.0);
    free(y);
    free(w);
    free(avg);
    return ok;
}
