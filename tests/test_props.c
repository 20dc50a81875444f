/*
 * Properties that hold whatever the exact rounding: weights are
 * distributions, causal masking is an explicit -inf mask, GQA is MHA with
 * repeated K/V heads, attention is invariant under permuting keys with
 * their values, lse is log-sum-exp, thread counts give bitwise identical
 * results, and a NaN in one query row stays in that row.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

TestSuite(props, .init = qkv_test_init);

#define U 0x1.0p-24

static void make_and_run(sdpa_case *c, const sdpa_spec *s, uint64_t seed)
{
    cr_assert_eq(sdpa_case_make(c, s, seed), 0);
    const qkv_status st = sdpa_case_run(c);
    cr_assert_eq(st, QKV_OK, "status %s", qkv_status_str(st));
}

/* max |a - b| over the view, relative to max |b|; INFINITY on NaN. */
static double view_rel_diff(const test_tensor *a, const test_tensor *b)
{
    double diff = 0.0, mag = 0.0;
    const int64_t *n = a->t.shape;
    for (int64_t i0 = 0; i0 < n[0]; i0++)
        for (int64_t i1 = 0; i1 < n[1]; i1++)
            for (int64_t i2 = 0; i2 < n[2]; i2++)
                for (int64_t i3 = 0; i3 < n[3]; i3++) {
                    const double x = tt_get(a, i0, i1, i2, i3), y = tt_get(b, i0, i1, i2, i3);
                    if (isnan(x) || isnan(y))
                        return INFINITY;
                    diff = fmax(diff, fabs(x - y));
                    mag = fmax(mag, fabs(y));
                }
    return mag > 0.0 ? diff / mag : diff;
}

/* The same for two float arrays; -inf must match exactly. */
static double array_rel_diff(const float *a, const float *b, int64_t n)
{
    double diff = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i]) || (isinf(a[i]) != isinf(b[i])))
            return INFINITY;
        if (isinf(a[i]))
            continue;
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        mag = fmax(mag, fabs((double)b[i]));
    }
    return mag > 0.0 ? diff / mag : diff;
}

Test(props, weight_rows_are_distributions)
{
    sdpa_spec s = {.B = 3, .H = 4, .Hkv = 2, .Lq = 37, .Lk = 150, .D = 32,
                   .causal = QKV_CAUSAL_BOTTOM_RIGHT, .mask = MASK_PER_HEAD,
                   .mask_block_prob = 0.4, .kv_len = KV_LEN_RANDOM};
    sdpa_case c;
    make_and_run(&c, &s, 1);
    int64_t blocked_rows = 0;
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t h = 0; h < s.H; h++)
            for (int64_t i = 0; i < s.Lq; i++) {
                const float *w = c.weights + ((b * s.H + h) * s.Lq + i) * s.Lk;
                double sum = 0.0;
                int any_visible = 0;
                for (int64_t j = 0; j < s.Lk; j++) {
                    const int blocked = sdpa_case_blocked(&c, b, h, i, j);
                    any_visible |= !blocked;
                    if (blocked)
                        cr_assert_eq(w[j], 0.0f, "blocked key %lld of row (%lld,%lld,%lld) "
                                     "has weight %g", (long long)j, (long long)b,
                                     (long long)h, (long long)i, (double)w[j]);
                    cr_assert(w[j] >= 0.0f && w[j] <= 1.0f, "weight %g", (double)w[j]);
                    sum += w[j];
                }
                if (any_visible)
                    cr_assert(fabs(sum - 1.0) <= (16.0 + 2.0 * (double)s.Lk) * U,
                              "row (%lld,%lld,%lld) sums to %.9g", (long long)b,
                              (long long)h, (long long)i, sum);
                else {
                    blocked_rows++;
                    cr_assert_eq(sum, 0.0);
                    cr_assert_eq(c.lse[(b * s.H + h) * s.Lq + i], -INFINITY);
                    for (int64_t d = 0; d < s.Dv; d++)
                        cr_assert_eq(tt_get(&c.out, b, h, i, d), 0.0);
                }
            }
    /* kv_len[1] = 0 guarantees fully blocked rows were exercised. */
    cr_assert_geq(blocked_rows, s.H * s.Lq);
    sdpa_case_free(&c);
}

