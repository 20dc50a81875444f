/*
 * The inference features of qkv_sdpa against the double reference:
 * sliding windows, softcap, ALiBi (and qkv_alibi_slopes), attention
 * sinks, the decode paths (all rows of a KV group in one task; keys split
 * into chunks merged by log-sum-exp), F16/BF16 K/V, and the validation
 * of the new fields. Every value must lie within an error bound derived
 * from its own inputs, as in the random suite, extended by the rounding
 * of the logit transforms. The suite runs once per ISA.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "ref/ref.h"
#include "testutil.h"

TestSuite(features, .init = qkv_test_init);

/* ------------------------------------------------------------------ */
/* Cases with the new fields                                          */
/* ------------------------------------------------------------------ */

typedef enum alibi_kind { ALIBI_NONE = 0, ALIBI_STANDARD, ALIBI_RANDOM } alibi_kind;

typedef enum sink_kind {
    SINKS_NONE = 0,
    SINKS_FINITE,       /* N(0, 2^2) per head */
    SINKS_NEG_INF,      /* every head -INFINITY: the same as no sink */
    SINKS_MIXED,        /* even heads finite, odd heads -INFINITY */
    SINKS_LARGE         /* +20: the sink dominates every row */
} sink_kind;

typedef struct feature_spec {
    int window;
    int64_t left, right;
    float softcap;
    alibi_kind alibi;
    sink_kind sinks;
} feature_spec;

typedef struct feature_case {
    sdpa_case c;
    feature_spec f;
    float *slopes, *sinks;   /* [H], or NULL */
} feature_case;

static void describe(const feature_case *fc, char *buf, size_t size)
{
    char base[256];
    sdpa_spec_describe(&fc->c.spec, base, sizeof base);
    snprintf(buf, size, "%s window%d(%lld,%lld) softcap%g alibi%d sinks%d", base,
             fc->f.window, (long long)fc->f.left, (long long)fc->f.right,
             (double)fc->f.softcap, (int)fc->f.alibi, (int)fc->f.sinks);
}

static float *make_slopes(alibi_kind kind, int64_t H, test_rng *r)
{
    float *s = malloc((size_t)H * sizeof *s);
    cr_assert_not_null(s);
    if (kind == ALIBI_STANDARD) {
        cr_assert_eq(qkv_alibi_slopes(H, s), QKV_OK);
    } else {
        for (int64_t h = 0; h < H; h++)   /* negative slopes are valid too */
            s[h] = (float)(1.5 * rng_uniform(r) - 0.5);
    }
    return s;
}

static float *make_sinks(sink_kind kind, int64_t H, test_rng *r)
{
    float *s = malloc((size_t)H * sizeof *s);
    cr_assert_not_null(s);
    for (int64_t h = 0; h < H; h++) {
        const float finite = (float)(2.0 * rng_normal(r));
        switch (kind) {
        case SINKS_NEG_INF: s[h] = -INFINITY; break;
        case SINKS_MIXED:   s[h] = h % 2 ? -INFINITY : finite; break;
        case SINKS_LARGE:   s[h] = 20.0f; break;
        default:            s[h] = finite; break;
        }
    }
    return s;
}

static void fcase_make(feature_case *fc, const sdpa_spec *spec, const feature_spec *f,
                       uint64_t seed)
{
    memset(fc, 0, sizeof *fc);
    cr_assert_eq(sdpa_case_make(&fc->c, spec, seed), 0, "setup failed");
    fc->f = *f;
    test_rng r = rng_seeded(seed ^ 0x5eedf00du);
    if (f->alibi != ALIBI_NONE)
        fc->slopes = make_slopes(f->alibi, fc->c.spec.H, &r);
    if (f->sinks != SINKS_NONE)
        fc->sinks = make_sinks(f->sinks, fc->c.spec.H, &r);
    qkv_sdpa_params *p = &fc->c.params;
    p->window = f->window;
    p->window_left = f->left;
    p->window_right = f->right;
    p->softcap = f->softcap;
    p->alibi_slopes = fc->slopes;
    p->sinks = fc->sinks;
}

static void fcase_free(feature_case *fc)
{
    sdpa_case_free(&fc->c);
    free(fc->slopes);
    free(fc->sinks);
    memset(fc, 0, sizeof *fc);
}

/* 1 if key j is blocked for row (b, h, i): the causal rule, kv_len and
   -INFINITY mask entries (sdpa_case_blocked), or the sliding window. */
static int fcase_blocked(const feature_case *fc, int64_t b, int64_t h, int64_t i, int64_t j)
{
    if (sdpa_case_blocked(&fc->c, b, h, i, j))
        return 1;
    if (!fc->f.window)
        return 0;
    const int64_t ahead = j - (i + fc->c.spec.Lk - fc->c.spec.Lq);   /* never overflows */
    return (fc->f.left >= 0 && -ahead > fc->f.left) ||
           (fc->f.right >= 0 && ahead > fc->f.right);
}

static double fcase_sink(const feature_case *fc, int64_t h)
{
    return fc->sinks ? (double)fc->sinks[h] : -INFINITY;
}

/* ---- the error bound --------------------------------------------- */

#define UNIT_ROUNDOFF 0x1.0p-24
#define TINY_ABS (4.0 * 0x1.0p-126)

static double scale_of(const sdpa_spec *s)
{
    return s->scale != 0.0f ? (double)s->scale : (double)(float)(1.0 / sqrt((double)s->D));
}

static double mask_at(const sdpa_case *c, int64_t b, int64_t h, int64_t i, int64_t j)
{
    if (c->spec.mask == MASK_NONE)
        return 0.0;
    const int64_t mb = c->mask.shape[0] > 1 ? b : 0, mh = c->mask.shape[1] > 1 ? h : 0;
    const float *m = c->mask.data;
    return m[mb * c->mask.stride[0] + mh * c->mask.stride[1] + i * c->mask.stride[2] + j];
}

/* The error of a softcapped logit: the error e of its argument s carried
   through cap*tanh(s/cap) exactly (tanh is monotonic), plus the rounding
   of 1/cap, of s/cap, of tanhf (a few ulp) and of the product. */
static double softcap_error(double s, double e, double cap)
{
    const double x = s / cap, t = tanh(x);
    const double carried = cap * fmax(fabs(tanh((s + e) / cap) - t),
                                      fabs(tanh((s - e) / cap) - t));
    const double sech2 = 1.0 - t * t;
    return carried + 2.0 * UNIT_ROUNDOFF * fabs(s) * sech2 +
           6.0 * UNIT_ROUNDOFF * cap * fabs(t);
}

/* The worst absolute error of the logits of row (b, h, i): the dot
   product (as in testutil.c), then softcap, mask and ALiBi. */
