/*
 * The KV cache: per batch element, K [n_kv_heads][capacity][head_dim] and
 * V [n_kv_heads][capacity][v_dim] in the storage type, of which the first
 * length[b] rows are filled. One allocation holds the struct, the lengths,
 * K and V. Rows past a length are never read by the attention (kv_len
 * stops the driver before them), so the storage is not cleared.
 *
 * Appends convert F32 rows with round-to-nearest-even in plain C: an
 * append touches each new row once, far from the attention's hot loop.
 */
#include <string.h>

#include "kv_cache.h"

/* ------------------------------------------------------------------ */
/* F32 -> F16 / BF16, round to nearest even                           */
/* ------------------------------------------------------------------ */

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* x >> shift rounded to nearest, ties to even (1 <= shift <= 31). */
static uint32_t shift_round_even(uint32_t x, int shift)
{
    const uint32_t half = 1u << (shift - 1);
    const uint32_t rest = x & ((half << 1) - 1);
    uint32_t q = x >> shift;
    if (rest > half || (rest == half && (q & 1u)))
        q++;
    return q;
}

/* IEEE binary16: 5 exponent bits (bias 15), 10 mantissa bits. */
static uint16_t f32_to_f16(float f)
{
    const uint32_t x = float_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t mag = x & 0x7fffffffu;
    if (mag > 0x7f800000u)   /* NaN: quiet, with the top of the payload */
        return (uint16_t)(sign | 0x7e00u | ((mag >> 13) & 0x03ffu));
    if (mag >= 0x477ff000u)  /* >= 65520, halfway past 65504: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (mag >= 0x38800000u)  /* >= 2^-14: normal; rebias 127 -> 15. A carry
                                out of the mantissa bumps the exponent. */
        return (uint16_t)(sign | shift_round_even(mag - (112u << 23), 13));
    if (mag <= 0x33000000u)  /* <= 2^-25, at most half the smallest
                                subnormal: zero (the tie goes to even) */
        return (uint16_t)sign;
    /* Subnormal: the value in units of 2^-24 is m * 2^(e - 126) for the
       24-bit significand m and biased exponent e (102..112). Rounding up
       to 0x400 gives the smallest normal, as the encoding wants. */
    const uint32_t e = mag >> 23;
    const uint32_t m = (mag & 0x007fffffu) | 0x00800000u;
    return (uint16_t)(sign | shift_round_even(m, (int)(126u - e)));
}

/* bfloat16: the top half of a float, rounded. */
static uint16_t f32_to_bf16(float f)
{
    const uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)   /* NaN: stays NaN (quiet bit set) */
        return (uint16_t)((x >> 16) | 0x0040u);
    /* Overflow past the largest bf16 carries into the exponent: infinity. */
    return (uint16_t)shift_round_even(x, 16);
}

/* ------------------------------------------------------------------ */
/* Creation                                                           */
/* ------------------------------------------------------------------ */

static int dtype_valid(qkv_dtype dt)
{
    return dt == QKV_F32 || dt == QKV_F16 || dt == QKV_BF16;
}

/* Bytes rounded up to the allocation alignment; 0 on overflow. */
static int64_t aligned_bytes(int64_t bytes)
{
    int64_t r;
    if (!qkv_add_ok(bytes, QKV_SCRATCH_ALIGN - 1, &r))
        return 0;
    return r / QKV_SCRATCH_ALIGN * QKV_SCRATCH_ALIGN;
}

/* Bytes of one of K or V: batch * heads * capacity * dim elements. */
static int64_t tensor_bytes(int64_t batch, int64_t heads, int64_t capacity,
                            int64_t dim, qkv_dtype dt)
{
    int64_t n;
    if (!qkv_mul_ok(batch, heads, &n) || !qkv_mul_ok(n, capacity, &n) ||
        !qkv_mul_ok(n, dim, &n) || !qkv_mul_ok(n, (int64_t)qkv_dtype_size(dt), &n))
        return 0;
    return aligned_bytes(n);
}

