/*
 * Extreme inputs, under every ISA this CPU has, against the double
 * reference:
 *   - additive mask entries of -1e30 (a finite "large negative" mask, as
 *     models use it), including a row of nothing but -1e30, and of -FLT_MAX
 *     (PyTorch's finfo(float32).min), which must stay a finite logit
 *     whatever units the library computes in;
 *   - a scale of 3e38 (any constant folded into it would overflow);
 *   - queries of +-1e30: logits of about 1e30, still finite in float;
 *   - logits that overflow float (q and k both 1e30): the outcome is
 *     confined to the rows concerned (see overflow_rows below);
 *   - subnormal q/k (logits underflow to 0: uniform weights) and subnormal
 *     V (no flush to zero: the outputs stay subnormal and right);
 *   - all-equal logits;
 *   - Lk = 1,000,000 with Lq = 1 (a long decode row), and head_dim = 1024
 *     for sdpa and for the multi-head layer;
 *   - non-finite K and V rows of blocked keys: a -INFINITY mask entry
 *     blocks a NaN or infinite logit, and a row that sees no key gives
 *     out 0 (lse -inf, or the sink) whatever the V rows hold, on the tiled
 *     and on the split-key path;
 *   - V as large as the documented bound (|v| * keys seen < FLT_MAX).
 * TAP output.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "ref/ref.h"

/* One sdpa problem with explicit contents, compared with the reference. */
typedef struct problem {
    hu_tensor q, k, v, mask;
    int has_mask;
    qkv_sdpa_params p;
    int64_t b, h, lq, lk, dv;
} problem;

static problem problem_new(int64_t b, int64_t h, int64_t hkv, int64_t lq, int64_t lk,
                           int64_t d, int64_t dv, uint64_t seed)
{
    problem pr = {
        .q = hu_tensor_new(QKV_F32, b, h, lq, d, seed),
        .k = hu_tensor_new(QKV_F32, b, hkv, lk, d, seed + 1),
        .v = hu_tensor_new(QKV_F32, b, hkv, lk, dv, seed + 2),
        .b = b, .h = h, .lq = lq, .lk = lk, .dv = dv,
    };
    return pr;
}

static void problem_add_mask(problem *pr, uint64_t seed)
{
    pr->mask = hu_tensor_new(QKV_F32, pr->b, pr->h, pr->lq, pr->lk, seed);
    pr->has_mask = 1;
    pr->p.mask = &pr->mask.t;
}

static void problem_free(problem *pr)
{
    hu_tensor_free(&pr->q);
    hu_tensor_free(&pr->k);
    hu_tensor_free(&pr->v);
    if (pr->has_mask)
        hu_tensor_free(&pr->mask);
}

/* Library results and reference results of one problem. */
typedef struct outcome {
    qkv_status st;
    int64_t rows, n_out, n_w;
    float *out, *w, *lse;
    double *ref_out, *ref_w, *ref_lse;
} outcome;

static void *xcalloc(int64_t n, size_t size)
{
    void *p = calloc((size_t)n, size);
    if (!p)
        abort();
    return p;
}

static outcome solve(problem *pr)
{
    outcome o = {.rows = pr->b * pr->h * pr->lq};
    o.n_out = o.rows * pr->dv;
    o.n_w = o.rows * pr->lk;
    o.out = xcalloc(o.n_out, sizeof(float));
    o.w = xcalloc(o.n_w, sizeof(float));
    o.lse = xcalloc(o.rows, sizeof(float));
    o.ref_out = xcalloc(o.n_out, sizeof(double));
    o.ref_w = xcalloc(o.n_w, sizeof(double));
    o.ref_lse = xcalloc(o.rows, sizeof(double));
    const qkv_tensor out = qkv_tensor_bhsd(o.out, QKV_F32, pr->b, pr->h, pr->lq, pr->dv);
    qkv_sdpa_params p = pr->p;
    p.weights = o.w;
    p.lse = o.lse;
    o.st = qkv_sdpa(&pr->q.t, &pr->k.t, &pr->v.t, &out, &p);
    if (ref_sdpa(&pr->q.t, &pr->k.t, &pr->v.t, &pr->p, o.ref_out, o.ref_w, o.ref_lse))
        abort();
    return o;
}

