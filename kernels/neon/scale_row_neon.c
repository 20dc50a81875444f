/*
 * scale_row, NEON: dst[j] = src[j] * mul for j < n (see kernels.h). Twin:
 * qkv_scale_row_scalar (kernels/scalar/scale_row_scalar.c); one rounded
 * product per element in both, so the results are bitwise equal.
 *
 * Tail: the last n % 4 elements one at a time; nothing outside
 * src[0..n-1] is read or dst[0..n-1] written. Any alignment.
 */
#include <arm_neon.h>

#include "kernels_neon.h"

void qkv_scale_row_neon(int64_t n, const float *src, float mul, float *dst)
{
    const float32x4_t mul_v = vdupq_n_f32(mul);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        vst1q_f32(dst + j, vmulq_f32(vld1q_f32(src + j), mul_v));
    for (; j < n; j++)
        dst[j] = src[j] * mul;
}
