/*
 * The ops table: the small, pure kernels that the drivers (src/sdpa.c,
 * src/mha.c, src/gemm.c) call for all arithmetic that scales with the
 * problem. One table per ISA; adding an ISA means adding a folder
 * kernels/<isa>/ with its kernels and one table, and a line in
 * src/dispatch.c — never editing a driver.
 *
 * Contract shared by every kernel:
 *   - single-threaded, allocation-free, no global state;
 *   - pointers may have any alignment (scratch pointers are
 *     QKV_SCRATCH_ALIGN-aligned, the drivers guarantee it);
 *   - sizes are > 0 unless a kernel says otherwise; leading dimensions
 *     (ld*) count floats and are >= the row length they describe;
 *   - a kernel reads and writes exactly the elements it documents: no
 *     over-read past the last element of an input row, no write outside
 *     the documented output;
 *   - IEEE semantics: -INFINITY inputs behave as the math says, NaN stays in
 *     the row it came from.
 * The scalar table (kernels/scalar/) is the twin of every other table:
 * each SIMD kernel must agree with it within float rounding.
 */
#ifndef QKV_KERNELS_H
#define QKV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "qkv.h"

/* Alignment of every scratch buffer that the drivers hand to kernels. */
#define QKV_SCRATCH_ALIGN 64

/* Floats of scratch that gemm_nt may use for an n x k panel of B, for
   every table: (n rounded up to 32) * k + 64. */
#define QKV_GEMM_SCRATCH_FLOATS(n, k) ((((n) + 31) / 32) * 32 * (k) + 64)

/* Column alignment at which a block packed by pack_nt may be entered
   (see pack_nt). */
#define QKV_PACK_COLUMN_ALIGN 16

/* log2(e) rounded to float: natural logits times this are the base-2
   logits of softmax_tile. */
#define QKV_LOG2E_F 0x1.715476p+0f

/* A natural logit (or mask entry, sink, slope, cap) in base-2 units:
   x * QKV_LOG2E_F rounded once; +-inf and NaN stay. A finite x stays
   finite: beyond +-FLT_MAX / log2(e) (2.36e38) it saturates at +-FLT_MAX,
   so that a mask of -FLT_MAX (PyTorch's finfo.min) stays finite, as it is
   there. The scalar form of add_base2, used by the driver for single
   values. */
static inline float qkv_to_base2(float x)
{
    const float y = x * QKV_LOG2E_F;
    const float big = 0x1.fffffep+127f;   /* FLT_MAX */
    return (y > big || y < -big) && x <= big && x >= -big ? (x < 0.0f ? -big : big) : y;
}

/* tanh for the SIMD softcap kernels: tanh(y) ~ y P(y^2) / Q(y^2) for
   |y| <= QKV_TANH_CLAMP, P of degree 6 and Q of degree 3 (Horner, from
   the constant term up). Our own fit (Lawson's iteratively reweighted
   least squares on the linearised relative error, in 40-digit arithmetic,
   then rounded to float): relative error 1.9e-8 with these float
   coefficients in exact arithmetic. Past the clamp tanh(y) is within
   3.1e-8 of +-1, so the clamped y gives +-1 to within an ulp. */
#define QKV_TANH_CLAMP 9.0f
#define QKV_TANH_P0 1.0f
#define QKV_TANH_P1 0x1.0bf5e8p-3f
#define QKV_TANH_P2 0x1.96d78cp-9f
#define QKV_TANH_P3 0x1.7646cep-17f
#define QKV_TANH_P4 -0x1.5b772cp-26f
#define QKV_TANH_P5 0x1.d03f2ap-35f
#define QKV_TANH_P6 -0x1.7e48f0p-44f
#define QKV_TANH_Q0 1.0f
#define QKV_TANH_Q1 0x1.db5046p-2f
#define QKV_TANH_Q2 0x1.915442p-6f
#define QKV_TANH_Q3 0x1.0afb9cp-12f

/* Whether the SIMD softcap kernels take cap on their vector path: cap and
   1 / cap must be normal floats (cap in [2^-126, 2^126]); other caps go
   to the scalar twin. */
static inline int qkv_softcap_vector_cap(float cap)
{
    return cap >= 0x1p-126f && cap <= 0x1p126f;
}

/* Whether the SIMD alibi kernels take a row on their vector path: every
   distance diag - c, c < n, and every c are integers of at most 2^24 in
   magnitude, so they and their differences are exact in float; other
   rows go to the scalar twin. */
static inline int qkv_alibi_vector_row(int64_t n, int64_t diag)
{
    const int64_t exact = (int64_t)1 << 24;
    return n <= exact && diag <= exact && diag - (n - 1) >= -exact;
}

