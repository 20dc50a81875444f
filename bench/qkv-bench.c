/*
 * qkv-bench: whole-operation benchmarks of qkv_sdpa and the multi-head
 * layer, per ISA, against the machine's own limits measured in the same run
 * (the FMA peak of that ISA on one core, the read bandwidth of one thread)
 * and against attention written on OpenBLAS (blas_attn.c).
 *
 *   qkv-bench                      the default suite, every available ISA
 *   qkv-bench --isa avx512 --heads 8 --lq 2048 --dim 128 --causal
 *   qkv-bench --mha --threads 2 --json
 *   qkv-bench --isa avx512 --lq 8192 --window 256,0
 *   qkv-bench --isa avx512 --softcap 50 --alibi
 *   qkv-bench --runs 40            the suite 40 times, then per row the
 *                                  median and range over the runs
 *
 * Each measurement warms up until a call takes no more page faults (at
 * most 8 calls), then repeats while it stays within a time budget (and at
 * most --reps times) and reports the median.
 * FLOPs of attention are 4 * B * H * D * (visible query-key pairs): two
 * GEMMs of 2 FLOPs per multiply-add; a causal square problem counts only
 * its unmasked half, a sliding window only the keys inside it. The multi-head layer adds 2 * tokens * in * out for
 * each of its four projections. "% peak" divides by threads x the
 * single-thread FMA peak of the ISA measured beside the row (just before
 * and just after it, the better of the two: on a shared machine the peak
 * itself moves by tens of percent within a run); "% pk0" by the peak
 * measured once at the start, as a second opinion. Shapes with one query row (decode)
 * also report the bandwidth of streaming K and V.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "blas_attn.h"
#include "kernels.h"
#include "peak.h"
#include "qkv.h"

/* ------------------------------------------------------------------ */
/* Options                                                            */
/* ------------------------------------------------------------------ */

enum { MAX_REPS = 100, MAX_ISAS = 4, MAX_RUNS = 1000 };
/* Warm-up calls at most, and the page faults below which a call counts as
   settled (a few pages of stack or of a library's lazy state). */
enum { MAX_WARMUPS = 8, WARM_FAULTS = 16 };

typedef struct shape {
    int64_t batch, heads, kv_heads, lq, lk, dim;
    int causal;             /* bottom-right: query i sees keys <= i + lk - lq */
    qkv_dtype kv_dtype;
    int window;             /* sliding window: query i sees keys j with */
    int64_t window_left, window_right;   /* -left <= j - (i + lk - lq) <= right */
    float softcap;          /* > 0: logit soft-capping (Gemma 2 uses 50) */
    int alibi;              /* ALiBi with the standard slopes of `heads` */
} shape;

typedef struct options {
    qkv_isa isas[MAX_ISAS];
    int n_isas;
    int isa_chosen;          /* --isa given: run it on every shape */
    int threads;
    int max_reps;
    double budget_ns;        /* time for the repetitions of one measurement */
    int json, blas, mha;
    int custom_shape;        /* a shape option was given */
    int clock;               /* -1 (default), or a bench_clock */
    int runs;                /* the whole selection this many times */
    shape custom;
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qkv-bench [options]\n"
        "  --isa NAME        scalar, avx2, avx512 or neon (default: every available)\n"
        "  --heads H         query heads (default 8)\n"
        "  --kv-heads H      key/value heads (default: heads)\n"
        "  --lq N --lk N     query and key lengths (default 2048; lk defaults to lq)\n"
        "  --dim D           head dimension (default 64)\n"
        "  --batch B         (default 1)\n"
        "  --causal          bottom-right causal mask (of the layer, with --mha)\n"
        "  --window L,R      sliding window: query i sees keys i+Lk-Lq-L .. i+Lk-Lq+R\n"
        "                    (a negative side is unlimited; no OpenBLAS baseline)\n"
        "  --softcap C       logit soft-capping at C > 0 (no OpenBLAS baseline)\n"
        "  --alibi           ALiBi with the standard slopes (no OpenBLAS baseline)\n"
        "  --kv-dtype T      f32, f16 or bf16 storage of K and V (default f32)\n"
        "  --threads N       num_threads of every call (default 1)\n"
        "  --reps N          at most N timed repetitions (default 10)\n"
        "  --budget S        seconds of repetitions per measurement (default 0.5)\n"
        "  --runs N          everything N times in turn, then a summary: per row,\n"
        "                    the median over the runs and the range of %%peak\n"
        "                    (default 1; the host's load moves single runs)\n"
        "  --clock C         wall, or cpu: CPU time of the calling thread, which\n"
        "                    leaves out time descheduled on a busy machine\n"
        "                    (default: cpu with one thread, else wall)\n"
        "  --mha             the multi-head layer at d_model 512, 8 heads, 2048 tokens\n"
        "  --no-blas         skip the OpenBLAS baseline\n"
        "  --json            machine-readable output\n"
        "Without shape options and without --mha: the default suite.\n");
}

static int parse_isa(const char *name, qkv_isa *isa)
{
    for (int i = QKV_ISA_SCALAR; i <= QKV_ISA_NEON; i++) {
        if (strcmp(name, qkv_isa_name((qkv_isa)i)) == 0) {
            *isa = (qkv_isa)i;
            return 1;
        }
    }
    return 0;
}

static int parse_dtype(const char *name, qkv_dtype *dt)
{
    static const char *const names[] = {"f32", "f16", "bf16"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, names[i]) == 0) {
            *dt = (qkv_dtype)i;
            return 1;
        }
    }
    return 0;
}

static const char *dtype_name(qkv_dtype dt)
{
    return dt == QKV_F16 ? "f16" : dt == QKV_BF16 ? "bf16" : "f32";
}

static int64_t parse_size(const char *s, const char *what)
{
    char *end;
    const long long v = strtoll(s, &end, 10);
    if (*end || v <= 0) {
        fprintf(stderr, "qkv-bench: %s must be a positive integer, not '%s'\n", what, s);
        exit(1);
    }
    return v;
}

