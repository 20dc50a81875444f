/*
 * cvt_f16_f32, AVX-512: dst[j] = (float)src[j] for IEEE binary16 src[j],
 * j < n (see kernels.h). VCVTPH2PS widens 16 halves exactly: subnormal
 * halves become normal floats (the conversion ignores MXCSR.DAZ), infinities
 * stay infinite and a NaN keeps its payload with the quiet bit set, exactly
 * as qkv_f16_to_f32_scalar in kernels/scalar/cvt_scalar.c (the twin).
 *
 * Tail: the last n % 16 elements use a masked 16-bit load and a masked
 * store, so nothing past src[n-1] is read and nothing past dst[n-1] is
 * written. No alignment requirement.
 */
#include "exp_avx512.h"
#include "kernels_avx512.h"

void qkv_cvt_f16_f32_avx512(int64_t n, const uint16_t *src, float *dst)
{
    int64_t j = 0;
    for (; j + QKV_AVX512_LANES <= n; j += QKV_AVX512_LANES) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(src + j));
        _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(h));
    }
    if (j < n) {
        const __mmask16 tail = qkv_lanes_avx512(n - j);
        const __m256i h = _mm256_maskz_loadu_epi16(tail, src + j);
        _mm512_mask_storeu_ps(dst + j, tail, _mm512_cvtph_ps(h));
    }
}
