/*
 * scale_row, scalar: dst[j] = src[j] * mul for j < n (see kernels.h). The
 * twin of every SIMD scale_row. No alignment requirement.
 */
#include "kernels_scalar.h"

void qkv_scale_row_scalar(int64_t n, const float *src, float mul, float *dst)
{
    for (int64_t j = 0; j < n; j++)
        dst[j] = src[j] * mul;
}
