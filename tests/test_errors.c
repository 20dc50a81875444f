/*
 * Every error path of the public API returns its specific status and
 * writes nothing: each call runs over an arena filled with a sentinel
 * pattern, and the whole arena must be unchanged afterwards.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

TestSuite(errors, .init = qkv_test_init);

/* ------------------------------------------------------------------ */
/* sdpa                                                               */
/* ------------------------------------------------------------------ */

enum { B = 2, H = 4, HKV = 2, LQ = 3, LK = 5, D = 4, DV = 6 };

/* Where each buffer starts inside the arena (in floats). */
enum {
    OFF_Q = 0,
    OFF_K = OFF_Q + B * H * LQ * D,
    OFF_V = OFF_K + B * HKV * LK * D,
    OFF_MASK = OFF_V + B * HKV * LK * DV,
    OFF_KV_LEN = OFF_MASK + B * H * LQ * LK,
    OFF_OUT = OFF_KV_LEN + 8,
    OFF_WEIGHTS = OFF_OUT + B * H * LQ * DV,
    OFF_LSE = OFF_WEIGHTS + B * H * LQ * LK,
    ARENA = OFF_LSE + B * H * LQ + 64
};

typedef struct sdpa_call {
    float arena[ARENA];
    qkv_tensor q, k, v, out, mask;
    qkv_sdpa_params p;
} sdpa_call;

/* A valid call with every option: mask, kv_len, weights and lse. */
static void valid_call(sdpa_call *c)
{
    test_rng r = rng_seeded(1);
    for (int i = 0; i < OFF_KV_LEN; i++)
        c->arena[i] = (float)rng_normal(&r);
    int32_t kv_len[B] = {LK, 2};
    memcpy(c->arena + OFF_KV_LEN, kv_len, sizeof kv_len);
    c->q = qkv_tensor_bhsd(c->arena + OFF_Q, QKV_F32, B, H, LQ, D);
    c->k = qkv_tensor_bhsd(c->arena + OFF_K, QKV_F32, B, HKV, LK, D);
    c->v = qkv_tensor_bhsd(c->arena + OFF_V, QKV_F32, B, HKV, LK, DV);
    c->mask = qkv_tensor_bhsd(c->arena + OFF_MASK, QKV_F32, B, H, LQ, LK);
    c->out = qkv_tensor_bhsd(c->arena + OFF_OUT, QKV_F32, B, H, LQ, DV);
    c->p = (qkv_sdpa_params){
        .causal = QKV_CAUSAL_BOTTOM_RIGHT,
        .mask = &c->mask,
        .kv_len = (const int32_t *)(c->arena + OFF_KV_LEN),
        .weights = c->arena + OFF_WEIGHTS,
        .lse = c->arena + OFF_LSE,
    };
}

static void fill_sentinel(float *p, int64_t n)
{
    const uint32_t bits = 0x7fa5a5a5u;   /* a NaN no computation produces */
    for (int64_t i = 0; i < n; i++)
        memcpy(p + i, &bits, sizeof bits);
}

/* Runs the call and asserts its status; on an error the outputs (and
   everything else in the arena) must be untouched. */
static void expect_sdpa(sdpa_call *c, qkv_status want, const char *what)
{
    fill_sentinel(c->arena + OFF_OUT, ARENA - OFF_OUT);
    static float before[ARENA];
    memcpy(before, c->arena, sizeof before);
    const qkv_status got = qkv_sdpa(&c->q, &c->k, &c->v, &c->out, &c->p);
    cr_assert_eq(got, want, "%s: got %s, want %s", what, qkv_status_str(got),
                 qkv_status_str(want));
    if (want != QKV_OK)
        cr_assert(memcmp(before, c->arena, sizeof before) == 0,
                  "%s: an output was written on error", what);
}

static sdpa_call call;   /* large: not on the stack */

Test(errors, valid_call_succeeds)
{
    /* The baseline of every other test must itself be valid, and write. */
    valid_call(&call);
    expect_sdpa(&call, QKV_OK, "valid call");
    cr_assert(isfinite(call.arena[OFF_OUT]) && isfinite(call.arena[OFF_LSE]));
    valid_call(&call);
    call.p.mask = NULL;
    call.p.kv_len = NULL;
    call.p.weights = call.p.lse = NULL;
    expect_sdpa(&call, QKV_OK, "valid call without options");
    cr_assert_eq(qkv_sdpa(&call.q, &call.k, &call.v, &call.out, NULL), QKV_OK);
}

