/* The AVX-512 ops table (AVX-512 F/BW/DQ/VL + FMA + F16C). */
#include "kernels_avx512.h"

const qkv_kernels qkv_kernels_avx512 = {
    .isa = QKV_ISA_AVX512,
    /* Measured in the attention walk (one thread, H=8, L=2048, D=64 and
       128): 192 x 128 beats 96 x 256 by 5-10% (K is packed once per 192
       query rows instead of 96). 192 is a multiple of the 6 gemm rows,
       128 of the 64 gemm / pv columns, so full blocks have no tails. */
    .block_q = 192,
    .block_k = 128,
    .gemm_nt = qkv_gemm_nt_avx512,
    .softmax_tile = qkv_softmax_tile_avx512,
    .pv_tile = qkv_pv_tile_avx512,
    .exp_shift_scale = qkv_exp_shift_scale_avx512,
    .add_base2 = qkv_add_base2_avx512,
    .softcap = qkv_softcap_avx512,
    .alibi = qkv_alibi_avx512,
    .scale_row = qkv_scale_row_avx512,
    .cvt_f16_f32 = qkv_cvt_f16_f32_avx512,
    .cvt_bf16_f32 = qkv_cvt_bf16_f32_avx512,
    .pack_nt = qkv_pack_nt_avx512,
    .gemm_packed = qkv_gemm_packed_avx512,
    .qk_stream = qkv_qk_stream_avx512,
    .pv_stream = qkv_pv_stream_avx512,
};
