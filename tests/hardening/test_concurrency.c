/*
 * Concurrency of the public API, from plain pthreads:
 *
 *  1. shared layer: 8 threads call qkv_sdpa on shared inputs and
 *     qkv_mha_forward on ONE shared qkv_mha at the same time; every result
 *     must be bitwise identical to the single-threaded result (computed
 *     first and checked against the double reference);
 *  2. ISA switching: the same, while another thread keeps calling
 *     qkv_isa_set with every supported ISA; a call uses the ISA it started
 *     with (include/qkv.h), so each result must equal, bitwise, the result
 *     of one of the ISAs.
 *
 * Each thread passes its own num_threads (1 or 2) so that, with OpenMP,
 * several teams run at once. Under ThreadSanitizer (.ci/hardening.sh) the
 * library is built without OpenMP: libgomp is not instrumented and gives
 * false reports; what TSan checks here is the pthread-level concurrency of
 * the API (dispatch table, layer, scratch). TAP output.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "cases.h"

enum { WORKERS = 8, ROUNDS = 2, MAX_ISAS = 4 };

/* Every case, with its expected result under each ISA. */
typedef struct shared_work {
    sdpa_fixture sdpa[16];
    mha_fixture mha[8];
    sdpa_result sdpa_want[16][MAX_ISAS];
    mha_result mha_want[8][MAX_ISAS];
    int n_isas;
    qkv_isa isas[MAX_ISAS];
    int any_isa;                 /* 1: accept the result of any ISA */
    atomic_int mismatches, errors, calls;
    atomic_int stop_flipping;
} shared_work;

static int sdpa_matches(const shared_work *w, int c, const sdpa_result *r)
{
    const int n = w->any_isa ? w->n_isas : 1;
    for (int i = 0; i < n; i++)
        if (sdpa_result_same(&w->sdpa[c], &w->sdpa_want[c][i], r))
            return 1;
    return 0;
}

static int mha_matches(const shared_work *w, int c, const mha_result *r)
{
    const int n = w->any_isa ? w->n_isas : 1;
    for (int i = 0; i < n; i++)
        if (mha_result_same(&w->mha[c], &w->mha_want[c][i], r))
            return 1;
    return 0;
}

typedef struct worker_arg {
    shared_work *w;
    int id;
} worker_arg;

static void *worker(void *p)
{
    const worker_arg *a = p;
    shared_work *w = a->w;
    const int num_threads = 1 + a->id % 2;
    for (int round = 0; round < ROUNDS; round++) {
        /* Each thread starts at a different case, so different calls overlap. */
        for (int k = 0; k < n_sdpa_cases; k++) {
            const int c = (k + a->id) % n_sdpa_cases;
            sdpa_result r = sdpa_result_new(&w->sdpa[c]);
            if (sdpa_fixture_run(&w->sdpa[c], num_threads, &r) != QKV_OK)
                atomic_fetch_add(&w->errors, 1);
            else if (!sdpa_matches(w, c, &r))
                atomic_fetch_add(&w->mismatches, 1);
            atomic_fetch_add(&w->calls, 1);
            sdpa_result_free(&r);
        }
        for (int k = 0; k < n_mha_cases; k++) {
            const int c = (k + a->id) % n_mha_cases;
            mha_result r = mha_result_new(&w->mha[c]);
            if (mha_fixture_run(&w->mha[c], num_threads, &r) != QKV_OK)
                atomic_fetch_add(&w->errors, 1);
            else if (!mha_matches(w, c, &r))
                atomic_fetch_add(&w->mismatches, 1);
            atomic_fetch_add(&w->calls, 1);
            mha_result_free(&r);
        }
    }
    return NULL;
}

/* Cycles through AUTO and every supported ISA until told to stop. */
static void *isa_flipper(void *p)
{
    shared_work *w = p;
    long flips = 0;
    while (!atomic_load(&w->stop_flipping)) {
        const qkv_isa isa = flips % (w->n_isas + 1) == 0
                                ? QKV_ISA_AUTO
                                : w->isas[flips % (w->n_isas + 1) - 1];
        if (qkv_isa_set(isa) != QKV_OK)
            atomic_fetch_add(&w->errors, 1);
        flips++;
        sched_yield();   /* let the workers run on a small machine */
    }
    return (void *)flips;
}

