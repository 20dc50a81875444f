/*
 * Ready-made sdpa and multi-head problems for the hardening tests: each
 * fixture owns random inputs, runs the call into result buffers, compares
 * two results bitwise and checks one against the double reference.
 */
#ifndef QKV_HARD_CASES_H
#define QKV_HARD_CASES_H

#include <stddef.h>
#include <stdint.h>

#include "hard_util.h"

/* ---- sdpa --------------------------------------------------------- */

typedef enum case_mask { MASK_NONE, MASK_FULL, MASK_BROADCAST } case_mask;

typedef struct sdpa_case {
    const char *name;
    int64_t b, h, hkv, lq, lk, d, dv;
    qkv_dtype kv_dtype;
    qkv_causal causal;
    case_mask mask;    /* random values with some -INFINITY entries */
    int kv_len;        /* nonzero: kv_len[b] = lk - 3 * b - 1 (>= 0) */
    int extra_outputs; /* nonzero: weights and lse too */
} sdpa_case;

/* A handful of shapes that cover causal, masks, GQA, kv_len, F16/BF16
   K/V, several query and key blocks, and odd sizes. */
extern const sdpa_case sdpa_cases[];
extern const int n_sdpa_cases;

typedef struct sdpa_fixture {
    sdpa_case c;
    hu_tensor q, k, v, mask;
    int32_t *kv_len;
    int64_t out_count, weights_count, lse_count;
} sdpa_fixture;

typedef struct sdpa_result {
    float *out, *weights, *lse;   /* weights and lse NULL unless extra_outputs */
} sdpa_result;

void sdpa_fixture_init(sdpa_fixture *f, const sdpa_case *c, uint64_t seed);
void sdpa_fixture_free(sdpa_fixture *f);
/* Allocates result buffers filled with a NaN sentinel. */
sdpa_result sdpa_result_new(const sdpa_fixture *f);
void sdpa_result_free(sdpa_result *r);
qkv_status sdpa_fixture_run(const sdpa_fixture *f, int num_threads, sdpa_result *r);
int sdpa_result_same(const sdpa_fixture *f, const sdpa_result *a, const sdpa_result *b);
int sdpa_result_matches_ref(const sdpa_fixture *f, const sdpa_result *r);

/* ---- multi-head layer --------------------------------------------- */

typedef struct mha_case {
    const char *name;
    qkv_mha_config cfg;
    int64_t batch, lq, lk;
    int self_attention;   /* x_k = x_v = x_q (then lk = lq) */
    qkv_causal causal;
    int kv_len;           /* nonzero: kv_len[b] = lk - b - 1 */
    int extra_outputs;    /* nonzero: weights and weights_avg */
} mha_case;

extern const mha_case mha_cases[];
extern const int n_mha_cases;

typedef struct mha_fixture {
    mha_case c;
    qkv_mha_config cfg;           /* with defaults resolved */
    float *weights_block;         /* w_q w_k w_v w_o b_q b_k b_v b_o */
    qkv_mha_weights w;
    float *x_q, *x_k, *x_v;
    int32_t *kv_len;
    qkv_mha *layer;
    int64_t y_count, weights_count, avg_count;
} mha_fixture;

typedef struct mha_result {
    float *y, *weights, *weights_avg;
} mha_result;

/* Returns the status of qkv_mha_create. */
qkv_status mha_fixture_init(mha_fixture *f, const mha_case *c, uint64_t seed);
void mha_fixture_free(mha_fixture *f);
mha_result mha_result_new(const mha_fixture *f);
void mha_result_free(mha_result *r);
qkv_status mha_fixture_run(const mha_fixture *f, int num_threads, mha_result *r);
int mha_result_same(const mha_fixture *f, const mha_result *a, const mha_result *b);
int mha_result_matches_ref(const mha_fixture *f, const mha_result *r);

#endif