Test(errors, null_pointers)
{
    qkv_tensor *tensors[] = {&call.q, &call.k, &call.v, &call.out};
    static const char *const names[] = {"q", "k", "v", "out"};
    for (int t = 0; t < 4; t++) {
        valid_call(&call);
        tensors[t]->data = NULL;
        expect_sdpa(&call, QKV_E_NULL, names[t]);
    }
    valid_call(&call);
    call.mask.data = NULL;
    expect_sdpa(&call, QKV_E_NULL, "mask data");

    valid_call(&call);
    const qkv_tensor *args[4] = {&call.q, &call.k, &call.v, &call.out};
    for (int t = 0; t < 4; t++) {
        const qkv_tensor *a[4];
        memcpy(a, args, sizeof a);
        a[t] = NULL;
        fill_sentinel(call.arena + OFF_OUT, ARENA - OFF_OUT);
        cr_assert_eq(qkv_sdpa(a[0], a[1], a[2], a[3], &call.p), QKV_E_NULL,
                     "NULL tensor %s", names[t]);
    }
}

Test(errors, sizes_not_positive)
{
    qkv_tensor *tensors[] = {&call.q, &call.k, &call.v, &call.out, &call.mask};
    static const char *const names[] = {"q", "k", "v", "out", "mask"};
    static const int64_t bad[] = {0, -1, INT64_MIN};
    for (int t = 0; t < 5; t++)
        for (int d = 0; d < 4; d++)
            for (int i = 0; i < 3; i++) {
                valid_call(&call);
                tensors[t]->shape[d] = bad[i];
                char what[64];
                snprintf(what, sizeof what, "%s shape[%d] = %lld", names[t], d,
                         (long long)bad[i]);
                expect_sdpa(&call, QKV_E_SHAPE, what);
            }
}

