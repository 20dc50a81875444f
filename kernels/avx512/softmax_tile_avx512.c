/*
 * softmax_tile, AVX-512: one online-softmax step over an m x n tile of
 * logits (the recurrence is in kernels.h). Twin:
 * qkv_softmax_tile_scalar in kernels/scalar/softmax_tile_scalar.c.
 *
 * Rows go in groups of 16; two sweeps over each group, which sits in L1:
 *   1. per row, a vector of partial maxima max(M, s[j], s[j+16], ...) with
 *      MAXPS(s, acc), which returns its second operand when s[j] is NaN: a
 *      NaN logit never becomes the max, exactly like the scalar
 *      `if (s[j] > M)` (and a NaN M stays NaN in every lane);
 *   2. per row, s[j] = 2^(s[j] - M') with the vector exp2 of exp_avx512.h
 *      (logits are in base-2 units) and a vector of partial sums. A NaN
 *      logit gives a NaN weight and so a NaN row_sum in its own row only.
 *      A row whose M' is -inf is zeroed.
 * The 16 vectors of partial maxima (then of partial sums) of a group are
 * reduced together by a transposing butterfly (reduce16) into one vector
 * holding M' (the sum) of each row in its own lane: about 3 operations per
 * row instead of a horizontal reduction of ~8 dependent ones per row, which
 * cost a quarter of the kernel's time. The per-row bookkeeping is then done
 * for 16 rows at once: alpha = 2^(M - M') by the same vector exp2, row_sum
 * = row_sum * alpha + sum and row_max = M', except in rows whose M' is -inf
 * (alpha = 1, state kept). Sums are in a different order than the scalar
 * twin: results agree within float rounding, not bitwise.
 *
 * Tail: masked loads (-inf filled for the max) and masked stores; exactly n
 * floats per row are read and written, and m entries of row_max, row_sum
 * and alpha. No alignment requirement.
 */
#include <math.h>

#include "exp_avx512.h"
#include "kernels_avx512.h"

#define LANES QKV_AVX512_LANES

typedef enum { REDUCE_MAX, REDUCE_ADD } reduce_op;

static inline __m512 combine(reduce_op op, __m512 a, __m512 b)
{
    return op == REDUCE_MAX ? _mm512_max_ps(a, b) : _mm512_add_ps(a, b);
}

/* Lane r of the result is the reduction (max or sum) of the 16 lanes of
   v[r]. Each level halves the number of vectors by combining two vectors'
   halves (256-bit, then 128-bit lanes, then pairs, then single floats), so
   that every combine works on 16 useful floats. v is clobbered. */
static inline __m512 reduce16(reduce_op op, __m512 v[16])
{
    /* Level 1: w[i] = [v[i] lo256 op hi256 | v[i+8] lo256 op hi256]. */
    for (int i = 0; i < 8; i++)
        v[i] = combine(op, _mm512_shuffle_f32x4(v[i], v[i + 8], 0x44),
                       _mm512_shuffle_f32x4(v[i], v[i + 8], 0xee));
    /* Level 2: 128-bit lanes (rows i, i+8, i+4, i+12). */
    for (int i = 0; i < 4; i++)
        v[i] = combine(op, _mm512_shuffle_f32x4(v[i], v[i + 4], 0x88),
                       _mm512_shuffle_f32x4(v[i], v[i + 4], 0xdd));
    /* Level 3: pairs of floats (rows of v[i] and v[i+2] in each lane). */
    for (int i = 0; i < 2; i++) {
        const __m512d a = _mm512_castps_pd(v[i]), b = _mm512_castps_pd(v[i + 2]);
        v[i] = combine(op, _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                       _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* Level 4: single floats. */
    const __m512 out = combine(op, _mm512_shuffle_ps(v[0], v[1], 0x88),
                               _mm512_shuffle_ps(v[0], v[1], 0xdd));
    /* After the butterfly, lanes 0..15 hold rows 0 2 1 3 8 10 9 11 4 6 5
       7 12 14 13 15; position_of_row[r] says where row r is. */
    const __m512i position_of_row = _mm512_set_epi32(15, 13, 14, 12, 7, 5, 6, 4,
                                                     11, 9, 10, 8, 3, 1, 2, 0);
    return _mm512_permutexvar_ps(position_of_row, out);
}

/* Partial maxima of one row: lanes of max(start, s[j], s[j+16], ...). */
static inline __m512 row_partial_max(int64_t n, const float *s, float start)
{
    const __m512 start_v = _mm512_set1_ps(start);
    __m512 m0 = start_v, m1 = start_v;
    int64_t j = 0;
    for (; j + 2 * LANES <= n; j += 2 * LANES) {
        m0 = _mm512_max_ps(_mm512_loadu_ps(s + j), m0);
        m1 = _mm512_max_ps(_mm512_loadu_ps(s + j + LANES), m1);
    }
    for (; j < n; j += LANES) {
        const __mmask16 lanes = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), lanes, s + j);
        m0 = _mm512_max_ps(x, m0);
    }
    /* No lane is NaN unless start is, and then every lane is. */
    return _mm512_max_ps(m0, m1);
}

