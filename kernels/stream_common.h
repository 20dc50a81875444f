/*
 * What the qk_stream / pv_stream kernels of every ISA share (kernels.h):
 * the storage kinds of K and V rows they instantiate, and the prefetch
 * of the next call's rows. Plain C.
 */
#ifndef QKV_STREAM_COMMON_H
#define QKV_STREAM_COMMON_H

#include <stdint.h>

#include "qkv.h"

/* The storage kinds, a compile-time constant in each instantiation of a
   kernel: the element loads and the row arithmetic depend on it. */
enum { QKV_KIND_F16 = 0, QKV_KIND_BF16 = 1, QKV_KIND_F32 = 2 };

static inline int qkv_stream_kind(qkv_dtype dt)
{
    return dt == QKV_F32 ? QKV_KIND_F32 : dt == QKV_BF16 ? QKV_KIND_BF16 : QKV_KIND_F16;
}

/* Bytes per element of a kind. */
static inline int64_t qkv_kind_bytes(const int kind)
{
    return kind == QKV_KIND_F32 ? 4 : 2;
}

/* Element `at` of rows of a kind, as an address. */
static inline const void *qkv_kind_at(const int kind, const void *base, int64_t at)
{
    return (const char *)base + at * qkv_kind_bytes(kind);
}

/* Asks for the cache lines of the `bytes` bytes at row to be brought into
   the caches, each line once (from the line that holds row[0]). A hint:
   it reads nothing and cannot fault, so the row need not exist. */
static inline void qkv_prefetch_row(const void *row, int64_t bytes)
{
    const uintptr_t end = (uintptr_t)row + (uintptr_t)bytes;
    for (uintptr_t line = (uintptr_t)row & ~(uintptr_t)63; line < end; line += 64)
        __builtin_prefetch((const void *)line, 0, 3);
}

#endif /* QKV_STREAM_COMMON_H */
