/*
 * What both fuzz targets share: a reader that turns the fuzzer's bytes
 * into choices (0 once the input is used up, so a short input is a
 * small, valid call), exactly-sized buffers with before/after snapshots
 * (so ASan catches any read or write outside what a call may touch, and
 * the harness catches writes it may not make), and the set of statuses
 * that a call may return.
 */
#ifndef QKV_FUZZ_COMMON_H
#define QKV_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qkv.h"

typedef struct fz_reader {
    const uint8_t *p;
    size_t n;
} fz_reader;

static inline uint8_t fz_byte(fz_reader *r)
{
    if (!r->n)
        return 0;
    r->n--;
    return *r->p++;
}

/* 1 + (byte % range): a small positive size. */
static inline int64_t fz_small(fz_reader *r, int range)
{
    return 1 + fz_byte(r) % range;
}

/* Sizes a fault may put in place of a valid one: two huge values whose
   byte counts always overflow, zero and negatives. */
static inline int64_t fz_bad_size(fz_reader *r)
{
    static const int64_t bad[] = {0, -1, INT64_MAX, (int64_t)1 << 62, INT64_MIN, -7};
    return bad[fz_byte(r) % (sizeof bad / sizeof bad[0])];
}

/* Bit (1 << status) for each status a call may return. */
typedef unsigned fz_expect;
#define FZ_BIT(s) (1u << (unsigned)(s))

/* Multiplication that wraps instead of overflowing (the harness builds
   strides from hostile sizes; the library must reject them, the harness
   must not have undefined behaviour computing them). */
static inline int64_t fz_wmul(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a * (uint64_t)b);
}

static inline int64_t fz_wadd(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

/* ---- buffers ----------------------------------------------------- */

enum { FZ_MAX_BLOCKS = 12 };

/* Up to FZ_MAX_BLOCKS heap blocks, each exactly as large as the objects
   placed in it, plus a snapshot and a map of the bytes a successful call
   may write. */
typedef struct fz_arena {
    int n;
    size_t size[FZ_MAX_BLOCKS];
    unsigned char *mem[FZ_MAX_BLOCKS], *copy[FZ_MAX_BLOCKS], *writable[FZ_MAX_BLOCKS];
} fz_arena;

/* Reserves bytes at offset in block b (created on first use). */
static inline void fz_reserve(fz_arena *a, int b, size_t offset, size_t bytes)
{
    if (b >= a->n)
        a->n = b + 1;
    if (offset + bytes > a->size[b])
        a->size[b] = offset + bytes;
}

static inline void fz_alloc(fz_arena *a)
{
    for (int b = 0; b < a->n; b++) {
        const size_t sz = a->size[b] ? a->size[b] : 1;
        a->mem[b] = malloc(sz);
        a->copy[b] = malloc(sz);
        a->writable[b] = calloc(sz, 1);
        if (!a->mem[b] || !a->copy[b] || !a->writable[b])
            abort();
        memset(a->mem[b], 0xA5, sz);
    }
}

static inline void fz_snapshot(fz_arena *a)
{
    for (int b = 0; b < a->n; b++)
        memcpy(a->copy[b], a->mem[b], a->size[b]);
}

/* Marks bytes [p, p + bytes) as writable by a successful call. */
static inline void fz_mark_writable(fz_arena *a, const void *p, size_t bytes)
{
    for (int b = 0; b < a->n; b++) {
        const unsigned char *lo = a->mem[b];
        if ((const unsigned char *)p >= lo && (const unsigned char *)p < lo + a->size[b]) {
            memset(a->writable[b] + ((const unsigned char *)p - lo), 1, bytes);
            return;
        }
    }
}

/* The first changed byte that was not allowed to change, or -1. With
   any_write_ok == 0, every byte must be unchanged. */
static inline long fz_find_bad_write(const fz_arena *a, int any_write_ok, int *block)
{
    for (int b = 0; b < a->n; b++)
        for (size_t i = 0; i < a->size[b]; i++)
            if (a->mem[b][i] != a->copy[b][i] && !(any_write_ok && a->writable[b][i])) {
                *block = b;
                return (long)i;
            }
    return -1;
}

static inline void fz_free(fz_arena *a)
{
    for (int b = 0; b < a->n; b++) {
        free(a->mem[b]);
        free(a->copy[b]);
        free(a->writable[b]);
    }
    memset(a, 0, sizeof *a);
}

/* A failed property: print and abort, so that libFuzzer saves the input. */
#define FZ_FAIL(...)                                         \
    do {                                                     \
        fprintf(stderr, "fuzz property failed: " __VA_ARGS__); \
        fprintf(stderr, "\n");                               \
        abort();                                             \
    } while (0)

#endif