static double logit_error(const feature_case *fc, int64_t b, int64_t h, int64_t i)
{
    const sdpa_case *c = &fc->c;
    const sdpa_spec *s = &c->spec;
    const int64_t g = h / (s->H / s->Hkv);
    const double scale = scale_of(s), cap = (double)fc->f.softcap;
    const double dot_factor = (3.0 * sqrt((double)s->D) + 4.0) * UNIT_ROUNDOFF;
    double worst = 0.0;
    for (int64_t j = 0; j < s->Lk; j++) {
        if (fcase_blocked(fc, b, h, i, j))
            continue;
        double abs_dot = 0.0, dot = 0.0;
        for (int64_t d = 0; d < s->D; d++) {
            const double t = tt_get(&c->q, b, h, i, d) * tt_get(&c->k, b, g, j, d);
            abs_dot += fabs(t);
            dot += t;
        }
        double logit = scale * dot;
        double e = dot_factor * fabs(scale) * abs_dot + 2.0 * UNIT_ROUNDOFF * fabs(logit);
        if (cap > 0.0) {
            e = softcap_error(logit, e, cap);
            logit = cap * tanh(logit / cap);
        }
        const double m = mask_at(c, b, h, i, j);
        const double a = fc->slopes ? (double)fc->slopes[h] *
                                      fabs((double)(i + s->Lk - s->Lq - j)) : 0.0;
        e += 2.0 * UNIT_ROUNDOFF * (fabs(logit) + 2.0 * fabs(m) + 3.0 * fabs(a));
        worst = fmax(worst, e);
    }
    return worst;
}

typedef struct worst_tracker {
    double ratio;
    char where[256];
} worst_tracker;

static void track(worst_tracker *w, double err, double bound, const char *what,
                  int64_t index, double got, double want)
{
    double ratio = bound > 0.0 ? err / bound : (err == 0.0 ? 0.0 : INFINITY);
    if (isnan(err))
        ratio = INFINITY;
    if (ratio > w->ratio || w->where[0] == '\0') {
        w->ratio = ratio;
        snprintf(w->where, sizeof w->where, "%s[%lld]: got %.9g want %.9g bound %.3g",
                 what, (long long)index, got, want, bound);
    }
}

typedef struct reference {
    double *out, *weights, *lse;
} reference;

static void reference_compute(const feature_case *fc, reference *ref)
{
    const sdpa_spec *s = &fc->c.spec;
    const int64_t rows = s->B * s->H * s->Lq;
    ref->out = malloc((size_t)(rows * s->Dv) * sizeof(double));
    ref->weights = malloc((size_t)(rows * s->Lk) * sizeof(double));
    ref->lse = malloc((size_t)rows * sizeof(double));
    cr_assert(ref->out && ref->weights && ref->lse);
    cr_assert_eq(ref_sdpa(&fc->c.q.t, &fc->c.k.t, &fc->c.v.t, &fc->c.params, ref->out,
                          ref->weights, ref->lse), 0, "reference failed");
}

static void reference_free(reference *ref)
{
    free(ref->out);
    free(ref->weights);
    free(ref->lse);
}

/* Row (b, h, i) of every output against the reference. A row with no
   visible key must be exact: out 0, weights 0, lse the sink (-INFINITY
   without one). */
static void check_row(const feature_case *fc, const reference *ref, int64_t b, int64_t h,
                      int64_t i, worst_tracker *w)
{
    const sdpa_case *c = &fc->c;
    const sdpa_spec *s = &c->spec;
    const int64_t g = h / (s->H / s->Hkv);
    const int64_t row = (b * s->H + h) * s->Lq + i;
    const double *rw = ref->weights + row * s->Lk;
    int visible = 0;
    for (int64_t j = 0; j < s->Lk; j++)
        visible += !fcase_blocked(fc, b, h, i, j);

    const double delta = logit_error(fc, b, h, i);
    const double softmax_err = (16.0 + 2.0 * sqrt((double)s->Lk)) * UNIT_ROUNDOFF;
    const double weight_rel = 2.0 * delta + softmax_err;
    for (int64_t j = 0; c->weights && j < s->Lk; j++) {
        const double got = c->weights[row * s->Lk + j];
        const double bound = fcase_blocked(fc, b, h, i, j) ? 0.0 : rw[j] * weight_rel + TINY_ABS;
        track(w, fabs(got - rw[j]), bound, "weights", row * s->Lk + j, got, rw[j]);
    }
    const double sum_err = (4.0 + 2.0 * sqrt((double)s->Lk)) * UNIT_ROUNDOFF;
    for (int64_t d = 0; d < s->Dv; d++) {
        double mag = 0.0;
        for (int64_t j = 0; j < s->Lk; j++)
            if (rw[j] != 0.0)
                mag += rw[j] * fabs(tt_get(&c->v, b, g, j, d));
        const double bound = visible ? mag * (weight_rel + sum_err) + TINY_ABS : 0.0;
        const double got = tt_get(&c->out, b, h, i, d);
        track(w, fabs(got - ref->out[row * s->Dv + d]), bound, "out", row * s->Dv + d, got,
              ref->out[row * s->Dv + d]);
    }
    if (c->lse) {
        const double want = ref->lse[row], got = c->lse[row];
        if (!visible) {
            cr_assert_eq(want, fcase_sink(fc, h), "reference lse of a blocked row");
            track(w, got == want ? 0.0 : INFINITY, 0.0, "lse(blocked row)", row, got, want);
        } else {
            track(w, fabs(got - want),
                  delta + softmax_err + 4.0 * UNIT_ROUNDOFF * (fabs(want) + 1.0), "lse", row,
                  got, want);
        }
    }
}

/* The worst |error| / bound over every output of a run (<= 1 passes). */
static double fcase_check(const feature_case *fc, worst_tracker *w)
{
    const sdpa_spec *s = &fc->c.spec;
    const int64_t rows = s->B * s->H * s->Lq;
    reference ref;
    reference_compute(fc, &ref);
    w->ratio = 0.0;
    w->where[0] = '\0';
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t i = 0; i < s->Lq; i++)
                check_row(fc, &ref, b, h, i, w);
    if (!tt_padding_intact(&fc->c.out)) {
        w->ratio = INFINITY;
        snprintf(w->where, sizeof w->where, "out: padding between rows was written");
    }
    if ((fc->c.weights && !guarded_intact(fc->c.weights, rows * s->Lk)) ||
        (fc->c.lse && !guarded_intact(fc->c.lse, rows))) {
        w->ratio = INFINITY;
        snprintf(w->where, sizeof w->where, "weights/lse: written out of bounds");
    }
    reference_free(&ref);
    return w->ratio;
}

/* Runs fc and asserts success within the bound; returns the ratio. */
static double run_and_check(feature_case *fc, uint64_t seed)
{
    char desc[512];
    describe(fc, desc, sizeof desc);
    const qkv_status st = sdpa_case_run(&fc->c);
    cr_assert_eq(st, QKV_OK, "%s: status %s", desc, qkv_status_str(st));
    worst_tracker w;
    const double ratio = fcase_check(fc, &w);
    cr_assert(ratio <= 1.0, "%s (seed %llu): ratio %.3g at %s", desc,
              (unsigned long long)seed, ratio, w.where);
    return ratio;
}

static double check_features(const sdpa_spec *spec, const feature_spec *f, uint64_t seed)
{
    feature_case fc;
    fcase_make(&fc, spec, f, seed);
    const double ratio = run_and_check(&fc, seed);
    fcase_free(&fc);
    return ratio;
}

