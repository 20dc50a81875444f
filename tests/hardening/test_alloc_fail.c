/*
 * Allocation failure. The program is linked with --wrap for malloc,
 * calloc, realloc, aligned_alloc, posix_memalign and free, so every
 * allocation made by code linked into it (libqkv.a included; libc and
 * libgomp are shared libraries and are not affected) goes through the
 * wrappers below. While armed, they count allocations, make the n-th one
 * fail, and track which blocks are still live.
 *
 * For n = 1, 2, 3, ... each entry point must return QKV_E_NOMEM as long
 * as n is within the number of allocations it makes, leak nothing and
 * write nothing (outputs keep their NaN sentinel, *out of qkv_mha_create
 * is untouched); once n exceeds that number it must succeed with the
 * same bits as an unhindered call. TAP output.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"

/* ---- the wrappers ------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void __real_free(void *p);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void __wrap_free(void *p);

enum { MAX_LIVE = 4096 };

static atomic_int armed;            /* count and track allocations */
static long fail_at;                /* 1-based index of the failing one; 0: none */
static long allocations;            /* attempted while armed */
static void *live[MAX_LIVE];        /* blocks allocated while armed, not yet freed */
static int n_live, overflowed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* Counts an attempt; 1 if it is the one that must fail. */
static int attempt_fails(void)
{
    if (!atomic_load(&armed))
        return 0;
    pthread_mutex_lock(&lock);
    const int fails = ++allocations == fail_at;
    pthread_mutex_unlock(&lock);
    return fails;
}

static void *track(void *p)
{
    if (p && atomic_load(&armed)) {
        pthread_mutex_lock(&lock);
        if (n_live < MAX_LIVE)
            live[n_live++] = p;
        else
            overflowed = 1;
        pthread_mutex_unlock(&lock);
    }
    return p;
}

static void untrack(void *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_live; i++)
        if (live[i] == p) {
            live[i] = live[--n_live];
            break;
        }
    pthread_mutex_unlock(&lock);
}

void *__wrap_malloc(size_t n)
{
    return attempt_fails() ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t size)
{
    return attempt_fails() ? NULL : track(__real_calloc(n, size));
}

void *__wrap_realloc(void *p, size_t n)
{
    if (attempt_fails())
        return NULL;
    void *q = __real_realloc(p, n);
    if (q)
        untrack(p);
    return track(q);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return attempt_fails() ? NULL : track(__real_aligned_alloc(align, n));
}

int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    if (attempt_fails())
        return ENOMEM;
    const int rc = __real_posix_memalign(p, align, n);
    if (rc == 0)
        track(*p);
    return rc;
}

void __wrap_free(void *p)
{
    untrack(p);
    __real_free(p);
}

static void arm(long n)
{
    pthread_mutex_lock(&lock);
    fail_at = n;
    allocations = 0;
    n_live = 0;
    overflowed = 0;
    pthread_mutex_unlock(&lock);
    atomic_store(&armed, 1);
}

static void disarm(void)
{
    atomic_store(&armed, 0);
}

/* ---- the checks -------------------------------------------------- */

static int all_sentinel(const float *x, int64_t n)
{
    const float sentinel = NAN;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&x[i], &sentinel, sizeof sentinel) != 0)
            return 0;
    return 1;
}

enum { MAX_N = 200 };

static void sweep_sdpa(const sdpa_case *c, int num_threads)
{
    sdpa_fixture f;
    sdpa_fixture_init(&f, c, 900);
    sdpa_result want = sdpa_result_new(&f);
    const int want_ok = sdpa_fixture_run(&f, num_threads, &want) == QKV_OK;

    long n = 1, failures_ok = 1, made = 0;
    for (; n <= MAX_N; n++) {
        sdpa_result r = sdpa_result_new(&f);
        arm(n);
        const qkv_status st = sdpa_fixture_run(&f, num_threads, &r);
        disarm();
        made = allocations;
        if (n > made) {   /* nothing failed: must be the normal result */
            hu_check(want_ok && st == QKV_OK && sdpa_result_same(&f, &want, &r) && n_live == 0,
                     "sdpa %s (threads %d): succeeds after %ld allocation(s), same bits, no leak",
                     c->name, num_threads, made);
            sdpa_result_free(&r);
            break;
        }
        const int untouched = all_sentinel(r.out, f.out_count) &&
                              (!r.weights || all_sentinel(r.weights, f.weights_count)) &&
                              (!r.lse || all_sentinel(r.lse, f.lse_count));
        if (st != QKV_E_NOMEM || n_live != 0 || overflowed || !untouched) {
            hu_note("allocation %ld failing: status %s, %d block(s) leaked, outputs %s", n,
                    qkv_status_str(st), n_live, untouched ? "untouched" : "WRITTEN");
            failures_ok = 0;
        }
        sdpa_result_free(&r);
    }
    hu_check(failures_ok && n <= MAX_N,
             "sdpa %s (threads %d, %s): each of %ld failing allocation(s) gives QKV_E_NOMEM, "
             "no leak, nothing written", c->name, num_threads,
             c->extra_outputs ? "weights + lse" : "no weights", made);
    sdpa_result_free(&want);
    sdpa_fixture_free(&f);
}