Test(errors, shape_mismatches)
{
    struct { qkv_tensor *t; int dim; int64_t value; const char *what; } cases[] = {
        {&call.k, 0, B + 1, "k batch"},      {&call.k, 3, D + 1, "k head_dim"},
        {&call.v, 0, 1, "v batch"},          {&call.v, 1, HKV * 2, "v heads"},
        {&call.v, 2, LK - 1, "v length"},    {&call.out, 0, B + 1, "out batch"},
        {&call.out, 1, H - 1, "out heads"},  {&call.out, 2, LQ + 1, "out length"},
        {&call.out, 3, DV - 1, "out dim"},   {&call.mask, 0, B + 1, "mask batch"},
        {&call.mask, 1, 2 * H, "mask heads"}, {&call.mask, 2, LQ - 1, "mask rows"},
        {&call.mask, 3, LK + 1, "mask cols"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        valid_call(&call);
        cases[i].t->shape[cases[i].dim] = cases[i].value;
        expect_sdpa(&call, QKV_E_SHAPE, cases[i].what);
    }
    /* H not a multiple of Hkv (4 query heads, 3 KV heads) */
    valid_call(&call);
    call.k.shape[1] = call.v.shape[1] = 3;
    expect_sdpa(&call, QKV_E_SHAPE, "H % Hkv != 0");
    /* more KV heads than query heads */
    valid_call(&call);
    call.q.shape[1] = call.out.shape[1] = 1;
    call.mask.shape[1] = 1;
    expect_sdpa(&call, QKV_E_SHAPE, "Hkv > H");
}

Test(errors, bad_strides)
{
    qkv_tensor *tensors[] = {&call.q, &call.k, &call.v, &call.out, &call.mask};
    static const char *const names[] = {"q", "k", "v", "out", "mask"};
    char what[64];
    for (int t = 0; t < 5; t++) {
        static const int64_t bad_inner[] = {0, 2, -1};
        for (int i = 0; i < 3; i++) {
            valid_call(&call);
            tensors[t]->stride[3] = bad_inner[i];
            snprintf(what, sizeof what, "%s stride[3] = %lld", names[t],
                     (long long)bad_inner[i]);
            expect_sdpa(&call, QKV_E_ARG, what);
        }
        for (int d = 0; d < 3; d++) {
            valid_call(&call);
            tensors[t]->stride[d] = -tensors[t]->stride[d];
            snprintf(what, sizeof what, "%s stride[%d] negative", names[t], d);
            expect_sdpa(&call, QKV_E_ARG, what);
            if (t < 4) {   /* broadcasting is for masks only */
                valid_call(&call);
                tensors[t]->stride[d] = 0;
                snprintf(what, sizeof what, "%s stride[%d] = 0", names[t], d);
                expect_sdpa(&call, QKV_E_ARG, what);
            }
        }
    }
}

Test(errors, bad_enums_and_values)
{
    valid_call(&call); call.q.dtype = QKV_F16;            expect_sdpa(&call, QKV_E_ARG, "q F16");
    valid_call(&call); call.q.dtype = QKV_BF16;           expect_sdpa(&call, QKV_E_ARG, "q BF16");
    valid_call(&call); call.out.dtype = QKV_F16;          expect_sdpa(&call, QKV_E_ARG, "out F16");
    valid_call(&call); call.out.dtype = QKV_BF16;         expect_sdpa(&call, QKV_E_ARG, "out BF16");
    valid_call(&call); call.k.dtype = (qkv_dtype)3;       expect_sdpa(&call, QKV_E_ARG, "k dtype 3");
    valid_call(&call); call.k.dtype = (qkv_dtype)-1;      expect_sdpa(&call, QKV_E_ARG, "k dtype -1");
    valid_call(&call); call.v.dtype = (qkv_dtype)99;      expect_sdpa(&call, QKV_E_ARG, "v dtype 99");
    valid_call(&call); call.q.dtype = (qkv_dtype)5;       expect_sdpa(&call, QKV_E_ARG, "q dtype 5");
    valid_call(&call); call.mask.dtype = QKV_F16;         expect_sdpa(&call, QKV_E_ARG, "mask F16");
    valid_call(&call); call.mask.dtype = QKV_BF16;        expect_sdpa(&call, QKV_E_ARG, "mask BF16");
    valid_call(&call); call.p.causal = (qkv_causal)3;     expect_sdpa(&call, QKV_E_ARG, "causal 3");
    valid_call(&call); call.p.causal = (qkv_causal)-1;    expect_sdpa(&call, QKV_E_ARG, "causal -1");
    valid_call(&call); call.p.num_threads = -1;           expect_sdpa(&call, QKV_E_ARG, "threads -1");
    valid_call(&call); call.p.num_threads = INT32_MIN;    expect_sdpa(&call, QKV_E_ARG, "threads min");
    valid_call(&call); call.p.scale = NAN;                expect_sdpa(&call, QKV_E_ARG, "scale NaN");
    valid_call(&call); call.p.scale = INFINITY;           expect_sdpa(&call, QKV_E_ARG, "scale +inf");
    valid_call(&call); call.p.scale = -INFINITY;          expect_sdpa(&call, QKV_E_ARG, "scale -inf");
}

Test(errors, kv_len_out_of_range)
{
    static const int32_t bad[] = {-1, LK + 1, INT32_MIN, INT32_MAX};
    for (int i = 0; i < 4; i++)
        for (int b = 0; b < B; b++) {
            valid_call(&call);
            int32_t kv_len[B] = {LK, 0};   /* both extremes are valid */
            kv_len[b] = bad[i];
            memcpy(call.arena + OFF_KV_LEN, kv_len, sizeof kv_len);
            char what[64];
            snprintf(what, sizeof what, "kv_len[%d] = %d", b, (int)bad[i]);
            expect_sdpa(&call, QKV_E_ARG, what);
        }
}

/* Huge shapes and strides over a dummy pointer: validation must reject
   them from the arithmetic alone, before touching memory. */
Test(errors, extents_that_overflow)
{
    static float dummy[4];
    const int64_t big = (int64_t)1 << 33, wide = (int64_t)1 << 31;
    qkv_tensor q = {.data = dummy, .shape = {1, 1, big, wide}, .stride = {0, 0, wide, 1}};
    qkv_tensor k = {.data = dummy, .shape = {1, 1, 1, wide}, .stride = {0, 0, wide, 1}};
    qkv_tensor v = {.data = dummy, .shape = {1, 1, 1, 1}, .stride = {1, 1, 1, 1}};
    qkv_tensor out = {.data = dummy + 1, .shape = {1, 1, big, 1}, .stride = {0, 0, 1, 1}};
    /* q spans 2^64 elements */
    cr_assert_eq(qkv_sdpa(&q, &k, &v, &out, NULL), QKV_E_OVERFLOW, "q element count");

    /* a stride * (size - 1) product that overflows int64 */
    q.shape[2] = 4;
    q.stride[2] = INT64_MAX / 2;
    out.shape[2] = 4;
    cr_assert_eq(qkv_sdpa(&q, &k, &v, &out, NULL), QKV_E_OVERFLOW, "q stride product");

    /* elements fit int64, bytes do not */
    q.shape[2] = 2;
    q.stride[2] = (int64_t)1 << 62;
    out.shape[2] = 2;
    cr_assert_eq(qkv_sdpa(&q, &k, &v, &out, NULL), QKV_E_OVERFLOW, "q byte count");

    /* a span that runs past the end of the address space */
    qkv_tensor small = {.data = (void *)(UINTPTR_MAX - 63), .shape = {1, 1, 4, 16},
                        .stride = {64, 64, 16, 1}};
    qkv_tensor k2 = {.data = dummy, .shape = {1, 1, 1, 16}, .stride = {16, 16, 16, 1}};
    qkv_tensor v2 = {.data = dummy, .shape = {1, 1, 1, 1}, .stride = {1, 1, 1, 1}};
    qkv_tensor out2 = {.data = dummy + 2, .shape = {1, 1, 4, 1}, .stride = {4, 4, 1, 1}};
    cr_assert_eq(qkv_sdpa(&small, &k2, &v2, &out2, NULL), QKV_E_OVERFLOW, "address wrap");

    /* weights of B*H*Lq*Lk cells overflow while every tensor fits */
    static float w[1];
    qkv_tensor q3 = {.data = dummy, .shape = {1, 1, (int64_t)1 << 40, 1}, .stride = {0, 0, 0, 1}};
    q3.stride[2] = 1;
    qkv_tensor k3 = {.data = dummy, .shape = {1, 1, (int64_t)1 << 40, 1}, .stride = {0, 0, 1, 1}};
    qkv_tensor v3 = {.data = dummy, .shape = {1, 1, (int64_t)1 << 40, 1}, .stride = {0, 0, 1, 1}};
    qkv_tensor out3 = {.data = (void *)((uintptr_t)dummy + ((uintptr_t)1 << 44)),
                       .shape = {1, 1, (int64_t)1 << 40, 1}, .stride = {0, 0, 1, 1}};
    qkv_sdpa_params p = {.weights = w};
    cr_assert_eq(qkv_sdpa(&q3, &k3, &v3, &out3, &p), QKV_E_OVERFLOW, "weights cells");
}

/* The view helpers with sizes whose products overflow int64 (h*s*d =
   2^63 with b = 2 and b = 1; s*d = 2^64): the view must read as too
   large (QKV_E_OVERFLOW), not as a wrapped, negative stride. */
Test(errors, view_helpers_that_overflow)
{
    static float dummy[4];
    const int64_t n = (int64_t)1 << 21;
    const int64_t shapes[][4] = {{2, n, n, n}, {1, n, n, n}, {3, 1, (int64_t)1 << 62, 4}};
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int64_t *sh = shapes[c];
        const qkv_tensor views[2] = {
            qkv_tensor_bhsd(dummy, QKV_F32, sh[0], sh[1], sh[2], sh[3]),
            qkv_tensor_bshd(dummy, QKV_F32, sh[0], sh[2], sh[1], sh[3]),
        };
        for (int which = 0; which < 2; which++) {
            const qkv_tensor *q = &views[which];
            for (int d = 0; d < 4; d++)
                cr_assert_geq(q->stride[d], 0, "case %zu %s: stride[%d] %lld", c,
                              which ? "bshd" : "bhsd", d, (long long)q->stride[d]);
            qkv_tensor out = *q;
            out.data = dummy + 2;
            cr_assert_eq(qkv_sdpa(q, q, q, &out, NULL), QKV_E_OVERFLOW, "case %zu %s", c,
                         which ? "bshd" : "bhsd");
        }
    }
}

