/*
 * libFuzzer target for the multi-head layer: qkv_mha_create from a
 * decoded configuration (with bad sizes: 0 meaning "default", negative,
 * huge; n_heads not divisible; NULL weight pointers), then, if it
 * succeeds, qkv_mha_forward with decoded batch/lq/lk (incl. bad values),
 * self-attention, shared K/V or separate inputs, causal (incl. bad),
 * kv_len (in and out of range), weights and weights_avg, window, softcap,
 * ALiBi, sinks, NULL pointers, outputs placed over inputs or right after
 * them, num_threads and the ISA.
 *
 * As in fuzz_sdpa.c: exactly-sized heap blocks, an independent list of
 * the statuses each call may return, nothing written on error, only y,
 * weights and weights_avg written on success, and (moderate values, no
 * extra features) agreement with ref_mha.
 */
#include <math.h>

#include "fuzz_common.h"
#include "hardening/hard_util.h"
#include "ref/ref.h"

enum obj { O_XQ, O_XK, O_XV, O_Y, O_KVLEN, O_W, O_AVG, O_ALIBI, O_SINKS, O_COUNT };

/* The configuration with defaults resolved; ok = 0 if it is not a layer
   (SHAPE), huge = 1 if a size is one of the huge fault values. */
typedef struct resolved {
    int64_t E, H, Hkv, hd, kdim, vdim;
    int ok, huge;
} resolved;

static int is_huge(int64_t x)
{
    return x > (1 << 20);
}

static resolved resolve(const qkv_mha_config *c)
{
    resolved r = {0};
    const int64_t f[6] = {c->d_model, c->n_heads, c->n_kv_heads, c->head_dim, c->kdim, c->vdim};
    for (int i = 0; i < 6; i++)
        r.huge |= is_huge(f[i]);
    if (c->d_model <= 0 || c->n_heads <= 0 || c->n_kv_heads < 0 || c->head_dim < 0 ||
        c->kdim < 0 || c->vdim < 0)
        return r;
    r.E = c->d_model;
    r.H = c->n_heads;
    r.Hkv = c->n_kv_heads ? c->n_kv_heads : c->n_heads;
    r.kdim = c->kdim ? c->kdim : c->d_model;
    r.vdim = c->vdim ? c->vdim : c->d_model;
    if (r.H % r.Hkv != 0 || (c->head_dim == 0 && c->d_model % c->n_heads != 0))
        return r;
    r.hd = c->head_dim ? c->head_dim : c->d_model / c->n_heads;
    r.ok = 1;
    return r;
}

static float *floats(size_t n, uint64_t *st, float amp)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p)
        abort();
    for (size_t i = 0; i < n; i++)
        p[i] = hu_uniform(st, -amp, amp);
    return p;
}

/* ---- creation ---------------------------------------------------- */

typedef struct layer_inputs {
    qkv_mha_config cfg;
    resolved r;
    float *arr[8];   /* w_q w_k w_v w_o b_q b_k b_v b_o, exactly sized */
    qkv_mha_weights w;
} layer_inputs;

static void decode_config(fz_reader *rd, qkv_mha_config *c)
{
    memset(c, 0, sizeof *c);
    c->d_model = fz_small(rd, 48);
    c->n_heads = fz_small(rd, 6);
    const uint8_t kv = fz_byte(rd);
    c->n_kv_heads = kv % 4 == 0 ? 0 : kv % 4 == 1 ? 1 : kv % 4 == 2 ? c->n_heads : fz_small(rd, 4);
    const uint8_t hd = fz_byte(rd);
    c->head_dim = hd % 2 ? 0 : fz_small(rd, 16);
    const uint8_t kvd = fz_byte(rd);
    c->kdim = kvd & 1 ? fz_small(rd, 40) : 0;
    c->vdim = kvd & 2 ? (kvd & 4 ? c->kdim : fz_small(rd, 40)) : 0;
    c->bias = fz_byte(rd) & 1;
    const uint8_t fault = fz_byte(rd);
    if (fault >= 224) {
        int64_t *fields[6] = {&c->d_model, &c->n_heads, &c->n_kv_heads, &c->head_dim,
                              &c->kdim, &c->vdim};
        *fields[fault % 6] = fz_bad_size(rd);
    }
}

