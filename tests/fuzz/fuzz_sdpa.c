/*
 * libFuzzer target for qkv_sdpa. The input bytes choose one call: small
 * shapes (with faults: 0, negative, huge), a layout per tensor (contiguous,
 * token-major, padded, heads-outer, overlapping rows, and bad strides:
 * inner stride != 1, negative, zero, huge), K/V dtypes (F32, F16, BF16,
 * bad), a mask (full, broadcast over batch/heads/rows, bad shape, bad
 * dtype), kv_len (in and out of range), causal (incl. bad values), scale
 * (incl. NaN, inf, negative), window, softcap, ALiBi and sinks, weights
 * and lse outputs, NULL pointers, outputs placed over inputs or next to
 * them, num_threads and the ISA.
 *
 * Every buffer is its own exactly-sized heap block (ASan sees any access
 * outside it). The harness works out independently which statuses the
 * call may return (include/qkv.h), then checks:
 *   - the status is one of them (QKV_OK exactly when the call is valid);
 *   - on error, no byte of any buffer changed;
 *   - on success, only elements of out, weights and lse changed, and (for
 *     finite, moderate inputs without the features the reference lacks)
 *     they match ref_sdpa within 1e-5 * max + 1e-4 * |x| (+ a small
 *     absolute term for float rounding of the logits).
 */
#include <math.h>

#include "fuzz_common.h"
#include "hardening/hard_util.h"
#include "ref/ref.h"

enum obj { O_Q, O_K, O_V, O_OUT, O_MASK, O_KVLEN, O_W, O_LSE, O_ALIBI, O_SINKS, O_COUNT };

enum layout {
    L_BHSD, L_BSHD, L_PADDED, L_HEADS_OUTER, L_ROWS_OVERLAP, L_ROW_BROADCAST,
    L_INNER_2, L_NEGATIVE, L_HUGE, L_COUNT
};

typedef struct call {
    qkv_tensor t[5];          /* q, k, v, out, mask */
    int has_mask;
    size_t elem[5];           /* bytes per element, for sizing buffers */
    int64_t b, h, hkv, lq, lk, d, dv;
    qkv_sdpa_params p;
    int pass_null_params;
    int null_choice;          /* which pointer is NULL, 0: none */
    int value_mode;           /* 0: moderate finite values */
    int alias;                /* which placement of outputs over inputs */
    size_t misalign[O_COUNT];
    int32_t kv_len_vals[8];
    float alibi_vals[16], sink_vals[16];
} call;

/* ---- decoding ---------------------------------------------------- */

static qkv_dtype decode_kv_dtype(uint8_t x)
{
    static const int dts[] = {QKV_F32, QKV_F16, QKV_BF16, QKV_F32, QKV_F16, QKV_BF16, 3, -1};
    return (qkv_dtype)dts[x % 8];
}

static void set_strides(qkv_tensor *t, enum layout l, int64_t pad)
{
    const int64_t *s = t->shape;
    int64_t *st = t->stride;
    st[3] = 1;
    switch (l) {
    case L_BSHD:
        st[1] = s[3]; st[2] = fz_wmul(s[1], s[3]); st[0] = fz_wmul(s[2], st[2]);
        return;
    case L_PADDED:
        st[2] = fz_wadd(s[3], pad);
        st[1] = fz_wadd(fz_wmul(s[2], st[2]), pad);
        st[0] = fz_wadd(fz_wmul(s[1], st[1]), pad);
        return;
    case L_HEADS_OUTER:
        st[2] = s[3]; st[0] = fz_wmul(s[2], s[3]); st[1] = fz_wmul(s[0], st[0]);
        return;
    case L_ROWS_OVERLAP:   /* rows share elements: fine for inputs only */
        st[2] = s[3] > 1 ? s[3] / 2 : 1; st[1] = fz_wmul(s[2], s[3]); st[0] = fz_wmul(s[1], st[1]);
        return;
    case L_ROW_BROADCAST:  /* stride 0 over rows: masks only */
        st[2] = 0; st[1] = s[3]; st[0] = fz_wmul(s[1], s[3]);
        return;
    case L_INNER_2:
        set_strides(t, L_BHSD, 0);
        st[3] = pad % 2 ? 2 : 0;
        return;
    case L_NEGATIVE:
        set_strides(t, L_BHSD, 0);
        st[pad % 3] = -1 - pad;
        return;
    case L_HUGE:
        set_strides(t, L_BHSD, 0);
        st[pad % 3] = INT64_MAX / 2 + 1;
        return;
    default:
        st[2] = s[3]; st[1] = fz_wmul(s[2], s[3]); st[0] = fz_wmul(s[1], st[1]);
        return;
    }
}