/* Runs the workers (and the flipper if flip) and reports. */
static void run_workers(shared_work *w, int flip, const char *what)
{
    pthread_t threads[WORKERS], flipper;
    worker_arg args[WORKERS];
    atomic_store(&w->mismatches, 0);
    atomic_store(&w->errors, 0);
    atomic_store(&w->calls, 0);
    atomic_store(&w->stop_flipping, 0);
    w->any_isa = flip;
    if (flip && pthread_create(&flipper, NULL, isa_flipper, w) != 0)
        abort();
    for (int t = 0; t < WORKERS; t++) {
        args[t] = (worker_arg){w, t};
        if (pthread_create(&threads[t], NULL, worker, &args[t]) != 0)
            abort();
    }
    for (int t = 0; t < WORKERS; t++)
        pthread_join(threads[t], NULL);
    void *flips = NULL;
    if (flip) {
        atomic_store(&w->stop_flipping, 1);
        pthread_join(flipper, &flips);
        hu_note("%ld ISA switches during the calls", (long)flips);
    }
    hu_check(atomic_load(&w->errors) == 0, "%s: no call failed", what);
    hu_check(atomic_load(&w->mismatches) == 0,
             "%s: %d concurrent calls, %d results differ from the single-threaded ones",
             what, atomic_load(&w->calls), atomic_load(&w->mismatches));
}

/* Single-threaded results under ISA slot i (checked against the reference
   for the first one). */
static void compute_expected(shared_work *w, int i)
{
    if (qkv_isa_set(w->isas[i]) != QKV_OK)
        abort();
    for (int c = 0; c < n_sdpa_cases; c++) {
        w->sdpa_want[c][i] = sdpa_result_new(&w->sdpa[c]);
        const int ok = sdpa_fixture_run(&w->sdpa[c], 1, &w->sdpa_want[c][i]) == QKV_OK &&
                       sdpa_result_matches_ref(&w->sdpa[c], &w->sdpa_want[c][i]);
        hu_check(ok, "%s sdpa %s: single-threaded result matches the reference",
                 qkv_isa_name(w->isas[i]), sdpa_cases[c].name);
    }
    for (int c = 0; c < n_mha_cases; c++) {
        w->mha_want[c][i] = mha_result_new(&w->mha[c]);
        const int ok = mha_fixture_run(&w->mha[c], 1, &w->mha_want[c][i]) == QKV_OK &&
                       mha_result_matches_ref(&w->mha[c], &w->mha_want[c][i]);
        hu_check(ok, "%s mha %s: single-threaded result matches the reference",
                 qkv_isa_name(w->isas[i]), mha_cases[c].name);
    }
}

int main(void)
{
    static shared_work w;
    if (n_sdpa_cases > 16 || n_mha_cases > 8)
        abort();
    w.n_isas = hu_isas(w.isas);
    for (int c = 0; c < n_sdpa_cases; c++)
        sdpa_fixture_init(&w.sdpa[c], &sdpa_cases[c], 100 + 10 * (uint64_t)c);
    for (int c = 0; c < n_mha_cases; c++)
        if (!hu_check(mha_fixture_init(&w.mha[c], &mha_cases[c], 500 + 10 * (uint64_t)c) == QKV_OK,
                      "mha %s: create", mha_cases[c].name))
            return hu_finish();

    /* Slot 0 is the best ISA: the one the shared-layer phase runs on. */
    const qkv_isa best = w.isas[w.n_isas - 1];
    w.isas[w.n_isas - 1] = w.isas[0];
    w.isas[0] = best;
    for (int i = 0; i < w.n_isas; i++)
        compute_expected(&w, i);

    if (qkv_isa_set(best) != QKV_OK)
        abort();
    run_workers(&w, 0, "8 threads, shared inputs and layer");
    run_workers(&w, 1, "8 threads while qkv_isa_set switches ISAs");
    qkv_isa_set(QKV_ISA_AUTO);

    for (int c = 0; c < n_sdpa_cases; c++) {
        for (int i = 0; i < w.n_isas; i++)
            sdpa_result_free(&w.sdpa_want[c][i]);
        sdpa_fixture_free(&w.sdpa[c]);
    }
    for (int c = 0; c < n_mha_cases; c++) {
        for (int i = 0; i < w.n_isas; i++)
            mha_result_free(&w.mha_want[c][i]);
        mha_fixture_free(&w.mha[c]);
    }
    return hu_finish();
}
