/*
 * qkv-demo: one sentence through a multi-head self-attention layer, and
 * the attention weights printed as a table a person can read.
 *
 * The sentence "The cat that I saw yesterday sat on the mat" (10 tokens)
 * is embedded in d_model = 512 dimensions and goes through a layer of
 * 8 heads of 64 (qkv_mha_forward). Nothing is trained: each token's word
 * vector is a pseudo-random vector seeded by a hash of the (lower-cased)
 * word, plus the sinusoidal position encoding of "Attention Is All You
 * Need"; the weights come from a fixed-seed generator with the variance
 * 1/fan_in of the usual initialisation. So the output is the same on
 * every run and machine up to float rounding, but the patterns mean
 * nothing linguistic, except that the two "the" share a word vector.
 *
 *   qkv-demo [--head N] [--causal] [--isa NAME] [--threads N] [-h|--help]
 *
 * Exit status: 0 on success, 1 if a qkv call fails or the printed weights
 * fail their sanity check, 2 for a bad command line.
 */
/* clock_gettime, also when built outside the project (which defines
   _GNU_SOURCE). */
#define _POSIX_C_SOURCE 200809L

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qkv.h>

enum {
    N_TOKENS = 10,
    D_MODEL = 512,
    N_HEADS = 8,
    HEAD_DIM = D_MODEL / N_HEADS,
    TIMED_RUNS = 25,
};

static const char *const tokens[N_TOKENS] = {
    "The", "cat", "that", "I", "saw", "yesterday", "sat", "on", "the", "mat",
};

/* ------------------------------------------------------------------ */
/* Command line                                                       */
/* ------------------------------------------------------------------ */

typedef struct options {
    int head;           /* -1: no single head printed */
    int causal;
    int num_threads;    /* 0: OpenMP default */
    const char *isa;    /* NULL: leave the library's choice */
} options;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: qkv-demo [--head N] [--causal] [--isa NAME] [--threads N] [-h|--help]\n"
        "\n"
        "Runs the sentence \"The cat that I saw yesterday sat on the mat\" through a\n"
        "multi-head self-attention layer (d_model %d, %d heads of %d) and prints\n"
        "the attention weights, averaged over the heads.\n"
        "\n"
        "  --head N     also print the weights of head N (0..%d)\n"
        "  --causal     causal attention: each token sees itself and earlier ones\n"
        "  --isa NAME   kernels to use: auto, scalar, avx2, avx512, neon\n"
        "  --threads N  OpenMP threads (0: the OpenMP default)\n"
        "  -h, --help   this text\n",
        D_MODEL, N_HEADS, HEAD_DIM, N_HEADS - 1);
}

/* A whole-string decimal integer in [lo, hi]. */
static int parse_int(const char *s, long lo, long hi, int *value)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > hi)
        return 0;
    *value = (int)v;
    return 1;
}

/* The value of option `name` at argv[*i], given as "--name VALUE" or
   "--name=VALUE"; NULL if argv[*i] is another option. Exits with 2 when
   the value is missing. */
static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    const size_t len = strlen(name);
    const char *arg = argv[*i];
    if (strncmp(arg, name, len) != 0)
        return NULL;
    if (arg[len] == '=')
        return arg + len + 1;
    if (arg[len] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "qkv-demo: %s needs a value (see --help)\n", name);
        exit(2);
    }
    return argv[++*i];
}

static void parse_options(int argc, char **argv, options *o)
{
    *o = (options){.head = -1};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(argv[i], "--causal") == 0) {
            o->causal = 1;
        } else if ((v = option_value(argc, argv, &i, "--head"))) {
            if (!parse_int(v, 0, N_HEADS - 1, &o->head)) {
                fprintf(stderr, "qkv-demo: --head wants 0..%d, not '%s'\n", N_HEADS - 1, v);
                exit(2);
            }
        } else if ((v = option_value(argc, argv, &i, "--threads"))) {
            if (!parse_int(v, 0, 4096, &o->num_threads)) {
                fprintf(stderr, "qkv-demo: --threads wants 0..4096, not '%s'\n", v);
                exit(2);
            }
        } else if ((v = option_value(argc, argv, &i, "--isa"))) {
            o->isa = v;
        } else {
            fprintf(stderr, "qkv-demo: unknown argument '%s' (see --help)\n", argv[i]);
            exit(2);
        }
    }
}

/* Selects the ISA named on the command line; exits with 2 if the name is
   not an ISA or this CPU or build lacks it. */
static void select_isa(const char *name)
{
    qkv_isa isa = QKV_ISA_AUTO;
    int known = 0;
    for (int i = QKV_ISA_AUTO; i <= QKV_ISA_NEON; i++)
        if (strcmp(name, qkv_isa_name((qkv_isa)i)) == 0) {
            isa = (qkv_isa)i;
            known = 1;
        }
    if (!known) {
        fprintf(stderr, "qkv-demo: unknown ISA '%s' (choose auto, scalar, avx2, avx512 or neon)\n",
                name);
        exit(2);
    }
    const qkv_status st = qkv_isa_set(isa);
    if (st != QKV_OK) {
        fprintf(stderr, "qkv-demo: cannot use ISA '%s': %s. Available here:", name,
                qkv_status_str(st));
        for (int i = QKV_ISA_SCALAR; i <= QKV_ISA_NEON; i++)
            if (qkv_isa_supported((qkv_isa)i))
                fprintf(stderr, " %s", qkv_isa_name((qkv_isa)i));
        fprintf(stderr, "\n");
        exit(2);
    }
}

