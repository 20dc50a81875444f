/*
 * qkv — scaled dot-product and multi-head attention on CPUs.
 *
 * The single public header of libqkv. Conventions that hold for every entry
 * point:
 *   - all sizes are int64_t; every entry point returns a qkv_status
 *     (QKV_OK is 0);
 *   - parameter structs are zero-initialisable: {0} (in C++, {}, which
 *     -Wextra does not warn about), or a NULL pointer to the struct,
 *     means "all defaults";
 *   - on any error nothing is written to any output buffer;
 *   - inputs may have any alignment; outputs must not overlap inputs
 *     (QKV_E_ALIAS). The check compares the address ranges that tensors
 *     span, so an output interleaved with an input is rejected too;
 *   - no global state visible to the caller changes (no
 *     omp_set_num_threads, no MXCSR/FPCR change that outlives a call);
 *   - results are bitwise identical for every num_threads value.
 */
#ifndef QKV_H
#define QKV_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Status codes                                                       */
/* ------------------------------------------------------------------ */

/* The result of every entry point. */
typedef enum qkv_status {
    QKV_OK = 0,        /* success */
    QKV_E_NULL,        /* a required pointer is NULL */
    QKV_E_SHAPE,       /* a size is <= 0, or shapes/strides disagree */
    QKV_E_OVERFLOW,    /* a size or byte-count product overflows */
    QKV_E_ALIAS,       /* an output overlaps an input */
    QKV_E_ARG,         /* another argument out of range (kv_len, dtype, enum, stride) */
    QKV_E_NOMEM,       /* a memory allocation failed */
    QKV_E_UNSUPPORTED  /* e.g. an ISA that this CPU or this build lacks */
} qkv_status;

/* A short English description of s. Never NULL, also for unknown values. */
const char *qkv_status_str(qkv_status s);

/* ------------------------------------------------------------------ */
/* Tensors                                                            */
/* ------------------------------------------------------------------ */

/* Element types. F16 (IEEE binary16) and BF16 are storage types accepted
   for K and V only; everything else is F32. */
typedef enum qkv_dtype { QKV_F32 = 0, QKV_F16, QKV_BF16 } qkv_dtype;

/* A strided view of a 4-D tensor. The logical order of the dimensions is
   [batch, heads, seq, dim]. Strides count elements, not bytes; stride[3]
   must be 1; strides are >= 0, and a stride of 0 (broadcast) is accepted
   only for masks. A dimension of size 1 may have any stride >= 0. */
typedef struct qkv_tensor {
    void     *data;
    qkv_dtype dtype;      /* QKV_F32 unless stated otherwise */
    int64_t   shape[4];   /* logical [batch, heads, seq, dim] */
    int64_t   stride[4];  /* in elements; stride[3] must be 1; a stride of 0
                             broadcasts (masks only) */
} qkv_tensor;

/* A view of contiguous [B, H, S, D] memory. A stride whose product of
   sizes overflows int64 is set to INT64_MAX, so that the entry points
   report the view as QKV_E_OVERFLOW (as for the token-major view below). */
qkv_tensor qkv_tensor_bhsd(void *data, qkv_dtype dt, int64_t b, int64_t h, int64_t s, int64_t d);

/* A view of token-major [B, S, H, D] memory (what a fused QKV projection
   produces), as logical [B, H, S, D], without a copy. */
qkv_tensor qkv_tensor_bshd(void *data, qkv_dtype dt, int64_t b, int64_t s, int64_t h, int64_t d);

/* ------------------------------------------------------------------ */
/* Scaled dot-product attention                                       */
/* ------------------------------------------------------------------ */

/* Causal masking. Lq and Lk are the query and key lengths. */
typedef enum qkv_causal {
    QKV_CAUSAL_NONE = 0,
    QKV_CAUSAL_BOTTOM_RIGHT,  /* query i sees key j iff j <= i + (Lk - Lq) */
    QKV_CAUSAL_TOP_LEFT       /* query i sees key j iff j <= i (PyTorch is_causal) */
} qkv_causal;

/* Options of qkv_sdpa. Zero-initialised means: default scale, no masking,
   no extra outputs, the OpenMP default number of threads. */
