/*
 * Vector 2^x for the NEON kernels: four floats at a time, AArch64 baseline
 * only (the softmax kernels take logits in base-2 units, see kernels.h).
 * Shared by softmax_tile_neon.c and exp_shift_scale_neon.c; its scalar
 * twin is libm's exp2f, which the scalar kernels call.
 *
 * Math: 2^x = 2^n * 2^r, n = round(x), r = x - n exact, |r| <= 1/2.
 * 2^r = 1 + r ln2 + r^2 * q(r), q a degree-4 polynomial: the fit of the
 * natural exp's (exp(u) - 1 - u) / u^2 on |u| <= ln2/2 with its
 * coefficients multiplied by powers of ln2 and rounded to float (within
 * 5e-9 of 2^r). The scale 2^n is applied as two factors 2^floor(n/2) and
 * 2^(n - floor(n/2)), both normal floats, so the top of the range (n =
 * 128) is reached without overflowing the scale itself, and x >= 128
 * overflows to +inf in the last product.
 *
 * No denormal result, as in the AVX2 and AVX-512 exp2s: a result below
 * FLT_MIN (x below -126) is flushed to +0, an absolute error under
 * 1.2e-38. So 2^-inf = +0, and any x below the underflow threshold.
 *
 * Measured against exp2 in double by tests/checkkern.c under qemu-aarch64
 * (every 4093rd float bit pattern, and densely at the ends of the range):
 * max relative error 1.18e-7 (0.99 ulp of 2^-23) for results >= FLT_MIN.
 *
 * Edges: x is clamped to [-150, 128.5] first (so n fits the exponent
 * field); FMIN/FMAX propagate NaN, and NaN fails the FLT_MIN compare, so
 * NaN in gives NaN out; +inf gives +inf.
 */
#ifndef QKV_EXP_NEON_H
#define QKV_EXP_NEON_H

#include <arm_neon.h>

static inline float32x4_t qkv_exp2_f32x4_neon(float32x4_t x)
{
    const float32x4_t lowest = vdupq_n_f32(-150.0f);
    const float32x4_t highest = vdupq_n_f32(128.5f);
    const float32x4_t ln2 = vdupq_n_f32(0x1.62e430p-1f);
    const float32x4_t c2 = vdupq_n_f32(0x1.ebfbd8p-3f);
    const float32x4_t c3 = vdupq_n_f32(0x1.c6af84p-5f);
    const float32x4_t c4 = vdupq_n_f32(0x1.3b3044p-7f);
    const float32x4_t c5 = vdupq_n_f32(0x1.5f0626p-10f);
    const float32x4_t c6 = vdupq_n_f32(0x1.3fd656p-13f);
    const float32x4_t one = vdupq_n_f32(1.0f);

    x = vminq_f32(vmaxq_f32(x, lowest), highest);

    /* n in [-150, 128]; NaN converts to 0 and stays NaN through r. */
    const int32x4_t n = vcvtnq_s32_f32(x);
    const float32x4_t r = vsubq_f32(x, vcvtq_f32_s32(n));

    float32x4_t q = vfmaq_f32(c5, c6, r);
    q = vfmaq_f32(c4, q, r);
    q = vfmaq_f32(c3, q, r);
    q = vfmaq_f32(c2, q, r);
    const float32x4_t r2 = vmulq_f32(r, r);
    const float32x4_t p = vfmaq_f32(vfmaq_f32(one, r, ln2), q, r2);

    /* 2^n1 * 2^n2 with n1 = floor(n/2) in [-75, 64] and n2 = n - n1 in
       [-75, 64]: each factor is a normal float built from exponent bits,
       p * 2^n1 is exact, and the last product rounds once. */
    const int32x4_t n1 = vshrq_n_s32(n, 1);
    const int32x4_t n2 = vsubq_s32(n, n1);
    const int32x4_t bias = vdupq_n_s32(127);
    const float32x4_t scale1 =
        vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, bias), 23));
    const float32x4_t scale2 =
        vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, bias), 23));
    const float32x4_t y = vmulq_f32(vmulq_f32(p, scale1), scale2);
    const uint32x4_t tiny = vcltq_f32(y, vdupq_n_f32(0x1p-126f));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), tiny));
}

#endif /* QKV_EXP_NEON_H */
