/*
 * Vector exp for the NEON kernels: four floats at a time, AArch64 baseline
 * only. Shared by softmax_tile_neon.c and exp_shift_scale_neon.c; its scalar
 * twin is libm's expf, which the scalar kernels call.
 *
 * Math: exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n*ln2 with ln2
 * split in a high and a low part (two fused steps, so r is exact to float
 * precision), |r| <= ln2/2. exp(r) = 1 + r + r^2 * q(r), q a degree-4
 * polynomial fitted (weighted least squares, coefficients rounded to float)
 * to (exp(r) - 1 - r) / r^2; the polynomial alone is within 4e-9 of exp.
 * The scale 2^n is applied as two factors 2^floor(n/2) and 2^(n - floor(n/2)),
 * both normal floats, so the one rounding of the last product gives correct
 * subnormal results and overflow to +inf.
 *
 * Measured against exp in double (qemu-aarch64): every 61st float bit
 * pattern of both signs (70 million values) plus every float in
 * [-104.5, -64), [64, 89) and 0.3 <= |x| < 0.35: max relative error
 * 1.19e-7 (1.0 ulp at 2^-23) for normal results; subnormal results within
 * 0.8 of a subnormal ulp.
 *
 * Edges: x is clamped to [-104, 89] first; exp(-104) < 2^-150 rounds to +0,
 * so everything below the underflow threshold (-103.97) is +0 and
 * exp(-inf) = +0; exp(89) overflows, so x > 88.72 and +inf give +inf.
 * FMIN/FMAX propagate NaN, so NaN in gives NaN out.
 */
#ifndef QKV_EXP_NEON_H
#define QKV_EXP_NEON_H

#include <arm_neon.h>

static inline float32x4_t qkv_exp_f32x4_neon(float32x4_t x)
{
    const float32x4_t lowest = vdupq_n_f32(-104.0f);
    const float32x4_t highest = vdupq_n_f32(89.0f);
    const float32x4_t log2e = vdupq_n_f32(0x1.715476p+0f);
    const float32x4_t ln2_hi = vdupq_n_f32(0x1.62e43p-1f);
    const float32x4_t ln2_lo = vdupq_n_f32(-0x1.05c61p-29f);
    const float32x4_t c2 = vdupq_n_f32(0x1.fffff8p-2f);
    const float32x4_t c3 = vdupq_n_f32(0x1.55548ep-3f);
    const float32x4_t c4 = vdupq_n_f32(0x1.555b58p-5f);
    const float32x4_t c5 = vdupq_n_f32(0x1.123b9ep-7f);
    const float32x4_t c6 = vdupq_n_f32(0x1.687bf8p-10f);
    const float32x4_t one = vdupq_n_f32(1.0f);

    x = vminq_f32(vmaxq_f32(x, lowest), highest);

    /* n in [-150, 128]; NaN converts to 0 and stays NaN through r. */
    const int32x4_t n = vcvtnq_s32_f32(vmulq_f32(x, log2e));
    const float32x4_t nf = vcvtq_f32_s32(n);
    float32x4_t r = vfmsq_f32(x, nf, ln2_hi);
    r = vfmsq_f32(r, nf, ln2_lo);

    float32x4_t q = vfmaq_f32(c5, c6, r);
    q = vfmaq_f32(c4, q, r);
    q = vfmaq_f32(c3, q, r);
    q = vfmaq_f32(c2, q, r);
    const float32x4_t r2 = vmulq_f32(r, r);
    const float32x4_t p = vfmaq_f32(vaddq_f32(one, r), q, r2);

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
    return vmulq_f32(vmulq_f32(p, scale1), scale2);
}

#endif /* QKV_EXP_NEON_H */
