/* The AVX2 + FMA + F16C ops table. block_q is a multiple of the 6-row
   micro-kernels of gemm_nt and pv_tile; both sizes measured (see the
   commit that set them). */
#include "kernels_avx2.h"

const qkv_kernels qkv_kernels_avx2 = {
    .isa = QKV_ISA_AVX2,
    .block_q = 96,
    .block_k = 128,
    .gemm_nt = qkv_gemm_nt_avx2,
    .softmax_tile = qkv_softmax_tile_avx2,
    .pv_tile = qkv_pv_tile_avx2,
    .exp_shift_scale = qkv_exp_shift_scale_avx2,
    .add_base2 = qkv_add_base2_avx2,
    .softcap = qkv_softcap_avx2,
    .alibi = qkv_alibi_avx2,
    .scale_row = qkv_scale_row_avx2,
    .cvt_f16_f32 = qkv_cvt_f16_f32_avx2,
    .cvt_bf16_f32 = qkv_cvt_bf16_f32_avx2,
    .pack_nt = qkv_pack_nt_avx2,
    .gemm_packed = qkv_gemm_packed_avx2,
    .qk_stream = qkv_qk_stream_avx2,
    .pv_stream = qkv_pv_stream_avx2,
};
