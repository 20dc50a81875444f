/* Shared helpers of the Criterion suites (see testutil.h). */
#include "testutil.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "ref/ref.h"

/* ------------------------------------------------------------------ */
/* Per-ISA runs                                                       */
/* ------------------------------------------------------------------ */

void qkv_test_init(void)
{
    /* Runs in the forked test process, never in the Criterion parent. */
    const char *want = getenv("QKV_ISA");
    if (want && *want && strcmp(want, qkv_isa_name(qkv_isa_active())) != 0)
        cr_skip_test("ISA %s not available on this CPU/build", want);
}

static int all_skipped;

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    all_skipped = stats->nb_tests > 0 && stats->tests_skipped == stats->nb_tests;
}

/* Criterion's own main, plus exit status 77 (meson's SKIP) when every
   test was skipped, so that an ISA this machine lacks shows as skipped
   rather than passed. */
int main(int argc, char **argv)
{
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result == 0 && all_skipped ? 77 : result;
}

/* ------------------------------------------------------------------ */
/* PRNG                                                               */
/* ------------------------------------------------------------------ */

test_rng rng_seeded(uint64_t seed)
{
    test_rng r = {seed * 0x9e3779b97f4a7c15u + 0x632be59bd9b4e019u};
    return r;
}

uint64_t rng_next(test_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

double rng_uniform(test_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(test_rng *r)
{
    /* Box-Muller; 1 - u keeps the logarithm finite. */
    const double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

int64_t rng_range(test_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ------------------------------------------------------------------ */
/* Strided test tensors                                               */
/* ------------------------------------------------------------------ */

static size_t elem_size(qkv_dtype dt)
{
    return dt == QKV_F32 ? sizeof(float) : sizeof(uint16_t);
}

static void poison(void *mem, qkv_dtype dt, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (dt == QKV_F32) {
            const uint32_t bits = POISON_F32_BITS;
            memcpy((float *)mem + i, &bits, sizeof bits);
        } else {
            ((uint16_t *)mem)[i] = POISON_16_BITS;
        }
    }
}

static int is_poison(const void *mem, qkv_dtype dt, int64_t i)
{
    if (dt == QKV_F32) {
        uint32_t bits;
        memcpy(&bits, (const float *)mem + i, sizeof bits);
        return bits == POISON_F32_BITS;
    }
    return ((const uint16_t *)mem)[i] == POISON_16_BITS;
}

int tt_alloc(test_tensor *x, qkv_dtype dt, test_layout lay, int64_t b, int64_t h,
             int64_t s, int64_t d, test_rng *r)
{
    const int64_t shape[4] = {b, h, s, d};
    int order[3] = {0, 1, 2};          /* outermost first */
    int64_t pad[3] = {0, 0, 0};
    if (lay == LAYOUT_BSHD) {
        order[1] = 2;
        order[2] = 1;
    } else if (lay == LAYOUT_STRIDED) {
        for (int i = 2; i > 0; i--) {
            const int j = (int)rng_range(r, 0, i);
            const int t = order[i]; order[i] = order[j]; order[j] = t;
        }
        for (int i = 0; i < 3; i++)
            pad[i] = rng_range(r, 0, 3);
    }
    memset(x, 0, sizeof *x);
    x->t.dtype = dt;
    memcpy(x->t.shape, shape, sizeof shape);
    x->t.stride[3] = 1;
    int64_t extent = d;                /* elements spanned so far */
    for (int i = 2; i >= 0; i--) {
        const int dim = order[i];
        x->t.stride[dim] = extent + pad[i];
        extent = x->t.stride[dim] * shape[dim];
    }
    if (lay == LAYOUT_STRIDED)
        for (int dim = 0; dim < 3; dim++)
            if (shape[dim] == 1)   /* any stride is valid for a size-1 dimension */
                x->t.stride[dim] = rng_range(r, 0, 1 << 20);
    x->elems = extent + pad[0] + 1;
    x->mem = malloc((size_t)x->elems * elem_size(dt));
    if (!x->mem)
        return -1;
    poison(x->mem, dt, x->elems);
    x->t.data = (char *)x->mem + (size_t)pad[0] * elem_size(dt);
    return 0;
}

void tt_free(test_tensor *x)
{
    free(x->mem);
    memset(x, 0, sizeof *x);
}

static int64_t tt_offset(const test_tensor *x, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    return i0 * x->t.stride[0] + i1 * x->t.stride[1] + i2 * x->t.stride[2] + i3;
}

double tt_get(const test_tensor *x, int64_t i0, int64_t i1, int64_t i2, int64_t i3)
{
    const int64_t off = tt_offset(x, i0, i1, i2, i3);
    switch (x->t.dtype) {
    case QKV_F16:  return ref_f16_to_f32(((const uint16_t *)x->t.data)[off]);
    case QKV_BF16: return ref_bf16_to_f32(((const uint16_t *)x->t.data)[off]);
    default:       return ((const float *)x->t.data)[off];
    }
}

void tt_set(test_tensor *x, int64_t i0, int64_t i1, int64_t i2, int64_t i3, double v)
{
    const int64_t off = tt_offset(x, i0, i1, i2, i3);
    switch (x->t.dtype) {
    case QKV_F16:  ((uint16_t *)x->t.data)[off] = ref_f32_to_f16((float)v); break;
    case QKV_BF16: ((uint16_t *)x->t.data)[off] = ref_f32_to_bf16((float)v); break;
    default:       ((float *)x->t.data)[off] = (float)v; break;
    }
}

void tt_fill_normal(test_tensor *x, test_rng *r, double sigma)
{
    const int64_t *n = x->t.shape;
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t c = 0; c < n[2]; c++)
                for (int64_t d = 0; d < n[3]; d++)
                    tt_set(x, a, b, c, d, sigma * rng_normal(r));
}

int tt_padding_intact(const test_tensor *x)
{
    unsigned char *in_view = calloc((size_t)x->elems, 1);
    if (!in_view)
        return 0;
    const int64_t base = ((const char *)x->t.data - (const char *)x->mem) /
                         (int64_t)elem_size(x->t.dtype);
    const int64_t *n = x->t.shape;
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t c = 0; c < n[2]; c++)
                for (int64_t d = 0; d < n[3]; d++)
                    in_view[base + tt_offset(x, a, b, c, d)] = 1;
    int ok = 1;
    for (int64_t i = 0; i < x->elems && ok; i++)
        if (!in_view[i] && !is_poison(x->mem, x->t.dtype, i))
            ok = 0;
    free(in_view);
    return ok;
}

#define GUARD 16

float *guarded_alloc(int64_t n)
{
    float *p = malloc((size_t)(n + 2 * GUARD) * sizeof *p);
    if (!p)
        return NULL;
    poison(p, QKV_F32, n + 2 * GUARD);
    return p + GUARD;
}

void guarded_free(float *p)
{
    if (p)
        free(p - GUARD);
}

int guarded_intact(const float *p, int64_t n)
{
    for (int64_t i = 0; i < GUARD; i++)
        if (!is_poison(p - GUARD, QKV_F32, i) || !is_poison(p + n, QKV_F32, i))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------ */
/* sdpa cases                                                         */
/* ------------------------------------------------------------------ */

static int make_mask(sdpa_case *c, test_rng *r)
{
    const sdpa_spec *s = &c->spec;
    const int per_batch = s->mask == MASK_PER_BATCH || s->mask == MASK_FULL;
    const int per_head = s->mask == MASK_PER_HEAD || s->mask == MASK_FULL;
    const int64_t mb = per_batch ? s->B : 1, mh = per_head ? s->H : 1;
    if (tt_alloc(&c->mask_mem, QKV_F32, s->mask == MASK_FULL ? s->layout : LAYOUT_BHSD,
                 mb, mh, s->Lq, s->Lk, r))
        return -1;
    for (int64_t b = 0; b < mb; b++)
        for (int64_t h = 0; h < mh; h++)
            for (int64_t i = 0; i < s->Lq; i++)
                for (int64_t j = 0; j < s->Lk; j++) {
                    const double u = rng_uniform(r);
                    tt_set(&c->mask_mem, b, h, i, j,
                           u < s->mask_block_prob ? -INFINITY : 4.0 * rng_uniform(r) - 2.0);
                }
    c->mask = c->mask_mem.t;
    if (s->mask == MASK_STRIDE0) {
        c->mask.shape[0] = s->B;
        c->mask.shape[1] = s->H;
        c->mask.stride[0] = c->mask.stride[1] = 0;
    }
    return 0;
}

static int make_kv_len(sdpa_case *c, test_rng *r)
{
    const sdpa_spec *s = &c->spec;
    c->kv_len = malloc((size_t)s->B * sizeof *c->kv_len);
    if (!c->kv_len)
        return -1;
    for (int64_t b = 0; b < s->B; b++) {
        int64_t n = s->Lk;
        if (s->kv_len == KV_LEN_ZERO)
            n = 0;
        else if (s->kv_len == KV_LEN_RANDOM)
            /* the extremes first, then anything in between */
            n = b == 0 ? s->Lk : b == 1 ? 0 : rng_range(r, 0, s->Lk);
        c->kv_len[b] = (int32_t)n;
    }
    return 0;
}

int sdpa_case_make(sdpa_case *c, const sdpa_spec *spec, uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->spec = *spec;
    sdpa_spec *s = &c->spec;
    if (!s->Hkv)
        s->Hkv = s->H;
    if (!s->Dv)
        s->Dv = s->D;
    const double qk = s->qk_sigma > 0 ? s->qk_sigma : 1.0;
    const double vs = s->v_sigma > 0 ? s->v_sigma : 1.0;
    test_rng r = rng_seeded(seed);
    if (tt_alloc(&c->q, QKV_F32, s->layout, s->B, s->H, s->Lq, s->D, &r) ||
        tt_alloc(&c->k, s->k_dtype, s->layout, s->B, s->Hkv, s->Lk, s->D, &r) ||
        tt_alloc(&c->v, s->v_dtype, s->layout, s->B, s->Hkv, s->Lk, s->Dv, &r) ||
        tt_alloc(&c->out, QKV_F32, s->layout, s->B, s->H, s->Lq, s->Dv, &r))
        return -1;
    tt_fill_normal(&c->q, &r, qk);
    tt_fill_normal(&c->k, &r, qk);
    tt_fill_normal(&c->v, &r, vs);
    if (s->mask != MASK_NONE && make_mask(c, &r))
        return -1;
    if (s->kv_len != KV_LEN_NONE && make_kv_len(c, &r))
        return -1;
    const int64_t rows = s->B * s->H * s->Lq;
    if (!s->no_weights && !(c->weights = guarded_alloc(rows * s->Lk)))
        return -1;
    if (!s->no_lse && !(c->lse = guarded_alloc(rows)))
        return -1;
    c->params = (qkv_sdpa_params){
        .scale = s->scale,
        .causal = s->causal,
        .mask = s->mask != MASK_NONE ? &c->mask : NULL,
        .kv_len = c->kv_len,
        .weights = c->weights,
        .lse = c->lse,
        .num_threads = s->num_threads,
    };
    return 0;
}

void sdpa_case_free(sdpa_case *c)
{
    tt_free(&c->q);
    tt_free(&c->k);
    tt_free(&c->v);
    tt_free(&c->out);
    tt_free(&c->mask_mem);
    free(c->kv_len);
    guarded_free(c->weights);
    guarded_free(c->lse);
    memset(c, 0, sizeof *c);
}

qkv_status sdpa_case_run(sdpa_case *c)
{
    return qkv_sdpa(&c->q.t, &c->k.t, &c->v.t, &c->out.t, &c->params);
}

void sdpa_spec_describe(const sdpa_spec *s, char *buf, size_t size)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    static const char *const layouts[] = {"bhsd", "bshd", "strided"};
    snprintf(buf, size,
             "B%lld H%lld/%lld Lq%lld Lk%lld D%lld/%lld k:%s v:%s %s causal%d mask%d(p%.2g) "
             "kv_len%d qk*%g v*%g scale%g threads%d",
             (long long)s->B, (long long)s->H, (long long)(s->Hkv ? s->Hkv : s->H),
             (long long)s->Lq, (long long)s->Lk, (long long)s->D,
             (long long)(s->Dv ? s->Dv : s->D), dtypes[s->k_dtype], dtypes[s->v_dtype],
             layouts[s->layout], (int)s->causal, (int)s->mask, s->mask_block_prob,
             (int)s->kv_len, s->qk_sigma, s->v_sigma, (double)s->scale, s->num_threads);
}

int sdpa_case_blocked(const sdpa_case *c, int64_t b, int64_t h, int64_t i, int64_t j)
{
    const sdpa_spec *s = &c->spec;
    if (s->causal == QKV_CAUSAL_BOTTOM_RIGHT && j > i + (s->Lk - s->Lq))
        return 1;
    if (s->causal == QKV_CAUSAL_TOP_LEFT && j > i)
        return 1;
    if (c->kv_len && j >= c->kv_len[b])
        return 1;
    if (s->mask != MASK_NONE) {
        const int64_t mb = c->mask.shape[0] > 1 ? b : 0, mh = c->mask.shape[1] > 1 ? h : 0;
        const float *m = c->mask.data;
        if (m[mb * c->mask.stride[0] + mh * c->mask.stride[1] + i * c->mask.stride[2] + j] ==
            -INFINITY)
            return 1;
    }
    return 0;
}

/* ---- the error bound --------------------------------------------- */

#define UNIT_ROUNDOFF 0x1.0p-24
#define TINY_ABS (4.0 * 0x1.0p-126)   /* underflow of exp and products */

/* The worst-case error of the logits of row (b, h, i), in absolute
   terms: the rounding of scale*q, of the dot products (grows like
   sqrt(D) for any summation order but a pathological one) and of adding
   the mask. */
static double logit_error(const sdpa_case *c, double scale, int64_t b, int64_t h,
                          int64_t i)
{
    const sdpa_spec *s = &c->spec;
    const int64_t g = h / (s->H / s->Hkv);
    const double dot_factor = (3.0 * sqrt((double)s->D) + 4.0) * UNIT_ROUNDOFF;
    double worst = 0.0;
    for (int64_t j = 0; j < s->Lk; j++) {
        if (sdpa_case_blocked(c, b, h, i, j))
            continue;
        double abs_dot = 0.0, dot = 0.0;
        for (int64_t d = 0; d < s->D; d++) {
            const double t = tt_get(&c->q, b, h, i, d) * tt_get(&c->k, b, g, j, d);
            abs_dot += fabs(t);
            dot += t;
        }
        double m = 0.0;
        if (s->mask != MASK_NONE) {
            const int64_t mb = c->mask.shape[0] > 1 ? b : 0, mh = c->mask.shape[1] > 1 ? h : 0;
            const float *mp = c->mask.data;
            m = mp[mb * c->mask.stride[0] + mh * c->mask.stride[1] + i * c->mask.stride[2] + j];
        }
        const double e = dot_factor * fabs(scale) * abs_dot +
                         2.0 * UNIT_ROUNDOFF * (fabs(scale * dot) + 2.0 * fabs(m));
        if (e > worst)
            worst = e;
    }
    return worst;
}

typedef struct worst_tracker {
    double ratio;
    char *where;
    size_t size;
} worst_tracker;

static void track(worst_tracker *w, double err, double bound, const char *what,
                  int64_t index, double got, double want)
{
    double ratio = bound > 0.0 ? err / bound : (err == 0.0 ? 0.0 : INFINITY);
    if (isnan(err))
        ratio = INFINITY;
    if (ratio > w->ratio || (w->ratio == 0.0 && w->where[0] == '\0')) {
        w->ratio = ratio;
        snprintf(w->where, w->size, "%s[%lld]: got %.9g want %.9g bound %.3g", what,
                 (long long)index, got, want, bound);
    }
}

/* Checks row (b, h, i) of every output against the reference values. */
static void check_row(const sdpa_case *c, int64_t b, int64_t h, int64_t i, double scale,
                      const double *ref_out, const double *ref_w, const double *ref_lse,
                      worst_tracker *w)
{
    const sdpa_spec *s = &c->spec;
    const int64_t g = h / (s->H / s->Hkv);
    const int64_t row = (b * s->H + h) * s->Lq + i;
    const double delta = logit_error(c, scale, b, h, i);
    const double softmax_err = (16.0 + 2.0 * sqrt((double)s->Lk)) * UNIT_ROUNDOFF;
    const double weight_rel = 2.0 * delta + softmax_err;
    const double *rw = ref_w + row * s->Lk;

    for (int64_t j = 0; j < s->Lk; j++) {
        const int blocked = sdpa_case_blocked(c, b, h, i, j);
        if (c->weights) {
            const double got = c->weights[row * s->Lk + j];
            /* blocked keys: exactly 0 */
            const double bound = blocked ? 0.0 : rw[j] * weight_rel + TINY_ABS;
            track(w, fabs(got - rw[j]), bound, "weights", row * s->Lk + j, got, rw[j]);
        }
    }
    for (int64_t d = 0; d < s->Dv; d++) {
        double mag = 0.0;   /* sum of w_j |v_jd|: what the rounding scales with */
        for (int64_t j = 0; j < s->Lk; j++)
            if (rw[j] != 0.0)
                mag += rw[j] * fabs(tt_get(&c->v, b, g, j, d));
        const double sum_err = (4.0 + 2.0 * sqrt((double)s->Lk)) * UNIT_ROUNDOFF;
        const double bound = mag * (weight_rel + sum_err) + TINY_ABS;
        const double got = tt_get(&c->out, b, h, i, d);
        track(w, fabs(got - ref_out[row * s->Dv + d]), bound, "out", row * s->Dv + d, got,
              ref_out[row * s->Dv + d]);
    }
    if (c->lse) {
        const double want = ref_lse[row], got = c->lse[row];
        if (want == -INFINITY)
            track(w, got == -INFINITY ? 0.0 : INFINITY, 0.0, "lse", row, got, want);
        else
            track(w, fabs(got - want), delta + softmax_err + 4.0 * UNIT_ROUNDOFF * (fabs(want) + 1.0),
                  "lse", row, got, want);
    }
}

double sdpa_case_check(const sdpa_case *c, char *where, size_t size)
{
    const sdpa_spec *s = &c->spec;
    const int64_t rows = s->B * s->H * s->Lq;
    worst_tracker w = {0.0, where, size};
    where[0] = '\0';
    double *ref_out = malloc((size_t)(rows * s->Dv) * sizeof *ref_out);
    double *ref_w = malloc((size_t)(rows * s->Lk) * sizeof *ref_w);
    double *ref_lse = malloc((size_t)rows * sizeof *ref_lse);
    if (!ref_out || !ref_w || !ref_lse ||
        ref_sdpa(&c->q.t, &c->k.t, &c->v.t, &c->params, ref_out, ref_w, ref_lse)) {
        snprintf(where, size, "reference failed");
        w.ratio = INFINITY;
        goto done;
    }
    const double scale = s->scale != 0.0f ? (double)s->scale
                                          : (double)(float)(1.0 / sqrt((double)s->D));
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t i = 0; i < s->Lq; i++)
                check_row(c, b, h, i, scale, ref_out, ref_w, ref_lse, &w);
    if (!tt_padding_intact(&c->out)) {
        w.ratio = INFINITY;
        snprintf(where, size, "out: padding between rows was written");
    }
    if ((c->weights && !guarded_intact(c->weights, rows * s->Lk)) ||
        (c->lse && !guarded_intact(c->lse, rows))) {
        w.ratio = INFINITY;
        snprintf(where, size, "weights/lse: written out of bounds");
    }
done:
    free(ref_out);
    free(ref_w);
    free(ref_lse);
    return w.ratio;
}