static void all_available_isas(options *o)
{
    static const qkv_isa order[] = {QKV_ISA_SCALAR, QKV_ISA_AVX2, QKV_ISA_AVX512, QKV_ISA_NEON};
    o->n_isas = 0;
    for (int i = 0; i < 4; i++)
        if (qkv_isa_supported(order[i]))
            o->isas[o->n_isas++] = order[i];
}

/* "L,R" -> the window of s. */
static int parse_window(const char *text, shape *s)
{
    char *end;
    const long long left = strtoll(text, &end, 10);
    if (end == text || *end != ',')
        return 0;
    const char *right_text = end + 1;
    const long long right = strtoll(right_text, &end, 10);
    if (end == right_text || *end)
        return 0;
    s->window = 1;
    s->window_left = left;
    s->window_right = right;
    return 1;
}

static void parse_options(int argc, char **argv, options *o)
{
    enum { OPT_ISA = 256, OPT_HEADS, OPT_KV_HEADS, OPT_LQ, OPT_LK, OPT_DIM,
           OPT_BATCH, OPT_CAUSAL, OPT_WINDOW, OPT_SOFTCAP, OPT_ALIBI, OPT_KV_DTYPE,
           OPT_THREADS, OPT_REPS, OPT_BUDGET, OPT_RUNS, OPT_CLOCK, OPT_MHA, OPT_NO_BLAS,
           OPT_JSON, OPT_HELP };
    static const struct option long_opts[] = {
        {"isa", required_argument, NULL, OPT_ISA},
        {"heads", required_argument, NULL, OPT_HEADS},
        {"kv-heads", required_argument, NULL, OPT_KV_HEADS},
        {"lq", required_argument, NULL, OPT_LQ},
        {"lk", required_argument, NULL, OPT_LK},
        {"dim", required_argument, NULL, OPT_DIM},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"causal", no_argument, NULL, OPT_CAUSAL},
        {"window", required_argument, NULL, OPT_WINDOW},
        {"softcap", required_argument, NULL, OPT_SOFTCAP},
        {"alibi", no_argument, NULL, OPT_ALIBI},
        {"kv-dtype", required_argument, NULL, OPT_KV_DTYPE},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"reps", required_argument, NULL, OPT_REPS},
        {"budget", required_argument, NULL, OPT_BUDGET},
        {"runs", required_argument, NULL, OPT_RUNS},
        {"clock", required_argument, NULL, OPT_CLOCK},
        {"mha", no_argument, NULL, OPT_MHA},
        {"no-blas", no_argument, NULL, OPT_NO_BLAS},
        {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (options){.threads = 1, .max_reps = 10, .budget_ns = 0.5e9, .blas = 1, .clock = -1,
                   .runs = 1,
                   .custom = {.batch = 1, .heads = 8, .lq = 2048, .dim = 64}};
    shape *s = &o->custom;
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        switch (opt) {
        case OPT_ISA:
            if (!parse_isa(optarg, &o->isas[0])) {
                fprintf(stderr, "qkv-bench: unknown ISA '%s'\n", optarg);
                exit(1);
            }
            if (!qkv_isa_supported(o->isas[0])) {
                fprintf(stderr, "qkv-bench: %s is not available on this CPU or build\n", optarg);
                exit(1);
            }
            o->n_isas = 1;
            o->isa_chosen = 1;
            break;
        case OPT_HEADS:    s->heads = parse_size(optarg, "--heads"); o->custom_shape = 1; break;
        case OPT_KV_HEADS: s->kv_heads = parse_size(optarg, "--kv-heads"); o->custom_shape = 1; break;
        case OPT_LQ:       s->lq = parse_size(optarg, "--lq"); o->custom_shape = 1; break;
        case OPT_LK:       s->lk = parse_size(optarg, "--lk"); o->custom_shape = 1; break;
        case OPT_DIM:      s->dim = parse_size(optarg, "--dim"); o->custom_shape = 1; break;
        case OPT_BATCH:    s->batch = parse_size(optarg, "--batch"); o->custom_shape = 1; break;
        case OPT_CAUSAL:   s->causal = 1; break;
        case OPT_WINDOW:
            if (!parse_window(optarg, s)) {
                fprintf(stderr, "qkv-bench: --window is LEFT,RIGHT (integers)\n");
                exit(1);
            }
            o->custom_shape = 1;
            break;
        case OPT_SOFTCAP:
            s->softcap = strtof(optarg, NULL);
            if (!(s->softcap > 0.0f) || !isfinite(s->softcap)) {
                fprintf(stderr, "qkv-bench: --softcap must be a positive number\n");
                exit(1);
            }
            o->custom_shape = 1;
            break;
        case OPT_ALIBI:    s->alibi = 1; o->custom_shape = 1; break;
        case OPT_KV_DTYPE:
            if (!parse_dtype(optarg, &s->kv_dtype)) {
                fprintf(stderr, "qkv-bench: --kv-dtype is f32, f16 or bf16\n");
                exit(1);
            }
            o->custom_shape = 1;
            break;
        case OPT_THREADS:  o->threads = (int)parse_size(optarg, "--threads"); break;
        case OPT_REPS:
            o->max_reps = (int)parse_size(optarg, "--reps");
            if (o->max_reps > MAX_REPS)
                o->max_reps = MAX_REPS;
            break;
        case OPT_BUDGET:   o->budget_ns = atof(optarg) * 1e9; break;
        case OPT_RUNS: {
            const int64_t runs = parse_size(optarg, "--runs");
            if (runs > MAX_RUNS) {
                fprintf(stderr, "qkv-bench: --runs is at most %d\n", MAX_RUNS);
                exit(1);
            }
            o->runs = (int)runs;
            break;
        }
        case OPT_CLOCK:
            if (strcmp(optarg, "wall") && strcmp(optarg, "cpu")) {
                fprintf(stderr, "qkv-bench: --clock is wall or cpu\n");
                exit(1);
            }
            o->clock = strcmp(optarg, "wall") ? BENCH_CLOCK_THREAD_CPU : BENCH_CLOCK_WALL;
            break;
        case OPT_MHA:      o->mha = 1; break;
        case OPT_NO_BLAS:  o->blas = 0; break;
        case OPT_JSON:     o->json = 1; break;
        case OPT_HELP:     usage(stdout); exit(0);
        default:           usage(stderr); exit(1);
        }
    }
    if (optind < argc) {
        usage(stderr);
        exit(1);
    }
    /* --causal alone picks the custom shape; with --mha it applies to the
       layer only. */
    if (s->causal && !o->mha)
        o->custom_shape = 1;
    if (!s->kv_heads)
        s->kv_heads = s->heads;
    if (!s->lk)
        s->lk = s->lq;
    if (s->heads % s->kv_heads) {
        fprintf(stderr, "qkv-bench: --heads must be a multiple of --kv-heads\n");
        exit(1);
    }
    if (!o->isa_chosen)
        all_available_isas(o);
    if (o->clock < 0)
        o->clock = o->threads == 1 ? BENCH_CLOCK_THREAD_CPU : BENCH_CLOCK_WALL;
    if (o->clock == BENCH_CLOCK_THREAD_CPU && o->threads > 1)
        fprintf(stderr, "qkv-bench: --clock cpu counts the calling thread only; "
                        "use wall with --threads > 1\n");
    bench_set_clock((bench_clock)o->clock);
}

