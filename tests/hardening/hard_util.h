/*
 * Helpers shared by the hardening tests (tests/hardening/) and the fuzz
 * targets (tests/fuzz/): a seeded generator, random test tensors, the
 * comparison with the double reference, the list of ISAs to run under and
 * TAP output. Plain C, no Criterion, no OpenMP.
 */
#ifndef QKV_HARD_UTIL_H
#define QKV_HARD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "qkv.h"

/* ---- random numbers (splitmix64: small, seedable, no global state) --- */

uint64_t hu_next(uint64_t *state);
/* Uniform in [lo, hi). */
float hu_uniform(uint64_t *state, float lo, float hi);
void hu_fill(float *x, int64_t n, uint64_t seed, float lo, float hi);

/* ---- test tensors ----------------------------------------------------- */

/* A contiguous [b, h, s, d] tensor that owns its memory (malloc'ed),
   filled with uniform values in [-1, 1) from seed. F16/BF16 data are the
   storage encodings of such values. */
typedef struct hu_tensor {
    qkv_tensor t;
    int64_t count;
} hu_tensor;

hu_tensor hu_tensor_new(qkv_dtype dt, int64_t b, int64_t h, int64_t s, int64_t d,
                        uint64_t seed);
void hu_tensor_free(hu_tensor *t);

/* ---- comparison ------------------------------------------------------- */

/* 1 if every got[i] is within 1e-5 * max|want| + 1e-4 * |want[i]| + abs_tol
   of want[i] (infinite want values must match exactly; NaN never
   matches). On failure, prints the worst index to stderr under `what`. */
int hu_close(const char *what, const float *got, const double *want, int64_t n,
             double abs_tol);

/* 1 if the two arrays are bitwise identical. */
int hu_same_bits(const void *a, const void *b, size_t bytes);

/* ---- ISAs ------------------------------------------------------------- */

/* The ISAs this CPU and build support (never QKV_ISA_AUTO), best last.
   Returns how many were written to list (at most 4). */
int hu_isas(qkv_isa list[4]);

/* ---- TAP -------------------------------------------------------------- */

/* Records one check: prints "ok N - name" or "not ok N - name". Returns
   cond. */
int hu_check(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints a "# ..." diagnostic line. */
void hu_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the plan; returns the process exit status (0: all passed). */
int hu_finish(void);

#endif
