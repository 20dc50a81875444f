/*
 * softcap, NEON: s[j] = cap * tanh(s[j] / cap) for j < n (see kernels.h).
 * Twin: qkv_softcap_scalar (kernels/scalar/softcap_scalar.c), which calls
 * tanhf; this kernel also hands it the caps outside
 * qkv_softcap_vector_cap.
 *
 * Per 4 logits: y = s * (1 / cap), clamped to +-QKV_TANH_CLAMP (FMIN and
 * FMAX return NaN when an operand is NaN, so NaN passes); t = y^2;
 * tanh(y) ~ y P(t) / Q(t) with the shared coefficients of kernels.h (nine
 * fused multiply-adds); a true division by Q(t); then times cap. Maximum
 * error against cap * tanh(s / cap) in double, measured by
 * tests/checkkern.c under emulation: relative 2.5e-7 (2.1 x 2^-23).
 *
 * Tail: the last n % 4 logits go through qkv_tail_load_neon and
 * qkv_tail_store_neon (kernels_neon.h); nothing outside s[0..n-1] is
 * touched. Any alignment.
 */
#include <arm_neon.h>

#include "kernels_neon.h"
#include "kernels_scalar.h"

/* c + a * b, fused. */
static inline float32x4_t fma4(float32x4_t c, float32x4_t a, float32x4_t b)
{
    return vfmaq_f32(c, a, b);
}

static inline float32x4_t softcap4(float32x4_t s, float32x4_t cap, float32x4_t inv_cap)
{
    float32x4_t y = vmulq_f32(s, inv_cap);
    y = vmaxq_f32(vminq_f32(y, vdupq_n_f32(QKV_TANH_CLAMP)), vdupq_n_f32(-QKV_TANH_CLAMP));
    const float32x4_t t = vmulq_f32(y, y);
    float32x4_t p = fma4(vdupq_n_f32(QKV_TANH_P5), vdupq_n_f32(QKV_TANH_P6), t);
    p = fma4(vdupq_n_f32(QKV_TANH_P4), p, t);
    p = fma4(vdupq_n_f32(QKV_TANH_P3), p, t);
    p = fma4(vdupq_n_f32(QKV_TANH_P2), p, t);
    p = fma4(vdupq_n_f32(QKV_TANH_P1), p, t);
    p = fma4(vdupq_n_f32(QKV_TANH_P0), p, t);
    float32x4_t q = fma4(vdupq_n_f32(QKV_TANH_Q2), vdupq_n_f32(QKV_TANH_Q3), t);
    q = fma4(vdupq_n_f32(QKV_TANH_Q1), q, t);
    q = fma4(vdupq_n_f32(QKV_TANH_Q0), q, t);
    return vmulq_f32(vdivq_f32(vmulq_f32(y, p), q), cap);
}

void qkv_softcap_neon(int64_t n, float *s, float cap)
{
    if (!qkv_softcap_vector_cap(cap)) {
        qkv_softcap_scalar(n, s, cap);
        return;
    }
    const float32x4_t cap_v = vdupq_n_f32(cap), inv_cap = vdupq_n_f32(1.0f / cap);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        vst1q_f32(s + j, softcap4(vld1q_f32(s + j), cap_v, inv_cap));
    if (j < n)
        qkv_tail_store_neon(s + j, n - j,
                            softcap4(qkv_tail_load_neon(s + j, n - j, 0.0f), cap_v, inv_cap));
}
