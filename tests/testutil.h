/*
 * Shared helpers of the Criterion suites: the per-ISA skip, a fixed-seed
 * PRNG, strided test tensors, and the comparison of a qkv_sdpa call with
 * the double reference under an error bound derived from the inputs.
 */
#ifndef QKV_TESTUTIL_H
#define QKV_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "qkv.h"

/* The .init of every TestSuite: skips the test (visibly) when QKV_ISA
   names an ISA other than the active one, i.e. one this CPU or build
   lacks. A binary whose tests were all skipped exits with 77, which meson
   reports as SKIP. */
void qkv_test_init(void);

/* ---- PRNG: splitmix64, so that every platform draws the same values. */
typedef struct test_rng { uint64_t state; } test_rng;

test_rng rng_seeded(uint64_t seed);
uint64_t rng_next(test_rng *r);
double rng_uniform(test_rng *r);                 /* [0, 1) */
double rng_normal(test_rng *r);                  /* N(0, 1) */
int64_t rng_range(test_rng *r, int64_t lo, int64_t hi);   /* [lo, hi] */


/* ---- Strided test tensors ------------------------------------------ */

/* Memory layouts of a [b, h, s, d] test tensor. STRIDED picks a random
   order of the b, h, s dimensions, pads every level by 0..3 elements and
   gives size-1 dimensions an arbitrary stride. */
typedef enum test_layout { LAYOUT_BHSD, LAYOUT_BSHD, LAYOUT_STRIDED } test_layout;

typedef struct test_tensor {
    qkv_tensor t;       /* the view handed to the library */
    void *mem;          /* the allocation, padding included */
    int64_t elems;      /* elements in mem */
} test_tensor;

/* Poison: what padding and unwritten outputs hold (a NaN in every dtype,
   so reading it shows up in the results). */
#define POISON_F32_BITS 0x7fc0deadu
#define POISON_16_BITS 0x7fdeu

/* 0 on success. Every element of mem starts as poison. */
int tt_alloc(test_tensor *x, qkv_dtype dt, test_layout lay, int64_t b, int64_t h,
             int64_t s, int64_t d, test_rng *r);
void tt_free(test_tensor *x);
/* Element (i0..i3) as a double (F16/BF16 decoded by the reference). */
double tt_get(const test_tensor *x, int64_t i0, int64_t i1, int64_t i2, int64_t i3);
/* Stores v, rounded to the dtype with the reference conversions. */
void tt_set(test_tensor *x, int64_t i0, int64_t i1, int64_t i2, int64_t i3, double v);
/* Fills the view with N(0, sigma^2) values (rounded to the dtype). */
void tt_fill_normal(test_tensor *x, test_rng *r, double sigma);
/* 1 if every element of mem outside the view still holds poison. */
int tt_padding_intact(const test_tensor *x);

/* n floats with `guard` poison floats on each side; free with
   guarded_free. guarded_intact checks both guards. */
float *guarded_alloc(int64_t n);
void guarded_free(float *p);
int guarded_intact(const float *p, int64_t n);

/* ---- sdpa cases ----------------------------------------------------- */

typedef enum mask_kind {
    MASK_NONE = 0,
    MASK_SHARED,        /* shape [1, 1, Lq, Lk] */
    MASK_STRIDE0,       /* shape [B, H, Lq, Lk] with stride 0 on B and H */
    MASK_PER_BATCH,     /* shape [B, 1, Lq, Lk] */
    MASK_PER_HEAD,      /* shape [1, H, Lq, Lk] */
    MASK_FULL,          /* shape [B, H, Lq, Lk], laid out like q */
    MASK_KINDS
} mask_kind;

typedef enum kv_len_kind {
    KV_LEN_NONE = 0,
    KV_LEN_RANDOM,      /* each in [0, Lk], 0 and Lk included when B allows */
    KV_LEN_FULL,        /* all Lk */
    KV_LEN_ZERO,        /* all 0: every row fully blocked */
    KV_LEN_KINDS
} kv_len_kind;

typedef struct sdpa_spec {
    int64_t B, H, Hkv, Lq, Lk, D, Dv;
    qkv_dtype k_dtype, v_dtype;
    test_layout layout;
    qkv_causal causal;
    mask_kind mask;
    double mask_block_prob;   /* chance of -INFINITY per mask entry */
    kv_len_kind kv_len;
    double qk_sigma, v_sigma; /* 0: 1 */
    float scale;              /* 0: the default */
    int no_weights, no_lse;   /* leave these outputs NULL */
    int num_threads;
} sdpa_spec;

typedef struct sdpa_case {
    sdpa_spec spec;
    test_tensor q, k, v, out, mask_mem;
    qkv_tensor mask;          /* the view of mask_mem given to the library */
    int32_t *kv_len;
    float *weights, *lse;     /* guarded */
    qkv_sdpa_params params;
} sdpa_case;

/* Builds the inputs (random from seed) and poisoned outputs. 0 on success. */
int sdpa_case_make(sdpa_case *c, const sdpa_spec *spec, uint64_t seed);
void sdpa_case_free(sdpa_case *c);
qkv_status sdpa_case_run(sdpa_case *c);
/* "B2 H4/2 Lq5 Lk7 D8/8 ..." */
void sdpa_spec_describe(const sdpa_spec *s, char *buf, size_t size);

/* Compares the outputs of a run with the double reference. Each value
   gets a bound derived from the inputs (float rounding of the dot
   products, the softmax and the weighted sum); the result is the worst
   |error| / bound (<= 1 passes; INFINITY for NaN, a nonzero blocked
   weight, or touched padding/guards), with where it happened in where. */
double sdpa_case_check(const sdpa_case *c, char *where, size_t size);

/* 1 if key j is blocked for row (b, h, i) of c, from the spec's rules. */
int sdpa_case_blocked(const sdpa_case *c, int64_t b, int64_t h, int64_t i, int64_t j);

/* ---- mha cases ------------------------------------------------------ */

typedef struct mha_case {
    qkv_mha_config cfg;
    float *wmem[8];           /* w_q w_k w_v w_o b_q b_k b_v b_o */
    qkv_mha_weights w;
    int64_t batch, lq, lk, kdim, vdim, qw, kw;
    int self_attn;            /* x_k == x_v == x_q */
    float *x_q, *x_k, *x_v;
    int32_t *kv_len;
    float *y, *weights, *weights_avg;   /* guarded */
    qkv_mha_params params;
    qkv_mha *layer;           /* created by mha_case_run */
} mha_case;

/* Random weights (sigma 1/sqrt(fan_in), biases sigma 0.2 when cfg->bias)
   and inputs N(0, 1); kv_len (when with_kv_len) in [1, lk]. */
int mha_case_make(mha_case *c, const qkv_mha_config *cfg, int64_t batch, int64_t lq,
                  int64_t lk, int self_attn, int with_kv_len, qkv_causal causal,
                  uint64_t seed);
void mha_case_free(mha_case *c);
/* Creates the layer on first use, then runs the forward pass. */
qkv_status mha_case_run(mha_case *c);
/* The worst |got - want| / (1e-5 max|want| + 1e-4 |want|) over y,
   weights and weights_avg, against ref_mha (INFINITY for NaN or touched
   guards). */
double mha_case_check(const mha_case *c, char *where, size_t size);

#endif
