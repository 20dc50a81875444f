/*
 * The KV cache's layout and the steps of an append, for the multi-head
 * layer's cached forward (src/mha.c), which must write the new rows, run
 * the attention over them, and only then make them part of the cache.
 * Not installed.
 */
#ifndef QKV_KV_CACHE_H
#define QKV_KV_CACHE_H

#include "internal.h"

/* Batch element b's K is [n_kv_heads][capacity][head_dim] at
   k + b * n_kv_heads * capacity * head_dim (elements of dtype), likewise
   V with v_dim. Rows at and beyond lengths[b] are not part of the cache. */
struct qkv_kv_cache {
    int64_t batch, n_kv_heads, head_dim, v_dim, capacity;
    qkv_dtype dtype;
    int32_t *lengths;   /* [batch], each in [0, capacity] */
    void *k, *v;
    qkv_span storage;   /* the bytes of K and V */
};

/* Everything qkv_kv_cache_append checks, with its statuses; changes
   nothing. */
qkv_status qkv_kv_cache_check_append(const qkv_kv_cache *c, const qkv_tensor *k_new,
                                     const qkv_tensor *v_new, const int32_t *count);

/* Converts and stores the rows of a checked append after each element's
   length, leaving the lengths as they are: the rows join the cache only
   with qkv_kv_cache_commit. */
void qkv_kv_cache_write(qkv_kv_cache *c, const qkv_tensor *k_new,
                        const qkv_tensor *v_new, const int32_t *count);

/* lengths[b] += count[b] (n for every b when count is NULL). */
void qkv_kv_cache_commit(qkv_kv_cache *c, int64_t n, const int32_t *count);

/* Views [count, n_kv_heads, len, dim] of the first len rows
   (1 <= len <= capacity), written or committed, of batch elements
   b .. b + count - 1. */
void qkv_kv_cache_rows_views(const qkv_kv_cache *c, int64_t b, int64_t count,
                             int64_t len, qkv_tensor *k, qkv_tensor *v);

#endif /* QKV_KV_CACHE_H */
