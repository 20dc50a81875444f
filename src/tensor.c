/* Tensor views and the arithmetic that validation needs: checked
   products, the byte span of a strided view, overlap tests. */
#include "internal.h"

/* a * b, or INT64_MAX where the product overflows: a view of sizes too
   large for int64 then has a stride that validation reports as
   QKV_E_OVERFLOW, where a wrapped product could read as a negative
   stride (QKV_E_ARG), or as a small valid one. */
static int64_t saturating_mul(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

qkv_tensor qkv_tensor_bhsd(void *data, qkv_dtype dt, int64_t b, int64_t h, int64_t s, int64_t d)
{
    const int64_t sd = saturating_mul(s, d);
    qkv_tensor t = {
        .data = data, .dtype = dt,
        .shape = {b, h, s, d},
        .stride = {saturating_mul(h, sd), sd, d, 1},
    };
    return t;
}

qkv_tensor qkv_tensor_bshd(void *data, qkv_dtype dt, int64_t b, int64_t s, int64_t h, int64_t d)
{
    const int64_t hd = saturating_mul(h, d);
    qkv_tensor t = {
        .data = data, .dtype = dt,
        .shape = {b, h, s, d},
        .stride = {saturating_mul(s, hd), d, hd, 1},
    };
    return t;
}

size_t qkv_dtype_size(qkv_dtype dt)
{
    switch (dt) {
    case QKV_F32:  return 4;
    case QKV_F16:
    case QKV_BF16: return 2;
    }
    return 0;
}

int qkv_mul_ok(int64_t a, int64_t b, int64_t *r)
{
    return a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, r);
}

int qkv_add_ok(int64_t a, int64_t b, int64_t *r)
{
    return a >= 0 && b >= 0 && !__builtin_add_overflow(a, b, r);
}

/* Bytes from data to one past the last element, as int64 within the
   address space. */
static qkv_status span_from(const void *p, int64_t last_elem, size_t size,
                            qkv_span *span)
{
    int64_t count, bytes;
    if (!qkv_add_ok(last_elem, 1, &count) ||
        !qkv_mul_ok(count, (int64_t)size, &bytes))
        return QKV_E_OVERFLOW;
    uintptr_t lo = (uintptr_t)p;
    if ((uint64_t)bytes > (uint64_t)(UINTPTR_MAX - lo))
        return QKV_E_OVERFLOW;
    span->lo = lo;
    span->hi = lo + (uintptr_t)bytes;
    return QKV_OK;
}

qkv_status qkv_tensor_span(const qkv_tensor *t, qkv_span *span)
{
    int64_t last = 0;
    for (int d = 0; d < 4; d++) {
        int64_t step;
        if (!qkv_mul_ok(t->stride[d], t->shape[d] - 1, &step) ||
            !qkv_add_ok(last, step, &last))
            return QKV_E_OVERFLOW;
    }
    return span_from(t->data, last, qkv_dtype_size(t->dtype), span);
}

qkv_status qkv_array_span(const void *p, int64_t n, size_t size, qkv_span *span)
{
    return span_from(p, n - 1, size, span);
}

int qkv_spans_overlap(qkv_span a, qkv_span b)
{
    return a.lo < b.hi && b.lo < a.hi;
}

int qkv_tensor_is_non_overlapping(const qkv_tensor *t)
{
    /* Order the dimensions of size > 1 by stride; each must step past
       everything the smaller ones span. */
    int dims[4], n = 0;
    for (int d = 0; d < 4; d++)
        if (t->shape[d] > 1)
            dims[n++] = d;
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0 && t->stride[dims[b]] < t->stride[dims[b - 1]]; b--) {
            int tmp = dims[b]; dims[b] = dims[b - 1]; dims[b - 1] = tmp;
        }
    int64_t spanned = 1;   /* elements covered by the smaller dimensions */
    for (int i = 0; i < n; i++) {
        int d = dims[i];
        if (t->stride[d] < spanned)
            return 0;
        /* Overflow was ruled out by qkv_tensor_span. */
        spanned = t->stride[d] * (t->shape[d] - 1) + spanned;
    }
    return 1;
}