typedef struct qkv_kernels {
    qkv_isa isa;

    /* Preferred tile sizes of the attention driver: rows of Q per task
       (block_q) and keys per inner step (block_k). Both > 0. */
    int64_t block_q, block_k;

    /* C = A * B^T (+ bias):
         C[i*ldc + j] = sum_{p<k} A[i*lda + p] * B[j*ldb + p] (+ bias[j])
       for i < m, j < n. bias may be NULL. scratch holds at least
       QKV_GEMM_SCRATCH_FLOATS(n, k) floats (the kernel may pack B there).
       Used for Q K^T tiles and for the linear projections of the
       multi-head layer (B in nn.Linear layout). */
    void (*gemm_nt)(int64_t m, int64_t n, int64_t k,
                    const float *a, int64_t lda,
                    const float *b, int64_t ldb,
                    const float *bias,
                    float *c, int64_t ldc, float *scratch);

    /* Online-softmax step over an m x n tile of logits s (row stride lds),
       already scaled and masked (blocked entries are -INFINITY), in base-2
       units: natural logits times log2(e), so that the exponentials are
       powers of two, which a vector unit computes in fewer operations than
       exp (see exp_avx512.h). Per row i,
       with M = row_max[i] on entry (-INFINITY at the start of a row):
         M' = max(M, max_j s[i][j])
         if M' == -INFINITY:  s[i][j] = 0, alpha[i] = 1, row_max and
                              row_sum unchanged (nothing seen yet)
         else:                s[i][j] = 2^(s[i][j] - M')
                              alpha[i] = 2^(M - M')
                              row_sum[i] = row_sum[i] * alpha[i] + sum_j s[i][j]
                              row_max[i] = M'
       NaN logits propagate into that row's sum only. */
    void (*softmax_tile)(int64_t m, int64_t n, float *s, int64_t lds,
                         float *row_max, float *row_sum, float *alpha);

    /* acc = diag(alpha) * acc + P * V:
         acc[i*ldacc + c] = alpha[i] * acc[i*ldacc + c]
                            + sum_{j<n} p[i*ldp + j] * v[j*ldv + c]
       for i < m, c < dv. */
    void (*pv_tile)(int64_t m, int64_t n, int64_t dv,
                    const float *p, int64_t ldp,
                    const float *v, int64_t ldv,
                    const float *alpha, float *acc, int64_t ldacc);

    /* dst[j] = 2^(src[j] - shift) * mul for j < n; 2^-INFINITY = 0.
       src and dst may be the same array. Used for the weights output. */
    void (*exp_shift_scale)(int64_t n, const float *src, float shift,
                            float mul, float *dst);

    /* s[j] += qkv_to_base2(m[j]) for j < n: a row of an additive mask, in
       natural units, added to base-2 logits (the product and the sum each
       rounded once, so every ISA gives the same bits). Where m[j] is
       -INFINITY, s[j] = -INFINITY whatever it held: the entry blocks the
       key even when its logit is NaN or +inf (NaN + -inf would be NaN). */
    void (*add_base2)(int64_t n, float *s, const float *m);

    /* s[j] = cap * tanh(s[j] / cap) for j < n, cap > 0 and finite: the
       logit soft-capping of Gemma 2 (the same in natural or base-2 units
       with the cap converted alike). NaN stays NaN, +-0 stays +-0, +-inf
       gives +-cap (within the error below).
       The scalar twin calls tanhf; the SIMD kernels use the rational
       approximation above. Both are within 2.5e-7 of the result,
       relative, against cap * tanh(s / cap) in double (tests/checkkern.c
       measures it). */
    void (*softcap)(int64_t n, float *s, float cap);

    /* s[c] -= slope * (float)|diag - c| for c < n: ALiBi's linear bias on a
       row of logits, diag being the key index (relative to s[0]) that
       lines up with the query. The distance is converted exactly when
       |diag - c| <= 2^24 (rounded to nearest beyond), then the product and
       the difference round once each, so every ISA gives the same bits. */
    void (*alibi)(int64_t n, float *s, float slope, int64_t diag);

    /* dst[j] = src[j] * mul for j < n (one rounding, so every ISA gives
       the same bits); src and dst do not overlap. The driver's copy of
       the scaled queries into scratch and its final out = acc / sum. */
    void (*scale_row)(int64_t n, const float *src, float mul, float *dst);

    /* Storage-type conversions to F32 for K and V rows, n >= 1 elements:
       IEEE binary16 and bfloat16, exact (every such value is a float);
       inf, NaN and subnormals are preserved. */
    void (*cvt_f16_f32)(int64_t n, const uint16_t *src, float *dst);
    void (*cvt_bf16_f32)(int64_t n, const uint16_t *src, float *dst);

    /* gemm_nt in two steps, so that a block of B packed once serves many
       rows of A (and many calls). pack_nt copies the n x k block of B
       (B[j*ldb + p], j < n, p < k) into `packed` in this table's own
       layout: at most QKV_GEMM_SCRATCH_FLOATS(n, k) floats, `packed`
       QKV_SCRATCH_ALIGN-aligned. Only this table's gemm_packed, with the
       same k and the same n or a smaller one, may read the result: a block
       packed with n also serves its first n' <= n columns, and columns
       from c0 on, for c0 a multiple of QKV_PACK_COLUMN_ALIGN, are a packed
       block of their own at packed + c0 * k (every layout is a sequence
       of panels whose width divides QKV_PACK_COLUMN_ALIGN). This lets the
       attention driver cache a key block once and use any run of keys in
       it. */
    void (*pack_nt)(int64_t n, int64_t k, const float *b, int64_t ldb,
                    float *packed);

    /* C = A * B^T (+ bias) from a block of B packed by pack_nt(n0, k, ...)
       with n0 >= n:
         accumulate == 0: C[i*ldc + j] = sum_{p<k} A[i*lda + p] * B[j][p]
         accumulate != 0: C[i*ldc + j] = C[i*ldc + j] + sum_{p<k} ...
       for i < m, j < n; the sum runs in order p = 0..k-1 and, with
       accumulate, continues from C's value, so splitting k into blocks
       (accumulate on every block but the first) gives the same result as
       one call. Then bias[j] is added when bias is not NULL, in both
       modes: pass it with the last block of k only. Any m >= 1 (no
       small-m special case: small m is gemm_nt's business). */
    void (*gemm_packed)(int64_t m, int64_t n, int64_t k,
                        const float *a, int64_t lda, const float *packed,
                        const float *bias, int accumulate,
                        float *c, int64_t ldc);

    /* Products with K or V rows read where they are, stored as F32
       (dt == QKV_F32), IEEE binary16 (QKV_F16) or bfloat16 (QKV_BF16),
       half elements widened exactly to float in registers (inf, NaN and
       subnormals preserved): the decoding path of src/sdpa.c, which
       streams the tensor rows once instead of converting a block into
       scratch and reading it again, and asks for the next rows as it
       goes. Meant for few rows of A or P (m <= 8: one query row, or the
       few query heads of a KV group): any m > 0 is correct, but each
       group of rows reads (and widens) B or V again. ldb and ldv count
       elements of dt (>= k, resp. dv); the other leading dimensions count
       floats. The scalar twins widen exactly and then do the math of
       gemm_nt (no bias) and pv_tile, bit for bit.
       b_next / v_next: NULL, or the first of n rows (same type, stride and
       width) that the caller will pass next; the SIMD kernels ask the
       caches for them a key at a time, interleaved with their arithmetic,
       so that the memory keeps streaming while they compute (a prefetch
       is a hint: it reads nothing and cannot fault). The scalar twins
       ignore it.

       qk_stream: C[i*ldc + j] = sum_{p<k} A[i*lda + p] * float(B[j*ldb + p])
       for i < m, j < n. */
    void (*qk_stream)(qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                      const float *a, int64_t lda,
                      const void *b, int64_t ldb,
                      float *c, int64_t ldc, const void *b_next);

    /* pv_stream: acc = diag(alpha) * acc + P * float(V):
         acc[i*ldacc + c] = alpha[i] * acc[i*ldacc + c]
                            + sum_{j<n} p[i*ldp + j] * float(v[j*ldv + c])
       for i < m, c < dv; a zero weight is multiplied in like any other. */
    void (*pv_stream)(qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                      const float *p, int64_t ldp,
                      const void *v, int64_t ldv,
                      const float *alpha, float *acc, int64_t ldacc,
                      const void *v_next);
} qkv_kernels;

/* The tables. Only those of the ISAs this build compiles exist. */
extern const qkv_kernels qkv_kernels_scalar;
extern const qkv_kernels qkv_kernels_avx2;
extern const qkv_kernels qkv_kernels_avx512;
extern const qkv_kernels qkv_kernels_neon;

/* The table of the active ISA (src/dispatch.c). Fetch it once per call,
   before any parallel region. Never NULL. */
const qkv_kernels *qkv_kernels_active(void);

/* The table of one ISA, or NULL if this CPU or build lacks it. */
const qkv_kernels *qkv_kernels_for(qkv_isa isa);

#endif /* QKV_KERNELS_H */
