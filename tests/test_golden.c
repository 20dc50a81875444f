/*
 * The golden cases of tests/data through the public API (golden_run), and
 * through the double reference (which the other suites trust).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "golden.h"
#include "testutil.h"

TestSuite(golden, .init = qkv_test_init);

/* Runs fn over every case; a case that fails is reported by name and the
   test fails at the end, so one bad case does not hide the others. */
static void for_each_case(int (*fn)(const golden_case *, int, golden_result *),
                          int num_threads, const char *label)
{
    char **names;
    const int n = golden_list(&names);
    cr_assert_geq(n, 18, "expected at least the 18 visible cases in %s, found %d",
                  golden_data_dir(), n);
    int failures = 0;
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        char path[4096], err[256];
        golden_case c;
        snprintf(path, sizeof path, "%s/%s.txt", golden_data_dir(), names[i]);
        if (golden_load(path, &c, err, sizeof err)) {
            cr_log_error("%s: cannot load: %s", names[i], err);
            failures++;
            continue;
        }
        golden_result r;
        const int rc = fn(&c, num_threads, &r);
        if (rc) {
            cr_log_error("%s %s: status %d (%s), worst ratio %.3g at %s", label, names[i],
                         r.status, r.status >= 0 ? qkv_status_str((qkv_status)r.status) : "-",
                         r.worst_ratio, r.worst_where);
            failures++;
        } else {
            cr_log_info("%s %s: worst ratio %.3g (%lld values) at %s", label, names[i],
                        r.worst_ratio, (long long)r.values_checked, r.worst_where);
            if (r.worst_ratio > worst)
                worst = r.worst_ratio;
        }
        golden_free(&c);
    }
    golden_list_free(names, n);
    cr_assert_eq(failures, 0, "%d of %d golden cases failed (%s)", failures, n, label);
    cr_log_info("%s: all %d cases pass, worst ratio %.3g", label, n, worst);
}

static int run_ref(const golden_case *c, int num_threads, golden_result *r)
{
    (void)num_threads;
    return golden_run_ref(c, r);
}

static int run_library(const golden_case *c, int num_threads, golden_result *r)
{
    return golden_run(c, num_threads, r);
}

Test(golden, reference_matches_files)
{
    for_each_case(run_ref, 0, "reference");
}

Test(golden, library_matches_files_default_threads)
{
    for_each_case(run_library, 0, "library");
}

Test(golden, library_matches_files_one_thread)
{
    for_each_case(run_library, 1, "library-1thread");
}
