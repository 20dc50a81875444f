/*
 * softcap, AVX-512: s[j] = cap * tanh(s[j] / cap) for j < n (see
 * kernels.h). Twin: qkv_softcap_scalar (kernels/scalar/softcap_scalar.c),
 * which calls tanhf; this kernel also hands it the caps outside
 * qkv_softcap_vector_cap.
 *
 * Per 16 logits: y = s * (1 / cap), clamped to +-QKV_TANH_CLAMP (MINPS and
 * MAXPS return their second operand when one is NaN, and that operand is
 * y, so NaN passes); t = y^2; tanh(y) ~ y P(t) / Q(t) with the shared
 * coefficients of kernels.h (nine FMAs); 1 / Q(t) by VRCP14PS and one
 * Newton step (relative error about 2^-28; Q(t) >= 1); then times cap.
 * Nineteen vector operations, against a libm call per logit in the twin.
 * Maximum error against cap * tanh(s / cap) in double, measured by
 * tests/checkkern.c: relative 2.5e-7 (2.1 x 2^-23).
 *
 * Tail: masked load and store of the last n % 16 logits; nothing outside
 * s[0..n-1] is touched. No alignment requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"
#include "kernels_scalar.h"

static inline __m512 softcap16(__m512 s, __m512 cap, __m512 inv_cap)
{
    const __m512 clamp = _mm512_set1_ps(QKV_TANH_CLAMP);
    __m512 y = _mm512_mul_ps(s, inv_cap);
    y = _mm512_max_ps(_mm512_set1_ps(-QKV_TANH_CLAMP), _mm512_min_ps(clamp, y));
    const __m512 t = _mm512_mul_ps(y, y);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(QKV_TANH_P6), t, _mm512_set1_ps(QKV_TANH_P5));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(QKV_TANH_P4));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(QKV_TANH_P3));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(QKV_TANH_P2));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(QKV_TANH_P1));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(QKV_TANH_P0));
    __m512 q = _mm512_fmadd_ps(_mm512_set1_ps(QKV_TANH_Q3), t, _mm512_set1_ps(QKV_TANH_Q2));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(QKV_TANH_Q1));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(QKV_TANH_Q0));
    __m512 r = _mm512_rcp14_ps(q);
    r = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(1.0f)), r);
    /* tanh(y) first, then cap: r * cap alone could be subnormal. */
    return _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(y, p), r), cap);
}

void qkv_softcap_avx512(int64_t n, float *s, float cap)
{
    if (!qkv_softcap_vector_cap(cap)) {
        qkv_softcap_scalar(n, s, cap);
        return;
    }
    const __m512 cap_v = _mm512_set1_ps(cap), inv_cap = _mm512_set1_ps(1.0f / cap);
    int64_t j = 0;
    for (; j + QKV_AVX512_LANES <= n; j += QKV_AVX512_LANES)
        _mm512_storeu_ps(s + j, softcap16(_mm512_loadu_ps(s + j), cap_v, inv_cap));
    if (j < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - j);
        _mm512_mask_storeu_ps(s + j, tail,
                              softcap16(_mm512_maskz_loadu_ps(tail, s + j), cap_v, inv_cap));
    }
}
