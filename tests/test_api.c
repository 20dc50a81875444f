/*
 * The small API surface: status strings, ISA selection, tensor views,
 * defaults, the layer's private copy of its weights, and the reference's
 * own F16/BF16 conversions (which the other suites rely on).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "ref/ref.h"
#include "testutil.h"

static qkv_isa isa_at_start;

static void api_init(void)
{
    qkv_test_init();
    isa_at_start = qkv_isa_active();
}

/* Every test leaves the ISA as it found it. */
static void api_fini(void)
{
    qkv_isa_set(isa_at_start);
}

TestSuite(api, .init = api_init, .fini = api_fini);

static const qkv_isa all_isas[] = {QKV_ISA_SCALAR, QKV_ISA_AVX2, QKV_ISA_AVX512,
                                   QKV_ISA_NEON};

Test(api, status_strings)
{
    const char *seen[QKV_E_UNSUPPORTED + 1];
    for (int s = QKV_OK; s <= QKV_E_UNSUPPORTED; s++) {
        seen[s] = qkv_status_str((qkv_status)s);
        cr_assert(seen[s] && seen[s][0], "status %d has no string", s);
        for (int t = 0; t < s; t++)
            cr_assert_str_neq(seen[s], seen[t], "statuses %d and %d share a string", s, t);
    }
    static const int unknown[] = {-1, QKV_E_UNSUPPORTED + 1, 1000, INT32_MIN};
    for (int i = 0; i < 4; i++) {
        const char *s = qkv_status_str((qkv_status)unknown[i]);
        cr_assert(s && s[0], "unknown status %d gave NULL or empty", unknown[i]);
    }
}

Test(api, isa_names)
{
    cr_assert_str_eq(qkv_isa_name(QKV_ISA_AUTO), "auto");
    cr_assert_str_eq(qkv_isa_name(QKV_ISA_SCALAR), "scalar");
    cr_assert_str_eq(qkv_isa_name(QKV_ISA_AVX2), "avx2");
    cr_assert_str_eq(qkv_isa_name(QKV_ISA_AVX512), "avx512");
    cr_assert_str_eq(qkv_isa_name(QKV_ISA_NEON), "neon");
    cr_assert_str_eq(qkv_isa_name((qkv_isa)17), "unknown");
    cr_assert_str_eq(qkv_isa_name((qkv_isa)-1), "unknown");
}

Test(api, isa_support_and_selection)
{
    cr_assert_eq(qkv_isa_supported(QKV_ISA_AUTO), 1);
    cr_assert_eq(qkv_isa_supported(QKV_ISA_SCALAR), 1);
    cr_assert_eq(qkv_isa_supported((qkv_isa)9), 0);
    cr_assert(qkv_isa_supported(qkv_isa_active()), "the active ISA must be supported");
    /* x86 and AArch64 kernels never both run on one CPU */
    cr_assert(!(qkv_isa_supported(QKV_ISA_NEON) && qkv_isa_supported(QKV_ISA_AVX2)));

    for (int i = 0; i < 4; i++) {
        const qkv_isa isa = all_isas[i];
        const qkv_isa before = qkv_isa_active();
        const qkv_status st = qkv_isa_set(isa);
        if (qkv_isa_supported(isa)) {
            cr_assert_eq(st, QKV_OK, "set %s", qkv_isa_name(isa));
            cr_assert_eq(qkv_isa_active(), isa);
        } else {
            cr_assert_eq(st, QKV_E_UNSUPPORTED, "set unsupported %s", qkv_isa_name(isa));
            cr_assert_eq(qkv_isa_active(), before, "a failed set changed the ISA");
        }
    }
    cr_assert_eq(qkv_isa_set(QKV_ISA_SCALAR), QKV_OK);
    cr_assert_eq(qkv_isa_set(QKV_ISA_AUTO), QKV_OK);
    const qkv_isa best = qkv_isa_active();
    cr_assert_neq(best, QKV_ISA_AUTO);
    cr_assert(qkv_isa_supported(best));
    /* AUTO picks the best: nothing supported ranks above it */
    if (best == QKV_ISA_SCALAR)
        for (int i = 1; i < 4; i++)
            cr_assert(!qkv_isa_supported(all_isas[i]), "AUTO chose scalar over %s",
                      qkv_isa_name(all_isas[i]));
    if (best == QKV_ISA_AVX2)
        cr_assert(!qkv_isa_supported(QKV_ISA_AVX512));
}

Test(api, isa_set_rejects_bad_values)
{
    static const int bad[] = {-1, QKV_ISA_NEON + 1, 99, INT32_MIN};
    cr_assert_eq(qkv_isa_set(QKV_ISA_SCALAR), QKV_OK);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(qkv_isa_set((qkv_isa)bad[i]), QKV_E_ARG, "isa %d", bad[i]);
        cr_assert_eq(qkv_isa_active(), QKV_ISA_SCALAR, "a rejected set changed the ISA");
    }
}

