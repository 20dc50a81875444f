/*
 * qkv_sdpa against the double reference over many shapes and options:
 * head dims 1..300, lengths 1..600, every mask combination, GQA/MQA,
 * layouts and strides, large and tiny values, F16/BF16 K/V. Every value
 * must lie within an error bound derived from its own inputs (see
 * sdpa_case_check). Big shapes are sampled sparsely to keep the suite
 * fast enough to run once per ISA.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

TestSuite(random, .init = qkv_test_init);

/* Runs one spec and asserts that it succeeds within the bound. Returns
   the worst ratio for the caller's summary. */
static double check_spec(const sdpa_spec *spec, uint64_t seed)
{
    sdpa_case c;
    char desc[256], where[256];
    sdpa_spec_describe(spec, desc, sizeof desc);
    cr_assert_eq(sdpa_case_make(&c, spec, seed), 0, "setup failed: %s", desc);
    const qkv_status st = sdpa_case_run(&c);
    cr_assert_eq(st, QKV_OK, "%s: status %s", desc, qkv_status_str(st));
    const double ratio = sdpa_case_check(&c, where, sizeof where);
    cr_assert(ratio <= 1.0, "%s (seed %llu): ratio %.3g at %s", desc,
              (unsigned long long)seed, ratio, where);
    sdpa_case_free(&c);
    return ratio;
}

static void report(const char *name, int cases, double worst)
{
    cr_log_info("%s: %d cases, worst ratio %.3g", name, cases, worst);
}

static double max2(double a, double b) { return a > b ? a : b; }

Test(random, head_dims)
{
    static const int64_t dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33,
                                   48, 63, 64, 65, 80, 96, 100, 127, 128, 129, 160,
                                   192, 200, 255, 256, 257, 299, 300};
    const int n = (int)(sizeof dims / sizeof dims[0]);
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        /* Dv cycles through other sizes, so D != Dv is covered too. */
        sdpa_spec s = {.B = 1, .H = 2, .Lq = 9, .Lk = 21, .D = dims[i],
                       .Dv = dims[(i * 7 + 3) % n]};
        worst = max2(worst, check_spec(&s, 100 + (uint64_t)i));
        s.Dv = s.D;
        s.Lq = 3;
        s.Lk = 70;
        worst = max2(worst, check_spec(&s, 200 + (uint64_t)i));
    }
    report("head_dims", 2 * n, worst);
}

Test(random, lengths)
{
    static const int64_t lens[][2] = {
        {1, 1}, {1, 2}, {2, 1}, {1, 600}, {600, 1}, {3, 5}, {5, 3}, {7, 64}, {64, 7},
        {15, 16}, {16, 17}, {31, 33}, {63, 65}, {65, 63}, {100, 129}, {128, 128},
        {129, 257}, {257, 129}, {300, 17}, {17, 513}, {600, 600}, {511, 599},
    };
    double worst = 0.0;
    const int n = (int)(sizeof lens / sizeof lens[0]);
    for (int i = 0; i < n; i++) {
        const int64_t cells = lens[i][0] * lens[i][1];
        sdpa_spec s = {.B = 1, .H = cells > 100000 ? 1 : 2, .Lq = lens[i][0],
                       .Lk = lens[i][1], .D = cells > 100000 ? 24 : 40, .Dv = 24,
                       .causal = (qkv_causal)(i % 3)};
        worst = max2(worst, check_spec(&s, 300 + (uint64_t)i));
    }
    report("lengths", n, worst);
}

/* Every combination of causal alignment, mask kind and kv_len kind. */
Test(random, mask_combinations)
{
    double worst = 0.0;
    int cases = 0;
    for (int causal = 0; causal < 3; causal++)
        for (int mask = 0; mask < MASK_KINDS; mask++)
            for (int kv = 0; kv < KV_LEN_KINDS; kv++) {
                /* Lq > Lk and Lq < Lk both, so bottom-right rows with no
                   visible key occur too. */
                const int tall = (causal + mask + kv) % 2;
                sdpa_spec s = {.B = 3, .H = 4, .Hkv = 2, .Lq = tall ? 23 : 11,
                               .Lk = tall ? 13 : 37, .D = 19, .Dv = 12,
                               .causal = (qkv_causal)causal, .mask = (mask_kind)mask,
                               .mask_block_prob = mask % 2 ? 0.3 : 0.05,
                               .kv_len = (kv_len_kind)kv,
                               .layout = (test_layout)((mask + kv) % 3)};
                worst = max2(worst, check_spec(&s, 400 + (uint64_t)cases));
                cases++;
            }
    report("mask_combinations", cases, worst);
}