/* ------------------------------------------------------------------ */
/* Measuring                                                          */
/* ------------------------------------------------------------------ */

typedef void (*run_fn)(void *ctx);

typedef struct timing {
    double ns;        /* median */
    int reps;         /* timed runs behind it */
    double total_ns;  /* every run, the warm-up included */
} timing;

/* Warm-up runs, then as many runs as fit in the budget (at least one, at
   most max_reps); a warm-up that alone exceeds the budget is the
   measurement, so slow paths (scalar) do not take minutes.
   The warm-up goes on while a call takes page faults, up to MAX_WARMUPS
   calls and four times the budget: until then the allocator is still
   serving the call's scratch from fresh pages (from mmap, or a heap it has
   just grown), which a caller in a loop does not see once it settles.
   glibc settles after up to five calls of the multi-head layer (20 MB of
   workspace and scratch at 2048 tokens), whose faults cost 6-9% of a call
   on this kind of machine. */
static timing measure(run_fn fn, void *ctx, const options *o)
{
    double total = 0.0, warm = 0.0;
    for (int w = 0; w < MAX_WARMUPS; w++) {
        const long faults = bench_page_faults();
        const double t0 = bench_now_ns();
        fn(ctx);
        warm = bench_now_ns() - t0;
        total += warm;
        if (w == 0 && warm >= o->budget_ns)
            return (timing){warm, 1, warm};
        if (bench_page_faults() - faults <= WARM_FAULTS || total >= 4.0 * o->budget_ns)
            break;
    }
    int reps = warm > 0.0 ? (int)(o->budget_ns / warm) : o->max_reps;
    reps = reps < 1 ? 1 : reps > o->max_reps ? o->max_reps : reps;
    double samples[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        const double t0 = bench_now_ns();
        fn(ctx);
        samples[r] = bench_now_ns() - t0;
        total += samples[r];
    }
    return (timing){bench_median(samples, reps), reps, total};
}

/* measure(), with isa's FMA peak measured just before and just after it:
   the higher of the two is what the core could deliver meanwhile, the
   peak that the row's "% peak" divides by. */
static timing measure_beside_peak(run_fn fn, void *ctx, const options *o,
                                  qkv_isa isa, double *peak_gflops)
{
    const double before = bench_fma_peak_now_gflops(isa);
    const timing t = measure(fn, ctx, o);
    const double after = bench_fma_peak_now_gflops(isa);
    *peak_gflops = before > after ? before : after;
    return t;
}

/* Query-key pairs that the causal rule and the window leave visible. */
static double visible_pairs(const shape *s)
{
    if (!s->causal && !s->window)
        return (double)s->lq * (double)s->lk;
    double pairs = 0.0;
    for (int64_t i = 0; i < s->lq; i++) {
        const int64_t diag = i + s->lk - s->lq;
        int64_t lo = 0, hi = s->lk;   /* keys [lo, hi) */
        if (s->causal && diag + 1 < hi)
            hi = diag + 1;
        if (s->window && s->window_left >= 0 && diag - s->window_left > lo)
            lo = diag - s->window_left;
        if (s->window && s->window_right >= 0 && diag + s->window_right + 1 < hi)
            hi = diag + s->window_right + 1;
        pairs += (double)(hi > lo ? hi - lo : 0);
    }
    return pairs;
}

static double attention_flops(const shape *s)
{
    return 4.0 * (double)(s->batch * s->heads * s->dim) * visible_pairs(s);
}

/* ------------------------------------------------------------------ */
/* Results                                                            */
/* ------------------------------------------------------------------ */

typedef struct result {
    qkv_isa isa;
    const char *op;          /* "sdpa" or "mha" */
    shape s;
    const char *status;      /* NULL when measured */
    timing t;
    double flops, gflops, peak_pct;
    double peak_gflops;      /* single-thread peak measured beside the row */
    double start_peak_pct;   /* against the peak measured at the start */
    double kv_bytes, kv_gbs, bw_pct;       /* decode only (kv_bytes > 0) */
    double blas_ns, blas_softmax_ns;       /* 0 when no baseline */
    int run, row;            /* with --runs: which run, which row of it */
} result;

typedef struct machine {
    char cpu[256], date[16];
    double peak[QKV_ISA_NEON + 1];   /* single-thread GFLOP/s per ISA */
    double read_gbs;
} machine;

/* Every row of every run, in order. */
static result *results;
static int n_results, results_capacity;
/* The run being measured, and the rows it has recorded so far. */
static int current_run, rows_this_run;