/* Causal masking (both alignments) equals the explicit -inf mask. */
Test(props, causal_equals_explicit_mask)
{
    static const int64_t lens[][2] = {{9, 9}, {5, 23}, {23, 5}, {1, 70}, {70, 70}};
    for (int align = 1; align <= 2; align++)
        for (int i = 0; i < 5; i++) {
            const int64_t lq = lens[i][0], lk = lens[i][1];
            sdpa_spec s = {.B = 2, .H = 2, .Lq = lq, .Lk = lk, .D = 24,
                           .causal = (qkv_causal)align};
            sdpa_case a, m;
            make_and_run(&a, &s, 10 + (uint64_t)i);
            s.causal = QKV_CAUSAL_NONE;
            s.mask = MASK_SHARED;
            cr_assert_eq(sdpa_case_make(&m, &s, 10 + (uint64_t)i), 0);
            const int64_t shift = align == QKV_CAUSAL_BOTTOM_RIGHT ? lk - lq : 0;
            for (int64_t r = 0; r < lq; r++)
                for (int64_t j = 0; j < lk; j++)
                    tt_set(&m.mask_mem, 0, 0, r, j, j > r + shift ? -INFINITY : 0.0);
            cr_assert_eq(sdpa_case_run(&m), QKV_OK);
            const int64_t rows = s.B * s.H * lq;
            const double d_out = view_rel_diff(&a.out, &m.out);
            const double d_w = array_rel_diff(a.weights, m.weights, rows * lk);
            const double d_lse = array_rel_diff(a.lse, m.lse, rows);
            cr_assert(d_out <= 8 * U && d_w <= 8 * U && d_lse <= 8 * U,
                      "causal %d Lq %lld Lk %lld: out %.3g weights %.3g lse %.3g", align,
                      (long long)lq, (long long)lk, d_out, d_w, d_lse);
            for (int64_t x = 0; x < rows * lk; x++)   /* blocked: exactly 0 in both */
                cr_assert((a.weights[x] == 0.0f) == (m.weights[x] == 0.0f) ||
                          fabs((double)a.weights[x] - m.weights[x]) < 1e-30);
            sdpa_case_free(&a);
            sdpa_case_free(&m);
        }
}

/* GQA/MQA equals MHA whose K/V heads are repeated group times. */
Test(props, gqa_equals_repeated_heads)
{
    static const int64_t hkv[] = {4, 2, 1};
    for (int i = 0; i < 3; i++) {
        sdpa_spec s = {.B = 2, .H = 8, .Hkv = hkv[i], .Lq = 11, .Lk = 40, .D = 16, .Dv = 12,
                       .causal = QKV_CAUSAL_BOTTOM_RIGHT, .k_dtype = i == 2 ? QKV_F16 : QKV_F32};
        sdpa_case g, m;
        make_and_run(&g, &s, 20 + (uint64_t)i);
        s.Hkv = s.H;
        cr_assert_eq(sdpa_case_make(&m, &s, 20 + (uint64_t)i), 0);
        const int64_t group = s.H / hkv[i];
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t h = 0; h < s.H; h++)
                for (int64_t j = 0; j < s.Lk; j++) {
                    for (int64_t d = 0; d < s.D; d++)
                        tt_set(&m.k, b, h, j, d, tt_get(&g.k, b, h / group, j, d));
                    for (int64_t d = 0; d < s.Dv; d++)
                        tt_set(&m.v, b, h, j, d, tt_get(&g.v, b, h / group, j, d));
                }
        /* the queries of m were drawn after its larger K; copy g's */
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t h = 0; h < s.H; h++)
                for (int64_t r = 0; r < s.Lq; r++)
                    for (int64_t d = 0; d < s.D; d++)
                        tt_set(&m.q, b, h, r, d, tt_get(&g.q, b, h, r, d));
        cr_assert_eq(sdpa_case_run(&m), QKV_OK);
        const int64_t rows = s.B * s.H * s.Lq;
        const double d_out = view_rel_diff(&g.out, &m.out);
        const double d_w = array_rel_diff(g.weights, m.weights, rows * s.Lk);
        const double d_lse = array_rel_diff(g.lse, m.lse, rows);
        cr_assert(d_out <= 8 * U && d_w <= 8 * U && d_lse <= 8 * U,
                  "Hkv %lld: out %.3g weights %.3g lse %.3g", (long long)hkv[i], d_out, d_w,
                  d_lse);
        sdpa_case_free(&g);
        sdpa_case_free(&m);
    }
}