/* Mostly valid layouts; the bad ones a quarter of the time. */
static enum layout decode_layout(uint8_t x)
{
    if (x < 192)
        return (enum layout)(x % 4);
    return (enum layout)(4 + x % (L_COUNT - 4));
}

static float decode_scale(uint8_t x)
{
    switch (x) {
    case 250: return NAN;
    case 251: return INFINITY;
    case 252: return -INFINITY;
    case 253: return 1e30f;
    case 254: return 1e-30f;
    case 255: return -0.0f;
    }
    return x < 100 ? 0.0f : (float)(x - 175) / 37.5f;   /* 0 (default), or [-2, 2] */
}

static void decode(fz_reader *r, call *c)
{
    memset(c, 0, sizeof *c);
    c->b = fz_small(r, 2);
    c->hkv = fz_small(r, 3);
    c->h = c->hkv * fz_small(r, 3);
    c->lq = fz_small(r, 40);
    c->lk = fz_small(r, 140);
    c->d = fz_small(r, 40);
    c->dv = fz_small(r, 40);

    const qkv_dtype kdt = decode_kv_dtype(fz_byte(r)), vdt = decode_kv_dtype(fz_byte(r));
    const int64_t shapes[5][4] = {
        {c->b, c->h, c->lq, c->d}, {c->b, c->hkv, c->lk, c->d}, {c->b, c->hkv, c->lk, c->dv},
        {c->b, c->h, c->lq, c->dv}, {c->b, c->h, c->lq, c->lk},
    };
    const qkv_dtype dts[5] = {QKV_F32, kdt, vdt, QKV_F32, QKV_F32};
    for (int i = 0; i < 5; i++) {
        c->t[i].dtype = dts[i];
        memcpy(c->t[i].shape, shapes[i], sizeof shapes[i]);
    }

    /* Faults: a bad size in one dimension of one tensor; a bad q/out/mask
       dtype; H not a multiple of Hkv. */
    const uint8_t fault = fz_byte(r);
    if (fault >= 200)
        c->t[fault % 5].shape[fz_byte(r) % 4] = fz_bad_size(r);
    else if (fault >= 180)
        c->t[fault % 5].shape[fz_byte(r) % 4] += 1;   /* a mismatch */
    else if (fault >= 170)
        c->t[fault % 5].dtype = fault % 2 ? QKV_F16 : (qkv_dtype)7;

    /* The mask: none, full, broadcast over batch, heads, both. */
    const uint8_t m = fz_byte(r);
    c->has_mask = m % 5 != 0;
    if (m % 5 == 2 || m % 5 == 4)
        c->t[4].shape[0] = 1;
    if (m % 5 == 3 || m % 5 == 4)
        c->t[4].shape[1] = 1;

    for (int i = 0; i < 5; i++) {
        const uint8_t l = fz_byte(r);
        enum layout lay = decode_layout(l);
        if (lay == L_ROW_BROADCAST && i != 4 && l % 2)
            lay = L_BHSD;   /* keep most row broadcasts on the mask */
        set_strides(&c->t[i], lay, fz_byte(r) % 4);
        c->elem[i] = c->t[i].dtype == QKV_F16 || c->t[i].dtype == QKV_BF16 ? 2 : 4;
    }

    const uint8_t flags = fz_byte(r);
    c->p.weights = (float *)(uintptr_t)(flags & 1);   /* placeholders: requested or not */
    c->p.lse = (float *)(uintptr_t)((flags >> 1) & 1);
    if (flags & 4) {
        c->p.kv_len = c->kv_len_vals;
        for (int i = 0; i < 8; i++) {
            const uint8_t x = fz_byte(r);
            c->kv_len_vals[i] = x >= 250 ? (x == 250 ? -1 : x == 251 ? INT32_MIN :
                                            x == 252 ? INT32_MAX : (int32_t)c->lk + 1)
                                         : (int32_t)(x % (c->lk + 1));
        }
    }
    c->p.causal = (qkv_causal)((int[]){0, 1, 2, 0, 1, 2, 3, -1})[(flags >> 3) % 8];
    c->p.scale = decode_scale(fz_byte(r));
    const int threads = fz_byte(r);
    c->p.num_threads = threads % 11 - 2 + (threads >= 128 ? 2 : 0);   /* mostly >= 0 */

    const uint8_t extras = fz_byte(r);
    if (extras & 1) {
        c->p.window = 1;
        c->p.window_left = (int64_t)fz_byte(r) - 2;
        c->p.window_right = (int64_t)fz_byte(r) - 2;
    }
    if (extras & 2) {
        const uint8_t x = fz_byte(r);
        c->p.softcap = x == 255 ? NAN : x == 254 ? -1.0f : x == 253 ? INFINITY : (float)x / 16.0f;
    }
    if (extras & 4) {
        c->p.alibi_slopes = c->alibi_vals;
        for (int i = 0; i < 16; i++)
            c->alibi_vals[i] = (float)i / 16.0f;
        if (extras & 16)
            c->alibi_vals[fz_byte(r) % 16] = fz_byte(r) % 2 ? NAN : INFINITY;
    }
    if (extras & 8) {
        c->p.sinks = c->sink_vals;
        for (int i = 0; i < 16; i++)
            c->sink_vals[i] = (float)(i % 5) - 2.0f;
        if (extras & 32) {
            static const float odd[] = {-INFINITY, NAN, INFINITY, 1e30f};
            c->sink_vals[fz_byte(r) % 16] = odd[fz_byte(r) % 4];
        }
    }
    c->pass_null_params = (extras & 64) && (extras & 128);

    c->null_choice = fz_byte(r) % 24;   /* 1..9: one pointer NULL */
    c->alias = fz_byte(r) % 16;         /* 1..7: a placement over an input */
    c->value_mode = fz_byte(r) % 8;     /* 0..4: moderate values */
    for (int i = 0; i < O_COUNT; i++)
        c->misalign[i] = fz_byte(r) % 4;
}