/* ------------------------------------------------------------------ */
/* mha cases                                                          */
/* ------------------------------------------------------------------ */

static float *random_floats(test_rng *r, int64_t n, double sigma)
{
    float *f = malloc((size_t)n * sizeof *f);
    if (f)
        for (int64_t i = 0; i < n; i++)
            f[i] = (float)(sigma * rng_normal(r));
    return f;
}

int mha_case_make(mha_case *c, const qkv_mha_config *cfg, int64_t batch, int64_t lq,
                  int64_t lk, int self_attn, int with_kv_len, qkv_causal causal,
                  uint64_t seed)
{
    memset(c, 0, sizeof *c);
    c->cfg = *cfg;
    const int64_t E = cfg->d_model, H = cfg->n_heads;
    const int64_t Hkv = cfg->n_kv_heads ? cfg->n_kv_heads : H;
    const int64_t hd = cfg->head_dim ? cfg->head_dim : E / H;
    c->kdim = cfg->kdim ? cfg->kdim : E;
    c->vdim = cfg->vdim ? cfg->vdim : E;
    c->qw = H * hd;
    c->kw = Hkv * hd;
    c->batch = batch;
    c->lq = lq;
    c->lk = self_attn ? lq : lk;
    c->self_attn = self_attn;
    test_rng r = rng_seeded(seed);
    const int64_t rows[4] = {c->qw, c->kw, c->kw, E};
    const int64_t cols[4] = {E, c->kdim, c->vdim, c->qw};
    for (int i = 0; i < 4; i++) {
        c->wmem[i] = random_floats(&r, rows[i] * cols[i], 1.0 / sqrt((double)cols[i]));
        if (cfg->bias)
            c->wmem[4 + i] = random_floats(&r, rows[i], 0.2);
        if (!c->wmem[i] || (cfg->bias && !c->wmem[4 + i]))
            return -1;
    }
    c->w = (qkv_mha_weights){c->wmem[0], c->wmem[1], c->wmem[2], c->wmem[3],
                             c->wmem[4], c->wmem[5], c->wmem[6], c->wmem[7]};
    c->x_q = random_floats(&r, batch * lq * E, 1.0);
    if (!c->x_q)
        return -1;
    if (self_attn) {
        c->x_k = c->x_v = c->x_q;
    } else if (!(c->x_k = random_floats(&r, batch * lk * c->kdim, 1.0)) ||
               !(c->x_v = random_floats(&r, batch * lk * c->vdim, 1.0))) {
        return -1;
    }
    if (with_kv_len) {
        if (!(c->kv_len = malloc((size_t)batch * sizeof *c->kv_len)))
            return -1;
        for (int64_t b = 0; b < batch; b++)
            c->kv_len[b] = (int32_t)(b == 0 ? c->lk : rng_range(&r, 1, c->lk));
    }
    if (!(c->y = guarded_alloc(batch * lq * E)) ||
        !(c->weights = guarded_alloc(batch * H * lq * c->lk)) ||
        !(c->weights_avg = guarded_alloc(batch * lq * c->lk)))
        return -1;
    c->params = (qkv_mha_params){.causal = causal, .kv_len = c->kv_len,
                                 .weights = c->weights, .weights_avg = c->weights_avg};
    return 0;
}