/* ------------------------------------------------------------------ */
/* Deterministic inputs                                               */
/* ------------------------------------------------------------------ */

/* splitmix64: a tiny generator with a 64-bit state, good enough here. */
static uint64_t next_u64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A uniform double in (0, 1). */
static double next_open01(uint64_t *state)
{
    return ((double)(next_u64(state) >> 11) + 0.5) / 9007199254740992.0;
}

/* A standard normal value (Box-Muller; the second value is dropped to
   keep the generator stateless beyond its seed). */
static double next_normal(uint64_t *state)
{
    const double u1 = next_open01(state), u2 = next_open01(state);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* FNV-1a of the lower-cased word, so "The" and "the" get one vector. */
static uint64_t word_hash(const char *word)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const char *c = word; *c; c++)
        h = (h ^ (uint64_t)tolower((unsigned char)*c)) * 0x100000001b3u;
    return h;
}

/* x[pos, :] = word vector of tokens[pos] + sinusoidal position encoding. */
static void embed_sentence(float *x)
{
    for (int pos = 0; pos < N_TOKENS; pos++) {
        uint64_t state = word_hash(tokens[pos]);
        for (int i = 0; i < D_MODEL; i++) {
            const double freq = pow(10000.0, -(double)(i / 2 * 2) / D_MODEL);
            const double pe = i % 2 == 0 ? sin(pos * freq) : cos(pos * freq);
            x[pos * D_MODEL + i] = (float)(next_normal(&state) + pe);
        }
    }
}

/* n values from N(0, 1/fan_in). */
static void fill_weights(float *w, int64_t n, int64_t fan_in, uint64_t *state)
{
    const double sd = 1.0 / sqrt((double)fan_in);
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)(sd * next_normal(state));
}

/* ------------------------------------------------------------------ */
/* Printing                                                           */
/* ------------------------------------------------------------------ */

/* Column labels are at most 5 characters ("yest."), so that the table
   fits in 80 columns; row labels are whole words. */
static void print_column_label(const char *word)
{
    if (strlen(word) <= 5)
        printf(" %5s", word);
    else
        printf(" %.4s.", word);
}

/* A 10 x 10 matrix of weights, rows = queries, columns = keys, with the
   sum of each row in the last column. Returns the largest |sum - 1|. */
static double print_matrix(const char *title, const float *w)
{
    double worst = 0.0;
    printf("\n%s\n", title);
    printf("%-10s", "query\\key");
    for (int j = 0; j < N_TOKENS; j++)
        print_column_label(tokens[j]);
    printf("   sum\n");
    for (int i = 0; i < N_TOKENS; i++) {
        double sum = 0.0;
        printf("%-10s", tokens[i]);
        for (int j = 0; j < N_TOKENS; j++) {
            printf("  %4.2f", w[i * N_TOKENS + j]);
            sum += w[i * N_TOKENS + j];
        }
        printf("  %4.2f\n", sum);
        worst = fmax(worst, fabs(sum - 1.0));
    }
    return worst;
}

/* The largest weight that the causal rule says must be 0 (key after
   query); 0 if the rule holds exactly. */
static float max_future_weight(const float *w, int rows_of_matrices)
{
    float worst = 0.0f;
    for (int m = 0; m < rows_of_matrices; m++)
        for (int i = 0; i < N_TOKENS; i++)
            for (int j = i + 1; j < N_TOKENS; j++)
                worst = fmaxf(worst, fabsf(w[(m * N_TOKENS + i) * N_TOKENS + j]));
    return worst;
}

/* ------------------------------------------------------------------ */
/* The layer                                                          */
/* ------------------------------------------------------------------ */

/* All the arrays of one run. */
typedef struct demo_buffers {
    float *x, *y, *weights, *weights_avg;
    float *w_q, *w_k, *w_v, *w_o;
} demo_buffers;

static int alloc_buffers(demo_buffers *b)
{
    const size_t dd = (size_t)D_MODEL * D_MODEL;
    *b = (demo_buffers){
        .x = malloc(sizeof(float) * N_TOKENS * D_MODEL),
        .y = malloc(sizeof(float) * N_TOKENS * D_MODEL),
        .weights = malloc(sizeof(float) * N_HEADS * N_TOKENS * N_TOKENS),
        .weights_avg = malloc(sizeof(float) * N_TOKENS * N_TOKENS),
        .w_q = malloc(sizeof(float) * dd), .w_k = malloc(sizeof(float) * dd),
        .w_v = malloc(sizeof(float) * dd), .w_o = malloc(sizeof(float) * dd),
    };
    return b->x && b->y && b->weights && b->weights_avg &&
           b->w_q && b->w_k && b->w_v && b->w_o;
}