/* ---- independent validity -------------------------------------- */

/* Elements from the first to one past the last, or -1 if it overflows;
   assumes shapes > 0 and strides >= 0. */
static int64_t span_elems(const qkv_tensor *t)
{
    int64_t last = 0;
    for (int i = 0; i < 4; i++) {
        int64_t step;
        if (__builtin_mul_overflow(t->stride[i], t->shape[i] - 1, &step) ||
            __builtin_add_overflow(last, step, &last))
            return -1;
    }
    return last < INT64_MAX ? last + 1 : -1;
}

static int shapes_positive(const qkv_tensor *t)
{
    return t->shape[0] > 0 && t->shape[1] > 0 && t->shape[2] > 0 && t->shape[3] > 0;
}

static int strides_ok(const qkv_tensor *t, int broadcast_ok)
{
    if (t->stride[3] != 1)
        return 0;
    for (int i = 0; i < 3; i++)
        if (t->stride[i] < 0 || (t->stride[i] == 0 && t->shape[i] > 1 && !broadcast_ok))
            return 0;
    return 1;
}

static int dtype_ok(qkv_dtype dt)
{
    return dt == QKV_F32 || dt == QKV_F16 || dt == QKV_BF16;
}

static size_t dtype_bytes(qkv_dtype dt)
{
    return dt == QKV_F32 ? 4 : 2;
}

/* Bytes a tensor occupies, or 0 when its span is not computable (the
   library must then reject the call before touching it). */
/* Logical elements of a tensor, -1 past 1 << 22 or on a size <= 0. A
   broadcast (stride 0) over a hostile size spans few bytes but would take
   forever to fill element by element; the library rejects such a size
   whatever the values. */
static int64_t logical_elems(const qkv_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < 4; i++)
        if (t->shape[i] <= 0 || __builtin_mul_overflow(n, t->shape[i], &n) || n > (1 << 22))
            return -1;
    return n;
}

