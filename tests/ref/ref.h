/*
 * The naive double-precision reference: attention written the obvious
 * way, straight from the math in include/qkv.h, with no blocking and
 * no online softmax. Built with -ffp-contract=off. Independent of libqkv
 * except for the public types of qkv.h.
 */
#ifndef QKV_TEST_REF_H
#define QKV_TEST_REF_H

#include <stdint.h>

#include "qkv.h"

/* Reference sdpa over the same arguments as qkv_sdpa. Reads q, k, v
   (F32/F16/BF16 K/V), the mask and kv_len from their tensors and
   params; writes double results: out [B,H,Lq,Dv], weights [B,H,Lq,Lk] and
   lse [B,H,Lq] (each may be NULL), contiguous. Returns 0, or -1 if the
   arguments are not a valid call (the reference does not validate
   thoroughly: give it only valid calls).

   The structured masks and logit transforms of qkv_sdpa_params are
   applied in this order, per logit:
     s = scale * q.k;  s = softcap * tanh(s / softcap)   (softcap > 0)
     s += mask;        s -= slope[h] * |i + Lk - Lq - j|  (alibi_slopes)
   Key j is blocked by the causal rule, kv_len, a -INFINITY mask entry
   (whatever the logit it is added to, NaN included), a -INFINITY logit, and
   (window != 0) outside i + Lk - Lq - window_left <= j <= i + Lk - Lq +
   window_right (a negative side unlimited). A sink (sinks[h], -INFINITY
   for none) joins the row maximum and the denominator with no value:
   weights then sum to 1 - exp(sink - lse), and lse includes it. A fully
   blocked row gives out 0, weights 0, and lse = the sink (-INFINITY
   without one). */
int ref_sdpa(const qkv_tensor *q, const qkv_tensor *k, const qkv_tensor *v,
             const qkv_sdpa_params *p,
             double *out, double *weights, double *lse);

/* The standard ALiBi slopes for n heads (Press et al.), from the
   geometric-sequence definition: n a power of two: 2^(-8/n), 2^(-16/n),
   ..., 2^(-8); otherwise those of the largest power of two m < n,
   followed by the 1st, 3rd, 5th, ... slopes of 2m. */
void ref_alibi_slopes(int64_t n, double *slopes);

/* Reference multi-head layer; weights in nn.Linear layout as in qkv.h.
   y [batch, lq, d_model], weights [batch, H, lq, lk], weights_avg
   [batch, lq, lk] (each may be NULL), in double. */
int ref_mha(const qkv_mha_config *cfg, const qkv_mha_weights *w,
            int64_t batch, const float *x_q, int64_t lq,
            const float *x_k, const float *x_v, int64_t lk,
            const qkv_mha_params *p,
            double *y, double *weights, double *weights_avg);

/* IEEE binary16 / bfloat16 <-> float, round-to-nearest-even, written
   independently of the library's kernels. */
uint16_t ref_f32_to_f16(float f);
float ref_f16_to_f32(uint16_t h);
uint16_t ref_f32_to_bf16(float f);
float ref_bf16_to_f32(uint16_t h);

#endif