static void outcome_free(outcome *o)
{
    free(o->out); free(o->w); free(o->lse);
    free(o->ref_out); free(o->ref_w); free(o->ref_lse);
}

/* Status OK and out, weights, lse within tolerance (plus abs_tol). */
static int matches_ref(const outcome *o, double abs_tol)
{
    return o->st == QKV_OK && hu_close("out", o->out, o->ref_out, o->n_out, abs_tol) &&
           hu_close("weights", o->w, o->ref_w, o->n_w, 0.0) &&
           hu_close("lse", o->lse, o->ref_lse, o->rows, 0.0);
}

static int all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- */

static void scale_tensor(hu_tensor *t, float factor)
{
    float *x = t->t.data;
    for (int64_t i = 0; i < t->count; i++)
        x[i] *= factor;
}


static void large_negative_mask(const char *isa)
{
    problem pr = problem_new(1, 2, 2, 9, 70, 16, 16, 11);
    problem_add_mask(&pr, 12);
    float *m = pr.mask.t.data;
    for (int64_t i = 0; i < pr.mask.count; i += 2)
        m[i] = -1e30f;
    for (int64_t j = 0; j < pr.lk; j++)   /* row 3 of head 0: only -1e30 */
        m[3 * pr.lk + j] = -1e30f;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0) && all_finite(o.out, o.n_out),
             "%s: mask entries of -1e30 (one row all -1e30: uniform weights)", isa);
    outcome_free(&o);
    problem_free(&pr);
}

/* The most negative float as mask (what models built on PyTorch use for
   blocked positions): finite, so a row of nothing else gets uniform
   weights, as in the reference, rather than being fully blocked. */
static void most_negative_mask(const char *isa)
{
    problem pr = problem_new(1, 2, 2, 9, 70, 16, 16, 13);
    problem_add_mask(&pr, 14);
    float *m = pr.mask.t.data;
    for (int64_t i = 0; i < pr.mask.count; i += 3)
        m[i] = -FLT_MAX;
    for (int64_t j = 0; j < pr.lk; j++)   /* row 4 of head 1: only -FLT_MAX */
        m[(pr.lq + 4) * pr.lk + j] = -FLT_MAX;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0) && all_finite(o.out, o.n_out),
             "%s: mask entries of -FLT_MAX (one row all -FLT_MAX: uniform weights)", isa);
    outcome_free(&o);
    problem_free(&pr);
}

/* scale = 3e38 with q and k of about 1e-19: logits of a few units from a
   scale near the top of the float range. */
static void huge_scale(const char *isa)
{
    problem pr = problem_new(1, 2, 1, 9, 70, 16, 16, 15);
    scale_tensor(&pr.q, 1e-19f);
    scale_tensor(&pr.k, 1e-19f);
    pr.p.scale = 3e38f;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0) && all_finite(o.out, o.n_out),
             "%s: scale 3e38 with q, k of 1e-19 (logits of a few units)", isa);
    outcome_free(&o);
    problem_free(&pr);
}

static void huge_queries(const char *isa)
{
    problem pr = problem_new(1, 2, 1, 7, 70, 16, 16, 21);
    float *q = pr.q.t.data;
    for (int64_t i = 0; i < pr.q.count; i++)
        q[i] = q[i] < 0.0f ? -1e30f : 1e30f;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0) && all_finite(o.out, o.n_out),
             "%s: queries of +-1e30 (logits ~1e30, finite): one-hot softmax", isa);
    outcome_free(&o);
    problem_free(&pr);
}

/* q row 0 and key 5 hold +-1e30, so row 0's logit for key 5 overflows
   float (to +-inf, or NaN when both signs meet in the dot product); the
   reference, in double, stays finite there. What the library does with
   such a row is reported; the other rows, which see key 5 with a finite
   logit of about 1e30, must stay exact: the damage stays in its row. */