qkv_status qkv_kv_cache_create(qkv_kv_cache **out, int64_t batch,
                               int64_t n_kv_heads, int64_t head_dim,
                               int64_t v_dim, int64_t capacity, qkv_dtype dtype)
{
    if (!out)
        return QKV_E_NULL;
    if (batch <= 0 || n_kv_heads <= 0 || head_dim <= 0 || v_dim <= 0 || capacity <= 0)
        return QKV_E_SHAPE;
    if (!dtype_valid(dtype))
        return QKV_E_ARG;
    if (capacity > INT32_MAX)   /* lengths are int32, as qkv_sdpa's kv_len */
        return QKV_E_OVERFLOW;

    const int64_t header = aligned_bytes((int64_t)sizeof(qkv_kv_cache));
    int64_t length_bytes = 0;
    const int64_t lengths = qkv_mul_ok(batch, (int64_t)sizeof(int32_t), &length_bytes)
                                ? aligned_bytes(length_bytes) : 0;
    const int64_t k_bytes = tensor_bytes(batch, n_kv_heads, capacity, head_dim, dtype);
    const int64_t v_bytes = tensor_bytes(batch, n_kv_heads, capacity, v_dim, dtype);
    int64_t total;
    if (!lengths || !k_bytes || !v_bytes ||
        !qkv_add_ok(header, lengths, &total) || !qkv_add_ok(total, k_bytes, &total) ||
        !qkv_add_ok(total, v_bytes, &total) || (uint64_t)total > SIZE_MAX)
        return QKV_E_OVERFLOW;
    char *mem = qkv_alloc((size_t)total);
    if (!mem)
        return QKV_E_NOMEM;

    qkv_kv_cache *c = (qkv_kv_cache *)mem;
    *c = (qkv_kv_cache){
        .batch = batch, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
        .v_dim = v_dim, .capacity = capacity, .dtype = dtype,
        .lengths = (int32_t *)(mem + header),
        .k = mem + header + lengths,
        .v = mem + header + lengths + k_bytes,
    };
    c->storage.lo = (uintptr_t)c->k;
    c->storage.hi = (uintptr_t)c->v + (uintptr_t)v_bytes;
    memset(c->lengths, 0, (size_t)batch * sizeof(int32_t));
    *out = c;
    return QKV_OK;
}

void qkv_kv_cache_destroy(qkv_kv_cache *c)
{
    qkv_free(c);   /* the struct heads the cache's single allocation */
}

qkv_status qkv_kv_cache_reset(qkv_kv_cache *c)
{
    if (!c)
        return QKV_E_NULL;
    memset(c->lengths, 0, (size_t)c->batch * sizeof(int32_t));
    return QKV_OK;
}

int64_t qkv_kv_cache_length(const qkv_kv_cache *c, int64_t b)
{
    if (!c || b < 0 || b >= c->batch)
        return -1;
    return c->lengths[b];
}

/* ------------------------------------------------------------------ */
/* Views                                                              */
/* ------------------------------------------------------------------ */

/* [batch, n_kv_heads, len, dim] over the full-capacity layout at data. */
static qkv_tensor storage_view(const qkv_kv_cache *c, void *data, int64_t batch,
                               int64_t len, int64_t dim)
{
    qkv_tensor t = {
        .data = data, .dtype = c->dtype,
        .shape = {batch, c->n_kv_heads, len, dim},
        .stride = {c->n_kv_heads * c->capacity * dim, c->capacity * dim, dim, 1},
    };
    return t;
}

qkv_status qkv_kv_cache_view(const qkv_kv_cache *c, qkv_tensor *k,
                             qkv_tensor *v, const int32_t **lengths)
{
    if (!c || !k || !v)
        return QKV_E_NULL;
    int64_t longest = 1;   /* a view has no empty dimension */
    for (int64_t b = 0; b < c->batch; b++)
        if (c->lengths[b] > longest)
            longest = c->lengths[b];
    *k = storage_view(c, c->k, c->batch, longest, c->head_dim);
    *v = storage_view(c, c->v, c->batch, longest, c->v_dim);
    if (lengths)
        *lengths = c->lengths;
    return QKV_OK;
}

/* The first element of batch element b's K (or V) storage. */
static char *element_base(const qkv_kv_cache *c, void *data, int64_t b, int64_t dim)
{
    return (char *)data + b * c->n_kv_heads * c->capacity * dim * (int64_t)qkv_dtype_size(c->dtype);
}

void qkv_kv_cache_rows_views(const qkv_kv_cache *c, int64_t b, int64_t count,
                             int64_t len, qkv_tensor *k, qkv_tensor *v)
{
    *k = storage_view(c, element_base(c, c->k, b, c->head_dim), count, len, c->head_dim);
    *v = storage_view(c, element_base(c, c->v, b, c->v_dim), count, len, c->v_dim);
}

/* ------------------------------------------------------------------ */
/* Append                                                             */
/* ------------------------------------------------------------------ */

/* As qkv_sdpa: stride[3] 1, the others >= 0, 0 only on a dimension of
   size 1. */
static int strides_valid(const qkv_tensor *t)
{
    if (t->stride[3] != 1)
        return 0;
    for (int d = 0; d < 3; d++)
        if (t->stride[d] < 0 || (t->stride[d] == 0 && t->shape[d] > 1))
            return 0;
    return 1;
}

