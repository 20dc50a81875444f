/*
 * The KV cache and cached generation through the multi-head layer:
 *   - appends convert to F16/BF16 exactly as the reference conversions do
 *     (specials, ties, overflow, subnormals, random bit patterns);
 *   - views have the documented shape and strides and feed qkv_sdpa
 *     directly (against ref_sdpa);
 *   - generating N tokens one at a time, or in uneven pieces, through
 *     qkv_mha_forward_cached equals one causal qkv_mha_forward over all N
 *     (self-attention, GQA, MQA), weights and weights_avg included;
 *   - F16/BF16 caches against a double computation over the stored K/V;
 *   - batches whose elements take different numbers of tokens;
 *   - window, softcap, ALiBi and sinks reach the attention from the layer
 *     (against a double computation written here);
 *   - every error status, with nothing changed.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/ref.h"
#include "testutil.h"

TestSuite(kvcache, .init = qkv_test_init);

/* ------------------------------------------------------------------ */
/* Fixtures                                                           */
/* ------------------------------------------------------------------ */

static float *random_floats(test_rng *r, int64_t n, double sigma)
{
    float *p = malloc((size_t)n * sizeof *p);
    cr_assert(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)(sigma * rng_normal(r));
    return p;
}

/* A self-attention layer with random weights (and its shape). */
typedef struct layer {
    int64_t E, H, Hkv, hd, qw, kw;
    int bias;
    float *mem[8];   /* w_q w_k w_v w_o b_q b_k b_v b_o */
    qkv_mha_config cfg;
    qkv_mha_weights w;
    qkv_mha *m;
} layer;

static void layer_make(layer *l, int64_t E, int64_t H, int64_t Hkv, int bias, uint64_t seed)
{
    memset(l, 0, sizeof *l);
    l->E = E;
    l->H = H;
    l->Hkv = Hkv;
    l->hd = E / H;
    l->qw = H * l->hd;
    l->kw = Hkv * l->hd;
    l->bias = bias;
    test_rng r = rng_seeded(seed);
    const int64_t rows[4] = {l->qw, l->kw, l->kw, E};
    const int64_t cols[4] = {E, E, E, l->qw};
    for (int i = 0; i < 4; i++) {
        l->mem[i] = random_floats(&r, rows[i] * cols[i], 1.0 / sqrt((double)cols[i]));
        l->mem[4 + i] = random_floats(&r, rows[i], bias ? 0.2 : 0.0);
    }
    l->cfg = (qkv_mha_config){.d_model = E, .n_heads = H, .n_kv_heads = Hkv, .bias = bias};
    l->w = (qkv_mha_weights){l->mem[0], l->mem[1], l->mem[2], l->mem[3],
                             l->mem[4], l->mem[5], l->mem[6], l->mem[7]};
    cr_assert_eq(qkv_mha_create(&l->m, &l->cfg, &l->w), QKV_OK);
}

static void layer_free(layer *l)
{
    qkv_mha_destroy(l->m);
    for (int i = 0; i < 8; i++)
        free(l->mem[i]);
}

static qkv_kv_cache *cache_for(const layer *l, int64_t batch, int64_t capacity, qkv_dtype dt)
{
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, batch, l->Hkv, l->hd, l->hd, capacity, dt), QKV_OK);
    cr_assert(c);
    return c;
}

static float nan_float(void)
{
    const uint32_t bits = POISON_F32_BITS;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float *poisoned(int64_t n)
{
    float *p = malloc((size_t)n * sizeof *p);
    cr_assert(p);
    for (int64_t i = 0; i < n; i++)
        p[i] = nan_float();
    return p;
}

/* max |got - want| / max |want| over n values (INFINITY for a NaN). */
static double rel_error(const float *got, const float *want, int64_t n)
{
    double worst = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i]))
            return INFINITY;
        scale = fmax(scale, fabs((double)want[i]));
        worst = fmax(worst, fabs((double)got[i] - (double)want[i]));
    }
    return scale > 0.0 ? worst / scale : worst;
}

static double rel_error_d(const float *got, const double *want, int64_t n)
{
    double worst = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            return INFINITY;
        scale = fmax(scale, fabs(want[i]));
        worst = fmax(worst, fabs((double)got[i] - want[i]));
    }
    return scale > 0.0 ? worst / scale : worst;
}

/* A value of a cache view as a double. */
static double view_get(const qkv_tensor *t, int64_t b, int64_t h, int64_t s, int64_t d)
{
    const int64_t off = b * t->stride[0] + h * t->stride[1] + s * t->stride[2] + d;
    switch (t->dtype) {
    case QKV_F16:  return ref_f16_to_f32(((const uint16_t *)t->data)[off]);
    case QKV_BF16: return ref_bf16_to_f32(((const uint16_t *)t->data)[off]);
    default:       return ((const float *)t->data)[off];
    }
}

/* ------------------------------------------------------------------ */
/* The double computation of one sequence                             */
/* ------------------------------------------------------------------ */

/* out [n, rows_out] = x [n, cols] W^T + bias, in double. */
static void linear_d(int64_t n, int64_t rows_out, int64_t cols, const double *x,
                     const float *w, const float *bias, double *out)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < rows_out; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int64_t c = 0; c < cols; c++)
                acc += x[i * cols + c] * (double)w[o * cols + c];
            out[i * rows_out + o] = acc;
        }
}

/* Causal self-attention of one sequence of n tokens through layer l, in
   double, with the window / softcap / ALiBi / sinks of p: y [n, E]. When
   kv (a cache view) is given, K and V are its element b's first n rows
   instead of the double projections. */
