/* The scalar ops table: the portable fallback and the twin of every other. */
#include "kernels_scalar.h"

const qkv_kernels qkv_kernels_scalar = {
    .isa = QKV_ISA_SCALAR,
    .block_q = 32,
    .block_k = 64,
    .gemm_nt = qkv_gemm_nt_scalar,
    .softmax_tile = qkv_softmax_tile_scalar,
    .pv_tile = qkv_pv_tile_scalar,
    .exp_shift_scale = qkv_exp_shift_scale_scalar,
    .add_base2 = qkv_add_base2_scalar,
    .softcap = qkv_softcap_scalar,
    .alibi = qkv_alibi_scalar,
    .scale_row = qkv_scale_row_scalar,
    .cvt_f16_f32 = qkv_cvt_f16_f32_scalar,
    .cvt_bf16_f32 = qkv_cvt_bf16_f32_scalar,
    .pack_nt = qkv_pack_nt_scalar,
    .gemm_packed = qkv_gemm_packed_scalar,
    .qk_stream = qkv_qk_stream_scalar,
    .pv_stream = qkv_pv_stream_scalar,
};