static double max2(double a, double b) { return a > b ? a : b; }

static void report(const char *name, int cases, double worst)
{
    cr_log_info("%s: %d cases, worst ratio %.3g", name, cases, worst);
}

/* ------------------------------------------------------------------ */
/* Sliding windows                                                    */
/* ------------------------------------------------------------------ */

/* (left, right) pairs: empty sides, unlimited sides, both, and windows
   longer than any key range here. */
static const int64_t window_pairs[][2] = {
    {0, 0}, {0, -1}, {-1, 0}, {-1, -1}, {1, 2}, {3, 0}, {0, 5}, {7, 7},
    {-5, 3}, {2, -7}, {100, 100}, {1000, -1}, {-1, 1000}, {16, 1},
};
enum { N_WINDOW_PAIRS = sizeof window_pairs / sizeof window_pairs[0] };

Test(features, window_pairs)
{
    double worst = 0.0;
    int cases = 0;
    for (int p = 0; p < N_WINDOW_PAIRS; p++)
        for (int causal = 0; causal < 3; causal++) {
            const int n = p * 3 + causal;
            const int tall = n % 3 == 1, square = n % 3 == 2;
            sdpa_spec s = {.B = 2, .H = 4, .Hkv = n % 2 ? 2 : 4,
                           .Lq = tall ? 29 : square ? 24 : 9, .Lk = tall ? 13 : 24,
                           .D = 16, .Dv = 8, .causal = (qkv_causal)causal,
                           .mask = (mask_kind)(n % MASK_KINDS), .mask_block_prob = 0.1,
                           .kv_len = (kv_len_kind)(n % 3), .layout = (test_layout)(n % 3),
                           .num_threads = n % 4};
            const feature_spec f = {.window = 1, .left = window_pairs[p][0],
                                    .right = window_pairs[p][1]};
            worst = max2(worst, check_features(&s, &f, 10000 + (uint64_t)n));
            cases++;
        }
    report("window_pairs", cases, worst);
}

/* Windows on lengths of several key and query blocks, so that whole
   blocks outside the window are skipped and the window edges fall inside
   blocks and on their boundaries. */
Test(features, window_across_blocks)
{
    static const int64_t pairs[][2] = {{0, 0}, {63, 0}, {64, 0}, {127, 1}, {200, -1},
                                       {-1, 100}, {255, 255}, {31, 64}};
    double worst = 0.0;
    const int n = (int)(sizeof pairs / sizeof pairs[0]);
    for (int p = 0; p < n; p++) {
        sdpa_spec s = {.B = 1, .H = 2, .Hkv = p % 2 ? 1 : 2, .Lq = 100 + 37 * p,
                       .Lk = 300 + 29 * p, .D = 16, .Dv = 16,
                       .causal = (qkv_causal)(p % 3), .no_weights = p % 2,
                       .kv_len = p == 5 ? KV_LEN_RANDOM : KV_LEN_NONE};
        const feature_spec f = {.window = 1, .left = pairs[p][0], .right = pairs[p][1]};
        worst = max2(worst, check_features(&s, &f, 11000 + (uint64_t)p));
    }
    report("window_across_blocks", n, worst);
}

/* Window sizes up to INT64_MAX (a caller's "no limit") are valid and
   must not overflow: they see the same keys as an unlimited side. */
Test(features, window_extreme_sizes)
{
    static const int64_t sizes[] = {INT64_MAX, INT64_MAX - 1, (int64_t)1 << 62, INT32_MAX};
    double worst = 0.0;
    int cases = 0;
    for (int k = 0; k < 4; k++)
        for (int side = 0; side < 3; side++) {
            /* Lq > Lk: rows with a negative diagonal too */
            sdpa_spec s = {.B = 1, .H = 2, .Lq = 20, .Lk = 12, .D = 8,
                           .causal = (qkv_causal)side};
            const feature_spec f = {.window = 1, .left = side == 1 ? -1 : sizes[k],
                                    .right = side == 0 ? -1 : sizes[k]};
            worst = max2(worst, check_features(&s, &f, 12100 + (uint64_t)cases));
            cases++;
        }
    report("window_extreme_sizes", cases, worst);
}

/* window = 0 turns the window off whatever left and right say; window
   with both sides unlimited is no window either. */
Test(features, window_off_and_unlimited)
{
    const feature_spec off = {.window = 0, .left = 0, .right = 0};
    const feature_spec unlimited = {.window = 1, .left = -1, .right = -3};
    sdpa_spec s = {.B = 2, .H = 2, .Lq = 17, .Lk = 40, .D = 8,
                   .causal = QKV_CAUSAL_TOP_LEFT};
    double worst = check_features(&s, &off, 12000);
    worst = max2(worst, check_features(&s, &unlimited, 12001));
    report("window_off_and_unlimited", 2, worst);
}

/* Every row whose window holds no key gives out exactly 0, lse
   -INFINITY and weights 0 (checked exactly by check_row). */
Test(features, window_blocks_whole_rows)
{
    double worst = 0.0;
    int blocked_rows = 0;
    static const struct { int64_t lq, lk, left, right; kv_len_kind kv; } cases[] = {
        {30, 10, 0, 0, KV_LEN_NONE},     /* rows 0..19 have diag < 0 */
        {12, 20, 2, -1, KV_LEN_RANDOM},  /* windows past kv_len */
        {40, 7, 3, 1, KV_LEN_NONE},
        {5, 50, -1, 0, KV_LEN_ZERO},
    };
    for (int n = 0; n < 4; n++) {
        sdpa_spec s = {.B = 3, .H = 2, .Lq = cases[n].lq, .Lk = cases[n].lk, .D = 8,
                       .kv_len = cases[n].kv};
        const feature_spec f = {.window = 1, .left = cases[n].left, .right = cases[n].right};
        feature_case fc;
        fcase_make(&fc, &s, &f, 13000 + (uint64_t)n);
        worst = max2(worst, run_and_check(&fc, 13000 + (uint64_t)n));
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t i = 0; i < s.Lq; i++) {
                int visible = 0;
                for (int64_t j = 0; j < s.Lk; j++)
                    visible += !fcase_blocked(&fc, b, 0, i, j);
                if (visible)
                    continue;
                blocked_rows++;
                for (int64_t h = 0; h < s.H; h++) {
                    const int64_t row = (b * s.H + h) * s.Lq + i;
                    cr_assert(isinf(fc.c.lse[row]) && fc.c.lse[row] < 0);
                    for (int64_t d = 0; d < s.D; d++)
                        cr_assert_eq(tt_get(&fc.c.out, b, h, i, d), 0.0);
                }
            }
        fcase_free(&fc);
    }
    cr_assert_gt(blocked_rows, 40, "the cases should hold fully blocked rows");
    cr_log_info("window_blocks_whole_rows: %d blocked rows", blocked_rows);
    report("window_blocks_whole_rows", 4, worst);
}

/* ------------------------------------------------------------------ */
/* Softcap                                                            */
/* ------------------------------------------------------------------ */