static void seq_reference(const layer *l, const float *x, int64_t n,
                          const qkv_mha_params *p, const qkv_tensor *kv_k,
                          const qkv_tensor *kv_v, int64_t b, double *y)
{
    const int64_t E = l->E, hd = l->hd, group = l->H / l->Hkv;
    double *xd = malloc((size_t)(n * E) * sizeof *xd);
    double *Q = malloc((size_t)(n * l->qw) * sizeof *Q);
    double *K = malloc((size_t)(n * l->kw) * sizeof *K);
    double *V = malloc((size_t)(n * l->kw) * sizeof *V);
    double *concat = malloc((size_t)(n * l->qw) * sizeof *concat);
    double *s = malloc((size_t)n * sizeof *s);
    cr_assert(xd && Q && K && V && concat && s);
    for (int64_t i = 0; i < n * E; i++)
        xd[i] = x[i];
    linear_d(n, l->qw, E, xd, l->w.w_q, l->bias ? l->w.b_q : NULL, Q);
    linear_d(n, l->kw, E, xd, l->w.w_k, l->bias ? l->w.b_k : NULL, K);
    linear_d(n, l->kw, E, xd, l->w.w_v, l->bias ? l->w.b_v : NULL, V);
    if (kv_k)
        for (int64_t j = 0; j < n; j++)
            for (int64_t g = 0; g < l->Hkv; g++)
                for (int64_t d = 0; d < hd; d++) {
                    K[j * l->kw + g * hd + d] = view_get(kv_k, b, g, j, d);
                    V[j * l->kw + g * hd + d] = view_get(kv_v, b, g, j, d);
                }
    const double scale = 1.0 / sqrt((double)hd);
    for (int64_t h = 0; h < l->H; h++) {
        const int64_t g = h / group;
        for (int64_t i = 0; i < n; i++) {
            double mx = p->sinks ? p->sinks[h] : -INFINITY;
            for (int64_t j = 0; j < n; j++) {
                int seen = j <= i;
                if (p->window && p->window_left >= 0 && j < i - p->window_left)
                    seen = 0;
                if (p->window && p->window_right >= 0 && j > i + p->window_right)
                    seen = 0;
                double dot = 0.0;
                for (int64_t d = 0; d < hd; d++)
                    dot += Q[i * l->qw + h * hd + d] * K[j * l->kw + g * hd + d];
                double logit = scale * dot;
                if (p->softcap > 0.0f)
                    logit = p->softcap * tanh(logit / p->softcap);
                if (p->alibi_slopes)
                    logit -= p->alibi_slopes[h] * fabs((double)(i - j));
                s[j] = seen ? logit : -INFINITY;
                mx = fmax(mx, s[j]);
            }
            double sum = p->sinks && mx != -INFINITY ? exp(p->sinks[h] - mx) : 0.0;
            for (int64_t j = 0; j < n; j++) {
                s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                sum += s[j];
            }
            for (int64_t d = 0; d < hd; d++) {
                double acc = 0.0;
                for (int64_t j = 0; j < n; j++)
                    acc += s[j] * V[j * l->kw + g * hd + d];
                concat[i * l->qw + h * hd + d] = sum > 0.0 ? acc / sum : 0.0;
            }
        }
    }
    linear_d(n, E, l->qw, concat, l->w.w_o, l->bias ? l->w.b_o : NULL, y);
    free(xd); free(Q); free(K); free(V); free(concat); free(s);
}

/* ------------------------------------------------------------------ */
/* Conversions                                                        */
/* ------------------------------------------------------------------ */

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Values that probe the conversions: specials, the edges of the F16 and
   BF16 ranges, exact ties, and random bit patterns of every exponent. */
static int64_t probe_values(float *vals, int64_t cap)
{
    static const uint32_t fixed[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,   /* zeros, infinities */
        0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fbfffffu,   /* NaNs (quiet, signalling) */
        0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u,   /* 65504 .. 65520 .. */
        0x47800000u, 0x7f7fffffu, 0x7f7f8000u, 0x7f7f7fffu,   /* 65536, FLT_MAX, bf16 ties */
        0x38800000u, 0x387fffffu, 0x387ff000u, 0x38000000u,   /* smallest f16 normal */
        0x33800000u, 0x33000000u, 0x33000001u, 0x33c00000u,   /* 2^-24, 2^-25 (tie), 1.5*2^-24 */
        0x32ffffffu, 0x00000001u, 0x80400000u, 0x00800000u,   /* float subnormals */
        0x3f801000u, 0x3f803000u, 0x3f801001u, 0xbf803000u,   /* f16 ties around 1 */
        0x3f808000u, 0x3f818000u, 0x3f808001u, 0xbf818000u,   /* bf16 ties around 1 */
    };
    int64_t n = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        vals[n++] = from_bits(fixed[i]);
    test_rng r = rng_seeded(77);
    while (n < cap) {
        /* Exponents over the whole float range, half of them in and
           around the F16 range (subnormals to overflow); mantissas random. */
        const uint32_t sign = (uint32_t)(rng_next(&r) & 1u) << 31;
        const uint32_t exp = (uint32_t)(n % 2 ? rng_range(&r, 0, 255) : rng_range(&r, 98, 145));
        const uint32_t mant = (uint32_t)(rng_next(&r) & 0x7fffffu);
        vals[n++] = from_bits(sign | exp << 23 | mant);
    }
    return n;
}

static int is_nan16(uint16_t h, qkv_dtype dt)
{
    return dt == QKV_F16 ? (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu)
                         : (h & 0x7f80u) == 0x7f80u && (h & 0x007fu);
}

static void check_conversion(qkv_dtype dt)
{
    enum { ROWS = 64, DIM = 64 };   /* one head, one element */
    float *vals = malloc(ROWS * DIM * sizeof *vals);
    cr_assert(vals);
    probe_values(vals, ROWS * DIM);
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, 1, 1, DIM, DIM, ROWS, dt), QKV_OK);
    const qkv_tensor kn = qkv_tensor_bhsd(vals, QKV_F32, 1, 1, ROWS, DIM);
    cr_assert_eq(qkv_kv_cache_append(c, &kn, &kn, NULL), QKV_OK);
    qkv_tensor k, v;
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, NULL), QKV_OK);
    cr_assert_eq(k.dtype, dt);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < ROWS * DIM; i++) {
        const uint16_t gk = ((const uint16_t *)k.data)[i], gv = ((const uint16_t *)v.data)[i];
        if (isnan(vals[i])) {
            mismatches += !is_nan16(gk, dt) || !is_nan16(gv, dt);
            continue;
        }
        const uint16_t want = dt == QKV_F16 ? ref_f32_to_f16(vals[i]) : ref_f32_to_bf16(vals[i]);
        if (gk != want || gv != want) {
            if (mismatches++ < 5)
                cr_log_error("%s: %a (0x%08x) -> 0x%04x, want 0x%04x",
                             dt == QKV_F16 ? "f16" : "bf16", (double)vals[i],
                             (unsigned)(((const uint32_t *)vals)[i]), gk, want);
        }
    }
    cr_expect_eq(mismatches, 0, "%lld of %d values converted wrongly",
                 (long long)mismatches, ROWS * DIM);
    qkv_kv_cache_destroy(c);
    free(vals);
}

Test(kvcache, append_converts_to_f16_like_reference) { check_conversion(QKV_F16); }
Test(kvcache, append_converts_to_bf16_like_reference) { check_conversion(QKV_BF16); }

Test(kvcache, append_f32_is_a_copy)
{
    enum { N = 32, DIM = 8 };
    float vals[N * DIM];
    probe_values(vals, N * DIM);
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, 1, 1, DIM, DIM, N, QKV_F32), QKV_OK);
    const qkv_tensor kn = qkv_tensor_bhsd(vals, QKV_F32, 1, 1, N, DIM);
    cr_assert_eq(qkv_kv_cache_append(c, &kn, &kn, NULL), QKV_OK);
    qkv_tensor k, v;
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, NULL), QKV_OK);
    cr_expect_eq(memcmp(k.data, vals, sizeof vals), 0);
    cr_expect_eq(memcmp(v.data, vals, sizeof vals), 0);
    qkv_kv_cache_destroy(c);
}

/* ------------------------------------------------------------------ */
/* Views, lengths, reset                                              */
/* ------------------------------------------------------------------ */