/* Permuting the keys together with their values leaves out and lse
   unchanged and permutes the weights. */
Test(props, key_permutation_invariance)
{
    for (int rep = 0; rep < 3; rep++) {
        sdpa_spec s = {.B = 2, .H = 2, .Hkv = rep == 2 ? 1 : 2, .Lq = 13, .Lk = 45 + 40 * rep,
                       .D = 20, .Dv = 9,
                       .v_dtype = rep == 1 ? QKV_BF16 : QKV_F32};
        sdpa_case a, p;
        make_and_run(&a, &s, 30 + (uint64_t)rep);
        cr_assert_eq(sdpa_case_make(&p, &s, 30 + (uint64_t)rep), 0);
        /* a random permutation, Fisher-Yates */
        int64_t perm[200];
        test_rng r = rng_seeded(77 + (uint64_t)rep);
        for (int64_t j = 0; j < s.Lk; j++)
            perm[j] = j;
        for (int64_t j = s.Lk - 1; j > 0; j--) {
            const int64_t x = rng_range(&r, 0, j), t = perm[j];
            perm[j] = perm[x];
            perm[x] = t;
        }
        for (int64_t b = 0; b < s.B; b++)
            for (int64_t g = 0; g < s.Hkv; g++)
                for (int64_t j = 0; j < s.Lk; j++) {
                    for (int64_t d = 0; d < s.D; d++)
                        tt_set(&p.k, b, g, j, d, tt_get(&a.k, b, g, perm[j], d));
                    for (int64_t d = 0; d < s.Dv; d++)
                        tt_set(&p.v, b, g, j, d, tt_get(&a.v, b, g, perm[j], d));
                }
        cr_assert_eq(sdpa_case_run(&p), QKV_OK);
        const int64_t rows = s.B * s.H * s.Lq;
        const double d_out = view_rel_diff(&p.out, &a.out);
        const double d_lse = array_rel_diff(p.lse, a.lse, rows);
        double d_w = 0.0;
        for (int64_t row = 0; row < rows; row++)
            for (int64_t j = 0; j < s.Lk; j++) {
                const double x = p.weights[row * s.Lk + j];
                const double y = a.weights[row * s.Lk + perm[j]];
                d_w = fmax(d_w, fabs(x - y) / fmax(y, 1e-30));
            }
        cr_assert(d_out <= 1e-5 && d_lse <= 1e-5 && d_w <= 1e-4,
                  "permuted keys: out %.3g lse %.3g weights (relative) %.3g", d_out, d_lse, d_w);
        sdpa_case_free(&a);
        sdpa_case_free(&p);
    }
}

/* lse equals log(sum_j exp(logit_j)) over the visible keys, computed
   here directly in double without any max shift. */