Test(features, softcap)
{
    static const float caps[] = {0.5f, 1.0f, 5.0f, 30.0f, 50.0f, 1e4f};
    double worst = 0.0;
    int cases = 0;
    for (int c = 0; c < 6; c++)
        for (int with = 0; with < 3; with++) {
            /* alone, with a mask, with a mask and ALiBi */
            sdpa_spec s = {.B = 2, .H = 4, .Hkv = 2, .Lq = 11 + c, .Lk = 37 + 9 * c,
                           .D = 32, .Dv = 16, .causal = (qkv_causal)((c + with) % 3),
                           .mask = with ? MASK_PER_HEAD : MASK_NONE, .mask_block_prob = 0.1,
                           .qk_sigma = 2.0, .layout = (test_layout)with};
            const feature_spec f = {.softcap = caps[c],
                                    .alibi = with == 2 ? ALIBI_STANDARD : ALIBI_NONE};
            worst = max2(worst, check_features(&s, &f, 14000 + (uint64_t)cases));
            cases++;
        }
    report("softcap", cases, worst);
}

/* Caps at the ends of the float range, with one all-zero query row
   (logits exactly 0): a subnormal cap is valid (finite, > 0) and must
   not turn a 0 logit into 0 * (1/cap) = 0 * inf = NaN. */
Test(features, softcap_extreme_caps)
{
    static const float caps[] = {1e-40f, 0x1.0p-126f, 1e-30f, 1e30f, 0x1.fffffep127f};
    double worst = 0.0;
    for (int c = 0; c < 5; c++) {
        sdpa_spec s = {.B = 1, .H = 2, .Lq = 6, .Lk = 20, .D = 8,
                       .causal = (qkv_causal)(c % 3)};
        const feature_spec f = {.softcap = caps[c]};
        feature_case fc;
        fcase_make(&fc, &s, &f, 14500 + (uint64_t)c);
        for (int64_t d = 0; d < s.D; d++)
            tt_set(&fc.c.q, 0, 1, 5, d, 0.0);
        worst = max2(worst, run_and_check(&fc, 14500 + (uint64_t)c));
        fcase_free(&fc);
    }
    report("softcap_extreme_caps", 5, worst);
}

/* q and k times 30 (logits of about +-1000): capped logits stay finite
   and the rows match the reference. */
Test(features, softcap_large_logits)
{
    static const float caps[] = {10.0f, 30.0f, 50.0f};
    double worst = 0.0;
    for (int c = 0; c < 3; c++) {
        sdpa_spec s = {.B = 1, .H = 2, .Lq = 16, .Lk = 70 + 30 * c, .D = 64,
                       .qk_sigma = 30.0, .causal = (qkv_causal)c,
                       .k_dtype = c == 2 ? QKV_BF16 : QKV_F32};
        const feature_spec f = {.softcap = caps[c], .alibi = c == 1 ? ALIBI_RANDOM : ALIBI_NONE};
        feature_case fc;
        fcase_make(&fc, &s, &f, 15000 + (uint64_t)c);
        worst = max2(worst, run_and_check(&fc, 15000 + (uint64_t)c));
        const int64_t rows = s.B * s.H * s.Lq;
        for (int64_t r = 0; r < rows; r++)
            cr_assert(isfinite(fc.c.lse[r]), "lse[%lld] = %g", (long long)r,
                      (double)fc.c.lse[r]);
        for (int64_t x = 0; x < rows * s.Lk; x++)
            cr_assert(isfinite(fc.c.weights[x]));
        fcase_free(&fc);
    }
    report("softcap_large_logits", 3, worst);
}

/* ------------------------------------------------------------------ */
/* ALiBi                                                              */
/* ------------------------------------------------------------------ */

/* qkv_alibi_slopes against the geometric-sequence definition, and the
   standard lists written out for 8 and 12 heads. */
Test(features, alibi_slopes_formula)
{
    for (int64_t n = 1; n <= 40; n++) {
        float got[40];
        double want[40];
        cr_assert_eq(qkv_alibi_slopes(n, got), QKV_OK, "n=%lld", (long long)n);
        ref_alibi_slopes(n, want);
        for (int64_t h = 0; h < n; h++)
            cr_assert(fabs((double)got[h] - want[h]) <= 0x1.0p-24 * want[h],
                      "n=%lld slope %lld: got %.9g want %.9g", (long long)n, (long long)h,
                      (double)got[h], want[h]);
    }
    float s8[8], s12[12];
    cr_assert_eq(qkv_alibi_slopes(8, s8), QKV_OK);
    for (int h = 0; h < 8; h++)   /* 2^-1 .. 2^-8, exact */
        cr_assert_eq(s8[h], ldexpf(1.0f, -(h + 1)), "n=8 slope %d: %.9g", h, (double)s8[h]);
    cr_assert_eq(qkv_alibi_slopes(12, s12), QKV_OK);
    for (int h = 0; h < 8; h++)
        cr_assert_eq(s12[h], ldexpf(1.0f, -(h + 1)), "n=12 slope %d", h);
    for (int h = 8; h < 12; h++) {   /* 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5 */
        const float want = (float)pow(2.0, -0.5 - (h - 8));
        cr_assert_eq(s12[h], want, "n=12 slope %d: got %.9g want %.9g", h, (double)s12[h],
                     (double)want);
    }
    float s1;
    cr_assert_eq(qkv_alibi_slopes(1, &s1), QKV_OK);
    cr_assert_eq(s1, 1.0f / 256.0f);
}

Test(features, alibi_attention)
{
    static const int64_t heads[][2] = {{8, 8}, {12, 4}, {5, 5}, {16, 2}, {3, 1}, {6, 3}};
    double worst = 0.0;
    int cases = 0;
    for (int i = 0; i < 6; i++)
        for (int causal = 0; causal < 3; causal++) {
            sdpa_spec s = {.B = 2, .H = heads[i][0], .Hkv = heads[i][1],
                           .Lq = causal == 1 ? 7 + i : 20 + i, .Lk = 33 - i, .D = 24,
                           .Dv = 12, .causal = (qkv_causal)causal,
                           .mask = causal == 2 ? MASK_SHARED : MASK_NONE,
                           .mask_block_prob = 0.1, .kv_len = i % 2 ? KV_LEN_RANDOM : KV_LEN_NONE,
                           .layout = (test_layout)(i % 3)};
            const feature_spec f = {.alibi = i == 5 ? ALIBI_RANDOM : ALIBI_STANDARD};
            worst = max2(worst, check_features(&s, &f, 16000 + (uint64_t)cases));
            cases++;
        }
    /* Long rows: ALiBi distances past the first key block. */
    sdpa_spec s = {.B = 1, .H = 4, .Lq = 130, .Lk = 700, .D = 16,
                   .causal = QKV_CAUSAL_BOTTOM_RIGHT, .no_weights = 1};
    const feature_spec f = {.alibi = ALIBI_STANDARD, .window = 1, .left = 500, .right = -1};
    worst = max2(worst, check_features(&s, &f, 16100));
    report("alibi_attention", cases + 1, worst);
}

/* ------------------------------------------------------------------ */
/* Sinks                                                              */
/* ------------------------------------------------------------------ */