static size_t span_bytes(const call *c, int i)
{
    const qkv_tensor *t = &c->t[i];
    if (!shapes_positive(t) || t->stride[0] < 0 || t->stride[1] < 0 || t->stride[2] < 0 ||
        t->stride[3] < 0)
        return 0;
    const int64_t n = span_elems(t);
    if (n < 0 || n > (1 << 22))
        return 0;
    return (size_t)n * c->elem[i];
}

/* Bytes to reserve for a tensor: a token size when not computable. */
static size_t tensor_bytes(const call *c, int i)
{
    const size_t n = span_bytes(c, i);
    return n ? n : 16;
}

typedef struct span { uintptr_t lo, hi; } span;

static int overlap(span a, span b)
{
    return a.lo < b.hi && b.lo < a.hi;
}

/* Brute force: do two indices of out address the same element? */
static int out_overlaps_itself(const qkv_tensor *t)
{
    const int64_t n = t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
    const int64_t ext = span_elems(t);
    unsigned char *seen = calloc((size_t)ext, 1);
    if (!seen)
        abort();
    int dup = 0;
    for (int64_t e = 0; e < n && !dup; e++) {
        int64_t idx = e, off = 0;
        for (int i = 3; i >= 0; i--) {
            off += idx % t->shape[i] * t->stride[i];
            idx /= t->shape[i];
        }
        dup = seen[off]++;
    }
    free(seen);
    return dup;
}

/* Value checks of the small arrays; sizes clipped to what the harness
   allocated (a bad size makes the call invalid anyway). */
static int values_bad(const qkv_tensor *q, const qkv_tensor *k, const qkv_sdpa_params *p)
{
    const int64_t batch = q->shape[0] < 8 ? q->shape[0] : 8;
    const int64_t heads = q->shape[1] < 16 ? q->shape[1] : 16;
    int bad = 0;
    for (int64_t b = 0; p->kv_len && b < batch; b++)
        bad |= p->kv_len[b] < 0 || p->kv_len[b] > k->shape[2];
    for (int64_t h = 0; p->alibi_slopes && h < heads; h++)
        bad |= !isfinite(p->alibi_slopes[h]);
    for (int64_t h = 0; p->sinks && h < heads; h++)
        bad |= isnan(p->sinks[h]) || p->sinks[h] == INFINITY;
    return bad;
}

static int shapes_agree(const qkv_tensor *q, const qkv_tensor *k, const qkv_tensor *v,
                        const qkv_tensor *out, const qkv_tensor *mask)
{
    const int64_t *qs = q->shape, *ks = k->shape, *vs = v->shape, *os = out->shape;
    return ks[0] == qs[0] && ks[3] == qs[3] && vs[0] == qs[0] && vs[1] == ks[1] &&
           vs[2] == ks[2] && os[0] == qs[0] && os[1] == qs[1] && os[2] == qs[2] &&
           os[3] == vs[3] && qs[1] % ks[1] == 0 &&
           (!mask || ((mask->shape[0] == qs[0] || mask->shape[0] == 1) &&
                      (mask->shape[1] == qs[1] || mask->shape[1] == 1) &&
                      mask->shape[2] == qs[2] && mask->shape[3] == ks[2]));
}

/* QKV_E_ALIAS or QKV_E_OVERFLOW bits from the byte spans of every buffer
   (shapes and strides already valid). */
