/*
 * The prefetch of the qk_half / pv_half kernels (kernels.h: b_next,
 * v_next): plain C, shared by every ISA's kernels.
 */
#ifndef QKV_HALF_PREFETCH_H
#define QKV_HALF_PREFETCH_H

#include <stdint.h>

/* Asks for the cache lines of `width` halves at row to be brought into
   the caches. A hint: it reads nothing and cannot fault, so the rows need
   not exist. The last element's line is asked for separately, as a row
   that starts inside a line may end one line further than its length. */
static inline void qkv_prefetch_halves(const uint16_t *row, int64_t width)
{
    const char *p = (const char *)row, *end = (const char *)(row + width);
    for (; p < end; p += 64)
        __builtin_prefetch(p, 0, 3);
    __builtin_prefetch(end - 1, 0, 3);
}

#endif /* QKV_HALF_PREFETCH_H */