/* With a sink, weights rows sum to 1 - exp(sink - lse). */
static void assert_sink_row_sums(const feature_case *fc)
{
    const sdpa_spec *s = &fc->c.spec;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->H; h++)
            for (int64_t i = 0; i < s->Lq; i++) {
                const int64_t row = (b * s->H + h) * s->Lq + i;
                double sum = 0.0;
                for (int64_t j = 0; j < s->Lk; j++)
                    sum += fc->c.weights[row * s->Lk + j];
                const double lse = fc->c.lse[row], sink = fcase_sink(fc, h);
                const double want = lse == -INFINITY ? 0.0 : 1.0 - exp(sink - lse);
                cr_assert(fabs(sum - want) <= 2e-6 + 1e-5 * want,
                          "row %lld: weights sum %.9g, 1 - exp(sink - lse) = %.9g",
                          (long long)row, sum, want);
            }
}

Test(features, sinks)
{
    static const sink_kind kinds[] = {SINKS_FINITE, SINKS_MIXED, SINKS_LARGE, SINKS_NEG_INF};
    double worst = 0.0;
    int cases = 0;
    for (int k = 0; k < 4; k++)
        for (int rep = 0; rep < 3; rep++) {
            sdpa_spec s = {.B = 2, .H = 4, .Hkv = rep == 1 ? 1 : 4, .Lq = 9 + 20 * rep,
                           .Lk = 15 + 60 * rep, .D = 16, .Dv = 24,
                           .causal = (qkv_causal)rep,
                           .mask = rep == 2 ? MASK_FULL : MASK_NONE, .mask_block_prob = 0.2,
                           .kv_len = rep == 1 ? KV_LEN_RANDOM : KV_LEN_NONE};
            const feature_spec f = {.sinks = kinds[k], .softcap = rep == 2 ? 8.0f : 0.0f,
                                    .alibi = rep == 0 ? ALIBI_STANDARD : ALIBI_NONE};
            feature_case fc;
            fcase_make(&fc, &s, &f, 17000 + (uint64_t)cases);
            worst = max2(worst, run_and_check(&fc, 17000 + (uint64_t)cases));
            assert_sink_row_sums(&fc);
            fcase_free(&fc);
            cases++;
        }
    report("sinks", cases, worst);
}

/* A -INFINITY sink is no sink: the same bits as sinks = NULL. */
Test(features, sink_neg_inf_is_no_sink)
{
    for (int rep = 0; rep < 2; rep++) {
        sdpa_spec s = {.B = 2, .H = 2, .Lq = rep ? 3 : 40, .Lk = rep ? 5000 : 77, .D = 16,
                       .causal = QKV_CAUSAL_BOTTOM_RIGHT, .kv_len = KV_LEN_RANDOM,
                       .no_weights = rep};
        const feature_spec f = {.sinks = SINKS_NEG_INF};
        feature_case with, without;
        fcase_make(&with, &s, &f, 18000 + (uint64_t)rep);
        fcase_make(&without, &s, &(feature_spec){0}, 18000 + (uint64_t)rep);
        run_and_check(&with, 18000 + (uint64_t)rep);
        cr_assert_eq(sdpa_case_run(&without.c), QKV_OK);
        const int64_t rows = s.B * s.H * s.Lq;
        cr_assert_eq(memcmp(with.c.out.mem, without.c.out.mem,
                            (size_t)with.c.out.elems * sizeof(float)), 0);
        cr_assert_eq(memcmp(with.c.lse, without.c.lse, (size_t)rows * sizeof(float)), 0);
        if (!rep)
            cr_assert_eq(memcmp(with.c.weights, without.c.weights,
                                (size_t)(rows * s.Lk) * sizeof(float)), 0);
        fcase_free(&with);
        fcase_free(&without);
    }
}

/* Rows with no visible key and a finite sink: out 0, weights 0, lse =
   the sink, exactly (check_row). */
Test(features, sinks_with_blocked_rows)
{
    double worst = 0.0;
    for (int rep = 0; rep < 4; rep++) {
        /* rep 3: split keys, a mask that blocks nearly every key, so
           that many chunks of a row see no key at all */
        sdpa_spec s = {.B = 3, .H = 4, .Hkv = 2, .Lq = 12, .Lk = rep >= 2 ? 4500 : 30,
                       .D = 8, .kv_len = rep == 1 ? KV_LEN_ZERO : KV_LEN_RANDOM,
                       .mask = rep % 3 == 0 ? MASK_FULL : MASK_NONE,
                       .mask_block_prob = rep == 3 ? 0.9995 : 0.9,
                       .no_weights = rep == 3};
        const feature_spec f = {.sinks = rep % 2 ? SINKS_MIXED : SINKS_FINITE,
                                .window = rep == 2, .left = 100, .right = 0};
        feature_case fc;
        fcase_make(&fc, &s, &f, 19000 + (uint64_t)rep);
        worst = max2(worst, run_and_check(&fc, 19000 + (uint64_t)rep));
        if (!s.no_weights)
            assert_sink_row_sums(&fc);
        fcase_free(&fc);
    }
    report("sinks_with_blocked_rows", 4, worst);
}

/* ------------------------------------------------------------------ */
/* Decoding                                                           */
/* ------------------------------------------------------------------ */

/* Few query rows (all rows of a KV group fit one block: one task per
   group), with GQA ratios 1..8 and every option. */
Test(features, decode_grouped_rows)
{
    static const int64_t groups[] = {1, 2, 4, 8};
    double worst = 0.0;
    int cases = 0;
    for (int64_t lq = 1; lq <= 8; lq++)
        for (int gi = 0; gi < 4; gi++) {
            const int n = cases;
            sdpa_spec s = {.B = 2, .Hkv = 2, .H = 2 * groups[gi], .Lq = lq,
                           .Lk = 40 + 53 * lq + 7 * gi, .D = 32, .Dv = 16,
                           .causal = (qkv_causal)(n % 3), .kv_len = (kv_len_kind)(n % 3),
                           .mask = n % 5 == 0 ? MASK_PER_HEAD : MASK_NONE,
                           .mask_block_prob = 0.1, .layout = (test_layout)(n % 3),
                           .no_weights = n % 2, .num_threads = n % 3};
            const feature_spec f = {.window = n % 4 == 1, .left = 60, .right = n % 8 == 1 ? 0 : -1,
                                    .softcap = n % 6 == 2 ? 20.0f : 0.0f,
                                    .alibi = n % 7 == 3 ? ALIBI_STANDARD : ALIBI_NONE,
                                    .sinks = n % 4 == 3 ? SINKS_FINITE : SINKS_NONE};
            worst = max2(worst, check_features(&s, &f, 20000 + (uint64_t)n));
            cases++;
        }
    report("decode_grouped_rows", cases, worst);
}

/* Per-batch kv_len values that cut the key chunks (2048 keys each) at
   and around their boundaries. */
static void set_split_kv_len(feature_case *fc, int variant)
{
    static const int32_t cuts[][4] = {{2047, 2048, 2049, 0}, {4096, 1, 4097, 6001},
                                      {3000, 2048, 12345, 20000}};
    for (int64_t b = 0; b < fc->c.spec.B; b++) {
        const int32_t want = cuts[variant % 3][b % 4];
        fc->c.kv_len[b] = want > fc->c.spec.Lk ? (int32_t)fc->c.spec.Lk : want;
    }
}

