/* The AVX-512 ops table (AVX-512 F/BW/DQ/VL + FMA + F16C). */
#include "kernels_avx512.h"

const qkv_kernels qkv_kernels_avx512 = {
    .isa = QKV_ISA_AVX512,
    /* Measured (one thread, H=8, L=2048, D=64/128): 96 x 256 and
       192 x 128 are best; 96 rows keep more tasks for threads. A multiple
       of 6 (gemm rows) and of 64 (gemm and pv columns) avoids tails. */
    .block_q = 96,
    .block_k = 256,
    .gemm_nt = qkv_gemm_nt_avx512,
    .softmax_tile = qkv_softmax_tile_avx512,
    .pv_tile = qkv_pv_tile_avx512,
    .exp_shift_scale = qkv_exp_shift_scale_avx512,
    .cvt_f16_f32 = qkv_cvt_f16_f32_avx512,
    .cvt_bf16_f32 = qkv_cvt_bf16_f32_avx512,
};