/* ---- aliasing ---------------------------------------------------- */

Test(errors, out_overlaps_an_input)
{
    static const struct { int off; const char *what; } inputs[] = {
        {OFF_Q, "q"}, {OFF_K + 3, "k"}, {OFF_V + 10, "v"}, {OFF_MASK + 1, "mask"},
        {OFF_KV_LEN - 2, "kv_len"},
    };
    for (int i = 0; i < 5; i++) {
        valid_call(&call);
        call.out.data = call.arena + inputs[i].off;
        expect_sdpa(&call, QKV_E_ALIAS, inputs[i].what);
    }
    /* interleaved: out's rows fall into the padding of a strided q */
    valid_call(&call);
    call.q.stride[2] = 2 * D + DV;
    call.q.stride[1] = call.q.stride[2] * LQ;
    call.q.stride[0] = call.q.stride[1] * H;
    call.out.data = call.arena + OFF_Q + 2 * D;
    call.out.stride[2] = 2 * D + DV;
    call.out.stride[1] = call.out.stride[2] * LQ;
    call.out.stride[0] = call.out.stride[1] * H;
    call.p.weights = call.p.lse = NULL;
    call.p.mask = NULL;
    call.p.kv_len = NULL;
    expect_sdpa(&call, QKV_E_ALIAS, "out interleaved with q");
}

