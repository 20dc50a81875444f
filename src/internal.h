/* Declarations shared by the drivers in src/. Not installed. */
#ifndef QKV_INTERNAL_H
#define QKV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "qkv.h"

/* ---- alloc.c --------------------------------------------------------- */

/* QKV_SCRATCH_ALIGN-aligned memory of `bytes` bytes (> 0), or NULL.
   Every allocation of the library goes through these two. */
void *qkv_alloc(size_t bytes);
void qkv_free(void *p);

/* ---- tensor.c -------------------------------------------------------- */

/* Bytes of one element of dt; 0 for a value that is not a qkv_dtype. */
size_t qkv_dtype_size(qkv_dtype dt);

/* a * b into *r; returns 0 and leaves *r unspecified on overflow or when
   either is negative. */
int qkv_mul_ok(int64_t a, int64_t b, int64_t *r);
int qkv_add_ok(int64_t a, int64_t b, int64_t *r);

/* A half-open byte range [lo, hi) of memory. */
typedef struct qkv_span { uintptr_t lo, hi; } qkv_span;

/* The bytes that tensor t spans (shapes > 0, strides >= 0 checked before).
   QKV_E_OVERFLOW if the extent overflows. */
qkv_status qkv_tensor_span(const qkv_tensor *t, qkv_span *span);

/* The span of n contiguous elements of `size` bytes at p. */
qkv_status qkv_array_span(const void *p, int64_t n, size_t size, qkv_span *span);

/* 1 if the two non-empty spans share a byte. */
int qkv_spans_overlap(qkv_span a, qkv_span b);

/* 1 if no two distinct indices of t address the same element
   (strides >= 0 assumed). */
int qkv_tensor_is_non_overlapping(const qkv_tensor *t);

/* ---- threads --------------------------------------------------------- */

/* The thread count of a call: `requested` if > 0, else the OpenMP default
   (1 without OpenMP), never more than `tasks` (>= 1). */
int qkv_thread_count(int requested, int64_t tasks);

/* ---- sdpa.c ---------------------------------------------------------- */

/* qkv_sdpa with the kernel table chosen by the caller: used by qkv_sdpa
   itself and by the multi-head layer, so one call uses one table. */
qkv_status qkv_sdpa_with(const qkv_kernels *kt,
                         const qkv_tensor *q, const qkv_tensor *k,
                         const qkv_tensor *v, const qkv_tensor *out,
                         const qkv_sdpa_params *params);

/* ---- gemm.c ---------------------------------------------------------- */

/* Floats of scratch (QKV_SCRATCH_ALIGN-aligned) that qkv_gemm_nt_blocked_in
   needs for C [m, n] = A [m, k] * B^T with `num_threads` (about n * k: B
   packed, shared by the threads); -1 on overflow, 0 when there is nothing
   to compute. */
int64_t qkv_gemm_nt_scratch_floats(int64_t m, int64_t n, int64_t k, int num_threads);

/* C = A * B^T (+ bias) for A [m, k], B [n, k] (nn.Linear layout),
   C [m, n]: B packed once (kt->pack_nt), then kt->gemm_packed on
   cache-sized blocks (kt->gemm_nt when m is small), in parallel over
   blocks of C with `num_threads` threads (see qkv_thread_count), in the
   caller's scratch (qkv_gemm_nt_scratch_floats floats). Cannot fail. The
   blocking does not depend on the thread count, so neither does C. */
void qkv_gemm_nt_blocked_in(const qkv_kernels *kt,
                            int64_t m, int64_t n, int64_t k,
                            const float *a, int64_t lda,
                            const float *b, int64_t ldb,
                            const float *bias,
                            float *c, int64_t ldc, int num_threads,
                            float *scratch);

/* ---- cpu_x86.c, cpu_arm.c ------------------------------------------- */

/* Bit (1u << isa) set for each ISA whose instructions this CPU and OS
   support (regardless of what this build compiled). 0 on the other
   architecture. Not cached: dispatch.c calls them once. */
unsigned qkv_cpu_detect_x86(void);
unsigned qkv_cpu_detect_arm(void);
#endif /* QKV_INTERNAL_H */
