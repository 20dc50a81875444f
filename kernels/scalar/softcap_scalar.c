/*
 * softcap, scalar: s[j] = cap * tanh(s[j] / cap) for j < n (see
 * kernels.h), with the C library's tanhf. The twin of every SIMD softcap,
 * and the path they take for caps outside qkv_softcap_vector_cap. No
 * alignment requirement.
 *
 * A division, not a multiplication by 1 / cap: for a subnormal cap 1 / cap
 * is +inf, and 0 * inf would be NaN.
 */
#include <math.h>

#include "kernels_scalar.h"

void qkv_softcap_scalar(int64_t n, float *s, float cap)
{
    for (int64_t j = 0; j < n; j++)
        s[j] = cap * tanhf(s[j] / cap);
}