static void sweep_mha_create(const mha_case *c)
{
    mha_fixture f;
    if (!hu_check(mha_fixture_init(&f, c, 901) == QKV_OK, "mha %s: create unhindered", c->name))
        return;
    long n = 1, failures_ok = 1, made = 0;
    for (; n <= MAX_N; n++) {
        qkv_mha *sentinel = (qkv_mha *)&f, *layer = sentinel;
        arm(n);
        const qkv_status st = qkv_mha_create(&layer, &f.c.cfg, &f.w);
        made = allocations;
        if (n > made) {
            const int held = n_live;   /* the layer's own blocks */
            const int ok = st == QKV_OK && layer != sentinel && held >= 1;
            if (ok)
                qkv_mha_destroy(layer);
            disarm();
            hu_check(ok && n_live == 0,
                     "mha_create %s: succeeds after %ld allocation(s); destroy frees all %d block(s)",
                     c->name, made, held);
            break;
        }
        disarm();
        if (st != QKV_E_NOMEM || n_live != 0 || layer != sentinel) {
            hu_note("allocation %ld failing: status %s, %d block(s) leaked, *out %s", n,
                    qkv_status_str(st), n_live, layer == sentinel ? "untouched" : "WRITTEN");
            failures_ok = 0;
        }
    }
    hu_check(failures_ok && n <= MAX_N,
             "mha_create %s: each of %ld failing allocation(s) gives QKV_E_NOMEM, no leak, "
             "*out untouched", c->name, made);
    mha_fixture_free(&f);
}

static void sweep_mha_forward(const mha_case *c, int num_threads)
{
    mha_fixture f;
    if (!hu_check(mha_fixture_init(&f, c, 902) == QKV_OK, "mha %s: create unhindered", c->name))
        return;
    mha_result want = mha_result_new(&f);
    const int want_ok = mha_fixture_run(&f, num_threads, &want) == QKV_OK;

    long n = 1, failures_ok = 1, made = 0;
    for (; n <= MAX_N; n++) {
        mha_result r = mha_result_new(&f);
        arm(n);
        const qkv_status st = mha_fixture_run(&f, num_threads, &r);
        disarm();
        made = allocations;
        if (n > made) {
            hu_check(want_ok && st == QKV_OK && mha_result_same(&f, &want, &r) && n_live == 0,
                     "mha_forward %s (threads %d): succeeds after %ld allocation(s), same bits, "
                     "no leak", c->name, num_threads, made);
            mha_result_free(&r);
            break;
        }
        const int untouched = all_sentinel(r.y, f.y_count) &&
                              (!r.weights || all_sentinel(r.weights, f.weights_count)) &&
                              (!r.weights_avg || all_sentinel(r.weights_avg, f.avg_count));
        if (st != QKV_E_NOMEM || n_live != 0 || overflowed || !untouched) {
            hu_note("allocation %ld failing: status %s, %d block(s) leaked, outputs %s", n,
                    qkv_status_str(st), n_live, untouched ? "untouched" : "WRITTEN");
            failures_ok = 0;
        }
        mha_result_free(&r);
    }
    hu_check(failures_ok && n <= MAX_N,
             "mha_forward %s (threads %d, %s): each of %ld failing allocation(s) gives "
             "QKV_E_NOMEM, no leak, nothing written", c->name, num_threads,
             c->extra_outputs ? "weights + weights_avg" : "y only", made);
    mha_result_free(&want);
    mha_fixture_free(&f);
}

int main(void)
{
    for (int nt = 1; nt <= 2; nt++) {
        sweep_sdpa(&sdpa_cases[0], nt);   /* no weights */
        sweep_sdpa(&sdpa_cases[5], nt);   /* weights + lse, F16, mask, kv_len */
        sweep_sdpa(&sdpa_cases[7], nt);   /* decode rows, MQA */
    }
    for (int c = 0; c < n_mha_cases; c++)
        sweep_mha_create(&mha_cases[c]);
    for (int nt = 1; nt <= 2; nt++)
        for (int c = 0; c < n_mha_cases; c++)
            sweep_mha_forward(&mha_cases[c], nt);
    return hu_finish();
}
