/* The NEON ops table (AArch64). block_q is a multiple of the 4-row
   micro-kernels of gemm_nt and pv_tile; block_k of their 8-column panels. */
#include "kernels_neon.h"

const qkv_kernels qkv_kernels_neon = {
    .isa = QKV_ISA_NEON,
    .block_q = 32,
    .block_k = 64,
    .gemm_nt = qkv_gemm_nt_neon,
    .softmax_tile = qkv_softmax_tile_neon,
    .pv_tile = qkv_pv_tile_neon,
    .exp_shift_scale = qkv_exp_shift_scale_neon,
    .add_base2 = qkv_add_base2_neon,
    .softcap = qkv_softcap_neon,
    .alibi = qkv_alibi_neon,
    .scale_row = qkv_scale_row_neon,
    .cvt_f16_f32 = qkv_cvt_f16_f32_neon,
    .cvt_bf16_f32 = qkv_cvt_bf16_f32_neon,
    .pack_nt = qkv_pack_nt_neon,
    .gemm_packed = qkv_gemm_packed_neon,
    .qk_stream = qkv_qk_stream_neon,
    .pv_stream = qkv_pv_stream_neon,
};
