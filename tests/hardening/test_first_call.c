/*
 * The first call into the library happens in many threads at once: CPU
 * detection and the choice of the ops table (src/dispatch.c) must run
 * exactly once and be seen complete by every thread. Nothing in this
 * program calls qkv before the threads are released together; each
 * thread then runs qkv_sdpa (its first library call) and records which
 * ISA was active. Every result must be bitwise identical and match the
 * double reference. TAP output.
 */
#include <pthread.h>
#include <stdlib.h>

#include "cases.h"

enum { RACERS = 8 };

typedef struct racer {
    pthread_barrier_t *start;
    const sdpa_fixture *f;
    sdpa_result r;
    qkv_status st;
    qkv_isa isa;
} racer;

static void *race(void *p)
{
    racer *rc = p;
    pthread_barrier_wait(rc->start);
    rc->st = sdpa_fixture_run(rc->f, 1, &rc->r);
    rc->isa = qkv_isa_active();
    return NULL;
}

int main(void)
{
    /* sdpa_fixture_init only builds inputs (via the reference's
       conversions): no qkv call yet. */
    sdpa_fixture f;
    sdpa_fixture_init(&f, &sdpa_cases[5], 77);   /* F16, mask, kv_len, extras */

    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, RACERS);
    pthread_t threads[RACERS];
    racer racers[RACERS];
    for (int t = 0; t < RACERS; t++) {
        racers[t] = (racer){.start = &start, .f = &f, .r = sdpa_result_new(&f)};
        if (pthread_create(&threads[t], NULL, race, &racers[t]) != 0)
            abort();
    }
    for (int t = 0; t < RACERS; t++)
        pthread_join(threads[t], NULL);

    int all_ok = 1, same = 1, same_isa = 1;
    for (int t = 0; t < RACERS; t++) {
        all_ok &= racers[t].st == QKV_OK;
        same &= sdpa_result_same(&f, &racers[0].r, &racers[t].r);
        same_isa &= racers[t].isa == racers[0].isa;
    }
    hu_check(all_ok, "%d simultaneous first calls all succeed", RACERS);
    hu_check(same_isa, "every thread saw the same ISA (%s)", qkv_isa_name(racers[0].isa));
    hu_check(same, "their results are bitwise identical");
    hu_check(all_ok && sdpa_result_matches_ref(&f, &racers[0].r),
             "and match the double reference");

    for (int t = 0; t < RACERS; t++)
        sdpa_result_free(&racers[t].r);
    pthread_barrier_destroy(&start);
    sdpa_fixture_free(&f);
    return hu_finish();
}