static fz_expect memory_statuses(const qkv_tensor *const all[5], const qkv_sdpa_params *p)
{
    span in[7], outs[3];
    int n_in = 0, n_out = 0;
    for (int i = 0; i < 5; i++) {
        if (!all[i])
            continue;
        const int64_t n = span_elems(all[i]);
        int64_t bytes;
        if (n < 0 || __builtin_mul_overflow(n, (int64_t)dtype_bytes(all[i]->dtype), &bytes))
            return FZ_BIT(QKV_E_OVERFLOW);
        const span s = {(uintptr_t)all[i]->data, (uintptr_t)all[i]->data + (uintptr_t)bytes};
        if (i == 3)
            outs[n_out++] = s;
        else
            in[n_in++] = s;
    }
    const qkv_tensor *q = all[0];
    const int64_t rows = q->shape[0] * q->shape[1] * q->shape[2];
    const int64_t cells = rows * all[1]->shape[2];
    if (p->kv_len)
        in[n_in++] = (span){(uintptr_t)p->kv_len, (uintptr_t)(p->kv_len + q->shape[0])};
    if (p->alibi_slopes)
        in[n_in++] = (span){(uintptr_t)p->alibi_slopes, (uintptr_t)(p->alibi_slopes + q->shape[1])};
    if (p->sinks)
        in[n_in++] = (span){(uintptr_t)p->sinks, (uintptr_t)(p->sinks + q->shape[1])};
    if (p->weights)
        outs[n_out++] = (span){(uintptr_t)p->weights, (uintptr_t)(p->weights + cells)};
    if (p->lse)
        outs[n_out++] = (span){(uintptr_t)p->lse, (uintptr_t)(p->lse + rows)};
    int alias = all[3]->data && out_overlaps_itself(all[3]);
    for (int o = 0; o < n_out; o++) {
        for (int i = 0; i < n_in; i++)
            alias |= overlap(outs[o], in[i]);
        for (int o2 = o + 1; o2 < n_out; o2++)
            alias |= overlap(outs[o], outs[o2]);
    }
    return alias ? FZ_BIT(QKV_E_ALIAS) : 0;
}

/* The statuses the call may return: every rule of include/qkv.h that it
   breaks adds one (the library may report any of them). 0: valid. */
static fz_expect expected_statuses(const qkv_tensor *const ts[5], const qkv_sdpa_params *p)
{
    const qkv_tensor *q = ts[0], *k = ts[1], *v = ts[2], *out = ts[3], *mask = p->mask;
    if (!q || !k || !v || !out)
        return FZ_BIT(QKV_E_NULL);   /* the tensors cannot be inspected */
    fz_expect e = 0;
    int data_null = !q->data || !k->data || !v->data || !out->data || (mask && !mask->data);
    if (data_null)
        e |= FZ_BIT(QKV_E_NULL);
    if (q->dtype != QKV_F32 || out->dtype != QKV_F32 || !dtype_ok(k->dtype) ||
        !dtype_ok(v->dtype) || (mask && mask->dtype != QKV_F32) ||
        (int)p->causal < 0 || (int)p->causal > 2 || p->num_threads < 0 ||
        !isfinite(p->scale) || !isfinite(p->softcap) || p->softcap < 0.0f)
        e |= FZ_BIT(QKV_E_ARG);

    const qkv_tensor *all[5] = {q, k, v, out, mask};
    int shapes_fine = 1, strides_fine = 1;
    for (int i = 0; i < 5; i++) {
        if (all[i] && !shapes_positive(all[i]))
            shapes_fine = 0;
        if (all[i] && !strides_ok(all[i], i == 4))
            strides_fine = 0;
    }
    shapes_fine = shapes_fine && shapes_agree(q, k, v, out, mask);
    if (!shapes_fine)
        e |= FZ_BIT(QKV_E_SHAPE);
    if (!strides_fine)
        e |= FZ_BIT(QKV_E_ARG);
    if (shapes_fine && strides_fine && !data_null && dtype_ok(k->dtype) && dtype_ok(v->dtype))
        e |= memory_statuses(all, p);
    if (values_bad(q, k, p))
        e |= FZ_BIT(QKV_E_ARG);
    return e;
}

/* ---- placing and filling buffers ------------------------------- */

typedef struct placement { int block; size_t offset, bytes; } placement;

