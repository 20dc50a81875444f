/* The NEON kernels (AArch64 AdvSIMD, baseline: no extra compiler flags).
   Each is the twin of the scalar kernel of the same op in kernels/scalar/. */
#ifndef QKV_KERNELS_NEON_H
#define QKV_KERNELS_NEON_H

#include <arm_neon.h>
#include <string.h>

#include "kernels.h"

void qkv_gemm_nt_neon(int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda,
                      const float *b, int64_t ldb,
                      const float *bias,
                      float *c, int64_t ldc, float *scratch);
void qkv_pack_nt_neon(int64_t n, int64_t k, const float *b, int64_t ldb,
                      float *packed);
void qkv_gemm_packed_neon(int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda, const float *packed,
                          const float *bias, int accumulate,
                          float *c, int64_t ldc);
void qkv_softmax_tile_neon(int64_t m, int64_t n, float *s, int64_t lds,
                           float *row_max, float *row_sum, float *alpha);
void qkv_pv_tile_neon(int64_t m, int64_t n, int64_t dv,
                      const float *p, int64_t ldp,
                      const float *v, int64_t ldv,
                      const float *alpha, float *acc, int64_t ldacc);
void qkv_add_base2_neon(int64_t n, float *s, const float *m);
void qkv_softcap_neon(int64_t n, float *s, float cap);
void qkv_alibi_neon(int64_t n, float *s, float slope, int64_t diag);
void qkv_scale_row_neon(int64_t n, const float *src, float mul, float *dst);
void qkv_exp_shift_scale_neon(int64_t n, const float *src, float shift,
                              float mul, float *dst);
void qkv_cvt_f16_f32_neon(int64_t n, const uint16_t *src, float *dst);
void qkv_cvt_bf16_f32_neon(int64_t n, const uint16_t *src, float *dst);
void qkv_qk_stream_neon(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda,
                        const void *b, int64_t ldb,
                        float *c, int64_t ldc,
                        const void *b_next);
void qkv_pv_stream_neon(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                        const float *p, int64_t ldp,
                        const void *v, int64_t ldv,
                        const float *alpha, float *acc, int64_t ldacc,
                        const void *v_next);

/* sum + x * w[lane], one FMLA (by element). Its lane index must be a
   compile-time constant, which it is once the callers' small loops over
   lanes are unrolled; callers are always inlined for that reason. */
static inline __attribute__((always_inline)) float32x4_t
qkv_fma_lane_neon(float32x4_t sum, float32x4_t x, float32x4_t w, int lane)
{
    switch (lane) {
    case 0:  return vfmaq_laneq_f32(sum, x, w, 0);
    case 1:  return vfmaq_laneq_f32(sum, x, w, 1);
    case 2:  return vfmaq_laneq_f32(sum, x, w, 2);
    default: return vfmaq_laneq_f32(sum, x, w, 3);
    }
}

/* A row's last count (1..3) floats in the low lanes, the other lanes
   `fill`: a tail read that touches nothing past p[count - 1]. */
static inline float32x4_t qkv_tail_load_neon(const float *p, int64_t count, float fill)
{
    float buf[4] = {fill, fill, fill, fill};
    memcpy(buf, p, (size_t)count * sizeof(float));
    return vld1q_f32(buf);
}

/* The low count (1..3) lanes of v to p[0..count-1], nothing past them. */
static inline void qkv_tail_store_neon(float *p, int64_t count, float32x4_t v)
{
    float buf[4];
    vst1q_f32(buf, v);
    memcpy(p, buf, (size_t)count * sizeof(float));
}

#endif /* QKV_KERNELS_NEON_H */
