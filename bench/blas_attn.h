/*
 * The baseline that qkv-bench compares against: attention written the
 * textbook way on top of OpenBLAS, one (batch, head) at a time:
 *
 *     S = scale * Q K^T                 cblas_sgemm (the Lq x Lk matrix is
 *                                       stored, unlike in qkv)
 *     S[i][j] = -inf where causal       plain C
 *     P = exp(S - rowmax), l = rowsum   kt->softmax_tile over whole rows
 *     O = P V / l                       cblas_sgemm, then a row scale
 *
 * The softmax is qkv's own kernel (of the table the caller passes, the
 * best one of the machine), so that the comparison measures the GEMMs and
 * the blocking, not a slow libm exp in the baseline.
 *
 * Everything is F32; views may be strided like qkv tensors (stride[3] = 1),
 * so the same code serves the [B, H, S, D] benchmarks and the token-major
 * heads of the multi-head layer. Built without OpenBLAS, the functions are
 * stubs that report "not available".
 */
#ifndef QKV_BENCH_BLAS_ATTN_H
#define QKV_BENCH_BLAS_ATTN_H

#include <stdint.h>

#include "kernels.h"
#include "qkv.h"

/* 1 if this build has a CBLAS. */
int bench_blas_available(void);

/* A short description of the CBLAS this build uses ("OpenBLAS 0.3.21 ..."),
   or "none". */
const char *bench_blas_name(void);

/* Threads OpenBLAS may use from now on (when it lets us set it). */
void bench_blas_set_threads(int threads);

/* OpenBLAS starts its worker threads when it is loaded, before main: as
   many as OPENBLAS_NUM_THREADS says, else one per CPU. Idle workers spin
   (sched_yield) and take CPU time from the threads being measured, and
   bench_blas_set_threads cannot stop them. Unless OPENBLAS_NUM_THREADS is
   set, this sets it to `threads` and starts the program again with the
   same arguments (Linux, OpenBLAS builds; elsewhere, or if that fails, it
   returns and nothing changes). */
void bench_blas_restart_with_threads(int threads, char **argv);

/* Floats of scratch bench_blas_attention needs for lq x lk scores. */
int64_t bench_blas_scratch_floats(int64_t lq, int64_t lk);

/* out = attention(q, k, v) as described above, all F32, causal
   bottom-right when `causal` (query i sees keys j <= i + lk - lq). The
   nanoseconds spent in the softmax part are added to *softmax_ns.
   Returns 0 (and does nothing) if there is no CBLAS or a tensor is not
   F32. */
int bench_blas_attention(const qkv_kernels *kt, const qkv_tensor *q,
                         const qkv_tensor *k, const qkv_tensor *v,
                         const qkv_tensor *out, int causal, float *scratch,
                         double *softmax_ns);

/* C[m, n] = A[m, k] * B[n, k]^T (+ bias[n]): a projection of the multi-head
   layer (B in nn.Linear layout). Returns 0 without a CBLAS. */
int bench_blas_linear(int64_t m, int64_t n, int64_t k, const float *a,
                      const float *b, const float *bias, float *c);

#endif /* QKV_BENCH_BLAS_ATTN_H */
