/* The AVX-512 ops table (AVX-512 F/BW/DQ/VL + FMA + F16C). */
#include "kernels_avx512.h"

const qkv_kernels qkv_kernels_avx512 = {
    .isa = QKV_ISA_AVX512,
    .block_q = 64,
    .block_k = 128,
    .gemm_nt = qkv_gemm_nt_avx512,
    .softmax_tile = qkv_softmax_tile_avx512,
    .pv_tile = qkv_pv_tile_avx512,
    .exp_shift_scale = qkv_exp_shift_scale_avx512,
    .cvt_f16_f32 = qkv_cvt_f16_f32_avx512,
    .cvt_bf16_f32 = qkv_cvt_bf16_f32_avx512,
};