Test(errors, weights_and_lse_overlap)
{
    static const struct { int off; const char *what; } places[] = {
        {OFF_Q + 5, "q"}, {OFF_K, "k"}, {OFF_V + 7, "v"}, {OFF_MASK, "mask"},
        {OFF_KV_LEN, "kv_len"}, {OFF_OUT + 11, "out"},
    };
    for (int i = 0; i < 6; i++) {
        char what[64];
        valid_call(&call);
        call.p.weights = call.arena + places[i].off;
        snprintf(what, sizeof what, "weights over %s", places[i].what);
        expect_sdpa(&call, QKV_E_ALIAS, what);
        valid_call(&call);
        call.p.lse = call.arena + places[i].off;
        snprintf(what, sizeof what, "lse over %s", places[i].what);
        expect_sdpa(&call, QKV_E_ALIAS, what);
    }
    valid_call(&call);
    call.p.lse = call.arena + OFF_WEIGHTS + 3;
    expect_sdpa(&call, QKV_E_ALIAS, "lse over weights");
    /* just touching is not overlapping */
    valid_call(&call);
    call.p.lse = call.arena + OFF_WEIGHTS + B * H * LQ * LK;
    expect_sdpa(&call, QKV_OK, "lse right after weights");
}

Test(errors, out_overlaps_itself)
{
    valid_call(&call);
    call.out.stride[2] = DV - 1;
    expect_sdpa(&call, QKV_E_ALIAS, "out stride[2] < Dv");
    valid_call(&call);
    call.out.stride[1] = DV;   /* heads on top of each other's rows */
    expect_sdpa(&call, QKV_E_ALIAS, "out stride[1] too small");
    valid_call(&call);
    call.out.stride[0] = call.out.stride[1];
    expect_sdpa(&call, QKV_E_ALIAS, "out batches overlap");
}

/* ------------------------------------------------------------------ */
/* mha                                                                */
/* ------------------------------------------------------------------ */

enum { E = 8, NH = 2, MB = 2, MLQ = 3, MLK = 4 };

typedef struct mha_bufs {
    float w[4][E * E], b[4][E];
    float x_q[MB * MLQ * E], x_k[MB * MLK * E], x_v[MB * MLK * E];
    float y[MB * MLQ * E], weights[MB * NH * MLQ * MLK], avg[MB * MLQ * MLK];
    int32_t kv_len[MB];
} mha_bufs;

static mha_bufs mb;

static void mha_fill(void)
{
    test_rng r = rng_seeded(2);
    float *inputs = &mb.w[0][0];
    for (size_t i = 0; i < (size_t)(mb.y - inputs); i++)
        inputs[i] = (float)(0.3 * rng_normal(&r));
    mb.kv_len[0] = MLK;
    mb.kv_len[1] = 1;
    fill_sentinel(mb.y, (int64_t)(sizeof mb.y + sizeof mb.weights + sizeof mb.avg) / 4);
}