typedef struct split_shape {
    int64_t B, H, Hkv, Lq, Lk;
    qkv_causal causal;
    int kv_cuts;          /* -1: no kv_len, else a set_split_kv_len variant */
    feature_spec f;
} split_shape;

static const split_shape split_shapes[] = {
    {1, 2, 2, 1, 4096, QKV_CAUSAL_NONE, -1, {0}},
    {2, 4, 1, 1, 4097, QKV_CAUSAL_BOTTOM_RIGHT, 0, {0}},
    {2, 8, 1, 3, 6001, QKV_CAUSAL_BOTTOM_RIGHT, 1, {.sinks = SINKS_FINITE}},
    {1, 8, 2, 8, 8197, QKV_CAUSAL_TOP_LEFT, -1, {.window = 1, .left = 3000, .right = -1}},
    {4, 2, 1, 2, 12345, QKV_CAUSAL_BOTTOM_RIGHT, 2,
     {.window = 1, .left = 5000, .right = 0, .sinks = SINKS_MIXED}},
    {1, 4, 4, 4, 20000, QKV_CAUSAL_BOTTOM_RIGHT, -1,
     {.softcap = 15.0f, .alibi = ALIBI_STANDARD}},
    {2, 4, 2, 1, 20000, QKV_CAUSAL_NONE, 2, {.window = 1, .left = 2100, .right = 7}},
    {2, 8, 1, 8, 9000, QKV_CAUSAL_BOTTOM_RIGHT, 1, {.sinks = SINKS_LARGE}},
};
enum { N_SPLIT_SHAPES = sizeof split_shapes / sizeof split_shapes[0] };

static void split_case_make(feature_case *fc, const split_shape *sh, int no_weights,
                            int threads, uint64_t seed)
{
    sdpa_spec s = {.B = sh->B, .H = sh->H, .Hkv = sh->Hkv, .Lq = sh->Lq, .Lk = sh->Lk,
                   .D = 16, .Dv = 8, .causal = sh->causal,
                   .kv_len = sh->kv_cuts >= 0 ? KV_LEN_FULL : KV_LEN_NONE,
                   .no_weights = no_weights, .num_threads = threads,
                   .layout = (test_layout)(seed % 3)};
    fcase_make(fc, &s, &sh->f, seed);
    if (sh->kv_cuts >= 0)
        set_split_kv_len(fc, sh->kv_cuts);
}

/* Many keys and few rows, no weights: the keys are split into chunks
   merged by log-sum-exp. */
Test(features, decode_split_keys, .timeout = 120)
{
    double worst = 0.0;
    for (int n = 0; n < N_SPLIT_SHAPES; n++) {
        feature_case fc;
        split_case_make(&fc, &split_shapes[n], 1, 0, 21000 + (uint64_t)n);
        worst = max2(worst, run_and_check(&fc, 21000 + (uint64_t)n));
        fcase_free(&fc);
    }
    report("decode_split_keys", N_SPLIT_SHAPES, worst);
}

/* The split path gives the same bits for 1, 2 and 3 threads. */
Test(features, decode_split_threads_bitwise, .timeout = 120)
{
    for (int n = 0; n < N_SPLIT_SHAPES; n++) {
        feature_case runs[3];
        for (int t = 0; t < 3; t++) {
            split_case_make(&runs[t], &split_shapes[n], 1, t + 1, 22000 + (uint64_t)n);
            cr_assert_eq(sdpa_case_run(&runs[t].c), QKV_OK);
        }
        const int64_t rows = runs[0].c.spec.B * runs[0].c.spec.H * runs[0].c.spec.Lq;
        for (int t = 1; t < 3; t++) {
            cr_assert_eq(memcmp(runs[0].c.out.mem, runs[t].c.out.mem,
                                (size_t)runs[0].c.out.elems * sizeof(float)), 0,
                         "split shape %d: out differs between 1 and %d threads", n, t + 1);
            cr_assert_eq(memcmp(runs[0].c.lse, runs[t].c.lse, (size_t)rows * sizeof(float)),
                         0, "split shape %d: lse differs between 1 and %d threads", n, t + 1);
        }
        for (int t = 0; t < 3; t++)
            fcase_free(&runs[t]);
    }
}

/* Requesting weights keeps the keys in one chunk; both paths match the
   reference and each other. */
Test(features, decode_split_vs_weights, .timeout = 120)
{
    double worst = 0.0, worst_between = 0.0;
    int64_t differing = 0;   /* out values whose bits differ between the paths */
    for (int n = 0; n < N_SPLIT_SHAPES; n += 2) {
        feature_case split, whole;
        split_case_make(&split, &split_shapes[n], 1, 0, 23000 + (uint64_t)n);
        split_case_make(&whole, &split_shapes[n], 0, 0, 23000 + (uint64_t)n);
        worst = max2(worst, run_and_check(&split, 23000 + (uint64_t)n));
        worst = max2(worst, run_and_check(&whole, 23000 + (uint64_t)n));
        const sdpa_spec *s = &split.c.spec;
        for (int64_t b = 0; b < s->B; b++)
            for (int64_t h = 0; h < s->H; h++)
                for (int64_t i = 0; i < s->Lq; i++) {
                    const int64_t row = (b * s->H + h) * s->Lq + i;
                    const double a = split.c.lse[row], c = whole.c.lse[row];
                    cr_assert(a == c || fabs(a - c) <= 1e-5 * (1.0 + fabs(c)),
                              "lse row %lld: split %.9g whole %.9g", (long long)row, a, c);
                    for (int64_t d = 0; d < s->Dv; d++) {
                        const double x = tt_get(&split.c.out, b, h, i, d);
                        const double y = tt_get(&whole.c.out, b, h, i, d);
                        const double diff = fabs(x - y);
                        worst_between = max2(worst_between, diff);
                        differing += x != y;
                        cr_assert(diff <= 1e-5 + 1e-4 * fabs(y),
                                  "out (%lld,%lld,%lld,%lld): split %.9g whole %.9g",
                                  (long long)b, (long long)h, (long long)i, (long long)d, x, y);
                    }
                }
        fcase_free(&split);
        fcase_free(&whole);
    }
    /* Without weights the same walk in one chunk would give the same
       bits: differences show that the merge by log-sum-exp ran. */
    cr_assert_gt(differing, 0, "split and one-chunk results are identical: was the "
                 "split-key path taken (Lk >= 4096, no weights)?");
    cr_log_info("decode_split_vs_weights: %lld out values differ, largest |split - whole| %.3g",
                (long long)differing, worst_between);
    report("decode_split_vs_weights", 2 * ((N_SPLIT_SHAPES + 1) / 2), worst);
}

/* ------------------------------------------------------------------ */
/* F16 / BF16 K and V                                                 */
/* ------------------------------------------------------------------ */

/* Copies a golden tensor into a test tensor of the same logical shape
   (padded with leading 1s), rounding to its dtype. */