static void overflow_rows(const char *isa)
{
    const int64_t lq = 4, lk = 70, d = 8;
    problem pr = problem_new(1, 1, 1, lq, lk, d, d, 31);
    float *q = pr.q.t.data, *k = pr.k.t.data;
    for (int64_t c = 0; c < d; c++) {
        q[c] = c % 3 ? 1e30f : -1e30f;
        k[5 * d + c] = c % 2 ? 1e30f : -1e30f;
    }
    outcome o = solve(&pr);
    int others_ok = o.st == QKV_OK;
    for (int64_t r = 1; r < lq && others_ok; r++)
        others_ok = hu_close("out row", o.out + r * d, o.ref_out + r * d, d, 1e-6) &&
                    hu_close("weights row", o.w + r * lk, o.ref_w + r * lk, lk, 0.0);
    hu_check(others_ok, "%s: a row with an overflowing logit leaves the other rows exact", isa);
    int nan_out = 0, nan_w = 0;
    for (int64_t c = 0; c < d; c++)
        nan_out += isnan(o.out[c]);
    for (int64_t j = 0; j < lk; j++)
        nan_w += isnan(o.w[j]);
    hu_note("%s: overflowing row: %d of %lld outputs NaN, %d of %lld weights NaN, lse %g "
            "(reference, in double: out[0] %g)", isa, nan_out, (long long)d, nan_w,
            (long long)lk, (double)o.lse[0], o.ref_out[0]);
    /* The documented outcome: an overflowing logit makes its row NaN in
       out, weights and lse, never a silently wrong finite value and never
       the look of a fully blocked row. */
    hu_check(nan_out == d, "%s: the overflowing row's output is NaN, not silently finite", isa);
    hu_check(nan_w == lk && isnan(o.lse[0]), "%s: its weights and lse are NaN too", isa);
    outcome_free(&o);
    problem_free(&pr);
}

static void subnormals(const char *isa)
{
    problem pr = problem_new(2, 2, 1, 9, 70, 16, 16, 41);
    scale_tensor(&pr.q, 1e-39f);   /* subnormal: below FLT_MIN = 1.18e-38 */
    scale_tensor(&pr.k, 1e-39f);
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0), "%s: subnormal q and k (logits 0: uniform weights)", isa);
    outcome_free(&o);

    problem_free(&pr);
    pr = problem_new(2, 2, 1, 9, 70, 16, 16, 42);
    scale_tensor(&pr.v, 1e-39f);
    o = solve(&pr);
    /* Each product p*v and each partial sum rounds to a multiple of the
       smallest subnormal, 2^-149: allow that much per key. */
    const double granularity = (double)pr.lk * 0x1p-149;
    int nonzero = 0;
    for (int64_t i = 0; i < o.n_out; i++)
        nonzero += o.out[i] != 0.0f;
    hu_check(matches_ref(&o, granularity) && nonzero > o.n_out / 2,
             "%s: subnormal V gives subnormal outputs (no flush to zero)", isa);
    outcome_free(&o);
    problem_free(&pr);
}

static void equal_logits(const char *isa)
{
    problem pr = problem_new(1, 2, 2, 5, 130, 16, 16, 51);
    float *k = pr.k.t.data;
    for (int64_t j = 1; j < 2 * pr.lk; j++)   /* every key row of both heads = row 0 */
        memcpy(k + j * 16, k, 16 * sizeof(float));
    outcome o = solve(&pr);
    int uniform = 1;
    for (int64_t i = 0; i < o.n_w; i++)
        uniform &= fabs(o.w[i] - 1.0 / 130.0) <= 1e-4 / 130.0;
    hu_check(matches_ref(&o, 0.0) && uniform, "%s: all-equal logits: uniform weights", isa);
    outcome_free(&o);
    problem_free(&pr);
}

static void long_row(const char *isa)
{
    problem pr = problem_new(1, 1, 1, 1, 1000000, 16, 16, 61);
    pr.p.causal = QKV_CAUSAL_BOTTOM_RIGHT;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0), "%s: Lq = 1, Lk = 1,000,000 (D = 16)", isa);
    outcome_free(&o);
    problem_free(&pr);
}

