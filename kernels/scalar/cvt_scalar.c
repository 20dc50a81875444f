/*
 * Storage-type conversions to float, scalar: IEEE binary16 and bfloat16.
 * Both are exact widenings. The twins of the F16C / AVX-512 / NEON
 * conversions.
 *
 * binary16: sign s, 5-bit exponent e, 10-bit fraction f.
 *   e = 0:  (-1)^s * f * 2^-24           (zero and subnormals)
 *   e = 31: inf (f = 0) or NaN (payload kept, made quiet as hardware does)
 *   else:   rebias the exponent by 127 - 15 and shift f into place.
 * bfloat16 is the upper half of a float: a 16-bit shift.
 */
#include <string.h>

#include "kernels_scalar.h"

float qkv_f16_to_f32_scalar(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t frac = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        /* f * 2^-24 is exact in float: 2^-24 is a power of two. */
        float mag = (float)frac * 0x1p-24f;
        memcpy(&bits, &mag, sizeof bits);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (frac << 13) | (frac ? 0x00400000u : 0u);
    } else {
        bits = sign | ((exp + 112u) << 23) | (frac << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float qkv_bf16_to_f32_scalar(uint16_t h)
{
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

void qkv_cvt_f16_f32_scalar(int64_t n, const uint16_t *src, float *dst)
{
    for (int64_t j = 0; j < n; j++)
        dst[j] = qkv_f16_to_f32_scalar(src[j]);
}

void qkv_cvt_bf16_f32_scalar(int64_t n, const uint16_t *src, float *dst)
{
    for (int64_t j = 0; j < n; j++)
        dst[j] = qkv_bf16_to_f32_scalar(src[j]);
}