Test(random, mask_blocks_whole_rows)
{
    /* Nearly everything blocked: many fully blocked rows (0 out, -inf lse). */
    sdpa_spec s = {.B = 2, .H = 2, .Lq = 40, .Lk = 6, .D = 16, .mask = MASK_FULL,
                   .mask_block_prob = 0.85};
    double worst = check_spec(&s, 500);
    s.mask_block_prob = 1.0;
    worst = max2(worst, check_spec(&s, 501));
    report("mask_blocks_whole_rows", 2, worst);
}

Test(random, gqa_ratios)
{
    static const int64_t heads[][2] = {{4, 4}, {4, 2}, {8, 2}, {8, 1}, {16, 2},
                                       {6, 3}, {5, 1}, {12, 4}};
    double worst = 0.0;
    const int n = (int)(sizeof heads / sizeof heads[0]);
    for (int i = 0; i < n; i++) {
        sdpa_spec s = {.B = 2, .H = heads[i][0], .Hkv = heads[i][1], .Lq = 13, .Lk = 29,
                       .D = 32, .Dv = 16, .causal = (qkv_causal)(i % 3),
                       .layout = (test_layout)(i % 3)};
        worst = max2(worst, check_spec(&s, 600 + (uint64_t)i));
    }
    report("gqa_ratios", n, worst);
}

Test(random, layouts_and_batches)
{
    double worst = 0.0;
    int cases = 0;
    for (int lay = 0; lay < 3; lay++)
        for (int64_t B = 1; B <= 4; B += 3) {
            for (int rep = 0; rep < 3; rep++) {
                sdpa_spec s = {.B = B, .H = 3, .Lq = 17 + rep, .Lk = 33 + 5 * rep,
                               .D = 20 + rep, .Dv = 7 + rep, .layout = (test_layout)lay,
                               .mask = rep == 2 ? MASK_PER_BATCH : MASK_NONE,
                               .mask_block_prob = 0.1,
                               .kv_len = rep == 1 ? KV_LEN_RANDOM : KV_LEN_NONE};
                worst = max2(worst, check_spec(&s, 700 + (uint64_t)cases));
                cases++;
            }
        }
    report("layouts_and_batches", cases, worst);
}

Test(random, large_logits)
{
    /* q and k times 30: logits of about +-1000, where a softmax without
       the max subtracted overflows. */
    double worst = 0.0;
    for (int i = 0; i < 6; i++) {
        sdpa_spec s = {.B = 1, .H = 2, .Lq = 9 + i, .Lk = 50 + 17 * i, .D = 8 << (i % 4),
                       .qk_sigma = 30.0, .causal = (qkv_causal)(i % 3),
                       .mask = i % 2 ? MASK_SHARED : MASK_NONE, .mask_block_prob = 0.2,
                       .k_dtype = i >= 4 ? QKV_BF16 : QKV_F32};
        worst = max2(worst, check_spec(&s, 800 + (uint64_t)i));
    }
    report("large_logits", 6, worst);
}

Test(random, tiny_values)
{
    double worst = 0.0;
    for (int i = 0; i < 6; i++) {
        sdpa_spec s = {.B = 2, .H = 2, .Lq = 7 + i, .Lk = 31 + 9 * i, .D = 5 + 13 * i,
                       .qk_sigma = 1e-3, .v_sigma = 1e-3,
                       .v_dtype = i >= 4 ? QKV_F16 : QKV_F32,
                       .kv_len = i % 2 ? KV_LEN_RANDOM : KV_LEN_NONE};
        worst = max2(worst, check_spec(&s, 900 + (uint64_t)i));
    }
    report("tiny_values", 6, worst);
}