enum { VB = 3, VHKV = 2, VD = 5, VDV = 3, VCAP = 9 };

/* Appends n rows per element, row values encoding (b, h, row, d), taking
   count[b] of them. */
static qkv_status append_pattern(qkv_kv_cache *c, int64_t n, const int32_t *count, float base)
{
    float *k = malloc((size_t)(VB * VHKV * n * VD) * sizeof *k);
    float *v = malloc((size_t)(VB * VHKV * n * VDV) * sizeof *v);
    cr_assert(k && v);
    for (int64_t i = 0; i < VB * VHKV * n * VD; i++)
        k[i] = base + (float)i;
    for (int64_t i = 0; i < VB * VHKV * n * VDV; i++)
        v[i] = -base - (float)i;
    /* Token-major [B, n, H, D] input: strided views. */
    const qkv_tensor kn = qkv_tensor_bshd(k, QKV_F32, VB, n, VHKV, VD);
    const qkv_tensor vn = qkv_tensor_bshd(v, QKV_F32, VB, n, VHKV, VDV);
    const qkv_status st = qkv_kv_cache_append(c, &kn, &vn, count);
    free(k);
    free(v);
    return st;
}

Test(kvcache, views_have_documented_shape_and_lengths)
{
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, VB, VHKV, VD, VDV, VCAP, QKV_BF16), QKV_OK);
    qkv_tensor k, v;
    const int32_t *len = NULL;
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, &len), QKV_OK);
    cr_expect_eq(k.shape[2], 1, "an empty cache's views have L = 1");
    cr_expect(len[0] == 0 && len[1] == 0 && len[2] == 0);

    const int32_t count[VB] = {4, 0, 2};
    cr_assert_eq(append_pattern(c, 4, count, 1.0f), QKV_OK);
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, &len), QKV_OK);
    const int64_t ks[4] = {VB, VHKV, 4, VD}, kst[4] = {VHKV * VCAP * VD, VCAP * VD, VD, 1};
    const int64_t vs[4] = {VB, VHKV, 4, VDV}, vst[4] = {VHKV * VCAP * VDV, VCAP * VDV, VDV, 1};
    for (int d = 0; d < 4; d++) {
        cr_expect_eq(k.shape[d], ks[d]);
        cr_expect_eq(k.stride[d], kst[d]);
        cr_expect_eq(v.shape[d], vs[d]);
        cr_expect_eq(v.stride[d], vst[d]);
    }
    cr_expect(k.dtype == QKV_BF16 && v.dtype == QKV_BF16);
    for (int64_t b = 0; b < VB; b++) {
        cr_expect_eq(len[b], count[b]);
        cr_expect_eq(qkv_kv_cache_length(c, b), count[b]);
    }
    cr_expect_eq(qkv_kv_cache_length(c, -1), -1);
    cr_expect_eq(qkv_kv_cache_length(c, VB), -1);
    cr_expect_eq(qkv_kv_cache_length(NULL, 0), -1);

    /* The rows hold what was appended (small integers: exact in bf16). */
    for (int64_t b = 0; b < VB; b++)
        for (int64_t h = 0; h < VHKV; h++)
            for (int64_t s = 0; s < count[b]; s++) {
                const double want_k = 1.0 + (double)(((b * 4 + s) * VHKV + h) * VD);
                const double want_v = -1.0 - (double)(((b * 4 + s) * VHKV + h) * VDV);
                cr_expect_eq(view_get(&k, b, h, s, 0), want_k, "k b%lld h%lld s%lld",
                             (long long)b, (long long)h, (long long)s);
                cr_expect_eq(view_get(&v, b, h, s, 0), want_v);
            }

    /* A second append goes after each length. */
    cr_assert_eq(append_pattern(c, 1, NULL, 100.0f), QKV_OK);
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, &len), QKV_OK);
    cr_expect_eq(k.shape[2], 5);
    cr_expect_eq(view_get(&k, 1, 1, 0, 0), 100.0 + (double)((1 * VHKV + 1) * VD));
    cr_expect_eq(view_get(&k, 2, 0, 2, 0), 100.0 + (double)((2 * VHKV) * VD));

    cr_assert_eq(qkv_kv_cache_reset(c), QKV_OK);
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, &len), QKV_OK);
    cr_expect_eq(k.shape[2], 1);
    for (int64_t b = 0; b < VB; b++)
        cr_expect_eq(len[b], 0);
    cr_assert_eq(append_pattern(c, 2, NULL, 7.0f), QKV_OK);
    cr_expect_eq(qkv_kv_cache_length(c, 0), 2);
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, NULL), QKV_OK);
    cr_expect_eq(view_get(&k, 0, 0, 0, 0), 7.0, "after reset, appends start at row 0");
    qkv_kv_cache_destroy(c);
    qkv_kv_cache_destroy(NULL);   /* a no-op */
}

static void check_views_feed_sdpa(qkv_dtype dt)
{
    enum { B = 2, H = 4, HKV = 2, D = 16, DV = 8, CAP = 40, LQ = 3 };
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, B, HKV, D, DV, CAP, dt), QKV_OK);
    test_rng r = rng_seeded(5);
    /* Two appends with different counts per element. */
    const int32_t counts[2][B] = {{17, 5}, {3, 9}};
    for (int a = 0; a < 2; a++) {
        const int64_t n = 17;
        float *k = random_floats(&r, B * HKV * n * D, 1.0);
        float *v = random_floats(&r, B * HKV * n * DV, 1.0);
        const qkv_tensor kn = qkv_tensor_bhsd(k, QKV_F32, B, HKV, n, D);
        const qkv_tensor vn = qkv_tensor_bhsd(v, QKV_F32, B, HKV, n, DV);
        cr_assert_eq(qkv_kv_cache_append(c, &kn, &vn, counts[a]), QKV_OK);
        free(k);
        free(v);
    }
    qkv_tensor k, v;
    const int32_t *len;
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, &len), QKV_OK);
    cr_assert_eq(k.shape[2], 20);
    float *q = random_floats(&r, B * H * LQ * D, 1.0);
    float *out = poisoned(B * H * LQ * DV);
    const qkv_tensor qt = qkv_tensor_bhsd(q, QKV_F32, B, H, LQ, D);
    const qkv_tensor ot = qkv_tensor_bhsd(out, QKV_F32, B, H, LQ, DV);
    const qkv_sdpa_params p = {.kv_len = len};
    cr_assert_eq(qkv_sdpa(&qt, &k, &v, &ot, &p), QKV_OK);
    double *want = malloc(B * H * LQ * DV * sizeof *want);
    cr_assert(want);
    cr_assert_eq(ref_sdpa(&qt, &k, &v, &p, want, NULL, NULL), 0);
    const double err = rel_error_d(out, want, B * H * LQ * DV);
    cr_expect(err <= 2e-6, "sdpa over cache views (%d): relative error %g",
              (int)dt, err);
    free(q); free(out); free(want);
    qkv_kv_cache_destroy(c);
}

