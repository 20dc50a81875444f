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
 * The scale 2^n is applied as two factors 2^floor(n/2) and
 * 2^(n - floor(n/2)), both normal floats, so the top of the range (n = 128)
 * is reached without overflowing the scale itself, and x > 88.72 overflows
 * to +inf in the last product.
 *
 * No denormal result, as in the AVX2 and AVX-512 exps: a result below
 * FLT_MIN (x below about -87.34) is flushed to +0, an absolute error under
 * 1.2e-38. So exp(-inf) = +0, and any x below the underflow threshold.
 *
 * Measured against exp in double (qemu-aarch64): every 61st float bit
 * pattern of both signs (70 million values) plus every float in
 * [-104.5, -64), [64, 89) and 0.3 <= |x| < 0.35: max relative error
 * 1.19e-7 (1.0 ulp at 2^-23) for results >= FLT_MIN.
 *
 * Edges: x is clamped to [-104, 89] first (so n fits the exponent field);
 * FMIN/FMAX propagate NaN, and NaN fails the FLT_MIN compare, so NaN in
 * gives NaN out; +inf gives +inf.
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
    const float32x4_t y = vmulq_f32(vmulq_f32(p, scale1), scale2);
    const uint32x4_t tiny = vcltq_f32(y, vdupq_n_f32(0x1p-126f));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(y), tiny));
}

#endif /* QKV_EXP_NEON_H */