typedef struct qkv_sdpa_params {
    float             scale;        /* 0: 1/sqrt(head_dim); must be finite */
    qkv_causal        causal;
    const qkv_tensor *mask;         /* optional additive F32 mask, logical shape
                                       [B or 1, H or 1, Lq, Lk]; -INFINITY blocks */
    const int32_t    *kv_len;       /* optional [B]: keys j >= kv_len[b] are blocked;
                                       each value in [0, Lk] */
    float            *weights;      /* optional output [B, H, Lq, Lk], contiguous:
                                       the softmax probabilities */
    float            *lse;          /* optional output [B, H, Lq], contiguous: log-sum-exp
                                       of the scaled, masked logits; -INFINITY for a
                                       fully blocked row */
    int               num_threads;  /* 0: OpenMP default; must be >= 0 */

    /* Structured masks and logit transforms; all off when zero. None of
       them is materialised: blocks of keys they block are skipped. */
    int               window;       /* nonzero: sliding window (FlashAttention-2 rule):
                                       query i sees key j iff
                                       i + Lk - Lq - window_left <= j <= i + Lk - Lq + window_right */
    int64_t           window_left;  /* < 0: unlimited on that side */
    int64_t           window_right; /* < 0: unlimited on that side */
    float             softcap;      /* > 0: logit = softcap * tanh(scale * q.k / softcap),
                                       applied before mask and ALiBi; 0: off; must be
                                       finite and >= 0 */
    const float      *alibi_slopes; /* optional [H], finite: adds
                                       -slope[h] * |i + Lk - Lq - j| to the logit */
    const float      *sinks;        /* optional [H]: an attention-sink logit per head that
                                       joins the row maximum and the softmax denominator
                                       but no value; weights then sum to less than 1,
                                       and lse includes it. -INFINITY is no sink; NaN
                                       and +INFINITY are rejected */
} qkv_sdpa_params;

/* Scaled dot-product attention:
     logit[b,h,i,j] = scale * dot(q[b,h,i,:], k[b,g,j,:]) + mask[b,h,i,j]
     out[b,h,i,:]   = sum_j softmax_j(logit[b,h,i,:]) * v[b,g,j,:]
   with g = h / (H / Hkv): consecutive query heads share a KV head (GQA; MQA
   when Hkv = 1); H must be a multiple of Hkv. Key j is blocked for row i if
   the causal rule, kv_len or a -INFINITY mask entry blocks it; blocked keys
   get weight exactly 0, whatever their K rows hold (NaN and infinities
   included). A fully blocked row gives 0 in out and weights and -INFINITY
   in lse, never NaN, whatever the V rows hold. In a row that sees some
   key, a blocked key's V row still meets its weight 0 in the product
   (past kv_len it is never read), so a NaN or infinity there can make the
   row's out NaN (0 * inf), as in an unfused softmax-then-matmul. out is
   summed before the division by the softmax denominator, so |v| times the
   number of keys a row sees must stay below FLT_MAX (3.4e38), or out
   overflows to inf. The Lq x Lk score matrix is never stored unless
   weights is requested. q and out are F32; k and v may be F32, F16 or
   BF16 (the arithmetic is F32). */
qkv_status qkv_sdpa(const qkv_tensor *q,   /* [B, H,   Lq, D ] */
                    const qkv_tensor *k,   /* [B, Hkv, Lk, D ] */
                    const qkv_tensor *v,   /* [B, Hkv, Lk, Dv] */
                    const qkv_tensor *out, /* [B, H,   Lq, Dv], written */
                    const qkv_sdpa_params *params);   /* NULL: defaults */

/* Fills slopes[0..n_heads-1] with the standard ALiBi slopes (Press et
   al.): for n a power of two, slope[h] = 2^(-8(h+1)/n); otherwise the
   slopes of the largest power of two m < n, followed by every other slope
   of 2m. QKV_E_NULL, QKV_E_SHAPE for n_heads <= 0. */
qkv_status qkv_alibi_slopes(int64_t n_heads, float *slopes);

/* ------------------------------------------------------------------ */
/* Multi-head attention layer                                         */
/* ------------------------------------------------------------------ */

/* The shape of a multi-head attention layer. */
typedef struct qkv_mha_config {
    int64_t d_model;     /* width of the query input and of the output */
    int64_t n_heads;
    int64_t n_kv_heads;  /* 0: n_heads (GQA/MQA when smaller); divides n_heads */
    int64_t head_dim;    /* 0: d_model / n_heads (then n_heads must divide d_model) */
    int64_t kdim, vdim;  /* widths of the key and value inputs; 0: d_model */
    int     bias;        /* nonzero: the four projections have biases */
} qkv_mha_config;

