/*
 * The prefetch of the qk_half / pv_half kernels (kernels.h: b_next,
 * v_next): plain C, shared by every ISA's kernels.
 */
#ifndef QKV_HALF_PREFETCH_H
#define QKV_HALF_PREFETCH_H

#include <stdint.h>

/* Asks for the cache lines of `width` halves at row to be brought into
   the caches, each line once (from the line that holds row[0]). A hint:
   it reads nothing and cannot fault, so the rows need not exist. */
static inline void qkv_prefetch_halves(const uint16_t *row, int64_t width)
{
    const uintptr_t end = (uintptr_t)(row + width);
    for (uintptr_t line = (uintptr_t)row & ~(uintptr_t)63; line < end; line += 64)
        __builtin_prefetch((const void *)line, 0, 3);
}

#endif /* QKV_HALF_PREFETCH_H */
