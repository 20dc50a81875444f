/*
 * gemm_nt, NEON: C = A * B^T (+ bias),
 *   C[i][j] = sum_{p<k} A[i][p] * B[j][p] (+ bias[j])   for i < m, j < n.
 * Scalar twin: qkv_gemm_nt_scalar (kernels/scalar/gemm_nt_scalar.c).
 *
 * B is packed once into scratch as ceil(n/8) panels of 8 columns of C:
 * panel[p*8 + jj] = B[j0 + jj][p], zero-filled past column n, which takes
 * ceil(n/8)*8*k <= QKV_GEMM_SCRATCH_FLOATS(n, k) floats. A micro-kernel
 * then keeps a 4 x 8 block of C in eight vector registers: per step of four
 * p it loads four floats of each A row and, for each p, one 8-float row of
 * the panel, feeding the block with vfmaq_laneq_f32. Each C[i][j] sums its
 * terms in order p = 0..k-1 (fused), then adds the bias, so it differs
 * from the twin by float rounding only.
 *
 * Tails: rows past the last multiple of 4 use a 1-row micro-kernel; the
 * last k % 4 terms broadcast one A element at a time; a partial panel
 * (n % 8 columns) is computed in full on its zero columns and only its n % 8
 * real columns are stored. A is never read past A[i][k-1], B past
 * B[n-1][k-1], bias past bias[n-1]; C is written only at i < m, j < n. Any
 * alignment.
 *
 * qkv_pack_nt_neon (all panels) and qkv_gemm_packed_neon (the blocks over
 * them; with accumulate the sums start from C, so a k split into blocks
 * sums in the same order as one call) are the two halves on their own;
 * twins qkv_pack_nt_scalar and qkv_gemm_packed_scalar.
 */
#include <arm_neon.h>
#include <string.h>

#include "kernels_neon.h"

#define PANEL 8      /* columns of C per packed panel of B */
#define GEMM_MAX_ROWS 4

/* Columns j0 .. j0+cols-1 of C (cols <= PANEL) from B, transposed. */
static void pack_panel(int64_t cols, int64_t k, const float *b, int64_t ldb,
                       float *panel)
{
    for (int64_t jj = 0; jj < cols; jj++) {
        const float *b_row = b + jj * ldb;
        for (int64_t p = 0; p < k; p++)
            panel[p * PANEL + jj] = b_row[p];
    }
    for (int64_t jj = cols; jj < PANEL; jj++)
        for (int64_t p = 0; p < k; p++)
            panel[p * PANEL + jj] = 0.0f;
}

/* A `rows` x 8 block of C (rows 1..4, a constant after inlining) from rows
   of A and one panel; bias8 holds the panel's 8 biases (zero-filled past
   n), or is NULL for no bias; only the first `cols` columns are read (with
   accumulate: the sums start from C) and stored. */