Test(random, half_precision_kv)
{
    static const qkv_dtype kinds[][2] = {{QKV_F16, QKV_F16}, {QKV_BF16, QKV_BF16},
                                         {QKV_F16, QKV_BF16}, {QKV_BF16, QKV_F16},
                                         {QKV_F32, QKV_F16}, {QKV_BF16, QKV_F32}};
    double worst = 0.0;
    int cases = 0;
    for (int i = 0; i < 6; i++)
        for (int rep = 0; rep < 3; rep++) {
            sdpa_spec s = {.B = 2, .H = 4, .Hkv = rep == 2 ? 1 : 2, .Lq = 5 + 11 * rep,
                           .Lk = 9 + 40 * rep, .D = rep == 1 ? 67 : 64, .Dv = 33 + rep,
                           .k_dtype = kinds[i][0], .v_dtype = kinds[i][1],
                           .layout = (test_layout)rep, .causal = (qkv_causal)rep,
                           .mask = rep == 1 ? MASK_STRIDE0 : MASK_NONE,
                           .mask_block_prob = 0.1};
            worst = max2(worst, check_spec(&s, 1000 + (uint64_t)cases));
            cases++;
        }
    report("half_precision_kv", cases, worst);
}

/* Tasks of 16 query rows or more keep the blocks of K and V they prepare in
   per-thread caches, V wider than one panel (64 columns) split into
   panels: widths on both sides of the panel edges, several key blocks with
   a partial last one, causal slabs that enter a block part-way, kv_len
   cutting tiles short, and each storage type of V. */
Test(random, cached_value_panels)
{
    static const int64_t dvs[] = {63, 64, 65, 100, 128, 129, 200};
    static const qkv_dtype dtypes[] = {QKV_F32, QKV_F16, QKV_BF16};
    double worst = 0.0;
    int cases = 0;
    for (int i = 0; i < 7; i++)
        for (int rep = 0; rep < 2; rep++) {
            sdpa_spec s = {.B = 2, .H = 2, .Hkv = rep ? 1 : 2, .Lq = 40, .Lk = 300,
                           .D = 24, .Dv = dvs[i],
                           .k_dtype = dtypes[(i + rep) % 3], .v_dtype = dtypes[(i + 2 * rep) % 3],
                           .layout = (test_layout)((i + rep) % 3),
                           .causal = (qkv_causal)((i + rep) % 3),
                           .kv_len = rep ? KV_LEN_RANDOM : KV_LEN_NONE,
                           .no_weights = !rep};
            worst = max2(worst, check_spec(&s, 1150 + (uint64_t)cases));
            cases++;
        }
    report("cached_value_panels", cases, worst);
}

Test(random, custom_scales)
{
    static const float scales[] = {0.37f, 1.0f, -0.5f, 2.5f, 1e-3f};
    double worst = 0.0;
    for (int i = 0; i < 5; i++) {
        sdpa_spec s = {.B = 1, .H = 3, .Lq = 6, .Lk = 19, .D = 12, .scale = scales[i]};
        worst = max2(worst, check_spec(&s, 1100 + (uint64_t)i));
    }
    report("custom_scales", 5, worst);
}

Test(random, optional_outputs)
{
    /* Each combination of weights/lse present or absent. */
    double worst = 0.0;
    for (int i = 0; i < 4; i++) {
        sdpa_spec s = {.B = 2, .H = 2, .Lq = 33, .Lk = 65, .D = 16, .no_weights = i & 1,
                       .no_lse = (i >> 1) & 1, .causal = QKV_CAUSAL_TOP_LEFT};
        worst = max2(worst, check_spec(&s, 1200 + (uint64_t)i));
    }
    report("optional_outputs", 4, worst);
}

/* Random mixtures of everything above, on small shapes. */
Test(random, fuzz)
{
    test_rng r = rng_seeded(4242);
    double worst = 0.0;
    const int n = 150;
    for (int i = 0; i < n; i++) {
        static const int64_t groups[] = {1, 2, 4, 8};
        sdpa_spec s;
        memset(&s, 0, sizeof s);
        s.B = rng_range(&r, 1, 3);
        s.Hkv = rng_range(&r, 1, 3);
        s.H = s.Hkv * groups[rng_range(&r, 0, 3)];
        s.Lq = rng_range(&r, 1, 48);
        s.Lk = rng_range(&r, 1, 80);
        s.D = rng_range(&r, 1, 72);
        s.Dv = rng_range(&r, 1, 40);
        s.k_dtype = (qkv_dtype)rng_range(&r, 0, 2);
        s.v_dtype = (qkv_dtype)rng_range(&r, 0, 2);
        s.layout = (test_layout)rng_range(&r, 0, 2);
        s.causal = (qkv_causal)rng_range(&r, 0, 2);
        s.mask = (mask_kind)rng_range(&r, 0, MASK_KINDS - 1);
        s.mask_block_prob = rng_uniform(&r) * 0.5;
        s.kv_len = (kv_len_kind)rng_range(&r, 0, KV_LEN_KINDS - 1);
        s.qk_sigma = rng_range(&r, 0, 5) == 0 ? 30.0 : 1.0;
        s.num_threads = (int)rng_range(&r, 0, 3);
        worst = max2(worst, check_spec(&s, 5000 + (uint64_t)i));
    }
    report("fuzz", n, worst);
}