void mha_case_free(mha_case *c)
{
    qkv_mha_destroy(c->layer);
    for (int i = 0; i < 8; i++)
        free(c->wmem[i]);
    if (!c->self_attn) {
        free(c->x_k);
        free(c->x_v);
    }
    free(c->x_q);
    free(c->kv_len);
    guarded_free(c->y);
    guarded_free(c->weights);
    guarded_free(c->weights_avg);
    memset(c, 0, sizeof *c);
}

qkv_status mha_case_run(mha_case *c)
{
    if (!c->layer) {
        const qkv_status st = qkv_mha_create(&c->layer, &c->cfg, &c->w);
        if (st)
            return st;
    }
    return qkv_mha_forward(c->layer, c->batch, c->x_q, c->lq, c->x_k, c->x_v, c->lk,
                           c->y, &c->params);
}

static void compare_tol(worst_tracker *w, const char *what, const float *got,
                        const double *want, int64_t n)
{
    double max_abs = 0.0;
    for (int64_t i = 0; i < n; i++)
        max_abs = fmax(max_abs, fabs(want[i]));
    for (int64_t i = 0; i < n; i++)
        track(w, fabs((double)got[i] - want[i]), 1e-5 * max_abs + 1e-4 * fabs(want[i]),
              what, i, got[i], want[i]);
}