Test(kvcache, f32_views_feed_sdpa) { check_views_feed_sdpa(QKV_F32); }
Test(kvcache, f16_views_feed_sdpa) { check_views_feed_sdpa(QKV_F16); }
Test(kvcache, bf16_views_feed_sdpa) { check_views_feed_sdpa(QKV_BF16); }

/* ------------------------------------------------------------------ */
/* Cached generation vs one forward                                   */
/* ------------------------------------------------------------------ */

enum { GEN_N = 9 };

/* Generates the tokens of x [1, n, E] through the cache in the pieces
   sizes[] (summing to n), writing y [n, E], weights [H, n, n] and
   weights_avg [n, n] gathered from each step's [.., piece, capacity]
   outputs (checked to be 0 past each row's length). */
static void generate(const layer *l, qkv_kv_cache *c, const float *x, const int *sizes,
                     int pieces, const qkv_mha_params *extra, float *y, float *weights,
                     float *weights_avg)
{
    const int64_t E = l->E, H = l->H, cap = 16;
    float *w = poisoned(H * GEN_N * cap), *wa = poisoned(GEN_N * cap);
    int64_t at = 0;
    for (int piece = 0; piece < pieces; piece++) {
        const int64_t n = sizes[piece];
        qkv_mha_params p = extra ? *extra : (qkv_mha_params){0};
        p.weights = w;
        p.weights_avg = wa;
        p.causal = QKV_CAUSAL_TOP_LEFT;   /* ignored by the cached forward */
        cr_assert_eq(qkv_mha_forward_cached(l->m, c, 1, x + at * E, n, NULL,
                                            y + at * E, &p), QKV_OK);
        cr_assert_eq(qkv_kv_cache_length(c, 0), at + n);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < cap; j++) {
                const int64_t len = at + n;
                for (int64_t h = 0; h < H; h++) {
                    const float got = w[(h * n + i) * cap + j];
                    if (j >= len)
                        cr_assert_eq(got, 0.0f, "weights past the length");
                    else
                        weights[(h * GEN_N + at + i) * GEN_N + j] = got;
                }
                if (j >= len)
                    cr_assert_eq(wa[i * cap + j], 0.0f, "weights_avg past the length");
                else
                    weights_avg[(at + i) * GEN_N + j] = wa[i * cap + j];
            }
        at += n;
    }
    free(w);
    free(wa);
}

/* Cached generation in pieces equals the causal forward over all tokens
   (y, weights, weights_avg), and both equal the double reference. */
static void check_generation(int64_t H, int64_t Hkv, int bias, const int *sizes,
                             int pieces, const qkv_mha_params *extra, uint64_t seed)
{
    layer l;
    layer_make(&l, 32, H, Hkv, bias, seed);
    const int64_t E = l.E;
    test_rng r = rng_seeded(seed + 1);
    float *x = random_floats(&r, GEN_N * E, 1.0);

    float *y_full = poisoned(GEN_N * E), *w_full = poisoned(H * GEN_N * GEN_N);
    float *wa_full = poisoned(GEN_N * GEN_N);
    qkv_mha_params p = extra ? *extra : (qkv_mha_params){0};
    p.causal = QKV_CAUSAL_BOTTOM_RIGHT;
    p.weights = w_full;
    p.weights_avg = wa_full;
    cr_assert_eq(qkv_mha_forward(l.m, 1, x, GEN_N, x, x, GEN_N, y_full, &p), QKV_OK);

    qkv_kv_cache *c = cache_for(&l, 1, 16, QKV_F32);
    float *y = poisoned(GEN_N * E), *w = poisoned(H * GEN_N * GEN_N);
    float *wa = poisoned(GEN_N * GEN_N);
    generate(&l, c, x, sizes, pieces, extra, y, w, wa);

    /* Entries above the diagonal were never gathered: take them from the
       full forward, which must have them 0 (causal). */
    for (int64_t i = 0; i < GEN_N; i++)
        for (int64_t j = i + 1; j < GEN_N; j++) {
            cr_expect_eq(wa_full[i * GEN_N + j], 0.0f);
            wa[i * GEN_N + j] = 0.0f;
            for (int64_t h = 0; h < H; h++)
                w[(h * GEN_N + i) * GEN_N + j] = 0.0f;
        }
    const double ey = rel_error(y, y_full, GEN_N * E);
    const double ew = rel_error(w, w_full, H * GEN_N * GEN_N);
    const double ea = rel_error(wa, wa_full, GEN_N * GEN_N);

    double *want = malloc((size_t)(GEN_N * E) * sizeof *want);
    cr_assert(want);
    seq_reference(&l, x, GEN_N, &p, NULL, NULL, 0, want);
    const double er = rel_error_d(y, want, GEN_N * E);
    const double ef = rel_error_d(y_full, want, GEN_N * E);
    cr_log_info("H%lld/%lld pieces %d: cached vs forward y %.3g weights %.3g avg %.3g;"
                " vs double: cached %.3g forward %.3g",
                (long long)H, (long long)Hkv, pieces, ey, ew, ea, er, ef);
    cr_expect(ey <= 1e-5, "y: cached vs forward %g", ey);
    cr_expect(ew <= 1e-5, "weights: cached vs forward %g", ew);
    cr_expect(ea <= 1e-5, "weights_avg: cached vs forward %g", ea);
    cr_expect(er <= 1e-5, "y: cached vs double %g", er);
    cr_expect(ef <= 1e-5, "y: forward vs double %g", ef);

    free(want);
    free(y); free(w); free(wa); free(y_full); free(w_full); free(wa_full); free(x);
    qkv_kv_cache_destroy(c);
    layer_free(&l);
}

static const int ONE_BY_ONE[GEN_N] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
static const int UNEVEN[4] = {3, 1, 1, 4};

Test(kvcache, one_token_at_a_time_equals_forward)
{
    check_generation(4, 4, 1, ONE_BY_ONE, GEN_N, NULL, 11);
}

Test(kvcache, uneven_pieces_equal_forward)
{
    check_generation(4, 4, 0, UNEVEN, 4, NULL, 12);
}

Test(kvcache, gqa_and_mqa_generation_equals_forward)
{
    check_generation(4, 2, 1, ONE_BY_ONE, GEN_N, NULL, 13);
    check_generation(8, 1, 1, UNEVEN, 4, NULL, 14);
}

Test(kvcache, all_at_once_equals_forward)
{
    const int all[1] = {GEN_N};
    check_generation(4, 2, 1, all, 1, NULL, 15);
}

/* ------------------------------------------------------------------ */
/* F16 / BF16 caches                                                  */
/* ------------------------------------------------------------------ */

/* The cached K/V is the projection rounded to the cache type: within half
   a unit in the last place of it (plus the float error of the projection). */