static qkv_mha_weights mha_weights(void)
{
    return (qkv_mha_weights){mb.w[0], mb.w[1], mb.w[2], mb.w[3],
                             mb.b[0], mb.b[1], mb.b[2], mb.b[3]};
}

static void expect_create(const qkv_mha_config *cfg, const qkv_mha_weights *w,
                          qkv_status want, const char *what)
{
    qkv_mha *sentinel = (qkv_mha *)&mb, *m = sentinel;
    const qkv_status got = qkv_mha_create(&m, cfg, w);
    cr_assert_eq(got, want, "create %s: got %s, want %s", what, qkv_status_str(got),
                 qkv_status_str(want));
    if (want != QKV_OK)
        cr_assert_eq(m, sentinel, "create %s: *out written on error", what);
    else
        qkv_mha_destroy(m);
}

Test(errors, mha_create)
{
    mha_fill();
    const qkv_mha_config ok = {.d_model = E, .n_heads = NH, .bias = 1};
    qkv_mha_weights w = mha_weights();
    expect_create(&ok, &w, QKV_OK, "valid");
    cr_assert_eq(qkv_mha_create(NULL, &ok, &w), QKV_E_NULL, "NULL out");
    expect_create(NULL, &w, QKV_E_NULL, "NULL cfg");
    expect_create(&ok, NULL, QKV_E_NULL, "NULL weights");
    for (int i = 0; i < 8; i++) {
        qkv_mha_weights bad = mha_weights();
        const float **slots[8] = {&bad.w_q, &bad.w_k, &bad.w_v, &bad.w_o,
                                  &bad.b_q, &bad.b_k, &bad.b_v, &bad.b_o};
        *slots[i] = NULL;
        expect_create(&ok, &bad, QKV_E_NULL, "a NULL weight or bias (bias on)");
        if (i >= 4) {   /* biases are ignored without bias */
            qkv_mha_config nobias = ok;
            nobias.bias = 0;
            expect_create(&nobias, &bad, QKV_OK, "a NULL bias with bias off");
        }
    }
    struct { qkv_mha_config cfg; const char *what; } bad[] = {
        {{.d_model = 0, .n_heads = NH}, "d_model 0"},
        {{.d_model = -E, .n_heads = NH}, "d_model < 0"},
        {{.d_model = E, .n_heads = 0}, "n_heads 0"},
        {{.d_model = E, .n_heads = -2}, "n_heads < 0"},
        {{.d_model = E, .n_heads = NH, .n_kv_heads = -1}, "n_kv_heads < 0"},
        {{.d_model = E, .n_heads = 4, .n_kv_heads = 3}, "n_heads % n_kv_heads"},
        {{.d_model = E, .n_heads = 3}, "d_model % n_heads, head_dim 0"},
        {{.d_model = E, .n_heads = NH, .head_dim = -4}, "head_dim < 0"},
        {{.d_model = E, .n_heads = NH, .kdim = -1}, "kdim < 0"},
        {{.d_model = E, .n_heads = NH, .vdim = -8}, "vdim < 0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_create(&bad[i].cfg, &w, QKV_E_SHAPE, bad[i].what);
    /* head_dim given explicitly: n_heads need not divide d_model */
    const qkv_mha_config explicit_hd = {.d_model = E, .n_heads = 3, .head_dim = 2};
    expect_create(&explicit_hd, &w, QKV_OK, "n_heads 3 with head_dim 2");
}

static qkv_mha *mha_layer(void)
{
    mha_fill();
    const qkv_mha_config cfg = {.d_model = E, .n_heads = NH, .bias = 1};
    qkv_mha_weights w = mha_weights();
    qkv_mha *m = NULL;
    cr_assert_eq(qkv_mha_create(&m, &cfg, &w), QKV_OK);
    return m;
}

typedef struct fwd_args {
    const qkv_mha *m;
    int64_t batch, lq, lk;
    const float *x_q, *x_k, *x_v;
    float *y;
    qkv_mha_params p;
} fwd_args;

static fwd_args valid_forward(const qkv_mha *m)
{
    return (fwd_args){m, MB, MLQ, MLK, mb.x_q, mb.x_k, mb.x_v, mb.y,
                      {.kv_len = mb.kv_len, .weights = mb.weights, .weights_avg = mb.avg}};
}

static void expect_forward(const fwd_args *a, qkv_status want, const char *what)
{
    fill_sentinel(mb.y, (int64_t)(sizeof mb.y + sizeof mb.weights + sizeof mb.avg) / 4);
    static mha_bufs before;
    memcpy(&before, &mb, sizeof mb);
    const qkv_status got = qkv_mha_forward(a->m, a->batch, a->x_q, a->lq, a->x_k, a->x_v,
                                           a->lk, a->y, &a->p);
    cr_assert_eq(got, want, "forward %s: got %s, want %s", what, qkv_status_str(got),
                 qkv_status_str(want));
    if (want != QKV_OK)
        cr_assert(memcmp(&before, &mb, sizeof mb) == 0, "forward %s: wrote on error", what);
}

Test(errors, mha_forward)
{
    qkv_mha *m = mha_layer();
    fwd_args a = valid_forward(m);
    expect_forward(&a, QKV_OK, "valid");
    cr_assert(isfinite(mb.y[0]) && isfinite(mb.avg[0]));

    a = valid_forward(m); a.m = NULL;     expect_forward(&a, QKV_E_NULL, "NULL layer");
    a = valid_forward(m); a.x_q = NULL;   expect_forward(&a, QKV_E_NULL, "NULL x_q");
    a = valid_forward(m); a.x_k = NULL;   expect_forward(&a, QKV_E_NULL, "NULL x_k");
    a = valid_forward(m); a.x_v = NULL;   expect_forward(&a, QKV_E_NULL, "NULL x_v");
    a = valid_forward(m); a.y = NULL;     expect_forward(&a, QKV_E_NULL, "NULL y");
    static const int64_t bad_sizes[] = {0, -1};
    for (int i = 0; i < 2; i++) {
        a = valid_forward(m); a.batch = bad_sizes[i]; expect_forward(&a, QKV_E_SHAPE, "batch");
        a = valid_forward(m); a.lq = bad_sizes[i];    expect_forward(&a, QKV_E_SHAPE, "lq");
        a = valid_forward(m); a.lk = bad_sizes[i];    expect_forward(&a, QKV_E_SHAPE, "lk");
    }
    a = valid_forward(m); a.y = (float *)mb.x_q + 1;  expect_forward(&a, QKV_E_ALIAS, "y over x_q");
    a = valid_forward(m); a.y = (float *)mb.x_k;      expect_forward(&a, QKV_E_ALIAS, "y over x_k");
    a = valid_forward(m); a.y = (float *)mb.x_v + 5;  expect_forward(&a, QKV_E_ALIAS, "y over x_v");
    a = valid_forward(m); a.p.weights = (float *)mb.x_q;
    expect_forward(&a, QKV_E_ALIAS, "weights over x_q");
    a = valid_forward(m); a.p.weights_avg = mb.y + 2;
    expect_forward(&a, QKV_E_ALIAS, "weights_avg over y");
    a = valid_forward(m); a.p.kv_len = (const int32_t *)(mb.y + 1);
    expect_forward(&a, QKV_E_ALIAS, "y over kv_len");
    a = valid_forward(m); a.p.num_threads = -1;
    expect_forward(&a, QKV_E_ARG, "num_threads -1");
    a = valid_forward(m); a.p.causal = (qkv_causal)7;
    expect_forward(&a, QKV_E_ARG, "causal 7");
    a = valid_forward(m); a.p.causal = (qkv_causal)-1;
    expect_forward(&a, QKV_E_ARG, "causal -1");
    static const int32_t bad_len[] = {-1, MLK + 1};
    for (int i = 0; i < 2; i++) {
        mb.kv_len[1] = bad_len[i];
        a = valid_forward(m);
        expect_forward(&a, QKV_E_ARG, "kv_len out of range");
        mb.kv_len[1] = 1;
    }
    mb.kv_len[1] = 0;   /* zero-length keys are allowed: fully blocked rows */
    a = valid_forward(m);
    expect_forward(&a, QKV_OK, "kv_len 0");
    for (int i = MLQ * E; i < MB * MLQ * E; i++)
        cr_assert_eq(mb.y[i], mb.b[3][i % E], "a fully blocked batch gives y = b_o");
    qkv_mha_destroy(m);
}
