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
 * 2^x for 16 floats: the softmax kernels take logits in base-2 units
 * (kernels.h), which saves the Cody-Waite range reduction of a natural exp.
 *
 * Range reduction: f = x - floor(x) in [0, 1) by VREDUCEPS (exact, one
 * operation); the result is p(f) * 2^floor(x) by VSCALEFPS, which takes
 * the floor of its second operand itself, is exact, and overflows to +inf.
 * Polynomial: 2^f ~ 1 + f (c1 + f (c2 + ... + f c6)) in Horner form (six
 * FMAs; c0 = 1 exactly, so 2^0 == 1), a relative-error minimax fit on
 * [0, 1] (our own Remez run) whose error with the float coefficients is
 * 1.3e-8. Maximum relative error against exp2() in double over the whole
 * float range, measured by tests/checkkern.c: 7.6e-8 (0.64 ulp of 2^-23),
 * and 7.8e-8 over x <= 0 inside softmax_tile.
 *
 * Special values: VREDUCEPS gives 0 for +-inf, and VSCALEFPS then gives
 * 2^(+inf) = +inf and 2^(-inf) = +0; x >= 128 overflows to +inf; NaN gives
 * NaN. Results below FLT_MIN are never formed: lanes with x < -126
 * (QKV_EXP2_XMIN, where 2^x < FLT_MIN) are zeroed by the mask of the final
 * VSCALEFPS, so no denormal reaches the P * V kernels, where they would
 * cost microcode assists.
 *
 * Six FMAs, VREDUCEPS, VSCALEFPS and the compare for the mask: nine vector
 * operations, against twelve for a natural exp with a two-step Cody-Waite
 * reduction. The softmax is bound by the number of operations on the two
 * vector ports; its longer dependency chain costs nothing there, as the
 * kernels always have several independent vectors in flight.
 */
#define QKV_EXP2_XMIN (-126.0f)

static inline __m512 qkv_exp2_avx512(__m512 x)
{
    /* Lanes kept: x >= XMIN, or unordered (NaN). */
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(QKV_EXP2_XMIN), _CMP_NLT_UQ);
    const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.c54174p-13f), f,
                               _mm512_set1_ps(0x1.46d64ep-10f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.3d0b92p-7f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.c68912p-5f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.ebfd58p-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0x1.62e42cp-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, x);
}

#endif /* QKV_EXP_AVX512_H */