static void make_weights(layer_inputs *li, uint64_t *st, uint8_t null_choice)
{
    const resolved *r = &li->r;
    size_t n[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    if (r->ok && !r->huge) {
        const size_t qw = (size_t)(r->H * r->hd), kvw = (size_t)(r->Hkv * r->hd);
        const size_t full[8] = {qw * (size_t)r->E, kvw * (size_t)r->kdim,
                                kvw * (size_t)r->vdim, (size_t)r->E * qw,
                                qw, kvw, kvw, (size_t)r->E};
        memcpy(n, full, sizeof n);
    }
    for (int i = 0; i < 8; i++)
        li->arr[i] = floats(n[i], st, 0.3f);
    const float **slots[8] = {&li->w.w_q, &li->w.w_k, &li->w.w_v, &li->w.w_o,
                              &li->w.b_q, &li->w.b_k, &li->w.b_v, &li->w.b_o};
    for (int i = 0; i < 8; i++)
        *slots[i] = null_choice % 32 == i + 1 ? NULL : li->arr[i];
}

static fz_expect create_statuses(const layer_inputs *li, int null_out, int null_cfg, int null_w)
{
    if (null_cfg || null_w)
        return FZ_BIT(QKV_E_NULL);
    fz_expect e = 0;
    const qkv_mha_weights *w = &li->w;
    if (null_out || !w->w_q || !w->w_k || !w->w_v || !w->w_o ||
        (li->cfg.bias && (!w->b_q || !w->b_k || !w->b_v || !w->b_o)))
        e |= FZ_BIT(QKV_E_NULL);
    if (!li->r.ok)
        e |= FZ_BIT(QKV_E_SHAPE);
    else if (li->r.huge)
        e |= FZ_BIT(QKV_E_OVERFLOW) | FZ_BIT(QKV_E_NOMEM);
    return e;
}

/* ---- forward ------------------------------------------------------- */

typedef struct fwd {
    int64_t batch, lq, lk;
    int inputs;   /* 0 separate, 1 self-attention, 2 shared K/V */
    qkv_mha_params p;
    int want_w, want_avg, null_choice, alias, moderate;
    size_t misalign[O_COUNT];
    int32_t kv_len_vals[8];
    float alibi_vals[8], sink_vals[8];
} fwd;

static void decode_forward(fz_reader *rd, const resolved *r, fwd *f)
{
    memset(f, 0, sizeof *f);
    f->batch = fz_small(rd, 3);
    f->lq = fz_small(rd, 20);
    f->lk = fz_small(rd, 70);
    const uint8_t fault = fz_byte(rd);
    if (fault >= 232) {
        int64_t *sizes[3] = {&f->batch, &f->lq, &f->lk};
        *sizes[fault % 3] = fz_bad_size(rd);
    }
    const uint8_t in = fz_byte(rd) % 3;
    if (in == 1 && r->kdim == r->E && r->vdim == r->E) {
        f->inputs = 1;
        f->lk = f->lq;
    } else if (in == 2 && r->kdim == r->vdim) {
        f->inputs = 2;
    }
    const uint8_t flags = fz_byte(rd);
    f->want_w = flags & 1;
    f->want_avg = (flags >> 1) & 1;
    f->p.causal = (qkv_causal)((int[]){0, 1, 2, 0, 1, 2, 3, -2})[(flags >> 2) % 8];
    if (flags & 32) {
        f->p.kv_len = f->kv_len_vals;
        for (int i = 0; i < 8; i++) {
            const uint8_t x = fz_byte(rd);
            const int64_t lk = f->lk > 0 && f->lk < 1000 ? f->lk : 1;
            f->kv_len_vals[i] = x >= 250 ? (x % 2 ? -1 : (int32_t)lk + 1) : (int32_t)(x % (lk + 1));
        }
    }
    const int threads = fz_byte(rd);
    f->p.num_threads = threads % 10 - 1;
    const uint8_t extras = fz_byte(rd);
    if (extras & 1) {
        f->p.window = 1;
        f->p.window_left = (int64_t)fz_byte(rd) % 40 - 2;
        f->p.window_right = (int64_t)fz_byte(rd) % 40 - 2;
    }
    if (extras & 2) {
        const uint8_t x = fz_byte(rd);
        f->p.softcap = x == 255 ? NAN : x == 254 ? -2.0f : (float)x / 16.0f;
    }
    if (extras & 4) {
        f->p.alibi_slopes = f->alibi_vals;
        for (int i = 0; i < 8; i++)
            f->alibi_vals[i] = 0.5f / (float)(i + 1);
        if (extras & 16)
            f->alibi_vals[fz_byte(rd) % 8] = NAN;
    }
    if (extras & 8) {
        f->p.sinks = f->sink_vals;
        for (int i = 0; i < 8; i++)
            f->sink_vals[i] = (float)(i % 3) - 1.0f;
        if (extras & 32)
            f->sink_vals[fz_byte(rd) % 8] = fz_byte(rd) % 2 ? INFINITY : -INFINITY;
    }
    f->null_choice = fz_byte(rd) % 16;
    f->alias = fz_byte(rd) % 12;
    f->moderate = fz_byte(rd) % 8 != 7;
    for (int i = 0; i < O_COUNT; i++)
        f->misalign[i] = fz_byte(rd) % 4 * 4;
}

typedef struct span { uintptr_t lo, hi; } span;

static int overlap(span a, span b)
{
    return a.lo < b.hi && b.lo < a.hi;
}

static span span_of(const void *p, int64_t n, size_t size)
{
    return (span){(uintptr_t)p, (uintptr_t)p + (uintptr_t)n * size};
}

/* Sizes too large for any real buffer: the call must fail. */
static int too_big(int64_t x)
{
    return x > (1 << 20);
}

static fz_expect forward_statuses(const resolved *r, const fwd *f, const void *const ptr[O_COUNT],
                                  const qkv_mha *m, const qkv_mha_params *p)
{
    if (!m || !ptr[O_XQ] || !ptr[O_XK] || !ptr[O_XV] || !ptr[O_Y])
        return FZ_BIT(QKV_E_NULL);
    fz_expect e = 0;
    if ((int)p->causal < 0 || (int)p->causal > 2 || p->num_threads < 0 ||
        !isfinite(p->softcap) || p->softcap < 0.0f)
        e |= FZ_BIT(QKV_E_ARG);
    for (int64_t h = 0; p->alibi_slopes && h < r->H; h++)
        if (!isfinite(p->alibi_slopes[h]))
            e |= FZ_BIT(QKV_E_ARG);
    for (int64_t h = 0; p->sinks && h < r->H; h++)
        if (isnan(p->sinks[h]) || p->sinks[h] == INFINITY)
            e |= FZ_BIT(QKV_E_ARG);
    if (f->batch <= 0 || f->lq <= 0 || f->lk <= 0)
        return e | FZ_BIT(QKV_E_SHAPE);
    if (too_big(f->batch) || too_big(f->lq) || too_big(f->lk))
        return e | FZ_BIT(QKV_E_OVERFLOW) | FZ_BIT(QKV_E_NOMEM);
    for (int64_t b = 0; p->kv_len && b < f->batch; b++)
        if (p->kv_len[b] < 0 || p->kv_len[b] > f->lk)
            e |= FZ_BIT(QKV_E_ARG);

    span in[6], outs[3];
    int n_in = 0, n_out = 0;
    in[n_in++] = span_of(ptr[O_XQ], f->batch * f->lq * r->E, 4);
    in[n_in++] = span_of(ptr[O_XK], f->batch * f->lk * r->kdim, 4);
    in[n_in++] = span_of(ptr[O_XV], f->batch * f->lk * r->vdim, 4);
    if (p->kv_len)
        in[n_in++] = span_of(p->kv_len, f->batch, 4);
    if (p->alibi_slopes)
        in[n_in++] = span_of(p->alibi_slopes, r->H, 4);
    if (p->sinks)
        in[n_in++] = span_of(p->sinks, r->H, 4);
    outs[n_out++] = span_of(ptr[O_Y], f->batch * f->lq * r->E, 4);
    if (p->weights)
        outs[n_out++] = span_of(p->weights, f->batch * r->H * f->lq * f->lk, 4);
    if (p->weights_avg)
        outs[n_out++] = span_of(p->weights_avg, f->batch * f->lq * f->lk, 4);
    for (int o = 0; o < n_out; o++) {
        for (int i = 0; i < n_in; i++)
            if (overlap(outs[o], in[i]))
                e |= FZ_BIT(QKV_E_ALIAS);
        for (int o2 = o + 1; o2 < n_out; o2++)
            if (overlap(outs[o], outs[o2]))
                e |= FZ_BIT(QKV_E_ALIAS);
    }
    return e;
}

static void check_forward(layer_inputs *li, const qkv_mha *m, fz_reader *rd, uint64_t *st)
{
    const resolved *r = &li->r;
    fwd f;
    decode_forward(rd, r, &f);
    const int sane = f.batch > 0 && f.lq > 0 && f.lk > 0 && !too_big(f.batch) &&
                     !too_big(f.lq) && !too_big(f.lk);
    const int64_t nb = sane ? f.batch : 1, nq = sane ? f.lq : 1, nk = sane ? f.lk : 1;
    size_t bytes[O_COUNT] = {
        (size_t)(nb * nq * r->E) * 4, (size_t)(nb * nk * r->kdim) * 4,
        (size_t)(nb * nk * r->vdim) * 4, (size_t)(nb * nq * r->E) * 4, 8 * 4,
        (size_t)(nb * r->H * nq * nk) * 4, (size_t)(nb * nq * nk) * 4, 8 * 4, 8 * 4,
    };
    int block[O_COUNT];
    size_t offset[O_COUNT];
    for (int i = 0; i < O_COUNT; i++) {
        block[i] = i;
        offset[i] = f.misalign[i];
    }
    switch (f.alias) {
    case 1: block[O_Y] = O_XQ; offset[O_Y] = offset[O_XQ] + bytes[O_XQ] / 8 * 4; break;
    case 2: block[O_Y] = O_XQ; offset[O_Y] = offset[O_XQ] + bytes[O_XQ]; break;   /* valid */
    case 3: block[O_W] = O_Y; offset[O_W] = offset[O_Y] + bytes[O_Y] - 4; break;
    case 4: block[O_AVG] = O_KVLEN; offset[O_AVG] = offset[O_KVLEN]; break;
    case 5: block[O_AVG] = O_W; offset[O_AVG] = offset[O_W] + bytes[O_W] / 8 * 4; break;
    case 6: block[O_Y] = O_XV; offset[O_Y] = offset[O_XV]; break;
    case 7: block[O_W] = O_ALIBI; offset[O_W] = offset[O_ALIBI]; break;
    default: break;
    }
    fz_arena a = {0};
    for (int i = 0; i < O_COUNT; i++)
        fz_reserve(&a, block[i], offset[i], bytes[i]);
    fz_alloc(&a);
    void *ptr[O_COUNT];
    for (int i = 0; i < O_COUNT; i++)
        ptr[i] = a.mem[block[i]] + offset[i];

    for (int i = O_XQ; i <= O_XV; i++)
        for (size_t j = 0; j < bytes[i] / 4; j++)
            ((float *)ptr[i])[j] = f.moderate ? hu_uniform(st, -1.0f, 1.0f) : 1e30f;
    if (f.inputs == 1)
        ptr[O_XK] = ptr[O_XV] = ptr[O_XQ];
    else if (f.inputs == 2)
        ptr[O_XV] = ptr[O_XK];
    qkv_mha_params p = f.p;
    if (p.kv_len)
        p.kv_len = memcpy(ptr[O_KVLEN], f.kv_len_vals, sizeof f.kv_len_vals);
    if (p.alibi_slopes)
        p.alibi_slopes = memcpy(ptr[O_ALIBI], f.alibi_vals, sizeof f.alibi_vals);
    if (p.sinks)
        p.sinks = memcpy(ptr[O_SINKS], f.sink_vals, sizeof f.sink_vals);
    p.weights = f.want_w ? ptr[O_W] : NULL;
    p.weights_avg = f.want_avg ? ptr[O_AVG] : NULL;
    memset(ptr[O_Y], 0xFF, bytes[O_Y]);
    if (p.weights)
        memset(p.weights, 0xFF, bytes[O_W]);
    if (p.weights_avg)
        memset(p.weights_avg, 0xFF, bytes[O_AVG]);
    if (f.null_choice >= 1 && f.null_choice <= 4)
        ptr[f.null_choice - 1] = NULL;
    const qkv_mha *layer = f.null_choice == 5 ? NULL : m;
    const int null_params = f.null_choice == 6;
    const qkv_mha_params defaults = {0};
    const qkv_mha_params *effective = null_params ? &defaults : &p;

    const fz_expect allowed = forward_statuses(r, &f, (const void *const *)ptr, layer, effective);
    if (!allowed) {
        fz_mark_writable(&a, ptr[O_Y], bytes[O_Y]);
        if (effective->weights)
            fz_mark_writable(&a, effective->weights, bytes[O_W]);
        if (effective->weights_avg)
            fz_mark_writable(&a, effective->weights_avg, bytes[O_AVG]);
    }
    fz_snapshot(&a);
    /* The layer holds its own copy of the weights: NaN in the caller's
       arrays during the call must not matter (restored for the reference). */
    float saved[8];
    for (int i = 0; i < 8; i++) {
        saved[i] = li->arr[i][0];
        li->arr[i][0] = NAN;
    }
    const qkv_status got = qkv_mha_forward(layer, f.batch, ptr[O_XQ], f.lq, ptr[O_XK],
                                           ptr[O_XV], f.lk, ptr[O_Y], null_params ? NULL : &p);
    for (int i = 0; i < 8; i++)
        li->arr[i][0] = saved[i];
    if (allowed ? !(allowed & FZ_BIT(got)) || got == QKV_OK : got != QKV_OK)
        FZ_FAIL("qkv_mha_forward returned %s; allowed: %#x", qkv_status_str(got), allowed);
    int bad_block;
    const long bad = fz_find_bad_write(&a, got == QKV_OK, &bad_block);
    if (bad >= 0)
        FZ_FAIL("qkv_mha_forward (%s) changed byte %ld of block %d", qkv_status_str(got), bad,
                bad_block);

    const int features = effective->window || effective->softcap != 0.0f ||
                         effective->alibi_slopes || effective->sinks;
    if (got == QKV_OK && f.moderate && !features) {
        const int64_t ny = f.batch * f.lq * r->E, nw = f.batch * r->H * f.lq * f.lk,
                      navg = f.batch * f.lq * f.lk;
        double *y = malloc((size_t)ny * 8), *w = malloc((size_t)nw * 8), *avg = malloc((size_t)navg * 8);
        if (!y || !w || !avg ||
            ref_mha(&li->cfg, &li->w, f.batch, ptr[O_XQ], f.lq, ptr[O_XK], ptr[O_XV], f.lk,
                    effective, y, w, avg))
            abort();
        if (!hu_close("y", ptr[O_Y], y, ny, 2e-6))
            FZ_FAIL("y differs from ref_mha");
        if (effective->weights && !hu_close("weights", effective->weights, w, nw, 2e-6))
            FZ_FAIL("weights differ from ref_mha");
        if (effective->weights_avg && !hu_close("weights_avg", effective->weights_avg, avg, navg, 2e-6))
            FZ_FAIL("weights_avg differ from ref_mha");
        free(y); free(w); free(avg);
    }
    fz_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader rd = {data, size};
    const uint8_t isa = fz_byte(&rd);
    if (qkv_isa_set((qkv_isa)(isa % 5)) != (qkv_isa_supported((qkv_isa)(isa % 5)) ? QKV_OK
                                                                               : QKV_E_UNSUPPORTED))
        FZ_FAIL("qkv_isa_set disagrees with qkv_isa_supported");
    layer_inputs li;
    memset(&li, 0, sizeof li);
    decode_config(&rd, &li.cfg);
    li.r = resolve(&li.cfg);
    uint64_t st = fz_byte(&rd) * 0x10001ull + 7;
    const uint8_t null_choice = fz_byte(&rd);
    make_weights(&li, &st, null_choice);
    const int null_out = null_choice % 32 == 9, null_cfg = null_choice % 32 == 10,
              null_w = null_choice % 32 == 11;

    const fz_expect allowed = create_statuses(&li, null_out, null_cfg, null_w);
    qkv_mha *sentinel = (qkv_mha *)&li, *m = sentinel;
    const qkv_status got = qkv_mha_create(null_out ? NULL : &m, null_cfg ? NULL : &li.cfg,
                                          null_w ? NULL : &li.w);
    if (allowed ? !(allowed & FZ_BIT(got)) || got == QKV_OK : got != QKV_OK)
        FZ_FAIL("qkv_mha_create returned %s; allowed: %#x", qkv_status_str(got), allowed);
    if (got != QKV_OK && m != sentinel)
        FZ_FAIL("qkv_mha_create wrote *out on error");
    if (got == QKV_OK) {
        check_forward(&li, m, &rd, &st);
        qkv_mha_destroy(m);
    }
    for (int i = 0; i < 8; i++)
        free(li.arr[i]);
    return 0;
}