static void describe_shape(const result *r, char *buf, size_t size)
{
    const shape *s = &r->s;
    if (strcmp(r->op, "mha") == 0) {
        snprintf(buf, size, "d512 H8 T%lld%s", (long long)s->lq, s->causal ? " causal" : "");
        return;
    }
    char window[48] = "", softcap[32] = "";
    if (s->window)
        snprintf(window, sizeof window, " win%lld,%lld",
                 (long long)s->window_left, (long long)s->window_right);
    if (s->softcap > 0.0f)
        snprintf(softcap, sizeof softcap, " cap%g", (double)s->softcap);
    snprintf(buf, size, "B%lld H%lld/%lld Lq%lld Lk%lld D%lld%s%s%s%s %s",
             (long long)s->batch, (long long)s->heads, (long long)s->kv_heads,
             (long long)s->lq, (long long)s->lk, (long long)s->dim,
             s->causal ? " causal" : "", window, softcap, s->alibi ? " alibi" : "",
             dtype_name(s->kv_dtype));
}

static void print_header(const machine *m, const options *o)
{
    printf("qkv-bench: %s, %s, %d thread%s, %s clock\n", m->cpu, m->date, o->threads,
           o->threads == 1 ? "" : "s", bench_clock_name());
    printf("FMA peak (1 thread, measured):");
    for (int i = 0; i < o->n_isas; i++)
        printf(" %s %.1f GFLOP/s", qkv_isa_name(o->isas[i]), m->peak[o->isas[i]]);
    printf("\n");
    if (m->read_gbs > 0.0)
        printf("read bandwidth (1 thread, measured): %.1f GB/s\n", m->read_gbs);
    printf("baseline: %s\n\n", o->blas && bench_blas_available() ? bench_blas_name() : "none");
    printf("peak: the FMA peak measured beside each row (the better of about 25 ms\n"
           "before and after it); %%peak divides by it, %%pk0 by the peak above\n\n");
    printf("%-7s %-4s %-40s %4s %9s %8s %6s %6s %6s %8s %6s %9s %6s %7s\n",
           "isa", "op", "shape", "reps", "ms", "GFLOP/s", "peak", "%peak", "%pk0",
           "KV GB/s", "%BW", "BLAS ms", "%smax", "vsBLAS");
}

static void print_row(const result *r)
{
    char shape_text[128];
    describe_shape(r, shape_text, sizeof shape_text);
    printf("%-7s %-4s %-40s ", qkv_isa_name(r->isa), r->op, shape_text);
    if (r->status) {
        printf("%s\n", r->status);
        fflush(stdout);
        return;
    }
    printf("%4d %9.3f %8.2f %6.1f %5.1f%% %5.1f%% ", r->t.reps, r->t.ns / 1e6, r->gflops,
           r->peak_gflops, r->peak_pct, r->start_peak_pct);
    if (r->kv_bytes > 0.0)
        printf("%8.2f %5.1f%% ", r->kv_gbs, r->bw_pct);
    else
        printf("%8s %6s ", "-", "-");
    if (r->blas_ns > 0.0)
        printf("%9.3f %5.1f%% %6.2fx\n", r->blas_ns / 1e6,
               100.0 * r->blas_softmax_ns / r->blas_ns, r->blas_ns / r->t.ns);
    else
        printf("%9s %6s %7s\n", "-", "-", "-");
    fflush(stdout);
}

static void print_json_shape(const result *r)
{
    const shape *s = &r->s;
    printf("\"batch\": %lld, \"heads\": %lld, \"kv_heads\": %lld, \"lq\": %lld, "
           "\"lk\": %lld, \"dim\": %lld, \"causal\": %s, \"kv_dtype\": \"%s\"",
           (long long)s->batch, (long long)s->heads, (long long)s->kv_heads,
           (long long)s->lq, (long long)s->lk, (long long)s->dim,
           s->causal ? "true" : "false", dtype_name(s->kv_dtype));
    if (s->window)
        printf(", \"window_left\": %lld, \"window_right\": %lld",
               (long long)s->window_left, (long long)s->window_right);
    if (s->softcap > 0.0f)
        printf(", \"softcap\": %g", (double)s->softcap);
    if (s->alibi)
        printf(", \"alibi\": true");
}

static void print_json_result(const result *r, int with_run)
{
    printf("    {");
    if (with_run)
        printf("\"run\": %d, ", r->run);
    printf("\"isa\": \"%s\", \"op\": \"%s\", ", qkv_isa_name(r->isa), r->op);
    print_json_shape(r);
    if (r->status) {
        printf(", \"status\": ");
        bench_json_string(r->status);
        printf("}");
        return;
    }
    printf(", \"reps\": %d, \"median_ns\": %.0f, \"flops\": %.0f, \"gflops\": %.3f, "
           "\"peak_now_gflops\": %.3f, \"peak_pct\": %.2f, \"start_peak_pct\": %.2f",
           r->t.reps, r->t.ns, r->flops, r->gflops, r->peak_gflops, r->peak_pct,
           r->start_peak_pct);
    if (r->kv_bytes > 0.0)
        printf(", \"kv_bytes\": %.0f, \"kv_gbs\": %.3f, \"bw_pct\": %.2f",
               r->kv_bytes, r->kv_gbs, r->bw_pct);
    if (r->blas_ns > 0.0)
        printf(", \"blas_ns\": %.0f, \"blas_softmax_ns\": %.0f, \"speedup_vs_blas\": %.4f",
               r->blas_ns, r->blas_softmax_ns, r->blas_ns / r->t.ns);
    printf("}");
}

/* Fills in the derived numbers, stores the result and prints its row. */
static void record(result r, const machine *m, const options *o)
{
    if (!r.status) {
        r.gflops = r.flops / r.t.ns;
        const double peak = r.peak_gflops * o->threads;
        const double start_peak = m->peak[r.isa] * o->threads;
        r.peak_pct = peak > 0.0 ? 100.0 * r.gflops / peak : 0.0;
        r.start_peak_pct = start_peak > 0.0 ? 100.0 * r.gflops / start_peak : 0.0;
        if (r.kv_bytes > 0.0) {
            r.kv_gbs = r.kv_bytes / r.t.ns;
            r.bw_pct = m->read_gbs > 0.0 ? 100.0 * r.kv_gbs / m->read_gbs : 0.0;
        }
    }
    r.run = current_run;
    r.row = rows_this_run++;
    if (!o->json)
        print_row(&r);
    if (n_results == results_capacity) {
        results_capacity = results_capacity ? 2 * results_capacity : 64;
        results = realloc(results, (size_t)results_capacity * sizeof *results);
        if (!results) {
            fprintf(stderr, "qkv-bench: out of memory for the results\n");
            exit(2);
        }
    }
    results[n_results++] = r;
}

