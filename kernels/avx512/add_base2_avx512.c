/*
 * add_base2, AVX-512: s[j] += qkv_to_base2(m[j]) for j < n, and s[j] =
 * -INFINITY where m[j] is -INFINITY (see kernels.h). Per 16 entries:
 * y = m * log2(e); lanes where y is +-inf but m is finite (VFPCLASSPS)
 * take +-FLT_MAX with m's sign; then s + y, and -inf in the lanes where m
 * is -inf (so that they block also a NaN or +inf logit). The
 * product and the sum round once each, as in the scalar twin
 * qkv_add_base2_scalar (kernels/scalar/add_base2_scalar.c), so the results
 * are bitwise equal.
 *
 * Tail: masked loads and store of the last n % 16 entries; nothing outside
 * s[0..n-1] and m[0..n-1] is touched. No alignment requirement.
 */
#include <float.h>
#include <math.h>

#include "exp_avx512.h"
#include "kernels_avx512.h"

#define INF_CLASSES 0x18   /* VFPCLASSPS: +inf | -inf */

static inline __m512 to_base2(__m512 m)
{
    const __m512 y = _mm512_mul_ps(m, _mm512_set1_ps(QKV_LOG2E_F));
    const __mmask16 overflowed = _mm512_fpclass_ps_mask(y, INF_CLASSES) &
                                 (__mmask16)~_mm512_fpclass_ps_mask(m, INF_CLASSES);
    /* FLT_MAX with the sign of m: bitwise (m & sign) | FLT_MAX. */
    const __m512 signed_max = _mm512_or_ps(_mm512_and_ps(m, _mm512_set1_ps(-0.0f)),
                                           _mm512_set1_ps(FLT_MAX));
    return _mm512_mask_mov_ps(y, overflowed, signed_max);
}

static inline __m512 add16(__m512 s, __m512 m)
{
    const __m512 minus_inf = _mm512_set1_ps(-INFINITY);
    const __mmask16 blocked = _mm512_cmp_ps_mask(m, minus_inf, _CMP_EQ_OQ);
    return _mm512_mask_mov_ps(_mm512_add_ps(s, to_base2(m)), blocked, minus_inf);
}

void qkv_add_base2_avx512(int64_t n, float *s, const float *m)
{
    int64_t j = 0;
    for (; j + QKV_AVX512_LANES <= n; j += QKV_AVX512_LANES)
        _mm512_storeu_ps(s + j, add16(_mm512_loadu_ps(s + j), _mm512_loadu_ps(m + j)));
    if (j < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - j);
        _mm512_mask_storeu_ps(s + j, tail, add16(_mm512_maskz_loadu_ps(tail, s + j),
                                                 _mm512_maskz_loadu_ps(tail, m + j)));
    }
}
