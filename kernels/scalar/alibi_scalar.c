/*
 * alibi, scalar: s[c] -= slope * (float)|diag - c| for c < n (see
 * kernels.h): ALiBi's linear bias on a row of logits. The twin of every
 * SIMD alibi, and the path they take for rows outside
 * qkv_alibi_vector_row. No alignment requirement.
 */
#include "kernels_scalar.h"

void qkv_alibi_scalar(int64_t n, float *s, float slope, int64_t diag)
{
    for (int64_t c = 0; c < n; c++) {
        const int64_t dist = diag - c;
        s[c] -= slope * (float)(dist < 0 ? -dist : dist);
    }
}
