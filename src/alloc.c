/* The library's only allocator: aligned, so kernels may use aligned
   loads on scratch. */
#include <stdlib.h>

#include "internal.h"

void *qkv_alloc(size_t bytes)
{
    if (bytes == 0)
        return NULL;
    /* aligned_alloc wants a multiple of the alignment. */
    size_t rounded = (bytes + QKV_SCRATCH_ALIGN - 1) & ~(size_t)(QKV_SCRATCH_ALIGN - 1);
    if (rounded < bytes)
        return NULL;
    return aligned_alloc(QKV_SCRATCH_ALIGN, rounded);
}

void qkv_free(void *p)
{
    free(p);
}