Test(props, lse_is_log_sum_exp)
{
    sdpa_spec s = {.B = 2, .H = 3, .Lq = 19, .Lk = 77, .D = 33, .scale = 0.2f,
                   .mask = MASK_FULL, .mask_block_prob = 0.3, .kv_len = KV_LEN_RANDOM,
                   .causal = QKV_CAUSAL_TOP_LEFT};
    sdpa_case c;
    make_and_run(&c, &s, 40);
    double worst = 0.0;
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t h = 0; h < s.H; h++)
            for (int64_t i = 0; i < s.Lq; i++) {
                double sum = 0.0;
                for (int64_t j = 0; j < s.Lk; j++) {
                    if (sdpa_case_blocked(&c, b, h, i, j))
                        continue;
                    double dot = 0.0;
                    for (int64_t d = 0; d < s.D; d++)
                        dot += tt_get(&c.q, b, h, i, d) * tt_get(&c.k, b, h, j, d);
                    const float *m = c.mask.data;
                    sum += exp((double)s.scale * dot +
                               m[b * c.mask.stride[0] + h * c.mask.stride[1] +
                                 i * c.mask.stride[2] + j]);
                }
                const double want = sum > 0.0 ? log(sum) : -INFINITY;
                const double got = c.lse[(b * s.H + h) * s.Lq + i];
                if (want == -INFINITY)
                    cr_assert_eq(got, -INFINITY);
                else {
                    cr_assert(fabs(got - want) <= 1e-5 * (fabs(want) + 1.0),
                              "lse got %.9g want %.9g", got, want);
                    worst = fmax(worst, fabs(got - want));
                }
            }
    cr_log_info("lse_is_log_sum_exp: worst abs error %.3g", worst);
    sdpa_case_free(&c);
}

/* ---- bitwise determinism ------------------------------------------ */

Test(props, sdpa_threads_bitwise_equal)
{
    static const sdpa_spec specs[] = {
        {.B = 2, .H = 3, .Lq = 150, .Lk = 200, .D = 64, .causal = QKV_CAUSAL_BOTTOM_RIGHT,
         .mask = MASK_PER_BATCH, .mask_block_prob = 0.1, .kv_len = KV_LEN_RANDOM},
        {.B = 1, .H = 8, .Hkv = 2, .Lq = 97, .Lk = 301, .D = 40, .Dv = 24,
         .k_dtype = QKV_F16, .v_dtype = QKV_BF16, .layout = LAYOUT_BSHD,
         .causal = QKV_CAUSAL_TOP_LEFT},
    };
    for (int i = 0; i < 2; i++) {
        /* 1, 2 and 3 threads, then the OpenMP default and more threads
           than there are tasks */
        static const int threads[] = {1, 2, 3, 0, 64};
        sdpa_case c[5];
        for (int t = 0; t < 5; t++) {
            sdpa_spec s = specs[i];
            s.num_threads = threads[t];
            make_and_run(&c[t], &s, 50 + (uint64_t)i);
        }
        const sdpa_spec *s = &c[0].spec;
        const int64_t rows = s->B * s->H * s->Lq;
        for (int t = 1; t < 5; t++) {
            cr_assert(memcmp(c[0].out.mem, c[t].out.mem, (size_t)c[0].out.elems * 4) == 0,
                      "spec %d: out differs between 1 and %d threads", i, threads[t]);
            cr_assert(memcmp(c[0].weights, c[t].weights, (size_t)(rows * s->Lk) * 4) == 0,
                      "spec %d: weights differ between 1 and %d threads", i, threads[t]);
            cr_assert(memcmp(c[0].lse, c[t].lse, (size_t)rows * 4) == 0,
                      "spec %d: lse differs between 1 and %d threads", i, threads[t]);
        }
        for (int t = 0; t < 5; t++)
            sdpa_case_free(&c[t]);
    }
}

Test(props, mha_threads_bitwise_equal)
{
    const qkv_mha_config cfg = {.d_model = 48, .n_heads = 6, .n_kv_heads = 2, .bias = 1,
                                .kdim = 40, .vdim = 24};
    mha_case c[3];
    for (int t = 0; t < 3; t++) {
        cr_assert_eq(mha_case_make(&c[t], &cfg, 2, 70, 90, 0, 1, QKV_CAUSAL_BOTTOM_RIGHT, 60),
                     0);
        c[t].params.num_threads = t + 1;
        const qkv_status st = mha_case_run(&c[t]);
        cr_assert_eq(st, QKV_OK, "status %s", qkv_status_str(st));
    }
    const size_t ny = (size_t)(2 * 70 * 48), nw = (size_t)(2 * 6 * 70 * 90),
                 na = (size_t)(2 * 70 * 90);
    for (int t = 1; t < 3; t++) {
        cr_assert(memcmp(c[0].y, c[t].y, ny * 4) == 0, "y differs with %d threads", t + 1);
        cr_assert(memcmp(c[0].weights, c[t].weights, nw * 4) == 0,
                  "weights differ with %d threads", t + 1);
        cr_assert(memcmp(c[0].weights_avg, c[t].weights_avg, na * 4) == 0,
                  "weights_avg differ with %d threads", t + 1);
    }
    for (int t = 0; t < 3; t++)
        mha_case_free(&c[t]);
}