/* ------------------------------------------------------------------ */
/* Summary over the runs (--runs)                                     */
/* ------------------------------------------------------------------ */

/* One row of the suite over every run that measured it: medians, and the
   range of % peak. vs BLAS and % BW are the medians of each run's own
   ratio (the baseline is measured seconds before the row, in the same
   conditions as far as anything is). */
typedef struct row_summary {
    const result *first;     /* the row as measured in its first run */
    int runs;                /* runs that measured it (not skipped, no error) */
    double gflops, peak_pct, peak_pct_min, peak_pct_max;
    double vs_blas, bw_pct;  /* 0 when there is none */
} row_summary;

static row_summary summarize_row(int row, int runs)
{
    row_summary sum = {0};
    double *gflops = calloc((size_t)runs, sizeof *gflops);
    double *pct = calloc((size_t)runs, sizeof *pct);
    double *vs = calloc((size_t)runs, sizeof *vs);
    double *bw = calloc((size_t)runs, sizeof *bw);
    if (!gflops || !pct || !vs || !bw) {
        fprintf(stderr, "qkv-bench: out of memory for the summary\n");
        exit(2);
    }
    int n_vs = 0, n_bw = 0;
    for (int i = 0; i < n_results; i++) {
        const result *r = &results[i];
        if (r->row != row)
            continue;
        if (!sum.first)
            sum.first = r;
        if (r->status)
            continue;
        gflops[sum.runs] = r->gflops;
        pct[sum.runs++] = r->peak_pct;
        if (r->blas_ns > 0.0)
            vs[n_vs++] = r->blas_ns / r->t.ns;
        if (r->kv_bytes > 0.0)
            bw[n_bw++] = r->bw_pct;
    }
    if (sum.runs > 0) {
        sum.gflops = bench_median(gflops, sum.runs);
        sum.peak_pct = bench_median(pct, sum.runs);   /* sorts pct */
        sum.peak_pct_min = pct[0];
        sum.peak_pct_max = pct[sum.runs - 1];
        sum.vs_blas = n_vs ? bench_median(vs, n_vs) : 0.0;
        sum.bw_pct = n_bw ? bench_median(bw, n_bw) : 0.0;
    }
    free(gflops);
    free(pct);
    free(vs);
    free(bw);
    return sum;
}

static void print_summary(const options *o)
{
    printf("\nsummary of %d runs: medians over the runs, and the range of %%peak\n", o->runs);
    printf("%-7s %-4s %-40s %4s %8s %6s %13s %6s %7s\n", "isa", "op", "shape", "runs",
           "GFLOP/s", "%peak", "%peak range", "%BW", "vsBLAS");
    for (int row = 0; row < rows_this_run; row++) {
        const row_summary sum = summarize_row(row, o->runs);
        char shape_text[128];
        describe_shape(sum.first, shape_text, sizeof shape_text);
        printf("%-7s %-4s %-40s ", qkv_isa_name(sum.first->isa), sum.first->op, shape_text);
        if (sum.runs == 0) {
            printf("%s\n", sum.first->status);
            continue;
        }
        printf("%4d %8.2f %5.1f%% %5.1f-%5.1f%% ", sum.runs, sum.gflops, sum.peak_pct,
               sum.peak_pct_min, sum.peak_pct_max);
        if (sum.bw_pct > 0.0)
            printf("%5.1f%% ", sum.bw_pct);
        else
            printf("%6s ", "-");
        if (sum.vs_blas > 0.0)
            printf("%6.2fx\n", sum.vs_blas);
        else
            printf("%7s\n", "-");
    }
}

static void print_json_summary(const options *o)
{
    printf("  \"summary\": [\n");
    for (int row = 0; row < rows_this_run; row++) {
        const row_summary sum = summarize_row(row, o->runs);
        printf("    {\"isa\": \"%s\", \"op\": \"%s\", ", qkv_isa_name(sum.first->isa),
               sum.first->op);
        print_json_shape(sum.first);
        printf(", \"runs\": %d", sum.runs);
        if (sum.runs > 0) {
            printf(", \"median_gflops\": %.3f, \"median_peak_pct\": %.2f, "
                   "\"min_peak_pct\": %.2f, \"max_peak_pct\": %.2f",
                   sum.gflops, sum.peak_pct, sum.peak_pct_min, sum.peak_pct_max);
            if (sum.bw_pct > 0.0)
                printf(", \"median_bw_pct\": %.2f", sum.bw_pct);
            if (sum.vs_blas > 0.0)
                printf(", \"median_speedup_vs_blas\": %.4f", sum.vs_blas);
        }
        printf("}%s\n", row + 1 < rows_this_run ? "," : "");
    }
    printf("  ],\n");
}

static void print_json(const machine *m, const options *o)
{
    printf("{\n  \"cpu\": ");
    bench_json_string(m->cpu);
    printf(",\n  \"date\": \"%s\",\n  \"threads\": %d,\n  \"clock\": \"%s\",\n  \"baseline\": ",
           m->date, o->threads, bench_clock_name());
    bench_json_string(o->blas && bench_blas_available() ? bench_blas_name() : "none");
    printf(",\n  \"read_bandwidth_gbs\": %.3f,\n  \"fma_peak_gflops\": {", m->read_gbs);
    for (int i = 0; i < o->n_isas; i++)
        printf("%s\"%s\": %.3f", i ? ", " : "", qkv_isa_name(o->isas[i]), m->peak[o->isas[i]]);
    printf("},\n");
    if (o->runs > 1) {
        printf("  \"runs\": %d,\n", o->runs);
        print_json_summary(o);
    }
    printf("  \"results\": [\n");
    for (int i = 0; i < n_results; i++) {
        print_json_result(&results[i], o->runs > 1);
        printf(i + 1 < n_results ? ",\n" : "\n");
    }
    printf("  ]\n}\n");
}

