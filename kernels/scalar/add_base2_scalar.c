/*
 * add_base2, scalar: s[j] += qkv_to_base2(m[j]) for j < n, and s[j] =
 * -INFINITY where m[j] is -INFINITY (see kernels.h): a row of an additive
 * mask, natural units, added to base-2 logits. The twin of every SIMD
 * add_base2. No alignment requirement.
 */
#include <math.h>

#include "kernels_scalar.h"

void qkv_add_base2_scalar(int64_t n, float *s, const float *m)
{
    for (int64_t j = 0; j < n; j++)
        s[j] = m[j] == -INFINITY ? -INFINITY : s[j] + qkv_to_base2(m[j]);
}
