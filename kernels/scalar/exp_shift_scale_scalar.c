/*
 * exp_shift_scale, scalar: dst[j] = exp2f(src[j] - shift) * mul (see
 * kernels.h). The twin of every SIMD exp_shift_scale; src may equal dst.
 */
#include <math.h>

#include "kernels_scalar.h"

void qkv_exp_shift_scale_scalar(int64_t n, const float *src, float shift,
                                float mul, float *dst)
{
    for (int64_t j = 0; j < n; j++)
        dst[j] = exp2f(src[j] - shift) * mul;
}
