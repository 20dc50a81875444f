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

#endif