static void check_stored_rounding(const layer *l, const qkv_tensor *k, const qkv_tensor *v,
                                  const float *x, int64_t n, qkv_dtype dt)
{
    const double half_ulp = dt == QKV_F16 ? 0x1p-11 : 0x1p-8;
    double *xd = malloc((size_t)(n * l->E) * sizeof *xd);
    double *K = malloc((size_t)(n * l->kw) * sizeof *K);
    double *V = malloc((size_t)(n * l->kw) * sizeof *V);
    cr_assert(xd && K && V);
    for (int64_t i = 0; i < n * l->E; i++)
        xd[i] = x[i];
    linear_d(n, l->kw, l->E, xd, l->w.w_k, l->bias ? l->w.b_k : NULL, K);
    linear_d(n, l->kw, l->E, xd, l->w.w_v, l->bias ? l->w.b_v : NULL, V);
    double worst = 0.0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t g = 0; g < l->Hkv; g++)
            for (int64_t d = 0; d < l->hd; d++) {
                const double wk = K[j * l->kw + g * l->hd + d], wv = V[j * l->kw + g * l->hd + d];
                const double ek = fabs(view_get(k, 0, g, j, d) - wk) / fmax(fabs(wk), 0x1p-14);
                const double ev = fabs(view_get(v, 0, g, j, d) - wv) / fmax(fabs(wv), 0x1p-14);
                worst = fmax(worst, fmax(ek, ev));
            }
    cr_expect(worst <= half_ulp * 1.01, "stored K/V: relative error %g > half ulp %g",
              worst, half_ulp);
    free(xd); free(K); free(V);
}

static void check_low_precision_generation(qkv_dtype dt)
{
    layer l;
    layer_make(&l, 32, 4, 2, 1, 21);
    test_rng r = rng_seeded(22);
    float *x = random_floats(&r, GEN_N * l.E, 1.0);
    qkv_kv_cache *c = cache_for(&l, 1, 16, dt);
    float *y = poisoned(GEN_N * l.E), *w = poisoned(l.H * GEN_N * GEN_N);
    float *wa = poisoned(GEN_N * GEN_N);
    generate(&l, c, x, UNEVEN, 4, NULL, y, w, wa);

    qkv_tensor k, v;
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, NULL), QKV_OK);
    cr_assert_eq(k.shape[2], GEN_N);
    check_stored_rounding(&l, &k, &v, x, GEN_N, dt);

    /* The reference attends over exactly the stored (rounded) K and V, so
       what remains is float arithmetic on them. */
    double *want = malloc((size_t)(GEN_N * l.E) * sizeof *want);
    cr_assert(want);
    const qkv_mha_params none = {0};
    seq_reference(&l, x, GEN_N, &none, &k, &v, 0, want);
    const double err = rel_error_d(y, want, GEN_N * l.E);

    /* And how far rounding K/V moves y from the F32 computation. */
    double *exact = malloc((size_t)(GEN_N * l.E) * sizeof *exact);
    cr_assert(exact);
    seq_reference(&l, x, GEN_N, &none, NULL, NULL, 0, exact);
    const double drift = rel_error_d(y, exact, GEN_N * l.E);
    cr_log_info("%s cache: vs double on stored K/V %.3g; vs unrounded double %.3g",
                dt == QKV_F16 ? "f16" : "bf16", err, drift);
    cr_expect(err <= 1e-5, "y vs double over the stored K/V: %g", err);
    cr_expect(drift <= (dt == QKV_F16 ? 4e-3 : 3e-2), "rounding drift %g", drift);
    free(want); free(exact); free(x); free(y); free(w); free(wa);
    qkv_kv_cache_destroy(c);
    layer_free(&l);
}

Test(kvcache, f16_cache_generation) { check_low_precision_generation(QKV_F16); }
Test(kvcache, bf16_cache_generation) { check_low_precision_generation(QKV_BF16); }

/* ------------------------------------------------------------------ */
/* Batches whose elements take different numbers of tokens            */
/* ------------------------------------------------------------------ */

enum { BMAX = 3, NMAX = 4, BCAP = 8 };

/* One element's own sequence and its one-forward outputs. */
typedef struct own_seq {
    int64_t total;
    float *x, *y, *w, *wa;   /* x, y [total, E]; w [H, total, total]; wa [total, total] */
    float *y_gen;            /* y gathered from the cached steps */
} own_seq;

/* The cached step's weights (w) and weights_avg (wa) of element b, whose
   n new rows start at position at: the own forward's rows where visible,
   exactly 0 elsewhere. Returns the worst |difference|. */
static double compare_step_weights(const own_seq *o, const float *w, const float *wa,
                                   int64_t H, int64_t n_new, int64_t b, int64_t n, int64_t at)
{
    double worst = 0.0;
    for (int64_t i = 0; i < n_new; i++)
        for (int64_t j = 0; j < BCAP; j++) {
            const int seen = i < n && j <= at + i;
            for (int64_t h = -1; h < H; h++) {   /* -1: weights_avg */
                const float got = h < 0 ? wa[(b * n_new + i) * BCAP + j]
                                        : w[((b * H + h) * n_new + i) * BCAP + j];
                if (!seen) {
                    cr_assert_eq(got, 0.0f, "b%lld h%lld i%lld j%lld: not 0", (long long)b,
                                 (long long)h, (long long)i, (long long)j);
                    continue;
                }
                const float want = h < 0 ? o->wa[(at + i) * o->total + j]
                                         : o->w[(h * o->total + at + i) * o->total + j];
                worst = fmax(worst, isnan(got) ? INFINITY : fabs((double)got - want));
            }
        }
    return worst;
}

/* Generates the batch in steps (new_len[s][b] tokens of element b at step
   s; new_len NULL when every element takes n_new): each element's y,
   weights and weights_avg equal a causal forward over its own sequence. */
