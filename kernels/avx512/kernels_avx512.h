/* The AVX-512 kernels (F/BW/DQ/VL + FMA + F16C); twins of kernels/scalar/. */
#ifndef QKV_KERNELS_AVX512_H
#define QKV_KERNELS_AVX512_H

#include "kernels.h"

void qkv_gemm_nt_avx512(int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda,
                        const float *b, int64_t ldb,
                        const float *bias,
                        float *c, int64_t ldc, float *scratch);
void qkv_pack_nt_avx512(int64_t n, int64_t k, const float *b, int64_t ldb,
                        float *packed);
void qkv_gemm_packed_avx512(int64_t m, int64_t n, int64_t k,
                            const float *a, int64_t lda, const float *packed,
                            const float *bias, int accumulate,
                            float *c, int64_t ldc);
void qkv_softmax_tile_avx512(int64_t m, int64_t n, float *s, int64_t lds,
                             float *row_max, float *row_sum, float *alpha);
void qkv_pv_tile_avx512(int64_t m, int64_t n, int64_t dv,
                        const float *p, int64_t ldp,
                        const float *v, int64_t ldv,
                        const float *alpha, float *acc, int64_t ldacc);
void qkv_add_base2_avx512(int64_t n, float *s, const float *m);
void qkv_softcap_avx512(int64_t n, float *s, float cap);
void qkv_alibi_avx512(int64_t n, float *s, float slope, int64_t diag);
void qkv_scale_row_avx512(int64_t n, const float *src, float mul, float *dst);
void qkv_exp_shift_scale_avx512(int64_t n, const float *src, float shift,
                                float mul, float *dst);
void qkv_cvt_f16_f32_avx512(int64_t n, const uint16_t *src, float *dst);
void qkv_cvt_bf16_f32_avx512(int64_t n, const uint16_t *src, float *dst);
void qkv_qk_stream_avx512(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                          const float *a, int64_t lda,
                          const void *b, int64_t ldb,
                          float *c, int64_t ldc,
                          const void *b_next);
void qkv_pv_stream_avx512(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                          const float *p, int64_t ldp,
                          const void *v, int64_t ldv,
                          const float *alpha, float *acc, int64_t ldacc,
                          const void *v_next);

#endif
