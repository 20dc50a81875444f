/*
 * softcap, AVX2: s[j] = cap * tanh(s[j] / cap) for j < n (see kernels.h).
 * Twin: qkv_softcap_scalar (kernels/scalar/softcap_scalar.c), which calls
 * tanhf; this kernel also hands it the caps outside
 * qkv_softcap_vector_cap.
 *
 * Per 8 logits: y = s * (1 / cap), clamped to +-QKV_TANH_CLAMP (MINPS and
 * MAXPS return their second operand when one is NaN, and that operand is
 * y, so NaN passes); t = y^2; tanh(y) ~ y P(t) / Q(t) with the shared
 * coefficients of kernels.h (nine FMAs); a true division by Q(t), since
 * RCPPS has only 12 bits (one Newton step would leave about 2^-23); then
 * times cap. Maximum error against cap * tanh(s / cap) in double,
 * measured by tests/checkkern.c: relative 2.5e-7 (2.1 x 2^-23).
 *
 * Tail: the last n % 8 logits go through the stack-buffer tail load and
 * store of exp_avx2.h; nothing outside s[0..n-1] is touched. No alignment
 * requirement.
 */
#include "exp_avx2.h"
#include "kernels_avx2.h"
#include "kernels_scalar.h"

static inline __m256 softcap8(__m256 s, __m256 cap, __m256 inv_cap)
{
    const __m256 clamp = _mm256_set1_ps(QKV_TANH_CLAMP);
    __m256 y = _mm256_mul_ps(s, inv_cap);
    y = _mm256_max_ps(_mm256_set1_ps(-QKV_TANH_CLAMP), _mm256_min_ps(clamp, y));
    const __m256 t = _mm256_mul_ps(y, y);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(QKV_TANH_P6), t, _mm256_set1_ps(QKV_TANH_P5));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(QKV_TANH_P4));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(QKV_TANH_P3));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(QKV_TANH_P2));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(QKV_TANH_P1));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(QKV_TANH_P0));
    __m256 q = _mm256_fmadd_ps(_mm256_set1_ps(QKV_TANH_Q3), t, _mm256_set1_ps(QKV_TANH_Q2));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(QKV_TANH_Q1));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(QKV_TANH_Q0));
    return _mm256_mul_ps(_mm256_div_ps(_mm256_mul_ps(y, p), q), cap);
}

void qkv_softcap_avx2(int64_t n, float *s, float cap)
{
    if (!qkv_softcap_vector_cap(cap)) {
        qkv_softcap_scalar(n, s, cap);
        return;
    }
    const __m256 cap_v = _mm256_set1_ps(cap), inv_cap = _mm256_set1_ps(1.0f / cap);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(s + j, softcap8(_mm256_loadu_ps(s + j), cap_v, inv_cap));
    if (j < n) {
        const __m256i mask = qkv_tail_mask_avx2(n - j);
        qkv_tail_store_avx2(s + j, mask,
                            softcap8(qkv_tail_load_avx2(s + j, mask), cap_v, inv_cap));
    }
}
