/*
 * Loading K and V elements of any storage kind (stream_common.h) as floats
 * inside the NEON stream kernels (qk_stream, pv_stream): F32 as it is,
 * F16 / BF16 widened. Static inline only; AArch64 baseline AdvSIMD.
 *
 * Both widenings are exact, like the scalar twins in
 * kernels/scalar/cvt_scalar.c: FCVTL turns subnormal halves into normal
 * floats, keeps infinities and a NaN's payload (quieted); a bfloat16 is
 * the upper half of a float, so a 16-bit left shift of the zero-extended
 * bits (USHLL) gives its float for every pattern.
 */
#ifndef QKV_KV_LOAD_NEON_H
#define QKV_KV_LOAD_NEON_H

#include <arm_neon.h>
#include <stdint.h>

#include "kernels_scalar.h"
#include "stream_common.h"

#define QKV_HALF_NEON_INLINE static inline __attribute__((always_inline))

/* 4 halves widened; bf16 is a compile-time constant at every call. */
QKV_HALF_NEON_INLINE float32x4_t qkv_widen4_half_neon(const int bf16, uint16x4_t h)
{
    if (bf16)
        return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
    return vcvt_f32_f16(vreinterpret_f16_u16(h));
}

/* Halves 0..3 and 4..7 of 8 halves at src, widened. */
QKV_HALF_NEON_INLINE void qkv_load8_half_neon(const int bf16, const uint16_t *src,
                                              float32x4_t *lo, float32x4_t *hi)
{
    const uint16x8_t h = vld1q_u16(src);
    if (bf16) {
        *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
        *hi = vreinterpretq_f32_u32(vshll_high_n_u16(h, 16));
    } else {
        const float16x8_t f = vreinterpretq_f16_u16(h);
        *lo = vcvt_f32_f16(vget_low_f16(f));
        *hi = vcvt_high_f32_f16(f);
    }
}

/* 4 halves at src, widened. */
QKV_HALF_NEON_INLINE float32x4_t qkv_load4_half_neon(const int bf16, const uint16_t *src)
{
    return qkv_widen4_half_neon(bf16, vld1_u16(src));
}

/* One half, widened by the scalar twin's conversion. */
QKV_HALF_NEON_INLINE float qkv_half_to_f32_neon(const int bf16, uint16_t h)
{
    return bf16 ? qkv_bf16_to_f32_scalar(h) : qkv_f16_to_f32_scalar(h);
}

/* Loads of elements of a kind (stream_common.h) from element `at` of
   rows on, as floats (halves widened); kind is a compile-time constant at
   every call. Eight: */
QKV_HALF_NEON_INLINE void qkv_load8_kv_neon(const int kind, const void *rows, int64_t at,
                                            float32x4_t *lo, float32x4_t *hi)
{
    if (kind == QKV_KIND_F32) {
        *lo = vld1q_f32((const float *)rows + at);
        *hi = vld1q_f32((const float *)rows + at + 4);
    } else {
        qkv_load8_half_neon(kind == QKV_KIND_BF16, (const uint16_t *)rows + at, lo, hi);
    }
}

/* four: */
QKV_HALF_NEON_INLINE float32x4_t qkv_load4_kv_neon(const int kind, const void *rows, int64_t at)
{
    if (kind == QKV_KIND_F32)
        return vld1q_f32((const float *)rows + at);
    return qkv_load4_half_neon(kind == QKV_KIND_BF16, (const uint16_t *)rows + at);
}

/* one: */
QKV_HALF_NEON_INLINE float qkv_kv_to_f32_neon(const int kind, const void *rows, int64_t at)
{
    if (kind == QKV_KIND_F32)
        return ((const float *)rows)[at];
    return qkv_half_to_f32_neon(kind == QKV_KIND_BF16, ((const uint16_t *)rows)[at]);
}

#endif /* QKV_KV_LOAD_NEON_H */