static inline __m512 exp_store(float *s, __m512 max_v)
{
    const __m512 e = qkv_exp2_avx512(_mm512_sub_ps(_mm512_loadu_ps(s), max_v));
    _mm512_storeu_ps(s, e);
    return e;
}

/* s[j] = 2^(s[j] - max) for j < n; returns lanes of partial sums. Asks
   for the same stretch of the row `ahead` (NULL: none) to be brought into
   L1 as it goes. */
static inline __m512 row_exp_partial_sum(int64_t n, float *s, float max,
                                         const float *ahead)
{
    const __m512 max_v = _mm512_set1_ps(max);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        if (ahead)
            for (int line = 0; line < 4; line++)
                _mm_prefetch((const char *)(ahead + j + line * LANES), _MM_HINT_T0);
        const __m512 e0 = exp_store(s + j, max_v);
        const __m512 e1 = exp_store(s + j + LANES, max_v);
        const __m512 e2 = exp_store(s + j + 2 * LANES, max_v);
        const __m512 e3 = exp_store(s + j + 3 * LANES, max_v);
        sum0 = _mm512_add_ps(sum0, _mm512_add_ps(e0, e1));
        sum1 = _mm512_add_ps(sum1, _mm512_add_ps(e2, e3));
    }
    for (; j < n; j += LANES) {
        const __mmask16 lanes = qkv_lanes_avx512(n - j);
        const __m512 x = _mm512_maskz_loadu_ps(lanes, s + j);
        const __m512 e = qkv_exp2_avx512(_mm512_sub_ps(x, max_v));
        _mm512_mask_storeu_ps(s + j, lanes, e);
        sum0 = _mm512_mask_add_ps(sum0, lanes, sum0, e);
    }
    return _mm512_add_ps(sum0, sum1);
}

static void zero_row(int64_t n, float *s)
{
    for (int64_t j = 0; j < n; j += LANES)
        _mm512_mask_storeu_ps(s + j, qkv_lanes_avx512(n - j), _mm512_setzero_ps());
}

/* The bookkeeping of the rows in `lanes` given their new maxima and tile
   sums, one row per lane. */
static void update_rows(__mmask16 lanes, __m512 new_v, __m512 sum_v,
                        float *row_max, float *row_sum, float *alpha)
{
    const __m512 old_v = _mm512_maskz_loadu_ps(lanes, row_max);
    /* Rows that have seen an unblocked logit (NaN counts as seen). */
    const __mmask16 seen = _mm512_mask_cmp_ps_mask(
        lanes, new_v, _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
    const __m512 a = _mm512_mask_blend_ps(
        seen, _mm512_set1_ps(1.0f), qkv_exp2_avx512(_mm512_sub_ps(old_v, new_v)));
    const __m512 total = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(lanes, row_sum), a, sum_v);
    _mm512_mask_storeu_ps(alpha, lanes, a);
    _mm512_mask_storeu_ps(row_sum, seen, total);
    _mm512_mask_storeu_ps(row_max, seen, new_v);
}

/* One group of `rows` (1..16) rows, followed by `rows_after` more rows
   of the tile. While the exponentials of row r are computed (about 12
   vector operations per 16 logits, bound by the arithmetic), row r + 16
   of the next group is prefetched for its maxima sweep, which would
   otherwise wait on L2: the tile (192 x 128 floats) does not fit in L1.
   Measured on the attention walk, D = 64: softmax_tile 11% faster. */
static void softmax_group(int64_t rows, int64_t rows_after, int64_t n, float *s,
                          int64_t lds, float *row_max, float *row_sum, float *alpha)
{
    const __mmask16 lanes = qkv_lanes_avx512(rows);
    __m512 part[LANES];
    float new_max[LANES];
    for (int64_t r = 0; r < LANES; r++)
        part[r] = r < rows ? row_partial_max(n, s + r * lds, row_max[r])
                           : _mm512_set1_ps(-INFINITY);
    const __m512 max_v = reduce16(REDUCE_MAX, part);
    _mm512_storeu_ps(new_max, max_v);
    for (int64_t r = 0; r < LANES; r++) {
        float *s_row = s + r * lds;
        if (r >= rows) {
            part[r] = _mm512_setzero_ps();
        } else if (new_max[r] == -INFINITY) {
            /* Every logit so far is blocked: nothing to accumulate. */
            zero_row(n, s_row);
            part[r] = _mm512_setzero_ps();
        } else {
            part[r] = row_exp_partial_sum(n, s_row, new_max[r],
                                          r < rows_after ? s_row + LANES * lds : NULL);
        }
    }
    update_rows(lanes, max_v, reduce16(REDUCE_ADD, part), row_max, row_sum, alpha);
}

void qkv_softmax_tile_avx512(int64_t m, int64_t n, float *s, int64_t lds,
                             float *row_max, float *row_sum, float *alpha)
{
    for (int64_t i0 = 0; i0 < m; i0 += LANES) {
        const int64_t rows = m - i0 < LANES ? m - i0 : LANES;
        softmax_group(rows, m - i0 - rows, n, s + i0 * lds, lds, row_max + i0,
                      row_sum + i0, alpha + i0);
    }
}