static void free_buffers(demo_buffers *b)
{
    float *all[] = {b->x, b->y, b->weights, b->weights_avg, b->w_q, b->w_k, b->w_v, b->w_o};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* A layer with fixed pseudo-random weights and no biases. */
static qkv_status make_layer(demo_buffers *b, qkv_mha **layer)
{
    uint64_t state = 20240611u;
    fill_weights(b->w_q, (int64_t)D_MODEL * D_MODEL, D_MODEL, &state);
    fill_weights(b->w_k, (int64_t)D_MODEL * D_MODEL, D_MODEL, &state);
    fill_weights(b->w_v, (int64_t)D_MODEL * D_MODEL, D_MODEL, &state);
    fill_weights(b->w_o, (int64_t)D_MODEL * D_MODEL, D_MODEL, &state);
    const qkv_mha_config cfg = {.d_model = D_MODEL, .n_heads = N_HEADS};
    const qkv_mha_weights w = {.w_q = b->w_q, .w_k = b->w_k, .w_v = b->w_v, .w_o = b->w_o};
    return qkv_mha_create(layer, &cfg, &w);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs the forward pass once for the results, then TIMED_RUNS more
   times; *ms is the median time of one forward. */
static qkv_status run_forward(const qkv_mha *layer, demo_buffers *b,
                              const qkv_mha_params *p, double *ms)
{
    double times[TIMED_RUNS];
    qkv_status st = qkv_mha_forward(layer, 1, b->x, N_TOKENS, b->x, b->x, N_TOKENS, b->y, p);
    for (int r = 0; r < TIMED_RUNS && st == QKV_OK; r++) {
        const double t0 = now_ms();
        st = qkv_mha_forward(layer, 1, b->x, N_TOKENS, b->x, b->x, N_TOKENS, b->y, p);
        times[r] = now_ms() - t0;
    }
    if (st == QKV_OK) {
        qsort(times, TIMED_RUNS, sizeof times[0], compare_doubles);
        *ms = times[TIMED_RUNS / 2];
    }
    return st;
}

/* The summary lines, both matrices, and the sanity check; 0 if the
   weights look as they must. */
static int report(const options *o, const demo_buffers *b, double ms)
{
    printf("qkv-demo: multi-head self-attention over one sentence\n");
    printf("  sentence  \"The cat that I saw yesterday sat on the mat\" (%d tokens)\n", N_TOKENS);
    printf("  layer     d_model %d, %d heads of %d, %s\n", D_MODEL, N_HEADS, HEAD_DIM,
           o->causal ? "causal" : "not causal");
    printf("  isa       %s\n", qkv_isa_name(qkv_isa_active()));
    if (o->num_threads > 0)
        printf("  threads   %d\n", o->num_threads);
    else
        printf("  threads   OpenMP default\n");
    printf("  output    y: (%d, %d), y[0, 0:4] = %.4f %.4f %.4f %.4f\n", N_TOKENS, D_MODEL,
           b->y[0], b->y[1], b->y[2], b->y[3]);
    printf("  forward   %.3f ms (median of %d runs)\n", ms, TIMED_RUNS);

    char title[128];
    snprintf(title, sizeof title,
             "Attention weights, mean over the %d heads (rows: queries, columns: keys)", N_HEADS);
    double worst = print_matrix(title, b->weights_avg);
    if (o->head >= 0) {
        snprintf(title, sizeof title, "Attention weights of head %d", o->head);
        worst = fmax(worst, print_matrix(title, b->weights + o->head * N_TOKENS * N_TOKENS));
    }

    const float future = o->causal ? max_future_weight(b->weights, N_HEADS) : 0.0f;
    const int ok = worst < 1e-5 && future == 0.0f;
    printf("\ncheck: rows sum to 1 within %.1e", worst);
    if (o->causal)
        printf(", weights on later keys %s", future == 0.0f ? "all exactly 0" : "NOT 0");
    printf(": %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    options o;
    parse_options(argc, argv, &o);
    if (o.isa)
        select_isa(o.isa);

    demo_buffers b;
    if (!alloc_buffers(&b)) {
        fprintf(stderr, "qkv-demo: out of memory\n");
        free_buffers(&b);
        return 1;
    }
    embed_sentence(b.x);

    qkv_mha *layer = NULL;
    qkv_status st = make_layer(&b, &layer);
    if (st != QKV_OK) {
        fprintf(stderr, "qkv-demo: qkv_mha_create: %s\n", qkv_status_str(st));
        free_buffers(&b);
        return 1;
    }
    const qkv_mha_params p = {
        .causal = o.causal ? QKV_CAUSAL_TOP_LEFT : QKV_CAUSAL_NONE,
        .weights = b.weights,
        .weights_avg = b.weights_avg,
        .num_threads = o.num_threads,
    };
    double ms = 0.0;
    st = run_forward(layer, &b, &p, &ms);
    int rc = 1;
    if (st != QKV_OK)
        fprintf(stderr, "qkv-demo: qkv_mha_forward: %s\n", qkv_status_str(st));
    else
        rc = report(&o, &b, ms);
    qkv_mha_destroy(layer);
    free_buffers(&b);
    return rc;
}
