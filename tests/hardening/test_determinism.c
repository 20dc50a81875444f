/*
 * Determinism: for every ISA this CPU has, every sdpa and multi-head case
 * gives bitwise identical outputs for num_threads = 1 .. 8 (and 0, the
 * OpenMP default) and across repeated calls; the single-threaded result
 * also matches the double reference, so the runs compared are right, not
 * just equal. TAP output.
 */
#include <stdio.h>

#include "cases.h"

enum { MAX_THREADS = 8 };

static void check_sdpa_case(const sdpa_case *c, qkv_isa isa)
{
    sdpa_fixture f;
    sdpa_fixture_init(&f, c, 1000);
    sdpa_result base = sdpa_result_new(&f);
    qkv_status st = sdpa_fixture_run(&f, 1, &base);
    hu_check(st == QKV_OK && sdpa_result_matches_ref(&f, &base),
             "%s sdpa %s: 1 thread matches the reference", qkv_isa_name(isa), c->name);

    int same = 1;
    for (int nt = 0; nt <= MAX_THREADS && same; nt++) {
        for (int rep = 0; rep < 2 && same; rep++) {
            sdpa_result r = sdpa_result_new(&f);
            same = sdpa_fixture_run(&f, nt, &r) == QKV_OK && sdpa_result_same(&f, &base, &r);
            if (!same)
                hu_note("differs at num_threads=%d, repeat %d", nt, rep);
            sdpa_result_free(&r);
        }
    }
    hu_check(same, "%s sdpa %s: bitwise identical for num_threads 0..%d, twice each",
             qkv_isa_name(isa), c->name, MAX_THREADS);
    sdpa_result_free(&base);
    sdpa_fixture_free(&f);
}

static void check_mha_case(const mha_case *c, qkv_isa isa)
{
    mha_fixture f;
    if (!hu_check(mha_fixture_init(&f, c, 2000) == QKV_OK, "%s mha %s: create",
                  qkv_isa_name(isa), c->name)) {
        mha_fixture_free(&f);
        return;
    }
    mha_result base = mha_result_new(&f);
    qkv_status st = mha_fixture_run(&f, 1, &base);
    hu_check(st == QKV_OK && mha_result_matches_ref(&f, &base),
             "%s mha %s: 1 thread matches the reference", qkv_isa_name(isa), c->name);

    int same = 1;
    for (int nt = 0; nt <= MAX_THREADS && same; nt++) {
        for (int rep = 0; rep < 2 && same; rep++) {
            mha_result r = mha_result_new(&f);
            same = mha_fixture_run(&f, nt, &r) == QKV_OK && mha_result_same(&f, &base, &r);
            if (!same)
                hu_note("differs at num_threads=%d, repeat %d", nt, rep);
            mha_result_free(&r);
        }
    }
    hu_check(same, "%s mha %s: bitwise identical for num_threads 0..%d, twice each",
             qkv_isa_name(isa), c->name, MAX_THREADS);
    mha_result_free(&base);
    mha_fixture_free(&f);
}

int main(void)
{
    qkv_isa isas[4];
    const int n_isas = hu_isas(isas);
    for (int i = 0; i < n_isas; i++) {
        hu_check(qkv_isa_set(isas[i]) == QKV_OK, "select %s", qkv_isa_name(isas[i]));
        for (int c = 0; c < n_sdpa_cases; c++)
            check_sdpa_case(&sdpa_cases[c], isas[i]);
        for (int c = 0; c < n_mha_cases; c++)
            check_mha_case(&mha_cases[c], isas[i]);
    }
    qkv_isa_set(QKV_ISA_AUTO);
    return hu_finish();
}