static void check_batch_steps(int64_t B, const int32_t (*new_len)[BMAX], int steps,
                              uint64_t seed)
{
    layer l;
    layer_make(&l, 32, 4, 2, 1, seed);
    const int64_t E = l.E, H = l.H;
    test_rng r = rng_seeded(seed + 1);
    own_seq own[BMAX];
    for (int64_t b = 0; b < B; b++) {
        own_seq *o = &own[b];
        o->total = 0;
        for (int s = 0; s < steps; s++)
            o->total += new_len[s][b];
        o->x = random_floats(&r, o->total * E, 1.0);
        o->y = poisoned(o->total * E);
        o->y_gen = poisoned(o->total * E);
        o->w = poisoned(H * o->total * o->total);
        o->wa = poisoned(o->total * o->total);
        const qkv_mha_params p = {.causal = QKV_CAUSAL_BOTTOM_RIGHT, .weights = o->w,
                                  .weights_avg = o->wa};
        cr_assert_eq(qkv_mha_forward(l.m, 1, o->x, o->total, o->x, o->x, o->total,
                                     o->y, &p), QKV_OK);
    }

    qkv_kv_cache *c = cache_for(&l, B, BCAP, QKV_F32);
    float *x = malloc(BMAX * NMAX * E * sizeof *x), *y = malloc(BMAX * NMAX * E * sizeof *y);
    float *w = malloc(BMAX * H * NMAX * BCAP * sizeof *w);
    float *wa = malloc(BMAX * NMAX * BCAP * sizeof *wa);
    cr_assert(x && y && w && wa);
    int64_t at[BMAX] = {0};
    double worst_w = 0.0;
    for (int s = 0; s < steps; s++) {
        int64_t n_new = 1;
        int all_full = 1;
        for (int64_t b = 0; b < B; b++)
            n_new = new_len[s][b] > n_new ? new_len[s][b] : n_new;
        for (int64_t b = 0; b < B; b++)
            all_full &= new_len[s][b] == n_new;
        /* Rows past new_len are ignored: NaN there must not leak. */
        for (int64_t i = 0; i < B * n_new * E; i++)
            x[i] = y[i] = nan_float();
        for (int64_t b = 0; b < B; b++)
            memcpy(x + b * n_new * E, own[b].x + at[b] * E,
                   (size_t)(new_len[s][b] * E) * sizeof *x);
        const qkv_mha_params p = {.weights = w, .weights_avg = wa};
        cr_assert_eq(qkv_mha_forward_cached(l.m, c, B, x, n_new,
                                            all_full ? NULL : new_len[s], y, &p), QKV_OK);
        for (int64_t b = 0; b < B; b++) {
            const int64_t n = new_len[s][b];
            cr_assert_eq(qkv_kv_cache_length(c, b), at[b] + n);
            memcpy(own[b].y_gen + at[b] * E, y + b * n_new * E, (size_t)(n * E) * sizeof *y);
            for (int64_t i = n * E; i < n_new * E; i++)
                cr_assert_eq(y[b * n_new * E + i], 0.0f, "y rows past new_len are 0");
            worst_w = fmax(worst_w, compare_step_weights(&own[b], w, wa, H, n_new, b, n, at[b]));
            at[b] += n;
        }
    }
    cr_expect(worst_w <= 1e-6, "weights: cached vs own forward %g", worst_w);
    for (int64_t b = 0; b < B; b++) {
        const double err = rel_error(own[b].y_gen, own[b].y, own[b].total * E);
        cr_log_info("batch element %lld (%lld tokens): cached vs own forward y %.3g,"
                    " weights %.3g", (long long)b, (long long)own[b].total, err, worst_w);
        cr_expect(err <= 1e-5, "element %lld: %g", (long long)b, err);
        free(own[b].x); free(own[b].y); free(own[b].y_gen); free(own[b].w); free(own[b].wa);
    }
    free(x); free(y); free(w); free(wa);
    qkv_kv_cache_destroy(c);
    layer_free(&l);
}

Test(kvcache, batch_elements_with_their_own_lengths)
{
    /* Element 2 takes nothing at first; no step is uniform. */
    static const int32_t steps[3][BMAX] = {{3, 1, 0}, {1, 4, 2}, {2, 0, 1}};
    check_batch_steps(3, steps, 3, 31);
}

Test(kvcache, batch_uniform_and_uneven_steps)
{
    /* Equal lengths (one attention call for the batch), then uneven, then
       equal again. */
    static const int32_t steps[6][BMAX] = {{2, 2}, {1, 1}, {1, 0}, {0, 1}, {3, 3}, {1, 1}};
    check_batch_steps(2, steps, 6, 33);
}

/* y of two cached steps (uniform, then uneven) with num_threads. */
static void cached_steps_with_threads(const layer *l, const float *x, int threads, float *y)
{
    enum { B = 2, N = 3 };
    qkv_kv_cache *c = cache_for(l, B, 8, QKV_BF16);
    const int32_t uneven[B] = {1, 3};
    const qkv_mha_params p = {.num_threads = threads};
    cr_assert_eq(qkv_mha_forward_cached(l->m, c, B, x, N, NULL, y, &p), QKV_OK);
    cr_assert_eq(qkv_mha_forward_cached(l->m, c, B, x + B * N * l->E, N, uneven,
                                        y + B * N * l->E, &p), QKV_OK);
    qkv_kv_cache_destroy(c);
}

Test(kvcache, results_do_not_depend_on_threads)
{
    layer l;
    layer_make(&l, 64, 8, 2, 1, 35);
    test_rng r = rng_seeded(36);
    const int64_t n = 2 * 2 * 3 * l.E;
    float *x = random_floats(&r, n, 1.0), *y1 = poisoned(n), *yt = poisoned(n);
    cached_steps_with_threads(&l, x, 1, y1);
    for (int threads = 2; threads <= 4; threads++) {
        cached_steps_with_threads(&l, x, threads, yt);
        cr_expect_eq(memcmp(y1, yt, (size_t)n * sizeof *y1), 0, "threads %d", threads);
    }
    free(x); free(y1); free(yt);
    layer_free(&l);
}

/* ------------------------------------------------------------------ */
/* Window, softcap, ALiBi and sinks through the layer                 */
/* ------------------------------------------------------------------ */

static void check_extras(const qkv_mha_params *extra, uint64_t seed)
{
    check_generation(4, 2, 1, ONE_BY_ONE, GEN_N, extra, seed);
    check_generation(4, 2, 1, UNEVEN, 4, extra, seed + 1);
}

Test(kvcache, window_reaches_attention)
{
    const qkv_mha_params p = {.window = 1, .window_left = 2, .window_right = -1};
    check_extras(&p, 41);
}

Test(kvcache, softcap_reaches_attention)
{
    const qkv_mha_params p = {.softcap = 0.5f};
    check_extras(&p, 43);
}

Test(kvcache, alibi_and_sinks_reach_attention)
{
    float slopes[4], sinks[4] = {0.5f, -1.0f, -INFINITY, 2.0f};
    cr_assert_eq(qkv_alibi_slopes(4, slopes), QKV_OK);
    const qkv_mha_params p = {.alibi_slopes = slopes, .sinks = sinks};
    check_extras(&p, 45);
}

Test(kvcache, all_extras_together_reach_attention)
{
    float slopes[4] = {0.3f, 0.0f, 1.0f, 0.1f}, sinks[4] = {1.0f, 0.0f, -2.0f, -INFINITY};
    const qkv_mha_params p = {.window = 1, .window_left = 3, .window_right = 0,
                              .softcap = 2.0f, .alibi_slopes = slopes, .sinks = sinks};
    check_extras(&p, 47);
}

/* ------------------------------------------------------------------ */
/* Errors: specific statuses, nothing changed                         */
/* ------------------------------------------------------------------ */

