/*
 * Golden cases (tests/data/<case>.txt, format in tests/data/README.md): a
 * loader, and a checker that runs a case through the public API and
 * compares every output with the expected float64 values.
 *
 * Shared by the Criterion suites and the framework-free kernel checker
 * (tests/checkkern.c): no Criterion, no OpenMP in here.
 */
#ifndef QKV_TEST_GOLDEN_H
#define QKV_TEST_GOLDEN_H

#include <stdint.h>

#include "qkv.h"

#define GOLDEN_MAX_TENSORS 24
#define GOLDEN_MAX_KEYS 32

typedef struct golden_tensor {
    char name[32];
    int ndim;
    int64_t dims[8];
    int64_t count;      /* product of dims */
    double *data;       /* count values, parsed with strtod (-inf allowed) */
} golden_tensor;

typedef struct golden_case {
    char name[64];
    char op[8];                             /* "sdpa" or "mha" */
    int n_ints, n_floats, n_tensors;
    char int_keys[GOLDEN_MAX_KEYS][32];
    int64_t int_values[GOLDEN_MAX_KEYS];
    char float_keys[GOLDEN_MAX_KEYS][32];
    double float_values[GOLDEN_MAX_KEYS];
    golden_tensor tensors[GOLDEN_MAX_TENSORS];
} golden_case;

/* Parses one file. 0 on success; otherwise -1 with a reason in err
   (err_size bytes). */
int golden_load(const char *path, golden_case *c, char *err, int err_size);
void golden_free(golden_case *c);

/* Look-ups; NULL / dflt when absent. */
const golden_tensor *golden_tensor_get(const golden_case *c, const char *name);
int64_t golden_int(const golden_case *c, const char *key, int64_t dflt);
double golden_float(const golden_case *c, const char *key, double dflt);

/* The directory of the golden files: $QKV_TEST_DATA if set, else the
   compile-time QKV_TEST_DATA_DIR. */
const char *golden_data_dir(void);

/* Names of every case in the data directory (sorted, *.txt without the
   extension). Returns the count (-1 on error); *names is malloc'ed, free
   with golden_list_free. */
int golden_list(char ***names);
void golden_list_free(char **names, int n);

/* The result of one case through the public API. */
typedef struct golden_result {
    int status;              /* qkv_status of the call(s); 0 = QKV_OK */
    double worst_ratio;      /* max over all checked values of
                                |got - want| / tolerance (<= 1 passes) */
    char worst_where[128];   /* which tensor and index gave worst_ratio */
    int64_t values_checked;
} golden_result;

/* Runs case c with the current ISA and num_threads threads (0: default):
   qkv_sdpa for op sdpa (checking out, weights, and lse against a double
   recomputation), qkv_mha_create + qkv_mha_forward for op mha (checking
   y, weights, weights_avg). Tolerance per value:
   1e-5 * max|want over the tensor| + 1e-4 * |want|.
   Returns 0 if the call succeeded and every value is within tolerance. */
int golden_run(const golden_case *c, int num_threads, golden_result *r);

/* Checks the double reference (tests/ref) against case c instead of the
   library, with a tolerance 1000 times tighter than golden_run's (the
   files hold 9 significant digits). Returns 0 if every value agrees. */
int golden_run_ref(const golden_case *c, golden_result *r);

#endif