/* Each ISA this machine has passes the golden cases in this process. */
Test(api, every_supported_isa_passes_golden)
{
    char **names;
    const int n = golden_list(&names);
    cr_assert_gt(n, 0);
    for (int i = 0; i < 4; i++) {
        if (!qkv_isa_supported(all_isas[i]))
            continue;
        cr_assert_eq(qkv_isa_set(all_isas[i]), QKV_OK);
        for (int c = 0; c < n; c++) {
            char path[4096], err[256];
            golden_case gc;
            snprintf(path, sizeof path, "%s/%s.txt", golden_data_dir(), names[c]);
            cr_assert_eq(golden_load(path, &gc, err, sizeof err), 0, "%s", err);
            golden_result r;
            cr_assert_eq(golden_run(&gc, 2, &r), 0, "%s on %s: status %d ratio %.3g at %s",
                         names[c], qkv_isa_name(all_isas[i]), r.status, r.worst_ratio,
                         r.worst_where);
            golden_free(&gc);
        }
    }
    golden_list_free(names, n);
}

Test(api, tensor_views)
{
    float x[1];
    const qkv_tensor a = qkv_tensor_bhsd(x, QKV_BF16, 2, 3, 5, 7);
    cr_assert_eq(a.data, x);
    cr_assert_eq(a.dtype, QKV_BF16);
    const int64_t as[4] = {2, 3, 5, 7}, ast[4] = {105, 35, 7, 1};
    const qkv_tensor b = qkv_tensor_bshd(x, QKV_F16, 2, 5, 3, 7);   /* b, s, h, d */
    const int64_t bs[4] = {2, 3, 5, 7}, bst[4] = {105, 7, 21, 1};
    cr_assert_eq(b.dtype, QKV_F16);
    for (int d = 0; d < 4; d++) {
        cr_assert_eq(a.shape[d], as[d]);
        cr_assert_eq(a.stride[d], ast[d]);
        cr_assert_eq(b.shape[d], bs[d], "bshd shape[%d]", d);
        cr_assert_eq(b.stride[d], bst[d], "bshd stride[%d]", d);
    }
}

/* NULL params, {0} params and the explicit default scale agree bitwise. */
Test(api, defaults)
{
    sdpa_spec s = {.B = 1, .H = 2, .Lq = 9, .Lk = 17, .D = 17, .no_weights = 1, .no_lse = 1};
    sdpa_case a, b, c;
    cr_assert_eq(sdpa_case_make(&a, &s, 1), 0);
    cr_assert_eq(sdpa_case_make(&b, &s, 1), 0);
    s.scale = (float)(1.0 / sqrt(17.0));   /* the float nearest, as documented */
    cr_assert_eq(sdpa_case_make(&c, &s, 1), 0);
    cr_assert_eq(qkv_sdpa(&a.q.t, &a.k.t, &a.v.t, &a.out.t, NULL), QKV_OK);
    cr_assert_eq(sdpa_case_run(&b), QKV_OK);
    cr_assert_eq(sdpa_case_run(&c), QKV_OK);
    const size_t bytes = (size_t)a.out.elems * sizeof(float);
    cr_assert(memcmp(a.out.mem, b.out.mem, bytes) == 0, "NULL params differ from {0}");
    cr_assert(memcmp(b.out.mem, c.out.mem, bytes) == 0,
              "scale 0 differs from the float nearest 1/sqrt(D)");
    sdpa_case_free(&a);
    sdpa_case_free(&b);
    sdpa_case_free(&c);
}

Test(api, mha_owns_its_weights)
{
    qkv_mha_destroy(NULL);   /* a no-op */
    const qkv_mha_config cfg = {.d_model = 16, .n_heads = 4, .bias = 1};
    mha_case c;
    cr_assert_eq(mha_case_make(&c, &cfg, 2, 5, 5, 1, 0, QKV_CAUSAL_NONE, 3), 0);
    cr_assert_eq(mha_case_run(&c), QKV_OK);
    float y0[2 * 5 * 16];
    memcpy(y0, c.y, sizeof y0);
    for (int i = 0; i < 8; i++)   /* scribble over the caller's copy */
        if (c.wmem[i])
            c.wmem[i][0] += 1.0f;
    cr_assert_eq(mha_case_run(&c), QKV_OK);
    cr_assert(memcmp(y0, c.y, sizeof y0) == 0, "the layer reads the caller's weights");
    mha_case_free(&c);
}

/* ---- the reference's conversions --------------------------------- */