static void copy_golden(test_tensor *dst, const golden_tensor *src)
{
    const int64_t *n = dst->t.shape;
    cr_assert_eq(src->count, n[0] * n[1] * n[2] * n[3], "golden %s: size", src->name);
    int64_t x = 0;
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t c = 0; c < n[2]; c++)
                for (int64_t d = 0; d < n[3]; d++)
                    tt_set(dst, a, b, c, d, src->data[x++]);
}

/* Golden case gc as an sdpa_case with K and V stored as kd and vd. */
static void golden_half_case(sdpa_case *c, const golden_case *gc, qkv_dtype kd, qkv_dtype vd)
{
    const int has_mask = golden_int(gc, "has_mask", 0) != 0;
    const int has_kv_len = golden_int(gc, "has_kv_len", 0) != 0;
    sdpa_spec s = {.B = golden_int(gc, "batch", 0), .H = golden_int(gc, "heads", 0),
                   .Lq = golden_int(gc, "lq", 0), .Lk = golden_int(gc, "lk", 0),
                   .D = golden_int(gc, "head_dim", 0), .k_dtype = kd, .v_dtype = vd,
                   .causal = golden_int(gc, "causal", 0) ? QKV_CAUSAL_BOTTOM_RIGHT
                                                         : QKV_CAUSAL_NONE,
                   .mask = has_mask ? MASK_SHARED : MASK_NONE,
                   .kv_len = has_kv_len ? KV_LEN_FULL : KV_LEN_NONE,
                   .scale = (float)golden_float(gc, "scale", 0.0)};
    s.Hkv = golden_int(gc, "kv_heads", s.H);
    s.Dv = golden_int(gc, "v_dim", s.D);
    cr_assert_eq(sdpa_case_make(c, &s, 24000), 0, "%s: setup", gc->name);
    copy_golden(&c->q, golden_tensor_get(gc, "q"));
    copy_golden(&c->k, golden_tensor_get(gc, "k"));
    copy_golden(&c->v, golden_tensor_get(gc, "v"));
    if (has_mask)
        copy_golden(&c->mask_mem, golden_tensor_get(gc, "mask"));
    if (has_kv_len) {
        const golden_tensor *kv = golden_tensor_get(gc, "kv_len");
        for (int64_t b = 0; b < s.B; b++)
            c->kv_len[b] = (int32_t)kv->data[b];
    }
}

/* Every golden sdpa case with K/V rounded to F16/BF16 and passed as
   such, against the reference computed from the rounded values. */
Test(features, golden_half_kv)
{
    static const qkv_dtype kinds[][2] = {{QKV_F16, QKV_F16}, {QKV_BF16, QKV_BF16},
                                         {QKV_F16, QKV_BF16}, {QKV_BF16, QKV_F32}};
    char **names;
    const int n = golden_list(&names);
    cr_assert_geq(n, 18, "golden cases in %s", golden_data_dir());
    int cases = 0;
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        char path[4096], err[256], where[256];
        golden_case gc;
        snprintf(path, sizeof path, "%s/%s.txt", golden_data_dir(), names[i]);
        cr_assert_eq(golden_load(path, &gc, err, sizeof err), 0, "%s: %s", names[i], err);
        if (strcmp(gc.op, "sdpa") == 0) {
            for (int k = 0; k < 4; k++) {
                sdpa_case c;
                golden_half_case(&c, &gc, kinds[k][0], kinds[k][1]);
                cr_assert_eq(sdpa_case_run(&c), QKV_OK, "%s", names[i]);
                const double ratio = sdpa_case_check(&c, where, sizeof where);
                cr_assert(ratio <= 1.0, "%s k:%d v:%d: ratio %.3g at %s", names[i],
                          (int)kinds[k][0], (int)kinds[k][1], ratio, where);
                worst = max2(worst, ratio);
                sdpa_case_free(&c);
                cases++;
            }
        }
        golden_free(&gc);
    }
    golden_list_free(names, n);
    cr_assert_geq(cases, 4 * 13, "expected the 13 sdpa golden cases");
    report("golden_half_kv", cases, worst);
}

/* Values spread over many binades, about a third of them subnormal in
   F16 (below 2^-14), none infinite or NaN after rounding. */
static void fill_wide_range(test_tensor *x, test_rng *r)
{
    const int64_t *n = x->t.shape;
    for (int64_t a = 0; a < n[0]; a++)
        for (int64_t b = 0; b < n[1]; b++)
            for (int64_t c = 0; c < n[2]; c++)
                for (int64_t d = 0; d < n[3]; d++) {
                    const double mant = 1.0 + rng_uniform(r);
                    const int e = (int)rng_range(r, -26, 3);
                    const double sign = rng_uniform(r) < 0.5 ? -1.0 : 1.0;
                    tt_set(x, a, b, c, d, sign * ldexp(mant, e));
                }
}

Test(features, half_kv_subnormals)
{
    double worst = 0.0;
    int cases = 0, subnormal = 0;
    for (int k = 0; k < 2; k++)
        for (int rep = 0; rep < 4; rep++) {
            const qkv_dtype dt = k ? QKV_BF16 : QKV_F16;
            sdpa_spec s = {.B = 2, .H = 4, .Hkv = rep % 2 ? 2 : 4, .Lq = 5 + 9 * rep,
                           .Lk = 20 + 70 * rep, .D = 16 + 24 * rep, .Dv = 8 + 5 * rep,
                           .k_dtype = dt, .v_dtype = rep == 3 ? QKV_F32 : dt,
                           .causal = (qkv_causal)(rep % 3), .layout = (test_layout)(rep % 3),
                           .kv_len = rep == 2 ? KV_LEN_RANDOM : KV_LEN_NONE};
            const feature_spec f = {.sinks = rep == 1 ? SINKS_FINITE : SINKS_NONE,
                                    .window = rep == 2, .left = 30, .right = 2};
            feature_case fc;
            const uint64_t seed = 25000 + (uint64_t)cases;
            fcase_make(&fc, &s, &f, seed);
            test_rng r = rng_seeded(seed);
            fill_wide_range(&fc.c.k, &r);
            fill_wide_range(&fc.c.v, &r);
            for (int64_t j = 0; j < s.Lk; j++) {
                const double v = fabs(tt_get(&fc.c.v, 0, 0, j, 0));
                subnormal += v > 0.0 && v < 0x1.0p-14;
            }
            worst = max2(worst, run_and_check(&fc, seed));
            fcase_free(&fc);
            cases++;
        }
    cr_assert_gt(subnormal, 50, "the cases should hold F16 subnormals");
    report("half_kv_subnormals", cases, worst);
}

/* ------------------------------------------------------------------ */
/* Validation of the new fields                                       */
/* ------------------------------------------------------------------ */

/* A small valid call with every output; expect() poisons the outputs,
   runs the call and checks the status and that nothing was written. */
typedef struct small_call {
    sdpa_case c;
    float slopes[4], sinks[4];
} small_call;

