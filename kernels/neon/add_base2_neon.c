/*
 * add_base2, NEON: s[j] += qkv_to_base2(m[j]) for j < n, and s[j] =
 * -INFINITY where m[j] is -INFINITY (see kernels.h). Per 4 entries:
 * y = m * log2(e); lanes where |y| is +inf but |m| is not take +-FLT_MAX
 * with m's sign; then s + y, and -inf in the lanes where m is -inf (so
 * that they block also a NaN or +inf logit). The product and the sum round
 * once each (no fused multiply-add), as in the scalar twin
 * qkv_add_base2_scalar (kernels/scalar/add_base2_scalar.c), so the results
 * are bitwise equal.
 *
 * Tail: the last n % 4 entries go through qkv_tail_load_neon and
 * qkv_tail_store_neon (kernels_neon.h); nothing outside s[0..n-1] and
 * m[0..n-1] is touched. Any alignment.
 */
#include <arm_neon.h>
#include <float.h>
#include <math.h>

#include "kernels_neon.h"

static inline float32x4_t to_base2(float32x4_t m)
{
    const float32x4_t inf = vdupq_n_f32(INFINITY);
    const float32x4_t y = vmulq_f32(m, vdupq_n_f32(QKV_LOG2E_F));
    const uint32x4_t overflowed = vandq_u32(vceqq_f32(vabsq_f32(y), inf),
                                            vmvnq_u32(vceqq_f32(vabsq_f32(m), inf)));
    /* FLT_MAX with the sign of m: the sign bit from m, the rest from FLT_MAX. */
    const float32x4_t signed_max =
        vbslq_f32(vdupq_n_u32(0x80000000u), m, vdupq_n_f32(FLT_MAX));
    return vbslq_f32(overflowed, signed_max, y);
}

static inline float32x4_t add4(float32x4_t s, float32x4_t m)
{
    const float32x4_t minus_inf = vdupq_n_f32(-INFINITY);
    return vbslq_f32(vceqq_f32(m, minus_inf), minus_inf, vaddq_f32(s, to_base2(m)));
}

void qkv_add_base2_neon(int64_t n, float *s, const float *m)
{
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        vst1q_f32(s + j, add4(vld1q_f32(s + j), vld1q_f32(m + j)));
    if (j < n)
        qkv_tail_store_neon(s + j, n - j, add4(qkv_tail_load_neon(s + j, n - j, 0.0f),
                                               qkv_tail_load_neon(m + j, n - j, 0.0f)));
}