static inline __attribute__((always_inline)) void
gemm_block(int rows, int64_t cols, int64_t k, const float *a, int64_t lda,
           const float *panel, const float *bias8, int accumulate,
           float *c, int64_t ldc)
{
    float32x4_t lo[GEMM_MAX_ROWS], hi[GEMM_MAX_ROWS];
    for (int r = 0; r < rows; r++) {
        if (!accumulate) {
            lo[r] = hi[r] = vdupq_n_f32(0.0f);
        } else if (cols == PANEL) {
            lo[r] = vld1q_f32(c + r * ldc);
            hi[r] = vld1q_f32(c + r * ldc + 4);
        } else {
            float in[PANEL] = { 0 };
            memcpy(in, c + r * ldc, (size_t)cols * sizeof(float));
            lo[r] = vld1q_f32(in);
            hi[r] = vld1q_f32(in + 4);
        }
    }

    int64_t p = 0;
    for (; p + 4 <= k; p += 4) {
        float32x4_t av[GEMM_MAX_ROWS];
        for (int r = 0; r < rows; r++)
            av[r] = vld1q_f32(a + r * lda + p);
        for (int l = 0; l < 4; l++) {
            const float32x4_t b_lo = vld1q_f32(panel + (p + l) * PANEL);
            const float32x4_t b_hi = vld1q_f32(panel + (p + l) * PANEL + 4);
            for (int r = 0; r < rows; r++) {
                lo[r] = qkv_fma_lane_neon(lo[r], b_lo, av[r], l);
                hi[r] = qkv_fma_lane_neon(hi[r], b_hi, av[r], l);
            }
        }
    }
    for (; p < k; p++) {
        const float32x4_t b_lo = vld1q_f32(panel + p * PANEL);
        const float32x4_t b_hi = vld1q_f32(panel + p * PANEL + 4);
        for (int r = 0; r < rows; r++) {
            lo[r] = vfmaq_n_f32(lo[r], b_lo, a[r * lda + p]);
            hi[r] = vfmaq_n_f32(hi[r], b_hi, a[r * lda + p]);
        }
    }

    if (bias8) {
        const float32x4_t bias_lo = vld1q_f32(bias8);
        const float32x4_t bias_hi = vld1q_f32(bias8 + 4);
        for (int r = 0; r < rows; r++) {
            lo[r] = vaddq_f32(lo[r], bias_lo);
            hi[r] = vaddq_f32(hi[r], bias_hi);
        }
    }
    for (int r = 0; r < rows; r++) {
        if (cols == PANEL) {
            vst1q_f32(c + r * ldc, lo[r]);
            vst1q_f32(c + r * ldc + 4, hi[r]);
        } else {
            float out[PANEL];
            vst1q_f32(out, lo[r]);
            vst1q_f32(out + 4, hi[r]);
            memcpy(c + r * ldc, out, (size_t)cols * sizeof(float));
        }
    }
}

/* All m rows of C for one panel of `cols` (<= 8) columns. */
static void panel_rows(int64_t m, int64_t cols, int64_t k,
                       const float *a, int64_t lda, const float *panel,
                       const float *bias, int accumulate, float *c, int64_t ldc)
{
    float bias8[PANEL] = { 0 };
    if (bias)
        memcpy(bias8, bias, (size_t)cols * sizeof(float));
    const float *panel_bias = bias ? bias8 : NULL;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        gemm_block(4, cols, k, a + i * lda, lda, panel, panel_bias, accumulate,
                   c + i * ldc, ldc);
    for (; i < m; i++)
        gemm_block(1, cols, k, a + i * lda, lda, panel, panel_bias, accumulate,
                   c + i * ldc, ldc);
}

void qkv_gemm_nt_neon(int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda,
                      const float *b, int64_t ldb,
                      const float *bias,
                      float *c, int64_t ldc, float *scratch)
{
    for (int64_t j0 = 0; j0 < n; j0 += PANEL) {
        const int64_t cols = n - j0 < PANEL ? n - j0 : PANEL;
        /* Packed just before use, so the panel is in cache for all rows. */
        float *panel = scratch + j0 * k;
        pack_panel(cols, k, b + j0 * ldb, ldb, panel);
        panel_rows(m, cols, k, a, lda, panel, bias ? bias + j0 : NULL, 0,
                   c + j0, ldc);
    }
}

/* Layout: ceil(n/8) panels of 8*k floats, panel q at packed + 8*q*k,
   panel[p*8 + jj] = B[8q + jj][p], zero past row n. */
void qkv_pack_nt_neon(int64_t n, int64_t k, const float *b, int64_t ldb,
                      float *packed)
{
    for (int64_t j0 = 0; j0 < n; j0 += PANEL)
        pack_panel(n - j0 < PANEL ? n - j0 : PANEL, k, b + j0 * ldb, ldb,
                   packed + j0 * k);
}

void qkv_gemm_packed_neon(int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda, const float *packed,
                          const float *bias, int accumulate,
                          float *c, int64_t ldc)
{
    for (int64_t j0 = 0; j0 < n; j0 += PANEL)
        panel_rows(m, n - j0 < PANEL ? n - j0 : PANEL, k, a, lda, packed + j0 * k,
                   bias ? bias + j0 : NULL, accumulate, c + j0, ldc);
}