/* PyTorch nn.Linear layout (out_features, in_features), row-major:
   w_q [n_heads*head_dim, d_model]     w_k [n_kv_heads*head_dim, kdim]
   w_v [n_kv_heads*head_dim, vdim]     w_o [d_model, n_heads*head_dim]
   biases have out_features elements; ignored unless config.bias. */
typedef struct qkv_mha_weights {
    const float *w_q, *w_k, *w_v, *w_o;
    const float *b_q, *b_k, *b_v, *b_o;
} qkv_mha_weights;

/* A multi-head attention layer. Opaque; holds its own copy of the weights,
   so the caller's arrays may be freed after qkv_mha_create returns. */
typedef struct qkv_mha qkv_mha;

/* Creates a layer from cfg and a copy of w. *out is set only on QKV_OK. */
qkv_status qkv_mha_create(qkv_mha **out, const qkv_mha_config *cfg, const qkv_mha_weights *w);

/* Frees a layer. NULL is a no-op. */
void       qkv_mha_destroy(qkv_mha *m);

/* Options of qkv_mha_forward; zero-initialised means none. */
typedef struct qkv_mha_params {
    qkv_causal     causal;
    const int32_t *kv_len;       /* optional [batch] key padding, each in [0, lk] */
    float         *weights;      /* optional output [batch, n_heads, lq, lk] */
    float         *weights_avg;  /* optional output [batch, lq, lk]: mean over heads */
    int            num_threads;  /* 0: OpenMP default; must be >= 0 */

    /* As in qkv_sdpa_params (arrays have n_heads entries); all off when zero. */
    int            window;
    int64_t        window_left, window_right;
    float          softcap;
    const float   *alibi_slopes;
    const float   *sinks;
} qkv_mha_params;

/* The forward pass:
     Q = x_q W_q^T + b_q,  K = x_k W_k^T + b_k,  V = x_v W_v^T + b_v
     head h = qkv_sdpa over columns h*head_dim .. (h+1)*head_dim-1,
              scale 1/sqrt(head_dim)
     y = concat(heads) W_o^T + b_o
   (PyTorch nn.MultiheadAttention with batch_first=True; weights_avg is its
   average_attn_weights). x_q [batch, lq, d_model], x_k [batch, lk, kdim],
   x_v [batch, lk, vdim], y [batch, lq, d_model], all contiguous.
   Self-attention: pass x_q as x_k and x_v. The layer is not modified:
   concurrent calls on one qkv_mha are safe. */
qkv_status qkv_mha_forward(const qkv_mha *m, int64_t batch,
                           const float *x_q, int64_t lq,
                           const float *x_k, const float *x_v, int64_t lk,
                           float *y, const qkv_mha_params *params);

/* ------------------------------------------------------------------ */
/* KV cache                                                           */
/* ------------------------------------------------------------------ */

/* Keys and values of past tokens for token-by-token generation: for each
   batch element b, K [n_kv_heads, capacity, head_dim] and
   V [n_kv_heads, capacity, v_dim] in one storage type (F32, F16 or BF16),
   of which the first length[b] rows are filled. Rows past length[b] are
   not part of the cache (a failed qkv_mha_forward_cached may have left
   data there). Opaque; not safe for concurrent modification. */
typedef struct qkv_kv_cache qkv_kv_cache;

/* Creates an empty cache (every length 0). Sizes > 0 (QKV_E_SHAPE),
   dtype a qkv_dtype (QKV_E_ARG), capacity <= INT32_MAX since lengths are
   int32 like kv_len (QKV_E_OVERFLOW). *out is set only on QKV_OK. */
qkv_status qkv_kv_cache_create(qkv_kv_cache **out, int64_t batch,
                               int64_t n_kv_heads, int64_t head_dim,
                               int64_t v_dim, int64_t capacity, qkv_dtype dtype);

/* Frees a cache. NULL is a no-op. */
void qkv_kv_cache_destroy(qkv_kv_cache *c);

/* Sets every length to 0 (the memory is kept). */
qkv_status qkv_kv_cache_reset(qkv_kv_cache *c);

