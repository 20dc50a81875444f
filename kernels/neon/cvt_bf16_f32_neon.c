/*
 * cvt_bf16_f32, NEON: dst[j] = (float)src[j] for j < n, src holding
 * bfloat16 bit patterns. Scalar twin: qkv_cvt_bf16_f32_scalar
 * (kernels/scalar/cvt_scalar.c).
 *
 * A bfloat16 is the upper half of a float, so widening is a 16-bit left
 * shift of the bits (USHLL): exact for every value, inf, NaN payloads and
 * subnormals included. Eight elements per step, the last n % 8 through the
 * scalar one-element conversion: no read past src[n-1], no write past
 * dst[n-1]. Any alignment.
 */
#include <arm_neon.h>

#include "kernels_neon.h"
#include "kernels_scalar.h"

void qkv_cvt_bf16_f32_neon(int64_t n, const uint16_t *src, float *dst)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const uint16x8_t h = vld1q_u16(src + j);
        const uint32x4_t lo = vshll_n_u16(vget_low_u16(h), 16);
        const uint32x4_t hi = vshll_high_n_u16(h, 16);
        vst1q_f32(dst + j, vreinterpretq_f32_u32(lo));
        vst1q_f32(dst + j + 4, vreinterpretq_f32_u32(hi));
    }
    for (; j < n; j++)
        dst[j] = qkv_bf16_to_f32_scalar(src[j]);
}
