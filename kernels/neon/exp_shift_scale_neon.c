/*
 * exp_shift_scale, NEON: dst[j] = 2^(src[j] - shift) * mul for j < n,
 * with the vector exp2 of exp_neon.h (about one ulp, no denormal results,
 * 2^-inf = +0, NaN stays NaN). src may equal dst: each
 * element is read before it is written. Scalar twin: qkv_exp_shift_scale_scalar
 * (kernels/scalar/exp_shift_scale_scalar.c).
 *
 * Four elements per step; the last n % 4 go through qkv_tail_load_neon
 * (padded with -inf, whose results are dropped) and qkv_tail_store_neon
 * (kernels_neon.h), so the tail uses the same exp2 as the body without
 * reading past src[n-1] or writing past dst[n-1]. Any alignment.
 */
#include <arm_neon.h>
#include <math.h>

#include "exp_neon.h"
#include "kernels_neon.h"

static inline float32x4_t exp_shift_scale4(float32x4_t x, float32x4_t shift,
                                           float32x4_t mul)
{
    return vmulq_f32(qkv_exp2_f32x4_neon(vsubq_f32(x, shift)), mul);
}

void qkv_exp_shift_scale_neon(int64_t n, const float *src, float shift,
                              float mul, float *dst)
{
    const float32x4_t vshift = vdupq_n_f32(shift);
    const float32x4_t vmul = vdupq_n_f32(mul);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        vst1q_f32(dst + j, exp_shift_scale4(vld1q_f32(src + j), vshift, vmul));
    const int64_t rest = n - j;
    if (rest > 0)
        qkv_tail_store_neon(dst + j, rest,
                            exp_shift_scale4(qkv_tail_load_neon(src + j, rest, -INFINITY),
                                             vshift, vmul));
}