Test(kvcache, create_errors)
{
    qkv_kv_cache *c = (qkv_kv_cache *)&c;   /* a sentinel: must stay */
    qkv_kv_cache *const sentinel = c;
    cr_expect_eq(qkv_kv_cache_create(NULL, 1, 1, 1, 1, 1, QKV_F32), QKV_E_NULL);
    const int64_t good[5] = {2, 2, 4, 4, 8};
    for (int i = 0; i < 5; i++)
        for (int bad = -1; bad <= 0; bad++) {
            int64_t s[5];
            memcpy(s, good, sizeof s);
            s[i] = bad;
            cr_expect_eq(qkv_kv_cache_create(&c, s[0], s[1], s[2], s[3], s[4], QKV_F32),
                         QKV_E_SHAPE, "size %d = %d", i, bad);
        }
    cr_expect_eq(qkv_kv_cache_create(&c, 1, 1, 4, 4, 4, (qkv_dtype)7), QKV_E_ARG);
    cr_expect_eq(qkv_kv_cache_create(&c, 1, 1, 4, 4, (int64_t)INT32_MAX + 1, QKV_F16),
                 QKV_E_OVERFLOW);
    cr_expect_eq(qkv_kv_cache_create(&c, INT64_MAX / 2, 4, 4, 4, 4, QKV_F32),
                 QKV_E_OVERFLOW);
    cr_expect_eq(c, sentinel, "*out set on error");
    cr_expect_eq(qkv_kv_cache_reset(NULL), QKV_E_NULL);
    qkv_tensor k, v;
    cr_expect_eq(qkv_kv_cache_view(NULL, &k, &v, NULL), QKV_E_NULL);
    cr_assert_eq(qkv_kv_cache_create(&c, 1, 1, 4, 4, 4, QKV_F32), QKV_OK);
    cr_expect_eq(qkv_kv_cache_view(c, NULL, &v, NULL), QKV_E_NULL);
    cr_expect_eq(qkv_kv_cache_view(c, &k, NULL, NULL), QKV_E_NULL);
    qkv_kv_cache_destroy(c);
}

/* A snapshot of a (small) cache: its lengths and its filled rows. */
typedef struct snapshot {
    int32_t len[8];
    unsigned char k[8192], v[8192];
} snapshot;

static void take_snapshot(const qkv_kv_cache *c, snapshot *s)
{
    memset(s, 0, sizeof *s);
    qkv_tensor k, v;
    const int32_t *len;
    cr_assert_eq(qkv_kv_cache_view(c, &k, &v, &len), QKV_OK);
    const int64_t size = k.dtype == QKV_F32 ? 4 : 2;
    cr_assert(k.shape[0] <= 8 && k.shape[0] * k.stride[0] * size <= 8192 &&
              v.shape[0] * v.stride[0] * size <= 8192);
    for (int64_t b = 0; b < k.shape[0]; b++) {
        s->len[b] = len[b];
        for (int64_t h = 0; h < k.shape[1]; h++)
            for (int64_t r = 0; r < len[b]; r++) {
                const int64_t ko = b * k.stride[0] + h * k.stride[1] + r * k.stride[2];
                const int64_t vo = b * v.stride[0] + h * v.stride[1] + r * v.stride[2];
                memcpy(s->k + ko * size, (const char *)k.data + ko * size,
                       (size_t)(k.shape[3] * size));
                memcpy(s->v + vo * size, (const char *)v.data + vo * size,
                       (size_t)(v.shape[3] * size));
            }
    }
}

static void expect_unchanged(const qkv_kv_cache *c, const snapshot *before, const char *what)
{
    snapshot now;
    take_snapshot(c, &now);
    cr_expect_eq(memcmp(&now, before, sizeof now), 0, "%s changed the cache", what);
}

Test(kvcache, append_errors_change_nothing)
{
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, VB, VHKV, VD, VDV, VCAP, QKV_F16), QKV_OK);
    const int32_t fill[VB] = {8, 3, 0};
    cr_assert_eq(append_pattern(c, 8, fill, 1.0f), QKV_OK);
    snapshot before;
    take_snapshot(c, &before);

    enum { N = 2 };
    float k[VB * VHKV * N * VD], v[VB * VHKV * N * VDV];
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        k[i] = 1000.0f;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        v[i] = 1000.0f;
    const qkv_tensor kn = qkv_tensor_bhsd(k, QKV_F32, VB, VHKV, N, VD);
    const qkv_tensor vn = qkv_tensor_bhsd(v, QKV_F32, VB, VHKV, N, VDV);
    qkv_tensor t;

    /* Past capacity: element 0 holds 8 of 9 rows. */
    cr_expect_eq(qkv_kv_cache_append(c, &kn, &vn, NULL), QKV_E_ARG);
    const int32_t one_each[VB] = {1, 1, 1}, too_many[VB] = {0, 3, 0}, negative[VB] = {0, -1, 0};
    cr_expect_eq(qkv_kv_cache_append(c, &kn, &vn, too_many), QKV_E_ARG);
    cr_expect_eq(qkv_kv_cache_append(c, &kn, &vn, negative), QKV_E_ARG);

    cr_expect_eq(qkv_kv_cache_append(NULL, &kn, &vn, one_each), QKV_E_NULL);
    cr_expect_eq(qkv_kv_cache_append(c, NULL, &vn, one_each), QKV_E_NULL);
    cr_expect_eq(qkv_kv_cache_append(c, &kn, NULL, one_each), QKV_E_NULL);
    t = kn; t.data = NULL;
    cr_expect_eq(qkv_kv_cache_append(c, &t, &vn, one_each), QKV_E_NULL);

    t = kn; t.dtype = QKV_F16;
    cr_expect_eq(qkv_kv_cache_append(c, &t, &vn, one_each), QKV_E_ARG);
    t = vn; t.dtype = QKV_BF16;
    cr_expect_eq(qkv_kv_cache_append(c, &kn, &t, one_each), QKV_E_ARG);

    for (int d = 0; d < 4; d++) {
        t = kn; t.shape[d] += 1;
        cr_expect_eq(qkv_kv_cache_append(c, &t, &vn, one_each), QKV_E_SHAPE, "k dim %d", d);
        t = vn; t.shape[d] -= 1;
        cr_expect_eq(qkv_kv_cache_append(c, &kn, &t, one_each), QKV_E_SHAPE, "v dim %d", d);
    }
    t = kn; t.stride[3] = 2;
    cr_expect_eq(qkv_kv_cache_append(c, &t, &vn, one_each), QKV_E_ARG);
    t = kn; t.stride[2] = -VD;
    cr_expect_eq(qkv_kv_cache_append(c, &t, &vn, one_each), QKV_E_ARG);
    t = vn; t.stride[1] = 0;
    cr_expect_eq(qkv_kv_cache_append(c, &kn, &t, one_each), QKV_E_ARG);

    /* New rows read from the cache's own storage. */
    qkv_tensor ck, cv;
    cr_assert_eq(qkv_kv_cache_view(c, &ck, &cv, NULL), QKV_OK);
    t = kn; t.data = ck.data;
    cr_expect_eq(qkv_kv_cache_append(c, &t, &vn, one_each), QKV_E_ALIAS);

    expect_unchanged(c, &before, "a failed append");
    cr_expect_eq(qkv_kv_cache_append(c, &kn, &vn, one_each), QKV_OK, "the valid call");
    cr_expect_eq(qkv_kv_cache_length(c, 0), 9);
    qkv_kv_cache_destroy(c);
}

