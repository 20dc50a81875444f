/*
 * Small static inline helpers shared by the AVX-512 kernels: tail masks,
 * horizontal reductions and the vector exp. Compiled only with the AVX-512
 * flags of kernels/meson.build.
 */
#ifndef QKV_EXP_AVX512_H
#define QKV_EXP_AVX512_H

#include <immintrin.h>
#include <stdint.h>

/* Floats per zmm register. */
#define QKV_AVX512_LANES 16

/* A mask of the first `count` lanes, count in [0, 16]. */
static inline __mmask16 qkv_lanes_avx512(int64_t count)
{
    return count >= QKV_AVX512_LANES ? (__mmask16)0xffff
                                     : (__mmask16)((1u << count) - 1u);
}

/*
 * exp(x) for 16 floats.
 *
 * Range reduction (Cody-Waite): n = round(x * log2(e)) by the 1.5*2^23
 * magic-number trick, r = x - n*ln2_hi - n*ln2_lo with ln2_hi holding 15
 * significant bits, so n*ln2_hi is exact for |n| <= 2^8 and r is exact up
 * to the last FMA; |r| <= ln2/2.
 * Polynomial: exp(r) ~ 1 + r + r^2*(c2 + c3 r + c4 r^2 + c5 r^3 + c6 r^4),
 * a relative-error minimax fit on [-ln2/2, ln2/2] (our own Remez run, with
 * c0 = c1 = 1 fixed) whose error with float coefficients is 3.8e-9. The
 * result is p * 2^n by VSCALEFPS, which is exact and overflows to +inf.
 * Maximum relative error against exp() in double over the whole float
 * range, measured by tests/checkkern.c: 7.5e-8 (0.63 ulp of 2^-23); the
 * clamp-free softmax variant below: 7.3e-8 over x <= 0.
 *
 * Special values: x < QKV_EXP_XMIN (including -inf) gives +0, never a
 * denormal: QKV_EXP_XMIN is the smallest float whose exp is >= FLT_MIN, and
 * x is clamped to it before the arithmetic so no denormal is ever formed;
 * x above ln(FLT_MAX) gives +inf (x is clamped to 89 so that r stays
 * small); NaN gives NaN (MINPS/MAXPS return their second operand, x, when
 * it is NaN).
 */
#define QKV_EXP_XMIN (-0x1.5d589ep+6f)   /* -87.33654 */
#define QKV_EXP_XCLAMP 89.0f

/* The arithmetic of the exp for x already clamped to [XMIN, XCLAMP] (or
   NaN); lanes outside `keep` give +0. The polynomial is evaluated in
   Horner form 1 + r (1 + r (c2 + r (c3 + r (c4 + r (c5 + r c6))))): six
   FMAs, two operations fewer than an Estrin scheme. Its longer dependency
   chain costs nothing in the kernels, which always have several
   independent vectors in flight, and the softmax is bound by the number
   of operations on the two vector ports. */
static inline __m512 qkv_exp_clamped_avx512(__m512 xc, __mmask16 keep)
{
    const __m512 log2e = _mm512_set1_ps(0x1.715476p+0f);
    const __m512 magic = _mm512_set1_ps(0x1.8p23f);
    const __m512 ln2_hi = _mm512_set1_ps(0x1.62e4p-1f);
    const __m512 ln2_lo = _mm512_set1_ps(0x1.7f7d1cp-20f);
    const __m512 one = _mm512_set1_ps(1.0f);

    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(xc, log2e, magic), magic);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, xc);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);

    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.6a244cp-10f), r,
                               _mm512_set1_ps(0x1.1239d4p-7f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.5558f2p-5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555492p-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.fffffcp-2f));
    p = _mm512_fmadd_ps(p, r, one);
    p = _mm512_fmadd_ps(p, r, one);
    return _mm512_maskz_scalef_ps(keep, p, n);
}

static inline __m512 qkv_exp_avx512(__m512 x)
{
    const __m512 xmin = _mm512_set1_ps(QKV_EXP_XMIN);
    /* Lanes kept: x >= xmin, or unordered (NaN). */
    const __mmask16 keep = _mm512_cmp_ps_mask(x, xmin, _CMP_NLT_UQ);
    const __m512 xc = _mm512_min_ps(_mm512_set1_ps(QKV_EXP_XCLAMP), x);
    return qkv_exp_clamped_avx512(_mm512_max_ps(xmin, xc), keep);
}

/* exp(x) for x <= 0 or NaN (a logit minus its row maximum): the same
   function as qkv_exp_avx512 on that domain, without the clamps. Lanes
   below XMIN (-inf included) compute garbage that the zero-mask of the
   final VSCALEFPS discards; no such lane can form a denormal except by an
   exact cancellation in r, which the range reduction cannot produce. */
static inline __m512 qkv_exp_nonpositive_avx512(__m512 x)
{
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(QKV_EXP_XMIN), _CMP_NLT_UQ);
    return qkv_exp_clamped_avx512(x, keep);
}

/* exp of one float through the vector code, so that scalar values (the
   softmax rescale factor) round exactly like the vector ones. */
static inline float qkv_exp1_avx512(float x)
{
    return _mm512_cvtss_f32(qkv_exp_avx512(_mm512_set1_ps(x)));
}

#endif /* QKV_EXP_AVX512_H */