/* ------------------------------------------------------------------ */
/* qkv_sdpa                                                           */
/* ------------------------------------------------------------------ */

/* The buffers of one shape, shared by every ISA and the baseline. */
typedef struct sdpa_case {
    shape s;
    qkv_tensor q, k, v, out;
    qkv_sdpa_params params;
    float *slopes;           /* ALiBi slopes, or NULL */
    qkv_status status;
    /* baseline */
    const qkv_kernels *blas_kt;
    float *blas_scratch;
    double softmax_ns;
} sdpa_case;

static void *alloc_kv(qkv_dtype dt, int64_t n, uint64_t *seed)
{
    if (dt == QKV_F32) {
        float *x = bench_alloc((size_t)n * sizeof *x);
        bench_fill_f32(x, (size_t)n, -1.0f, 1.0f, seed);
        return x;
    }
    uint16_t *x = bench_alloc((size_t)n * sizeof *x);
    if (dt == QKV_F16)
        bench_fill_f16(x, (size_t)n, -1.0f, 1.0f, seed);
    else
        bench_fill_bf16(x, (size_t)n, -1.0f, 1.0f, seed);
    return x;
}

static void sdpa_case_init(sdpa_case *c, const shape *s, int threads)
{
    uint64_t seed = 42;
    const int64_t nq = s->batch * s->heads * s->lq * s->dim;
    const int64_t nkv = s->batch * s->kv_heads * s->lk * s->dim;
    float *q = bench_alloc((size_t)nq * sizeof *q);
    bench_fill_f32(q, (size_t)nq, -1.0f, 1.0f, &seed);
    float *out = bench_alloc((size_t)nq * sizeof *out);
    memset(out, 0, (size_t)nq * sizeof *out);
    *c = (sdpa_case){.s = *s};
    c->q = qkv_tensor_bhsd(q, QKV_F32, s->batch, s->heads, s->lq, s->dim);
    c->k = qkv_tensor_bhsd(alloc_kv(s->kv_dtype, nkv, &seed), s->kv_dtype,
                           s->batch, s->kv_heads, s->lk, s->dim);
    c->v = qkv_tensor_bhsd(alloc_kv(s->kv_dtype, nkv, &seed), s->kv_dtype,
                           s->batch, s->kv_heads, s->lk, s->dim);
    c->out = qkv_tensor_bhsd(out, QKV_F32, s->batch, s->heads, s->lq, s->dim);
    c->params.causal = s->causal ? QKV_CAUSAL_BOTTOM_RIGHT : QKV_CAUSAL_NONE;
    c->params.window = s->window;
    c->params.window_left = s->window_left;
    c->params.window_right = s->window_right;
    c->params.softcap = s->softcap;
    if (s->alibi) {
        c->slopes = bench_alloc((size_t)s->heads * sizeof *c->slopes);
        qkv_alibi_slopes(s->heads, c->slopes);
        c->params.alibi_slopes = c->slopes;
    }
    c->params.num_threads = threads;
}

static void sdpa_case_free(sdpa_case *c)
{
    bench_free(c->q.data);
    bench_free(c->k.data);
    bench_free(c->v.data);
    bench_free(c->out.data);
    bench_free(c->slopes);
    bench_free(c->blas_scratch);
}

static void run_sdpa(void *ctx)
{
    sdpa_case *c = ctx;
    const qkv_status st = qkv_sdpa(&c->q, &c->k, &c->v, &c->out, &c->params);
    if (st)
        c->status = st;
}

static void run_blas(void *ctx)
{
    sdpa_case *c = ctx;
    bench_blas_attention(c->blas_kt, &c->q, &c->k, &c->v, &c->out, c->s.causal,
                         c->blas_scratch, &c->softmax_ns);
}

/* The OpenBLAS baseline of c: total and softmax nanoseconds (0, 0 if
   there is none for this shape). */
static void time_baseline(sdpa_case *c, const options *o, double *ns, double *softmax_ns)
{
    *ns = *softmax_ns = 0.0;
    if (!o->blas || !bench_blas_available() || c->s.kv_dtype != QKV_F32 || c->s.window ||
        c->s.softcap > 0.0f || c->s.alibi)
        return;
    c->blas_kt = qkv_kernels_active();
    const int64_t floats = bench_blas_scratch_floats(c->s.lq, c->s.lk);
    c->blas_scratch = bench_alloc((size_t)floats * sizeof(float));
    c->softmax_ns = 0.0;
    const timing t = measure(run_blas, c, o);
    /* The softmax share of all runs applied to the median: good enough to
       say where the baseline's time goes. */
    *ns = t.ns;
    *softmax_ns = t.ns * c->softmax_ns / t.total_ns;
}

