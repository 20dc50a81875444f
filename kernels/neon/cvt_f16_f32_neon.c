/*
 * cvt_f16_f32, NEON: dst[j] = (float)src[j] for j < n, src holding IEEE
 * binary16 bit patterns. Scalar twin: qkv_cvt_f16_f32_scalar
 * (kernels/scalar/cvt_scalar.c).
 *
 * FCVT (vcvt_f32_f16) widens exactly: subnormal halves become normal
 * floats, inf stays inf, and a NaN keeps its payload and comes out quiet,
 * as the scalar twin does. Eight elements per step (two FCVTs), the last
 * n % 8 through the scalar twin's one-element conversion, so nothing is
 * read past src[n-1] or written past dst[n-1]. Any alignment.
 */
#include <arm_neon.h>

#include "kernels_neon.h"
#include "kernels_scalar.h"

void qkv_cvt_f16_f32_neon(int64_t n, const uint16_t *src, float *dst)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(src + j));
        vst1q_f32(dst + j, vcvt_f32_f16(vget_low_f16(h)));
        vst1q_f32(dst + j + 4, vcvt_high_f32_f16(h));
    }
    for (; j < n; j++)
        dst[j] = qkv_f16_to_f32_scalar(src[j]);
}