double mha_case_check(const mha_case *c, char *where, size_t size)
{
    const int64_t ny = c->batch * c->lq * c->cfg.d_model;
    const int64_t nw = c->batch * c->cfg.n_heads * c->lq * c->lk;
    const int64_t na = c->batch * c->lq * c->lk;
    worst_tracker w = {0.0, where, size};
    where[0] = '\0';
    double *y = malloc((size_t)ny * sizeof *y);
    double *wt = malloc((size_t)nw * sizeof *wt);
    double *avg = malloc((size_t)na * sizeof *avg);
    if (!y || !wt || !avg ||
        ref_mha(&c->cfg, &c->w, c->batch, c->x_q, c->lq, c->x_k, c->x_v, c->lk,
                &c->params, y, wt, avg)) {
        snprintf(where, size, "reference failed");
        w.ratio = INFINITY;
    } else {
        compare_tol(&w, "y", c->y, y, ny);
        if (c->params.weights)
            compare_tol(&w, "weights", c->weights, wt, nw);
        if (c->params.weights_avg)
            compare_tol(&w, "weights_avg", c->weights_avg, avg, na);
        if (!guarded_intact(c->y, ny) || !guarded_intact(c->weights, nw) ||
            !guarded_intact(c->weights_avg, na)) {
            w.ratio = INFINITY;
            snprintf(where, size, "y/weights/weights_avg: written out of bounds");
        }
    }
    free(y);
    free(wt);
    free(avg);
    return w.ratio;
}