static void place_all(const call *c, placement pl[O_COUNT])
{
    const int64_t rows = c->b * c->h * c->lq;
    for (int i = 0; i < 5; i++)
        pl[i].bytes = tensor_bytes(c, i);
    pl[O_KVLEN].bytes = 8 * sizeof(int32_t);
    pl[O_W].bytes = (size_t)(rows * c->lk) * sizeof(float);
    pl[O_LSE].bytes = (size_t)rows * sizeof(float);
    pl[O_ALIBI].bytes = pl[O_SINKS].bytes = 16 * sizeof(float);
    for (int i = 0; i < O_COUNT; i++) {
        pl[i].block = i;
        pl[i].offset = c->misalign[i] * (i < 5 ? c->elem[i] : 4);   /* element-aligned */
    }
    /* Placements over inputs (or, for 2, right after one: valid). */
    const size_t q_end = pl[O_Q].offset + pl[O_Q].bytes;
    switch (c->alias) {
    case 1: pl[O_OUT].block = O_Q; pl[O_OUT].offset = pl[O_Q].offset + pl[O_Q].bytes / 8 * 4; break;
    case 2: pl[O_OUT].block = O_Q; pl[O_OUT].offset = q_end; break;
    case 3: pl[O_W].block = O_OUT; pl[O_W].offset = pl[O_OUT].offset; break;
    case 4: pl[O_LSE].block = O_K; pl[O_LSE].offset = (pl[O_K].offset + 3) / 4 * 4; break;
    case 5: pl[O_KVLEN].block = O_OUT; pl[O_KVLEN].offset = pl[O_OUT].offset; break;
    case 6: pl[O_LSE].block = O_W; pl[O_LSE].offset = pl[O_W].offset + pl[O_W].bytes / 8 * 4; break;
    case 7: pl[O_MASK].block = O_LSE; pl[O_MASK].offset = pl[O_LSE].offset; break;
    default: break;
    }
}

static float value(uint64_t *st, int mode)
{
    const float x = hu_uniform(st, -1.0f, 1.0f);
    switch (mode) {
    case 5: return x * 1e30f;
    case 6: return x * 1e-39f;   /* subnormal */
    case 7: {
        const uint64_t pick = hu_next(st) % 16;
        return pick == 0 ? NAN : pick == 1 ? INFINITY : pick == 2 ? -INFINITY : x;
    }
    default: return x;
    }
}

/* Every element of an input tensor (walked through its strides). */
static void fill_tensor(const qkv_tensor *t, uint64_t *st, int mode, int is_mask)
{
    for (int64_t i0 = 0; i0 < t->shape[0]; i0++)
        for (int64_t i1 = 0; i1 < t->shape[1]; i1++)
            for (int64_t i2 = 0; i2 < t->shape[2]; i2++)
                for (int64_t i3 = 0; i3 < t->shape[3]; i3++) {
                    const int64_t off = i0 * t->stride[0] + i1 * t->stride[1] +
                                        i2 * t->stride[2] + i3;
                    float x = value(st, mode);
                    if (is_mask && hu_next(st) % 8 == 0)
                        x = -INFINITY;
                    if (t->dtype == QKV_F16)
                        ((uint16_t *)t->data)[off] = ref_f32_to_f16(x);
                    else if (t->dtype == QKV_BF16)
                        ((uint16_t *)t->data)[off] = ref_f32_to_bf16(x);
                    else
                        ((float *)t->data)[off] = x;
                }
}

static void mark_out_elements(fz_arena *a, const qkv_tensor *t)
{
    for (int64_t i0 = 0; i0 < t->shape[0]; i0++)
        for (int64_t i1 = 0; i1 < t->shape[1]; i1++)
            for (int64_t i2 = 0; i2 < t->shape[2]; i2++)
                fz_mark_writable(a, (float *)t->data + i0 * t->stride[0] + i1 * t->stride[1] +
                                        i2 * t->stride[2], (size_t)t->shape[3] * sizeof(float));
}

/* ---- the check against the reference --------------------------- */

static void compare_with_ref(const call *c, const qkv_tensor *const ts[5],
                             const qkv_sdpa_params *p)
{
    const int64_t rows = c->b * c->h * c->lq;
    const int64_t n_out = rows * c->dv, n_w = rows * c->lk;
    double *out = malloc((size_t)n_out * sizeof *out);
    double *w = malloc((size_t)n_w * sizeof *w);
    double *lse = malloc((size_t)rows * sizeof *lse);
    float *got = malloc((size_t)n_out * sizeof *got);
    if (!out || !w || !lse || !got || ref_sdpa(ts[0], ts[1], ts[2], p, out, w, lse))
        abort();
    const qkv_tensor *o = ts[3];
    for (int64_t r = 0; r < rows; r++) {
        const int64_t i2 = r % c->lq, i1 = r / c->lq % c->h, i0 = r / c->lq / c->h;
        memcpy(got + r * c->dv,
               (float *)o->data + i0 * o->stride[0] + i1 * o->stride[1] + i2 * o->stride[2],
               (size_t)c->dv * sizeof(float));
    }
    /* The absolute terms cover float rounding of logits of order 1. */
    if (!hu_close("out", got, out, n_out, 2e-6))
        FZ_FAIL("out differs from ref_sdpa");
    if (p->weights && !hu_close("weights", p->weights, w, n_w, 2e-6))
        FZ_FAIL("weights differ from ref_sdpa");
    if (p->lse && !hu_close("lse", p->lse, lse, rows, 1e-5))
        FZ_FAIL("lse differs from ref_sdpa");
    free(out); free(w); free(lse); free(got);
}

