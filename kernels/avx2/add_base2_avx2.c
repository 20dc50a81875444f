/*
 * add_base2, AVX2: s[j] += qkv_to_base2(m[j]) for j < n, and s[j] =
 * -INFINITY where m[j] is -INFINITY (see kernels.h). Per 8 entries:
 * y = m * log2(e); lanes where |y| is +inf but |m| is not (m finite, or
 * NaN, whose y is NaN and so never +inf) take +-FLT_MAX with m's sign;
 * then s + y, and -inf in the lanes where m is -inf (so that they block
 * also a NaN or +inf logit). The product and the sum round once each, as in
 * the scalar twin qkv_add_base2_scalar (kernels/scalar/add_base2_scalar.c),
 * so the results are bitwise equal.
 *
 * Tail: the last n % 8 entries go through the stack-buffer tail loads and
 * stores of exp_avx2.h; nothing outside s[0..n-1] and m[0..n-1] is
 * touched. No alignment requirement.
 */
#include <float.h>
#include <math.h>

#include "exp_avx2.h"
#include "kernels_avx2.h"

static inline __m256 to_base2(__m256 m)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), inf = _mm256_set1_ps(INFINITY);
    const __m256 y = _mm256_mul_ps(m, _mm256_set1_ps(QKV_LOG2E_F));
    const __m256 overflowed = _mm256_and_ps(
        _mm256_cmp_ps(_mm256_andnot_ps(sign, y), inf, _CMP_EQ_OQ),
        _mm256_cmp_ps(_mm256_andnot_ps(sign, m), inf, _CMP_NEQ_OQ));
    const __m256 signed_max = _mm256_or_ps(_mm256_and_ps(m, sign), _mm256_set1_ps(FLT_MAX));
    return _mm256_blendv_ps(y, signed_max, overflowed);
}

static inline __m256 add8(__m256 s, __m256 m)
{
    const __m256 minus_inf = _mm256_set1_ps(-INFINITY);
    return _mm256_blendv_ps(_mm256_add_ps(s, to_base2(m)), minus_inf,
                            _mm256_cmp_ps(m, minus_inf, _CMP_EQ_OQ));
}

void qkv_add_base2_avx2(int64_t n, float *s, const float *m)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(s + j, add8(_mm256_loadu_ps(s + j), _mm256_loadu_ps(m + j)));
    if (j < n) {
        const __m256i mask = qkv_tail_mask_avx2(n - j);
        qkv_tail_store_avx2(s + j, mask, add8(qkv_tail_load_avx2(s + j, mask),
                                              qkv_tail_load_avx2(m + j, mask)));
    }
}