static void small_call_make(small_call *sc)
{
    sdpa_spec s = {.B = 2, .H = 4, .Hkv = 2, .Lq = 3, .Lk = 5, .D = 4, .Dv = 6,
                   .causal = QKV_CAUSAL_BOTTOM_RIGHT};
    cr_assert_eq(sdpa_case_make(&sc->c, &s, 26000), 0);
    for (int h = 0; h < 4; h++) {
        sc->slopes[h] = 0.25f * (float)(h + 1);
        sc->sinks[h] = (float)h - 1.0f;
    }
    sc->c.params.alibi_slopes = sc->slopes;
    sc->c.params.sinks = sc->sinks;
    sc->c.params.softcap = 10.0f;
    sc->c.params.window = 1;
    sc->c.params.window_left = 2;
    sc->c.params.window_right = -1;
}

static int all_poison_f32(const float *p, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, p + i, sizeof bits);
        if (bits != POISON_F32_BITS)
            return 0;
    }
    return 1;
}

static void expect(small_call *sc, qkv_status want, const char *what)
{
    const sdpa_spec *s = &sc->c.spec;
    const int64_t rows = s->B * s->H * s->Lq;
    const qkv_status got = sdpa_case_run(&sc->c);
    cr_assert_eq(got, want, "%s: got %s, want %s", what, qkv_status_str(got),
                 qkv_status_str(want));
    if (want == QKV_OK)
        return;
    cr_assert(all_poison_f32(sc->c.out.mem, sc->c.out.elems), "%s: out written", what);
    cr_assert(all_poison_f32(sc->c.weights, rows * s->Lk), "%s: weights written", what);
    cr_assert(all_poison_f32(sc->c.lse, rows), "%s: lse written", what);
}

Test(features, valid_small_call_succeeds)
{
    small_call sc;
    small_call_make(&sc);
    expect(&sc, QKV_OK, "valid call");
    sdpa_case_free(&sc.c);
}

Test(features, rejects_bad_softcap)
{
    static const float bad[] = {NAN, INFINITY, -INFINITY, -1.0f, -1e-30f};
    for (int i = 0; i < 5; i++) {
        small_call sc;
        small_call_make(&sc);
        sc.c.params.softcap = bad[i];
        char what[64];
        snprintf(what, sizeof what, "softcap %g", (double)bad[i]);
        expect(&sc, QKV_E_ARG, what);
        sdpa_case_free(&sc.c);
    }
}

Test(features, rejects_bad_slopes)
{
    static const float bad[] = {NAN, INFINITY, -INFINITY};
    for (int i = 0; i < 3; i++)
        for (int h = 0; h < 4; h += 3) {   /* the first and the last head */
            small_call sc;
            small_call_make(&sc);
            sc.slopes[h] = bad[i];
            char what[64];
            snprintf(what, sizeof what, "slope[%d] = %g", h, (double)bad[i]);
            expect(&sc, QKV_E_ARG, what);
            sdpa_case_free(&sc.c);
        }
}

Test(features, rejects_bad_sinks)
{
    static const float bad[] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++)
        for (int h = 0; h < 4; h += 3) {
            small_call sc;
            small_call_make(&sc);
            sc.sinks[h] = bad[i];
            char what[64];
            snprintf(what, sizeof what, "sink[%d] = %g", h, (double)bad[i]);
            expect(&sc, QKV_E_ARG, what);
            sdpa_case_free(&sc.c);
        }
    /* -INFINITY is valid: no sink for that head */
    small_call sc;
    small_call_make(&sc);
    sc.sinks[2] = -INFINITY;
    expect(&sc, QKV_OK, "sink -inf");
    sdpa_case_free(&sc.c);
}

/* A snapshot of every output buffer of a small call. */
typedef struct output_snapshot {
    float out[512], weights[256], lse[64];
} output_snapshot;

static void snapshot(const small_call *sc, output_snapshot *o)
{
    const sdpa_spec *s = &sc->c.spec;
    const int64_t rows = s->B * s->H * s->Lq;
    cr_assert(sc->c.out.elems <= 512 && rows * s->Lk <= 256 && rows <= 64);
    memcpy(o->out, sc->c.out.mem, (size_t)sc->c.out.elems * sizeof(float));
    memcpy(o->weights, sc->c.weights, (size_t)(rows * s->Lk) * sizeof(float));
    memcpy(o->lse, sc->c.lse, (size_t)rows * sizeof(float));
}

/* alibi_slopes or sinks lying inside out, weights or lse: QKV_E_ALIAS.
   The overlapped output elements hold valid values first, so only the
   overlap is wrong; nothing may change. */
Test(features, rejects_arrays_overlapping_outputs)
{
    for (int which = 0; which < 2; which++)
        for (int target = 0; target < 3; target++) {
            small_call sc;
            small_call_make(&sc);
            const int64_t rows = sc.c.spec.B * sc.c.spec.H * sc.c.spec.Lq;
            float *arr = target == 0 ? (float *)sc.c.out.t.data
                       : target == 1 ? sc.c.weights + 7
                                     : sc.c.lse + rows - 4;
            memcpy(arr, which ? sc.sinks : sc.slopes, 4 * sizeof *arr);
            if (which)
                sc.c.params.sinks = arr;
            else
                sc.c.params.alibi_slopes = arr;
            output_snapshot before, after;
            memset(&before, 0, sizeof before);
            memset(&after, 0, sizeof after);
            snapshot(&sc, &before);
            const qkv_status got = sdpa_case_run(&sc.c);
            cr_assert_eq(got, QKV_E_ALIAS, "%s inside output %d: got %s",
                         which ? "sinks" : "alibi_slopes", target, qkv_status_str(got));
            snapshot(&sc, &after);
            cr_assert_eq(memcmp(&before, &after, sizeof before), 0,
                         "an output was written on QKV_E_ALIAS");
            sdpa_case_free(&sc.c);
        }
    /* An array that only straddles the end of lse overlaps too. */
    small_call sc;
    small_call_make(&sc);
    const int64_t rows = sc.c.spec.B * sc.c.spec.H * sc.c.spec.Lq;
    float *arr = sc.c.lse + rows - 1;   /* last lse element + 3 guard floats */
    for (int h = 0; h < 4; h++)
        arr[h] = 0.5f;
    sc.c.params.alibi_slopes = arr;
    cr_assert_eq(sdpa_case_run(&sc.c), QKV_E_ALIAS);
    cr_assert(all_poison_f32(sc.c.weights, rows * sc.c.spec.Lk));
    sdpa_case_free(&sc.c);
}

Test(features, alibi_slopes_errors)
{
    float slopes[4] = {7.0f, 7.0f, 7.0f, 7.0f};
    cr_assert_eq(qkv_alibi_slopes(0, slopes), QKV_E_SHAPE);
    cr_assert_eq(qkv_alibi_slopes(-3, slopes), QKV_E_SHAPE);
    cr_assert_eq(qkv_alibi_slopes(INT64_MIN, slopes), QKV_E_SHAPE);
    for (int h = 0; h < 4; h++)
        cr_assert_eq(slopes[h], 7.0f, "slope %d written on error", h);
    cr_assert_eq(qkv_alibi_slopes(4, NULL), QKV_E_NULL);
    cr_assert_eq(qkv_alibi_slopes(0, NULL), QKV_E_NULL);
}