/* ---- ISA choice --------------------------------------------------- */

static void choose_isa(uint8_t x)
{
    if (x >= 250) {   /* values that are not ISAs: rejected, nothing changes */
        const qkv_isa before = qkv_isa_active();
        if (qkv_isa_set((qkv_isa)(x == 250 ? -1 : 5 + x % 3)) != QKV_E_ARG ||
            qkv_isa_active() != before)
            FZ_FAIL("qkv_isa_set accepted a value that is not an ISA");
        return;
    }
    const qkv_isa isa = (qkv_isa)(x % 5);
    const qkv_status st = qkv_isa_set(isa);
    if (st != (qkv_isa_supported(isa) ? QKV_OK : QKV_E_UNSUPPORTED))
        FZ_FAIL("qkv_isa_set(%s) returned %s", qkv_isa_name(isa), qkv_status_str(st));
}

/* ---- one input ---------------------------------------------------- */

/* What a crashing input decodes to (QKV_FUZZ_VERBOSE=1), for bug reports. */
static void describe(const call *c, const qkv_tensor *const ts[5], const qkv_sdpa_params *p,
                     const placement pl[O_COUNT])
{
    static const char *names[5] = {"q", "k", "v", "out", "mask"};
    fprintf(stderr, "isa %s\n", qkv_isa_name(qkv_isa_active()));
    for (int i = 0; i < 5; i++) {
        const qkv_tensor *t = ts[i] ? ts[i] : (i == 4 ? p->mask : NULL);
        if (!t) {
            fprintf(stderr, "%s: none\n", names[i]);
            continue;
        }
        fprintf(stderr, "%s: data %p (block %d +%zu) dtype %d shape [%lld %lld %lld %lld] "
                "stride [%lld %lld %lld %lld]\n", names[i], t->data, pl[i].block, pl[i].offset,
                (int)t->dtype, (long long)t->shape[0], (long long)t->shape[1],
                (long long)t->shape[2], (long long)t->shape[3], (long long)t->stride[0],
                (long long)t->stride[1], (long long)t->stride[2], (long long)t->stride[3]);
    }
    fprintf(stderr, "scale %g causal %d kv_len %p weights %p lse %p threads %d window %d "
            "[%lld, %lld] softcap %g alibi %p sinks %p alias %d values %d\n",
            (double)p->scale, (int)p->causal, (const void *)p->kv_len, (void *)p->weights,
            (void *)p->lse, p->num_threads, p->window, (long long)p->window_left,
            (long long)p->window_right, (double)p->softcap, (const void *)p->alibi_slopes,
            (const void *)p->sinks, c->alias, c->value_mode);
    for (int i = 0; i < 3; i++) {
        const qkv_tensor *t = ts[i];
        if (!t || !t->data || t->dtype != QKV_F32 || logical_elems(t) < 0)
            continue;
        int bad = 0;
        for (int64_t e = 0; e < t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]; e++) {
            int64_t idx = e, off = 0;
            for (int d = 3; d >= 0; d--) {
                off += idx % t->shape[d] * t->stride[d];
                idx /= t->shape[d];
            }
            bad += !isfinite(((const float *)t->data)[off]);
        }
        fprintf(stderr, "%s: %d non-finite elements\n", names[i], bad);
    }
    for (int64_t b = 0; p->kv_len && b < 2; b++)
        fprintf(stderr, "kv_len[%lld] = %d\n", (long long)b, p->kv_len[b]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_reader r = {data, size};
    choose_isa(fz_byte(&r));
    call c;
    decode(&r, &c);
    uint64_t seed = 0;
    for (int i = 0; i < 8; i++)
        seed = seed << 8 | fz_byte(&r);

    placement pl[O_COUNT];
    place_all(&c, pl);
    fz_arena a = {0};
    for (int i = 0; i < O_COUNT; i++)
        fz_reserve(&a, pl[i].block, pl[i].offset, pl[i].bytes);
    fz_alloc(&a);
    void *ptr[O_COUNT];
    for (int i = 0; i < O_COUNT; i++)
        ptr[i] = a.mem[pl[i].block] + pl[i].offset;

    /* Inputs first, then the output sentinels (which win where a bad
       placement puts an output over an input). */
    for (int i = 0; i < 5; i++)
        c.t[i].data = ptr[i];
    uint64_t st = seed;
    const int moderate = c.value_mode < 5;
    for (int i = 0; i < 5; i++)
        if (i != 3 && span_bytes(&c, i) && logical_elems(&c.t[i]) > 0 &&
            strides_ok(&c.t[i], i == 4) &&
            (i != 4 || c.t[4].dtype == QKV_F32))
            fill_tensor(&c.t[i], &st, c.value_mode, i == 4);
    qkv_sdpa_params p = c.p;
    p.mask = c.has_mask ? &c.t[4] : NULL;
    if (p.kv_len) {
        memcpy(ptr[O_KVLEN], c.kv_len_vals, sizeof c.kv_len_vals);
        p.kv_len = ptr[O_KVLEN];
    }
    if (p.alibi_slopes) {
        memcpy(ptr[O_ALIBI], c.alibi_vals, sizeof c.alibi_vals);
        p.alibi_slopes = ptr[O_ALIBI];
    }
    if (p.sinks) {
        memcpy(ptr[O_SINKS], c.sink_vals, sizeof c.sink_vals);
        p.sinks = ptr[O_SINKS];
    }
    p.weights = c.p.weights ? ptr[O_W] : NULL;
    p.lse = c.p.lse ? ptr[O_LSE] : NULL;
    if (c.pass_null_params)
        memset(&p, 0, sizeof p);   /* what the library sees: the defaults */
    memset(ptr[O_OUT], 0xFF, pl[O_OUT].bytes);   /* NaN sentinels */
    if (p.weights)
        memset(p.weights, 0xFF, pl[O_W].bytes);
    if (p.lse)
        memset(p.lse, 0xFF, pl[O_LSE].bytes);

    /* NULL choices. */
    const qkv_tensor *ts[5] = {&c.t[0], &c.t[1], &c.t[2], &c.t[3], NULL};
    if (c.null_choice >= 1 && c.null_choice <= 4)
        ts[c.null_choice - 1] = NULL;
    else if (c.null_choice >= 5 && c.null_choice <= 8)
        c.t[c.null_choice - 5].data = NULL;
    else if (c.null_choice == 9 && p.mask)
        c.t[4].data = NULL;
    const qkv_sdpa_params *pp = c.pass_null_params ? NULL : &p;
    const qkv_sdpa_params *effective = &p;

    if (getenv("QKV_FUZZ_VERBOSE"))
        describe(&c, ts, effective, pl);
    const fz_expect allowed = expected_statuses(ts, effective);
    if (!allowed) {
        mark_out_elements(&a, ts[3]);
        if (effective->weights)
            fz_mark_writable(&a, effective->weights, pl[O_W].bytes);
        if (effective->lse)
            fz_mark_writable(&a, effective->lse, pl[O_LSE].bytes);
    }
    fz_snapshot(&a);
    const qkv_status got = qkv_sdpa(ts[0], ts[1], ts[2], ts[3], pp);

    if (allowed ? !(allowed & FZ_BIT(got)) || got == QKV_OK : got != QKV_OK)
        FZ_FAIL("qkv_sdpa returned %s; allowed: %#x (bit per status, 0: only QKV_OK)",
                qkv_status_str(got), allowed);
    int block;
    const long bad = fz_find_bad_write(&a, got == QKV_OK, &block);
    if (bad >= 0)
        FZ_FAIL("qkv_sdpa (%s) changed byte %ld of block %d, which it may not write",
                qkv_status_str(got), bad, block);

    const int features = effective->window || effective->softcap != 0.0f ||
                         effective->alibi_slopes || effective->sinks;
    if (got == QKV_OK && moderate && !features && fabsf(effective->scale) <= 2.0f)
        compare_with_ref(&c, ts, effective);
    fz_free(&a);
    return 0;
}