/* Appends rows: k_new [batch, n_kv_heads, n, head_dim] and v_new
   [batch, n_kv_heads, n, v_dim], F32 views (any strides with stride[3] 1),
   converted to the cache's type with round-to-nearest-even. count[b]
   (optional; NULL: n for every b) says how many of the n rows batch
   element b appends, each in [0, n]. If any element would pass its
   capacity, QKV_E_ARG and nothing changes. k_new, v_new and count must
   not overlap the cache's storage (QKV_E_ALIAS). */
qkv_status qkv_kv_cache_append(qkv_kv_cache *c, const qkv_tensor *k_new,
                               const qkv_tensor *v_new, const int32_t *count);

/* Views of the cache usable directly as qkv_sdpa inputs: k and v get
   logical shape [batch, n_kv_heads, L, dim] with L the largest length
   (at least 1), and *lengths (may be NULL) the per-element lengths to pass
   as qkv_sdpa_params.kv_len. The pointers stay valid until the cache is
   destroyed; the views describe the lengths at the time of the call.
   Note: QKV_CAUSAL_BOTTOM_RIGHT aligns its diagonal to L, which is each
   element's own length only when all lengths are equal (always true for
   batch 1, and irrelevant for a single query row); the window and ALiBi
   measure their distances from L too, for any number of query rows. With
   unequal lengths, qkv_mha_forward_cached aligns each element to its own
   length, or a view per element does (README, "KV cache and generation"). */
qkv_status qkv_kv_cache_view(const qkv_kv_cache *c, qkv_tensor *k,
                             qkv_tensor *v, const int32_t **lengths);

/* The filled rows of batch element b (0 <= b < batch), or -1 if c is NULL
   or b out of range. */
int64_t qkv_kv_cache_length(const qkv_kv_cache *c, int64_t b);

/* One step of generation through a multi-head layer in self-attention:
   projects only the new tokens x_new [batch, n_new, d_model], appends
   their K and V to the cache (which must match the layer: n_kv_heads,
   head_dim, v_dim = head_dim), and attends each new token over its batch
   element's cached tokens, itself included, with bottom-right causal
   masking aligned to that element's own length; y [batch, n_new,
   d_model]. The layer must be self-attention shaped (kdim = vdim =
   d_model; else QKV_E_SHAPE). new_len (optional [batch]; NULL: n_new for
   all) lets element b take only its first new_len[b] tokens (0..n_new):
   its other rows of x_new are ignored, and its other rows of y are set to
   0. The window, softcap, ALiBi and sink options apply. params.causal
   and params.kv_len are ignored (the cache decides); weights and
   weights_avg, when given, are [batch, n_heads, n_new, capacity] and
   [batch, n_new, capacity], 0 beyond each element's length. If the cache
   lacks room, QKV_E_ARG and nothing changes. */
qkv_status qkv_mha_forward_cached(const qkv_mha *m, qkv_kv_cache *cache,
                                  int64_t batch, const float *x_new,
                                  int64_t n_new, const int32_t *new_len,
                                  float *y, const qkv_mha_params *params);

/* ------------------------------------------------------------------ */
/* Instruction sets                                                   */
/* ------------------------------------------------------------------ */

/* Kernel sets. avx2 means AVX2 + FMA + F16C; avx512 means AVX-512
   F/BW/DQ/VL. */
typedef enum qkv_isa {
    QKV_ISA_AUTO = 0, QKV_ISA_SCALAR, QKV_ISA_AVX2, QKV_ISA_AVX512, QKV_ISA_NEON
} qkv_isa;

/* The ISA that calls use now. The first call of any qkv function detects
   the CPU once (thread-safely) and reads the QKV_ISA environment variable
   ("scalar", "avx2", "avx512", "neon"); an unsupported or unknown value
   falls back to the best available ISA with one line on stderr. */
qkv_isa     qkv_isa_active(void);

/* "auto" "scalar" "avx2" "avx512" "neon"; "unknown" for other values. */
const char *qkv_isa_name(qkv_isa isa);

/* 1 if this CPU and this build have isa (QKV_ISA_AUTO: always 1), else 0. */
int         qkv_isa_supported(qkv_isa isa);

/* Selects the ISA for calls that start after it returns; QKV_ISA_AUTO
   selects the best available. A call already running keeps the ISA it
   started with, so this is safe while other threads compute.
   QKV_E_UNSUPPORTED if this CPU or build lacks isa, QKV_E_ARG if isa is
   not a qkv_isa value; the active ISA is then unchanged. */
qkv_status  qkv_isa_set(qkv_isa isa);

#ifdef __cplusplus
}
#endif

#endif /* QKV_H */