static qkv_status check_new_rows(const qkv_kv_cache *c, const qkv_tensor *k_new,
                                 const qkv_tensor *v_new)
{
    if (k_new->dtype != QKV_F32 || v_new->dtype != QKV_F32)
        return QKV_E_ARG;
    for (int d = 0; d < 4; d++)
        if (k_new->shape[d] <= 0 || v_new->shape[d] <= 0)
            return QKV_E_SHAPE;
    if (k_new->shape[0] != c->batch || k_new->shape[1] != c->n_kv_heads ||
        k_new->shape[3] != c->head_dim || v_new->shape[0] != c->batch ||
        v_new->shape[1] != c->n_kv_heads || v_new->shape[2] != k_new->shape[2] ||
        v_new->shape[3] != c->v_dim)
        return QKV_E_SHAPE;
    if (!strides_valid(k_new) || !strides_valid(v_new))
        return QKV_E_ARG;
    return QKV_OK;
}

/* The inputs must not overlap the storage that the append writes. */
static qkv_status check_append_memory(const qkv_kv_cache *c, const qkv_tensor *k_new,
                                      const qkv_tensor *v_new, const int32_t *count)
{
    qkv_span in[3];
    int n_in = 0;
    qkv_status st;
    if ((st = qkv_tensor_span(k_new, &in[n_in++])) ||
        (st = qkv_tensor_span(v_new, &in[n_in++])))
        return st;
    if (count && (st = qkv_array_span(count, c->batch, sizeof(int32_t), &in[n_in++])))
        return st;
    for (int i = 0; i < n_in; i++)
        if (qkv_spans_overlap(in[i], c->storage))
            return QKV_E_ALIAS;
    return QKV_OK;
}

qkv_status qkv_kv_cache_check_append(const qkv_kv_cache *c, const qkv_tensor *k_new,
                                     const qkv_tensor *v_new, const int32_t *count)
{
    if (!c || !k_new || !v_new || !k_new->data || !v_new->data)
        return QKV_E_NULL;
    qkv_status st;
    if ((st = check_new_rows(c, k_new, v_new)) ||
        (st = check_append_memory(c, k_new, v_new, count)))
        return st;
    const int64_t n = k_new->shape[2];
    for (int64_t b = 0; b < c->batch; b++) {
        const int64_t rows = count ? count[b] : n;
        if (rows < 0 || rows > n || c->lengths[b] + rows > c->capacity)
            return QKV_E_ARG;
    }
    return QKV_OK;
}

/* One row of `width` floats into the storage type. */
static void store_row(qkv_dtype dt, const float *src, int64_t width, void *dst)
{
    if (dt == QKV_F32) {
        memcpy(dst, src, (size_t)width * sizeof(float));
        return;
    }
    uint16_t *d16 = dst;
    for (int64_t x = 0; x < width; x++)
        d16[x] = dt == QKV_F16 ? f32_to_f16(src[x]) : f32_to_bf16(src[x]);
}

/* Rows 0..count-1 of element b of src into the storage at row `at`. */
static void store_rows(const qkv_kv_cache *c, void *data, int64_t dim,
                       const qkv_tensor *src, int64_t b, int64_t at, int64_t count)
{
    const size_t size = qkv_dtype_size(c->dtype);
    char *base = element_base(c, data, b, dim);
    for (int64_t h = 0; h < c->n_kv_heads; h++)
        for (int64_t r = 0; r < count; r++) {
            const float *row = (const float *)src->data + b * src->stride[0] +
                               h * src->stride[1] + r * src->stride[2];
            char *dst = base + ((h * c->capacity + at + r) * dim) * (int64_t)size;
            store_row(c->dtype, row, dim, dst);
        }
}

void qkv_kv_cache_write(qkv_kv_cache *c, const qkv_tensor *k_new,
                        const qkv_tensor *v_new, const int32_t *count)
{
    const int64_t n = k_new->shape[2];
    for (int64_t b = 0; b < c->batch; b++) {
        const int64_t rows = count ? count[b] : n;
        store_rows(c, c->k, c->head_dim, k_new, b, c->lengths[b], rows);
        store_rows(c, c->v, c->v_dim, v_new, b, c->lengths[b], rows);
    }
}

void qkv_kv_cache_commit(qkv_kv_cache *c, int64_t n, const int32_t *count)
{
    for (int64_t b = 0; b < c->batch; b++)
        c->lengths[b] += (int32_t)(count ? count[b] : n);
}

qkv_status qkv_kv_cache_append(qkv_kv_cache *c, const qkv_tensor *k_new,
                               const qkv_tensor *v_new, const int32_t *count)
{
    const qkv_status st = qkv_kv_cache_check_append(c, k_new, v_new, count);
    if (st)
        return st;
    qkv_kv_cache_write(c, k_new, v_new, count);
    qkv_kv_cache_commit(c, k_new->shape[2], count);
    return QKV_OK;
}