static void wide_heads(const char *isa)
{
    problem pr = problem_new(1, 2, 1, 5, 70, 1024, 1024, 71);
    pr.p.causal = QKV_CAUSAL_BOTTOM_RIGHT;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0), "%s: head_dim = 1024 (sdpa)", isa);
    outcome_free(&o);
    problem_free(&pr);

    const mha_case c = {"wide", {.d_model = 1024, .n_heads = 1, .bias = 1},
                        1, 3, 3, 1, QKV_CAUSAL_TOP_LEFT, 0, 1};
    mha_fixture f;
    int ok = mha_fixture_init(&f, &c, 72) == QKV_OK;
    if (ok) {
        mha_result r = mha_result_new(&f);
        ok = mha_fixture_run(&f, 0, &r) == QKV_OK && mha_result_matches_ref(&f, &r);
        mha_result_free(&r);
    }
    hu_check(ok, "%s: head_dim = 1024 (multi-head layer, d_model 1024)", isa);
    mha_fixture_free(&f);
}

/* Key 5 of every row is blocked by a -INFINITY mask entry, and its K row
   is NaN (key 6's, blocked too, is +inf): the logits they make are NaN,
   yet the keys are blocked, so every row equals the reference without
   them. */
static void masked_nonfinite_keys(const char *isa)
{
    const int64_t lq = 9, lk = 70, d = 16;
    problem pr = problem_new(1, 2, 2, lq, lk, d, d, 81);
    problem_add_mask(&pr, 82);
    float *k = pr.k.t.data, *mask = pr.mask.t.data;
    for (int64_t g = 0; g < 2; g++)
        for (int64_t c = 0; c < d; c++) {
            k[(g * lk + 5) * d + c] = NAN;
            k[(g * lk + 6) * d + c] = INFINITY;
        }
    for (int64_t row = 0; row < 2 * lq; row++)
        mask[row * lk + 5] = mask[row * lk + 6] = -INFINITY;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0) && all_finite(o.out, o.n_out),
             "%s: -INFINITY mask entries block keys whose K rows are NaN and +inf", isa);
    outcome_free(&o);
    problem_free(&pr);
}

/* Fills row j of every KV head of v with +inf, and row j + 1 with NaN. */
static void nonfinite_v_rows(problem *pr, int64_t hkv, int64_t j)
{
    float *v = pr->v.t.data;
    for (int64_t g = 0; g < hkv; g++)
        for (int64_t c = 0; c < pr->dv; c++) {
            v[(g * pr->lk + j) * pr->dv + c] = INFINITY;
            v[(g * pr->lk + j + 1) * pr->dv + c] = NAN;
        }
}

/* Rows [0, blocked_rows) of every head see no key: out exactly 0, weights
   0, lse the sink (-INFINITY without one). */
static int rows_blocked_clean(const outcome *o, const problem *pr, int64_t blocked_rows,
                              const float *sinks)
{
    int ok = o->st == QKV_OK;
    for (int64_t h = 0; h < pr->h; h++)
        for (int64_t i = 0; i < blocked_rows; i++) {
            const int64_t row = h * pr->lq + i;
            for (int64_t c = 0; c < pr->dv; c++)
                ok &= o->out[row * pr->dv + c] == 0.0f;
            for (int64_t j = 0; j < pr->lk; j++)
                ok &= o->w[row * pr->lk + j] == 0.0f;
            ok &= o->lse[row] == (sinks ? sinks[h] : -INFINITY);
        }
    return ok;
}

/* Bottom-right causal with Lq > Lk: the first Lq - Lk rows see no key,
   and they share their tiles with rows that see keys 6 and 7, whose V
   rows are +inf and NaN. With and without sinks. */