/* The multi-head layer against ref_mha, with the golden tolerance. */
Test(random, mha_vs_reference)
{
    typedef struct mha_shape {
        qkv_mha_config cfg;
        int64_t batch, lq, lk;
        int self_attn, kv_len;
        qkv_causal causal;
    } mha_shape;
    static const mha_shape shapes[] = {
        {{.d_model = 16, .n_heads = 2, .bias = 1}, 1, 5, 5, 1, 0, QKV_CAUSAL_NONE},
        {{.d_model = 24, .n_heads = 4, .kdim = 12, .vdim = 20, .bias = 1}, 2, 6, 9, 0, 0,
         QKV_CAUSAL_NONE},
        {{.d_model = 32, .n_heads = 4}, 2, 9, 9, 1, 1, QKV_CAUSAL_BOTTOM_RIGHT},
        {{.d_model = 30, .n_heads = 6, .n_kv_heads = 2, .bias = 1}, 2, 7, 11, 0, 1,
         QKV_CAUSAL_TOP_LEFT},
        {{.d_model = 20, .n_heads = 4, .n_kv_heads = 1, .head_dim = 7, .bias = 1}, 3, 4, 13,
         0, 0, QKV_CAUSAL_BOTTOM_RIGHT},
        {{.d_model = 64, .n_heads = 8, .n_kv_heads = 4, .head_dim = 16, .kdim = 40,
          .vdim = 24}, 1, 33, 70, 0, 1, QKV_CAUSAL_NONE},
        {{.d_model = 96, .n_heads = 3, .bias = 1}, 2, 65, 65, 1, 0, QKV_CAUSAL_TOP_LEFT},
    };
    double worst = 0.0;
    const int n = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n; i++) {
        const mha_shape *s = &shapes[i];
        mha_case c;
        char where[256];
        cr_assert_eq(mha_case_make(&c, &s->cfg, s->batch, s->lq, s->lk, s->self_attn,
                                   s->kv_len, s->causal, 1300 + (uint64_t)i), 0);
        /* the optional outputs: both, only weights, only weights_avg */
        if (i % 3 == 1)
            c.params.weights_avg = NULL;
        else if (i % 3 == 2)
            c.params.weights = NULL;
        c.params.num_threads = i % 4;
        const qkv_status st = mha_case_run(&c);
        cr_assert_eq(st, QKV_OK, "mha shape %d: status %s", i, qkv_status_str(st));
        const double ratio = mha_case_check(&c, where, sizeof where);
        cr_assert(ratio <= 1.0, "mha shape %d: ratio %.3g at %s", i, ratio, where);
        worst = max2(worst, ratio);
        mha_case_free(&c);
    }
    report("mha_vs_reference", n, worst);
}

/* A mask row broadcast over the queries too (stride 0 on the seq
   dimension): the contract allows a zero stride on any mask dimension. */
Test(random, mask_row_broadcast)
{
    double worst = 0.0;
    for (int i = 0; i < 3; i++) {
        sdpa_spec s = {.B = 2, .H = 3, .Lq = 6 + 20 * i, .Lk = 30 + 50 * i, .D = 16,
                       .mask = MASK_SHARED, .mask_block_prob = 0.3,
                       .causal = (qkv_causal)i};
        sdpa_case c;
        char where[256];
        cr_assert_eq(sdpa_case_make(&c, &s, 1400 + (uint64_t)i), 0);
        c.mask.stride[2] = 0;   /* every query row reads mask row 0 */
        const qkv_status st = sdpa_case_run(&c);
        cr_assert_eq(st, QKV_OK, "status %s", qkv_status_str(st));
        const double ratio = sdpa_case_check(&c, where, sizeof where);
        cr_assert(ratio <= 1.0, "row-broadcast mask %d: ratio %.3g at %s", i, ratio, where);
        worst = max2(worst, ratio);
        sdpa_case_free(&c);
    }
    report("mask_row_broadcast", 3, worst);
}