Test(api, ref_f16_known_values)
{
    static const struct { float f; uint16_t h; } known[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
        {65504.0f, 0x7bff}, {65519.99f, 0x7bff}, {65520.0f, 0x7c00}, {1e9f, 0x7c00},
        {-INFINITY, 0xfc00}, {0x1p-14f, 0x0400}, {0x1p-24f, 0x0001}, {0x1p-25f, 0x0000},
        {0x1.8p-25f, 0x0001}, {0x1.ff8p-15f, 0x03ff}, {0x1.ffcp-15f, 0x0400}, {1.0f + 0x1p-11f, 0x3c00},
        {1.0f + 0x1.8p-11f, 0x3c01}, {1.0f + 0x1p-10f + 0x1p-11f, 0x3c02},
        {0.333333343f, 0x3555},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        cr_assert_eq(ref_f32_to_f16(known[i].f), known[i].h, "f16(%a) = %#x, want %#x",
                     (double)known[i].f, ref_f32_to_f16(known[i].f), known[i].h);
    cr_assert(isnan(ref_f16_to_f32(ref_f32_to_f16(NAN))));
    cr_assert_eq(ref_f16_to_f32(0x0001), 0x1p-24f);
    cr_assert_eq(ref_f16_to_f32(0x7bff), 65504.0f);
    cr_assert_eq(ref_f16_to_f32(0xfc00), -INFINITY);
    cr_assert(isnan(ref_f16_to_f32(0x7e00)));
}

Test(api, ref_bf16_known_values)
{
    static const struct { float f; uint16_t h; } known[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3f80}, {-2.0f, 0xc000},
        {1.0f + 0x1p-8f, 0x3f80}, {1.0f + 0x1.8p-8f, 0x3f81}, {1.0f + 0x1p-7f + 0x1p-8f, 0x3f82},
        {3.0e38f, 0x7f62}, {0x1.ffp127f, 0x7f80}, {INFINITY, 0x7f80},
        {0x1p-133f, 0x0001}, {0x1p-126f, 0x0080}, {0x1.fep-127f, 0x0080},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        cr_assert_eq(ref_f32_to_bf16(known[i].f), known[i].h, "bf16(%a) = %#x, want %#x",
                     (double)known[i].f, ref_f32_to_bf16(known[i].f), known[i].h);
    cr_assert(isnan(ref_bf16_to_f32(ref_f32_to_bf16(NAN))));
    cr_assert_eq(ref_bf16_to_f32(0x0001), 0x1p-133f);
    cr_assert_eq(ref_bf16_to_f32(0xff80), -INFINITY);
}

/* Every 16-bit pattern decodes and re-encodes to itself (NaN to a NaN). */
Test(api, ref_conversions_round_trip)
{
    for (uint32_t h = 0; h <= 0xffff; h++) {
        const float f16 = ref_f16_to_f32((uint16_t)h), bf = ref_bf16_to_f32((uint16_t)h);
        if (isnan(f16))
            cr_assert(isnan(ref_f16_to_f32(ref_f32_to_f16(f16))));
        else
            cr_assert_eq(ref_f32_to_f16(f16), h, "f16 %#x", h);
        if (isnan(bf))
            cr_assert(isnan(ref_bf16_to_f32(ref_f32_to_bf16(bf))));
        else
            cr_assert_eq(ref_f32_to_bf16(bf), h, "bf16 %#x", h);
    }
}

#ifdef __FLT16_MAX__
__extension__ typedef _Float16 compiler_f16;   /* the compiler's own RNE conversion */
#endif

/* bf16 by the usual bit trick: a second, unrelated implementation. */
static uint16_t bf16_by_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

Test(api, ref_conversions_match_independent_ones)
{
    test_rng r = rng_seeded(9);
    for (int i = 0; i < 400000; i++) {
        /* random bit patterns cover every exponent, including subnormals */
        const uint32_t bits = (uint32_t)rng_next(&r);
        float f;
        memcpy(&f, &bits, sizeof f);
        if (isnan(f))
            continue;
        cr_assert_eq(ref_f32_to_bf16(f), bf16_by_bits(f), "bf16(%a)", (double)f);
#ifdef __FLT16_MAX__
        const compiler_f16 h = (compiler_f16)f;
        uint16_t hb;
        memcpy(&hb, &h, sizeof hb);
        cr_assert_eq(ref_f32_to_f16(f), hb, "f16(%a)", (double)f);
        /* values near the f16 range, where the rounding matters */
        const float g = ldexpf((float)(rng_uniform(&r) * 2.0 - 1.0), (int)rng_range(&r, -26, 17));
        const compiler_f16 gh = (compiler_f16)g;
        memcpy(&hb, &gh, sizeof hb);
        cr_assert_eq(ref_f32_to_f16(g), hb, "f16(%a)", (double)g);
        cr_assert_eq(ref_f16_to_f32(hb), (float)gh);
#endif
    }
}