/* ---- NaN isolation --------------------------------------------- */

Test(props, sdpa_nan_row_is_isolated)
{
    sdpa_spec s = {.B = 2, .H = 4, .Hkv = 2, .Lq = 70, .Lk = 90, .D = 32,
                   .causal = QKV_CAUSAL_BOTTOM_RIGHT, .num_threads = 2};
    sdpa_case a, n;
    make_and_run(&a, &s, 70);
    cr_assert_eq(sdpa_case_make(&n, &s, 70), 0);
    const int64_t nb = 1, nh = 2, ni = 37;   /* the poisoned query row */
    tt_set(&n.q, nb, nh, ni, 5, NAN);
    cr_assert_eq(sdpa_case_run(&n), QKV_OK);
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t h = 0; h < s.H; h++)
            for (int64_t i = 0; i < s.Lq; i++) {
                if (b == nb && h == nh && i == ni)
                    continue;
                const int64_t row = (b * s.H + h) * s.Lq + i;
                const float *oa = (const float *)a.out.t.data + b * a.out.t.stride[0] +
                                  h * a.out.t.stride[1] + i * a.out.t.stride[2];
                const float *on = (const float *)n.out.t.data + b * n.out.t.stride[0] +
                                  h * n.out.t.stride[1] + i * n.out.t.stride[2];
                cr_assert(memcmp(oa, on, (size_t)a.spec.Dv * 4) == 0 &&
                          memcmp(a.weights + row * s.Lk, n.weights + row * s.Lk,
                                 (size_t)s.Lk * 4) == 0 &&
                          memcmp(a.lse + row, n.lse + row, 4) == 0,
                          "row (%lld,%lld,%lld) changed by a NaN in another row", (long long)b,
                          (long long)h, (long long)i);
            }
    sdpa_case_free(&a);
    sdpa_case_free(&n);
}

Test(props, mha_nan_row_is_isolated)
{
    const qkv_mha_config cfg = {.d_model = 32, .n_heads = 4, .bias = 1};
    mha_case a, n;
    cr_assert_eq(mha_case_make(&a, &cfg, 2, 20, 33, 0, 0, QKV_CAUSAL_NONE, 80), 0);
    cr_assert_eq(mha_case_make(&n, &cfg, 2, 20, 33, 0, 0, QKV_CAUSAL_NONE, 80), 0);
    const int64_t nb = 1, ni = 7;
    n.x_q[(nb * 20 + ni) * 32 + 3] = NAN;
    cr_assert_eq(mha_case_run(&a), QKV_OK);
    cr_assert_eq(mha_case_run(&n), QKV_OK);
    for (int64_t b = 0; b < 2; b++)
        for (int64_t i = 0; i < 20; i++) {
            if (b == nb && i == ni)
                continue;
            cr_assert(memcmp(a.y + (b * 20 + i) * 32, n.y + (b * 20 + i) * 32, 32 * 4) == 0,
                      "y row (%lld,%lld) changed by a NaN in another row", (long long)b,
                      (long long)i);
            cr_assert(memcmp(a.weights_avg + (b * 20 + i) * 33,
                             n.weights_avg + (b * 20 + i) * 33, 33 * 4) == 0);
            for (int64_t h = 0; h < 4; h++)
                cr_assert(memcmp(a.weights + ((b * 4 + h) * 20 + i) * 33,
                                 n.weights + ((b * 4 + h) * 20 + i) * 33, 33 * 4) == 0);
        }
    mha_case_free(&a);
    mha_case_free(&n);
}