static void bench_sdpa_shape(const shape *s, int skip_scalar, const machine *m,
                             const options *o)
{
    sdpa_case c;
    sdpa_case_init(&c, s, o->threads);
    double blas_ns, blas_softmax_ns;
    time_baseline(&c, o, &blas_ns, &blas_softmax_ns);
    for (int i = 0; i < o->n_isas; i++) {
        result r = {.isa = o->isas[i], .op = "sdpa", .s = *s,
                    .flops = attention_flops(s),
                    .blas_ns = blas_ns, .blas_softmax_ns = blas_softmax_ns};
        if (s->lq == 1) {
            const double elem = s->kv_dtype == QKV_F32 ? 4.0 : 2.0;
            r.kv_bytes = 2.0 * elem * (double)(s->batch * s->kv_heads * s->lk * s->dim);
        }
        if (skip_scalar && r.isa == QKV_ISA_SCALAR) {
            r.status = "skipped (slow; run with --isa scalar)";
        } else {
            qkv_isa_set(r.isa);
            c.status = QKV_OK;
            r.t = measure_beside_peak(run_sdpa, &c, o, r.isa, &r.peak_gflops);
            if (c.status)
                r.status = qkv_status_str(c.status);
        }
        record(r, m, o);
    }
    qkv_isa_set(QKV_ISA_AUTO);
    sdpa_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* The multi-head layer at the design shape                           */
/* ------------------------------------------------------------------ */

enum { MHA_D_MODEL = 512, MHA_HEADS = 8, MHA_TOKENS = 2048 };

typedef struct mha_case {
    qkv_mha *layer;
    float *x, *y;
    float *w[4], *bias[4];     /* q, k, v, o */
    qkv_mha_params params;
    qkv_status status;
    /* baseline */
    const qkv_kernels *blas_kt;
    float *proj[3], *concat, *blas_scratch;
    int causal;
    double softmax_ns;
} mha_case;

static qkv_status mha_case_init(mha_case *c, int causal, int threads)
{
    const size_t wsize = (size_t)MHA_D_MODEL * MHA_D_MODEL;
    const size_t xsize = (size_t)MHA_TOKENS * MHA_D_MODEL;
    uint64_t seed = 7;
    *c = (mha_case){.causal = causal};
    /* Weights of the scale PyTorch initialises them to: keeps logits O(1). */
    const float wscale = 1.0f / sqrtf((float)MHA_D_MODEL);
    for (int i = 0; i < 4; i++) {
        c->w[i] = bench_alloc(wsize * sizeof(float));
        bench_fill_f32(c->w[i], wsize, -wscale, wscale, &seed);
        c->bias[i] = bench_alloc(MHA_D_MODEL * sizeof(float));
        bench_fill_f32(c->bias[i], MHA_D_MODEL, -0.1f, 0.1f, &seed);
    }
    c->x = bench_alloc(xsize * sizeof(float));
    bench_fill_f32(c->x, xsize, -1.0f, 1.0f, &seed);
    c->y = bench_alloc(xsize * sizeof(float));
    c->params.causal = causal ? QKV_CAUSAL_BOTTOM_RIGHT : QKV_CAUSAL_NONE;
    c->params.num_threads = threads;
    const qkv_mha_config cfg = {.d_model = MHA_D_MODEL, .n_heads = MHA_HEADS, .bias = 1};
    const qkv_mha_weights w = {c->w[0], c->w[1], c->w[2], c->w[3],
                               c->bias[0], c->bias[1], c->bias[2], c->bias[3]};
    return qkv_mha_create(&c->layer, &cfg, &w);
}

static void mha_case_free(mha_case *c)
{
    qkv_mha_destroy(c->layer);
    for (int i = 0; i < 4; i++) {
        bench_free(c->w[i]);
        bench_free(c->bias[i]);
    }
    for (int i = 0; i < 3; i++)
        bench_free(c->proj[i]);
    bench_free(c->concat);
    bench_free(c->blas_scratch);
    bench_free(c->x);
    bench_free(c->y);
}

static void run_mha(void *ctx)
{
    mha_case *c = ctx;
    const qkv_status st = qkv_mha_forward(c->layer, 1, c->x, MHA_TOKENS, c->x, c->x,
                                          MHA_TOKENS, c->y, &c->params);
    if (st)
        c->status = st;
}

/* The layer on OpenBLAS: three projections, attention per head on the
   token-major views, the output projection. */
static void run_mha_blas(void *ctx)
{
    mha_case *c = ctx;
    const int64_t t = MHA_TOKENS, d = MHA_D_MODEL, hd = MHA_D_MODEL / MHA_HEADS;
    for (int i = 0; i < 3; i++)
        bench_blas_linear(t, d, d, c->x, c->w[i], c->bias[i], c->proj[i]);
    const qkv_tensor q = qkv_tensor_bshd(c->proj[0], QKV_F32, 1, t, MHA_HEADS, hd);
    const qkv_tensor k = qkv_tensor_bshd(c->proj[1], QKV_F32, 1, t, MHA_HEADS, hd);
    const qkv_tensor v = qkv_tensor_bshd(c->proj[2], QKV_F32, 1, t, MHA_HEADS, hd);
    const qkv_tensor o = qkv_tensor_bshd(c->concat, QKV_F32, 1, t, MHA_HEADS, hd);
    bench_blas_attention(c->blas_kt, &q, &k, &v, &o, c->causal, c->blas_scratch,
                         &c->softmax_ns);
    bench_blas_linear(t, d, d, c->concat, c->w[3], c->bias[3], c->y);
}

static double mha_flops(int causal)
{
    const double t = MHA_TOKENS, d = MHA_D_MODEL;
    const double projections = 4.0 * 2.0 * t * d * d;
    const shape s = {.batch = 1, .heads = MHA_HEADS, .lq = MHA_TOKENS,
                     .lk = MHA_TOKENS, .dim = MHA_D_MODEL / MHA_HEADS, .causal = causal};
    return projections + attention_flops(&s);
}

static void time_mha_baseline(mha_case *c, const options *o, double *ns, double *softmax_ns)
{
    *ns = *softmax_ns = 0.0;
    if (!o->blas || !bench_blas_available())
        return;
    const size_t xsize = (size_t)MHA_TOKENS * MHA_D_MODEL;
    for (int i = 0; i < 3; i++)
        c->proj[i] = bench_alloc(xsize * sizeof(float));
    c->concat = bench_alloc(xsize * sizeof(float));
    c->blas_scratch = bench_alloc((size_t)bench_blas_scratch_floats(MHA_TOKENS, MHA_TOKENS) *
                                  sizeof(float));
    c->blas_kt = qkv_kernels_active();
    const timing t = measure(run_mha_blas, c, o);
    *ns = t.ns;
    *softmax_ns = t.ns * c->softmax_ns / t.total_ns;
}

static void bench_mha(int causal, const machine *m, const options *o)
{
    mha_case c;
    const qkv_status created = mha_case_init(&c, causal, o->threads);
    double blas_ns = 0.0, blas_softmax_ns = 0.0;
    if (!created)
        time_mha_baseline(&c, o, &blas_ns, &blas_softmax_ns);
    const shape s = {.batch = 1, .heads = MHA_HEADS, .kv_heads = MHA_HEADS,
                     .lq = MHA_TOKENS, .lk = MHA_TOKENS,
                     .dim = MHA_D_MODEL / MHA_HEADS, .causal = causal};
    for (int i = 0; i < o->n_isas; i++) {
        result r = {.isa = o->isas[i], .op = "mha", .s = s, .flops = mha_flops(causal),
                    .blas_ns = blas_ns, .blas_softmax_ns = blas_softmax_ns};
        if (created) {
            r.status = qkv_status_str(created);
        } else if (o->isas[i] == QKV_ISA_SCALAR && !o->isa_chosen) {
            r.status = "skipped (slow; run with --isa scalar)";
        } else {
            qkv_isa_set(r.isa);
            c.status = QKV_OK;
            r.t = measure_beside_peak(run_mha, &c, o, r.isa, &r.peak_gflops);
            if (c.status)
                r.status = qkv_status_str(c.status);
        }
        record(r, m, o);
    }
    qkv_isa_set(QKV_ISA_AUTO);
    mha_case_free(&c);
}

/* ------------------------------------------------------------------ */
/* The suite                                                          */
/* ------------------------------------------------------------------ */

/* Prefill shapes of the performance targets, a small one, decode (one
   query against a long F32 / F16 / BF16 cache), a sliding window, and
   the logit transforms (softcap at Gemma 2's 50, ALiBi). Scalar runs only the
   cheap ones unless asked for by --isa: at a few GFLOP/s the big shapes
   would take minutes. */
static const shape default_suite[] = {
#define HEADS8 .batch = 1, .heads = 8, .kv_heads = 8
    {HEADS8, .lq = 2048, .lk = 2048, .dim = 64, .kv_dtype = QKV_F32},
    {HEADS8, .lq = 2048, .lk = 2048, .dim = 128, .kv_dtype = QKV_F32},
    {HEADS8, .lq = 2048, .lk = 2048, .dim = 64, .causal = 1, .kv_dtype = QKV_F32},
    {HEADS8, .lq = 2048, .lk = 2048, .dim = 64, .kv_dtype = QKV_F16},
    {HEADS8, .lq = 128, .lk = 128, .dim = 64, .kv_dtype = QKV_F32},
    {HEADS8, .lq = 1, .lk = 32768, .dim = 128, .kv_dtype = QKV_F32},
    {HEADS8, .lq = 1, .lk = 32768, .dim = 128, .kv_dtype = QKV_F16},
    {HEADS8, .lq = 1, .lk = 32768, .dim = 128, .kv_dtype = QKV_BF16},
    /* Sliding-window prefill: FLOPs over the visible keys only. */
    {HEADS8, .lq = 8192, .lk = 8192, .dim = 64, .kv_dtype = QKV_F32,
     .window = 1, .window_left = 256, .window_right = 0},
    {HEADS8, .lq = 2048, .lk = 2048, .dim = 64, .kv_dtype = QKV_F32, .softcap = 50.0f},
    {HEADS8, .lq = 2048, .lk = 2048, .dim = 64, .kv_dtype = QKV_F32, .alibi = 1},
#undef HEADS8
};

enum { SCALAR_FLOP_LIMIT = 1000000000 };   /* 1 GFLOP: about a second */

static int any_decode(const options *o)
{
    if (o->custom_shape)
        return o->custom.lq == 1;
    if (o->mha)
        return 0;
    return 1;
}

static void measure_machine(machine *m, const options *o)
{
    memset(m, 0, sizeof *m);
    bench_cpu_model(m->cpu, sizeof m->cpu);
    bench_date(m->date, sizeof m->date);
    for (int i = 0; i < o->n_isas; i++)
        m->peak[o->isas[i]] = bench_fma_peak_gflops(o->isas[i]);
    /* Larger than any last-level cache this is likely to run on. */
    if (any_decode(o))
        m->read_gbs = bench_read_bandwidth_gbs((size_t)256 << 20);
}

static void warn_about_openblas_env(void)
{
    /* OpenBLAS reads these when it is loaded, before main: too late to
       undo here. The meson benchmark() runs unset them. */
    static const char *const vars[] = {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"};
    for (int i = 0; i < 2; i++)
        if (getenv(vars[i]))
            fprintf(stderr, "qkv-bench: %s is set; the OpenBLAS baseline may be "
                            "slower than it can be\n", vars[i]);
}

/* What the options ask for: one shape, the layer, or the default suite
   (and the layer). */
static void run_selection(const machine *m, const options *o)
{
    if (o->custom_shape) {
        bench_sdpa_shape(&o->custom, 0, m, o);
    } else if (!o->mha) {
        for (size_t i = 0; i < sizeof default_suite / sizeof default_suite[0]; i++) {
            const shape *s = &default_suite[i];
            bench_sdpa_shape(s, !o->isa_chosen && attention_flops(s) > SCALAR_FLOP_LIMIT, m, o);
        }
        bench_mha(0, m, o);
    }
    if (o->mha)
        bench_mha(o->custom.causal, m, o);
}

int main(int argc, char **argv)
{
    options o;
    parse_options(argc, argv, &o);
    /* Linked OpenBLAS starts its workers even when --no-blas skips it. */
    bench_blas_restart_with_threads(o.threads, argv);
    warn_about_openblas_env();
    bench_blas_set_threads(o.threads);

    machine m;
    measure_machine(&m, &o);
    if (!o.json)
        print_header(&m, &o);

    for (current_run = 0; current_run < o.runs; current_run++) {
        rows_this_run = 0;
        if (o.runs > 1 && !o.json)
            printf("%srun %d of %d\n", current_run ? "\n" : "", current_run + 1, o.runs);
        run_selection(&m, &o);
    }
    if (o.runs > 1 && !o.json)
        print_summary(&o);

    if (o.json)
        print_json(&m, &o);
    free(results);
    return 0;
}