static void blocked_rows_nonfinite_v(const char *isa)
{
    const int64_t lq = 12, lk = 8, d = 16;
    static const float sinks[2] = {0.5f, -3.0f};
    for (int with_sinks = 0; with_sinks < 2; with_sinks++) {
        problem pr = problem_new(1, 2, 1, lq, lk, d, d, 91);
        pr.p.causal = QKV_CAUSAL_BOTTOM_RIGHT;
        pr.p.sinks = with_sinks ? sinks : NULL;
        nonfinite_v_rows(&pr, 1, 6);
        outcome o = solve(&pr);
        hu_check(rows_blocked_clean(&o, &pr, lq - lk, pr.p.sinks),
                 "%s: rows that see no key give out 0 and lse %s although blocked V rows "
                 "are +inf and NaN", isa, with_sinks ? "= sink" : "-inf");
        outcome_free(&o);
        problem_free(&pr);
    }
}

/* The split-key path (one query row, Lk = 5000, no weights): a row whose
   every key is masked out, with +inf and NaN V rows in two chunks. */
static void split_blocked_row_nonfinite_v(const char *isa)
{
    const int64_t lk = 5000, d = 16;
    static const float sink = 1.25f;
    for (int with_sink = 0; with_sink < 2; with_sink++) {
        problem pr = problem_new(1, 1, 1, 1, lk, d, d, 101);
        problem_add_mask(&pr, 102);
        float *mask = pr.mask.t.data;
        for (int64_t j = 0; j < lk; j++)
            mask[j] = -INFINITY;
        nonfinite_v_rows(&pr, 1, 100);
        nonfinite_v_rows(&pr, 1, 4500);
        float out[16], lse = 0.0f;
        const qkv_tensor out_t = qkv_tensor_bhsd(out, QKV_F32, 1, 1, 1, d);
        qkv_sdpa_params p = pr.p;
        p.lse = &lse;
        p.sinks = with_sink ? &sink : NULL;
        int ok = qkv_sdpa(&pr.q.t, &pr.k.t, &pr.v.t, &out_t, &p) == QKV_OK &&
                 lse == (with_sink ? sink : -INFINITY);
        for (int64_t c = 0; c < d; c++)
            ok &= out[c] == 0.0f;
        hu_check(ok, "%s: split keys: a fully masked row gives out 0 and lse %s whatever V holds",
                 isa, with_sink ? "= sink" : "-inf");
        problem_free(&pr);
    }
}

/* V of +-1e37 in rows of 30 equal logits: the unnormalised sum of a
   column of 1e37 reaches 30 * 1e37 = 3e38, just under FLT_MAX, the
   documented bound; column 0 alternates in sign. */
static void large_v(const char *isa)
{
    problem pr = problem_new(1, 1, 1, 3, 30, 8, 8, 111);
    scale_tensor(&pr.k, 0.0f);
    float *v = pr.v.t.data;
    for (int64_t i = 0; i < 30 * 8; i++)
        v[i] = i % 8 == 0 && i % 16 != 0 ? -1e37f : 1e37f;
    outcome o = solve(&pr);
    hu_check(matches_ref(&o, 0.0) && all_finite(o.out, o.n_out),
             "%s: |V| = 1e37 over 30 keys (inside |v| * keys < FLT_MAX): finite and exact", isa);
    outcome_free(&o);
    problem_free(&pr);
}

int main(void)
{
    qkv_isa isas[4];
    const int n = hu_isas(isas);
    for (int i = 0; i < n; i++) {
        const char *isa = qkv_isa_name(isas[i]);
        if (!hu_check(qkv_isa_set(isas[i]) == QKV_OK, "select %s", isa))
            continue;
        large_negative_mask(isa);
        most_negative_mask(isa);
        huge_scale(isa);
        huge_queries(isa);
        overflow_rows(isa);
        subnormals(isa);
        equal_logits(isa);
        long_row(isa);
        wide_heads(isa);
        masked_nonfinite_keys(isa);
        blocked_rows_nonfinite_v(isa);
        split_blocked_row_nonfinite_v(isa);
        large_v(isa);
    }
    qkv_isa_set(QKV_ISA_AUTO);
    return hu_finish();
}
