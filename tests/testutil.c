/* Shared helpers of the Criterion suites (see testutil.h). */
#include "testutil.h"

#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Per-ISA runs                                                       */
/* ------------------------------------------------------------------ */

void qkv_test_init(void)
{
    /* Runs in the forked test process, never in the Criterion parent. */
    const char *want = getenv("QKV_ISA");
    if (want && *want && strcmp(want, qkv_isa_name(qkv_isa_active())) != 0)
        cr_skip_test("ISA %s not available on this CPU/build", want);
}

static int all_skipped;

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
    all_skipped = stats->nb_tests > 0 && stats->tests_skipped == stats->nb_tests;
}

/* Criterion's own main, plus exit status 77 (meson's SKIP) when every
   test was skipped, so that an ISA this machine lacks shows as skipped
   rather than passed. */
int main(int argc, char **argv)
{
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result == 0 && all_skipped ? 77 : result;
}

/* ------------------------------------------------------------------ */
/* PRNG                                                               */
/* ------------------------------------------------------------------ */

test_rng rng_seeded(uint64_t seed)
{
    test_rng r = {seed * 0x9e3779b97f4a7c15u + 0x632be59bd9b4e019u};
    return r;
}

uint64_t rng_next(test_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

double rng_uniform(test_rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

double rng_normal(test_rng *r)
{
    /* Box-Muller; 1 - u keeps the logarithm finite. */
    const double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

int64_t rng_range(test_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}