Test(kvcache, cached_forward_errors_change_nothing)
{
    layer l;
    layer_make(&l, 16, 2, 1, 1, 51);   /* E 16, hd 8, one KV head */
    enum { B = 3, N = 2, CAP = 3 };
    const int64_t E = l.E;
    qkv_kv_cache *c = NULL;
    cr_assert_eq(qkv_kv_cache_create(&c, B, 1, 8, 8, CAP, QKV_F32), QKV_OK);
    test_rng r = rng_seeded(52);
    float *x = random_floats(&r, B * N * E, 1.0);
    const int32_t first[B] = {2, 1, 0};
    float *y = poisoned(B * N * E);
    cr_assert_eq(qkv_mha_forward_cached(l.m, c, B, x, N, first, y, NULL), QKV_OK);
    free(y);
    y = poisoned(B * N * E);
    float *w = poisoned(B * l.H * N * CAP);
    snapshot before;
    take_snapshot(c, &before);

    const int32_t ok_len[B] = {1, 2, 2}, no_room[B] = {2, 2, 2}, bad_len[B] = {1, 3, 0};
    const int32_t neg_len[B] = {0, -1, 0};
    qkv_mha_params p = {0};
    cr_expect_eq(qkv_mha_forward_cached(NULL, c, B, x, N, ok_len, y, NULL), QKV_E_NULL);
    cr_expect_eq(qkv_mha_forward_cached(l.m, NULL, B, x, N, ok_len, y, NULL), QKV_E_NULL);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, NULL, N, ok_len, y, NULL), QKV_E_NULL);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, NULL, NULL), QKV_E_NULL);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, no_room, y, NULL), QKV_E_ARG);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, NULL, y, NULL), QKV_E_ARG,
                 "n_new for all: no room in element 0");
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, bad_len, y, NULL), QKV_E_ARG);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, neg_len, y, NULL), QKV_E_ARG);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B - 1, x, N, ok_len, y, NULL), QKV_E_SHAPE);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, 0, ok_len, y, NULL), QKV_E_SHAPE);
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, 0, x, N, ok_len, y, NULL), QKV_E_SHAPE);

    p = (qkv_mha_params){.num_threads = -1};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ARG);
    p = (qkv_mha_params){.softcap = -1.0f};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ARG);
    p = (qkv_mha_params){.softcap = INFINITY};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ARG);
    const float nan_slopes[2] = {0.5f, NAN}, inf_sinks[2] = {0.0f, INFINITY};
    const float nan_sinks[2] = {NAN, 0.0f};
    p = (qkv_mha_params){.alibi_slopes = nan_slopes};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ARG);
    p = (qkv_mha_params){.sinks = inf_sinks};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ARG);
    p = (qkv_mha_params){.sinks = nan_sinks};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ARG);

    /* Outputs overlapping inputs, each other, or the cache. */
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, x + 3, NULL), QKV_E_ALIAS);
    p = (qkv_mha_params){.weights = y + 5};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ALIAS);
    qkv_tensor ck, cv;
    cr_assert_eq(qkv_kv_cache_view(c, &ck, &cv, NULL), QKV_OK);
    p = (qkv_mha_params){.weights_avg = (float *)cv.data};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_E_ALIAS);

    /* A cache that does not match the layer. */
    const int64_t shapes[3][3] = {{2, 8, 8}, {1, 4, 4}, {1, 8, 4}};   /* Hkv, hd, v_dim */
    for (int i = 0; i < 3; i++) {
        qkv_kv_cache *other = NULL;
        cr_assert_eq(qkv_kv_cache_create(&other, B, shapes[i][0], shapes[i][1],
                                         shapes[i][2], 4, QKV_F32), QKV_OK);
        cr_expect_eq(qkv_mha_forward_cached(l.m, other, B, x, N, ok_len, y, NULL),
                     QKV_E_SHAPE, "mismatch %d", i);
        cr_expect_eq(qkv_kv_cache_length(other, 0), 0);
        qkv_kv_cache_destroy(other);
    }
    /* A layer that is not self-attention shaped (kdim != d_model). */
    qkv_mha *cross = NULL;
    float *wk = random_floats(&r, 8 * 6, 0.3);
    qkv_mha_config cfg = l.cfg;
    cfg.kdim = 6;
    qkv_mha_weights cw = l.w;
    cw.w_k = wk;
    cr_assert_eq(qkv_mha_create(&cross, &cfg, &cw), QKV_OK);
    cr_expect_eq(qkv_mha_forward_cached(cross, c, B, x, N, ok_len, y, NULL), QKV_E_SHAPE);
    qkv_mha_destroy(cross);
    free(wk);

    expect_unchanged(c, &before, "a failed cached forward");
    for (int64_t i = 0; i < B * N * E; i++)
        cr_expect(isnan(y[i]), "y written on error");
    for (int64_t i = 0; i < B * l.H * N * CAP; i++)
        cr_expect(isnan(w[i]), "weights written on error");

    /* The valid call still works, and params.causal / kv_len are ignored. */
    const int32_t kv_len[B] = {0, 0, 0};
    p = (qkv_mha_params){.weights = w, .causal = (qkv_causal)99, .kv_len = kv_len};
    cr_expect_eq(qkv_mha_forward_cached(l.m, c, B, x, N, ok_len, y, &p), QKV_OK);
    cr_expect_eq(qkv_kv_cache_length(c, 0), 3);
    cr_expect_eq(qkv_kv_cache_length(c, 1), 3);
    cr_expect_eq(qkv_kv_cache_length(c, 2), 2);
    free(x); free(y); free(w);
    qkv_kv_cache_destroy(c);
    layer_free(&l);
}

Test(kvcache, forward_rejects_bad_extras)
{
    layer l;
    layer_make(&l, 16, 2, 2, 0, 61);
    enum { N = 3 };
    test_rng r = rng_seeded(62);
    float *x = random_floats(&r, N * l.E, 1.0);
    float *y = poisoned(N * l.E);
    const float inf_slopes[2] = {INFINITY, 0.0f}, nan_sinks[2] = {0.0f, NAN};
    const qkv_mha_params bad[] = {
        {.softcap = -0.5f}, {.softcap = NAN}, {.alibi_slopes = inf_slopes},
        {.sinks = nan_sinks},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect_eq(qkv_mha_forward(l.m, 1, x, N, x, x, N, y, &bad[i]), QKV_E_ARG,
                     "case %zu", i);
    const qkv_mha_params alias = {.sinks = y};
    cr_expect_eq(qkv_mha_forward(l.m, 1, x, N, x, x, N, y, &alias), QKV_E_ALIAS);
    for (int64_t i = 0; i < N * l.E; i++)
        cr_expect(isnan(y[i]), "y written on error");
    free(x); free(y);
    layer_free(&l);
}
