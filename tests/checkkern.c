/*
 * qkv-checkkern: the framework-free kernel checker (the idea of dav1d's
 * checkasm). Single process, no fork, no threads, no Criterion, so that
 * under user-mode qemu the emulated CPU is the one that runs every kernel.
 *
 * For every ISA this CPU and build have (or only --isa=NAME; exit 77 if
 * that one is unavailable; --skip-status=N changes that status) it checks
 * each kernel of the ops table
 * (kernels/kernels.h):
 *   - against a double-precision computation and against the scalar twin,
 *     on edge sizes (1, width-1, width, width+1, 2*width+3, 37 and a large
 *     one), with inputs that end exactly at a PROT_NONE page (an over-read
 *     faults), in read-only pages (a write to an input faults), at odd
 *     offsets (unaligned), and outputs surrounded by canaries and with row
 *     gaps (a write outside the documented output is caught);
 *   - softmax_tile with -INFINITY logits, fully -inf rows and a NaN that
 *     must stay in its row;
 *   - the vector exp2 (exp_shift_scale with shift 0, mul 1; the softmax
 *     works in base-2 units) over a sweep of the whole float range and the
 *     special values, and the exp2 inside softmax_tile over x <= 0; the
 *     maximum relative errors are printed;
 *   - add_base2 with infinities, NaN (-inf entries block NaN and +inf
 *     logits) and mask entries at the saturation edge (FLT_MAX / log2 e),
 *     bitwise against the scalar twin;
 *   - softcap against cap * tanh(s / cap) in double and the scalar twin,
 *     for caps on the SIMD path and caps it hands to the twin, with
 *     specials, and a sweep of the float range (max error printed);
 *   - alibi with diagonals inside and past the exact range of 2^24,
 *     bitwise against the scalar twin;
 *   - scale_row against the correctly rounded product and the twin;
 *   - the f16 / bf16 conversions over all 65536 patterns against the scalar
 *     twin and the independent reference conversions;
 *   - every golden case through the public API with that ISA active
 *     (golden_run, tests/golden.h), one thread; the worst ratio is printed.
 * Output is TAP; the exit status is 0 only if every test passed.
 * --quick shrinks the large sizes and the exp2 sweep (for emulated CPUs);
 * --no-guard leaves the page after each input readable (QEMU 7.2 faults on
 * masked-off lanes of AVX2 masked loads there; real CPUs do not).
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "golden.h"
#include "internal.h"
#include "kernels.h"
#include "qkv.h"
#include "ref/ref.h"

/* ------------------------------------------------------------------ */
/* TAP output and failure notes                                       */
/* ------------------------------------------------------------------ */

static int tap_count, tap_failed;

/* Diagnostics of the current test: the first few failures only. */
static int notes_left;

static void note(const char *fmt, ...)
{
    if (notes_left <= 0)
        return;
    notes_left--;
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* The test that is running, for the crash message. */
static char current_test[96] = "start-up";

/* Starts a test: resets the notes and names it for on_fault. */
static void tap_begin(qkv_isa isa, const char *what)
{
    notes_left = 8;
    snprintf(current_test, sizeof current_test, "%s %s", qkv_isa_name(isa), what);
}

/* A read past the end of an input lands on its PROT_NONE page and a write
   to an input on a read-only page: report which test crashed, in TAP. */
static void on_fault(int sig)
{
    static const char head[] = "Bail out! fault (signal ";
    char digits[4] = {(char)('0' + sig / 10 % 10), (char)('0' + sig % 10), ')', ' '};
    static const char tail[] = ": a read past an input, a write to an input, or a wild access\n";
    if (write(1, head, sizeof head - 1) < 0 || write(1, digits, sizeof digits) < 0 ||
        write(1, "in ", 3) < 0 || write(1, current_test, strlen(current_test)) < 0 ||
        write(1, tail, sizeof tail - 1) < 0)
        _exit(1);
    _exit(1);
}

static void tap_result(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %d - ", ok ? "ok" : "not ok", ++tap_count);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!ok)
        tap_failed++;
}

/* ------------------------------------------------------------------ */
/* Random numbers (deterministic)                                     */
/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Uniform in [lo, hi). */
static float rng_uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_u32() >> 8) * 0x1p-24f;
}

/* ------------------------------------------------------------------ */
/* Guarded buffers                                                    */
/* ------------------------------------------------------------------ */

/* An input whose last byte is followed by a PROT_NONE page, so any read
   past its end faults; input_seal() then makes it read-only. */
typedef struct input_buf {
    void *map;
    size_t map_bytes, data_bytes;
    void *data;
} input_buf;

static size_t page_size(void)
{
    static size_t size;
    if (!size)
        size = (size_t)sysconf(_SC_PAGESIZE);
    return size;
}

/* --no-guard: the page after an input stays readable. For emulators whose
   masked loads fault on masked-off lanes past a page end (QEMU 7.2 TCG's
   VMASKMOVPS does; real CPUs do not), at the price of not catching
   over-reads. Writes to inputs are still caught. */
static int guard_pages = 1;

static void *input_alloc(input_buf *in, size_t bytes)
{
    const size_t page = page_size();
    const size_t data_pages = (bytes + page - 1) / page;
    in->map_bytes = (data_pages + 1) * page;
    in->map = mmap(NULL, in->map_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (in->map == MAP_FAILED) {
        perror("mmap");
        exit(99);
    }
    char *guard = (char *)in->map + data_pages * page;
    if (mprotect(guard, page, guard_pages ? PROT_NONE : PROT_READ) != 0) {
        perror("mprotect");
        exit(99);
    }
    in->data_bytes = bytes;
    in->data = guard - bytes;
    return in->data;
}

static float *input_floats(input_buf *in, int64_t count)
{
    return input_alloc(in, (size_t)count * sizeof(float));
}

static void input_seal(input_buf *in)
{
    const size_t page = page_size();
    mprotect(in->map, in->map_bytes - page, PROT_READ);
}

static void input_free(input_buf *in)
{
    munmap(in->map, in->map_bytes);
}

/* An output matrix of rows x cols floats with row stride ld, at an odd
   float offset inside a larger buffer. Everything outside the matrix (the
   lead, the gaps between rows, the trail) holds a canary pattern that
   must survive the kernel bit for bit. */
#define CANARY_BITS 0x7fa1b2c3u
#define GUARD_LEAD 5
#define GUARD_TRAIL 19

typedef struct out_buf {
    float *buf, *data;
    uint32_t *before;
    int64_t total, rows, cols, ld;
} out_buf;

static float *out_alloc(out_buf *o, int64_t rows, int64_t cols, int64_t ld)
{
    o->rows = rows;
    o->cols = cols;
    o->ld = ld;
    o->total = GUARD_LEAD + (rows - 1) * ld + cols + GUARD_TRAIL;
    o->buf = malloc((size_t)o->total * sizeof(float));
    o->before = malloc((size_t)o->total * sizeof(uint32_t));
    if (!o->buf || !o->before) {
        fprintf(stderr, "out of memory\n");
        exit(99);
    }
    const uint32_t canary = CANARY_BITS;
    for (int64_t i = 0; i < o->total; i++)
        memcpy(&o->buf[i], &canary, sizeof canary);
    o->data = o->buf + GUARD_LEAD;
    return o->data;
}

/* Call once the matrix holds its initial values. */
static void out_snapshot(out_buf *o)
{
    memcpy(o->before, o->buf, (size_t)o->total * sizeof(float));
}

static int out_is_inside(const out_buf *o, int64_t i)
{
    const int64_t rel = i - GUARD_LEAD;
    if (rel < 0 || rel >= (o->rows - 1) * o->ld + o->cols)
        return 0;
    return rel % o->ld < o->cols;
}

/* 1 if nothing outside the matrix changed. */
static int out_intact(const out_buf *o, const char *what)
{
    for (int64_t i = 0; i < o->total; i++) {
        uint32_t now;
        memcpy(&now, &o->buf[i], sizeof now);
        if (!out_is_inside(o, i) && now != o->before[i]) {
            note("%s: write outside the output at float %lld of the buffer",
                 what, (long long)(i - GUARD_LEAD));
            return 0;
        }
    }
    return 1;
}

static void out_free(out_buf *o)
{
    free(o->buf);
    free(o->before);
}

/* ------------------------------------------------------------------ */
/* Sizes and comparisons                                              */
/* ------------------------------------------------------------------ */

static int quick_mode;

/* Row counts of a test loop that goes 1..max: every one, or with --quick
   1, 2, 3, then every other one, and always max. */
static int64_t quick_rows_step(int64_t m, int64_t max)
{
    if (!quick_mode || m < 3)
        return 1;
    return m + 2 > max && m < max ? max - m : 2;
}

/* Floats per vector register of each ISA (the scalar table gets the
   AVX2 sizes: it is the twin, checked against double here too). */
static int64_t isa_width(qkv_isa isa)
{
    switch (isa) {
    case QKV_ISA_AVX512: return 16;
    case QKV_ISA_NEON:   return 4;
    default:             return 8;
    }
}

#define MAX_SIZES 8

/* 1, w-1, w, w+1, 2w+3, 37 (a tail of every register block), a large
   one; sorted without duplicates. */
static int edge_sizes(qkv_isa isa, int64_t sizes[MAX_SIZES])
{
    const int64_t w = isa_width(isa);
    const int64_t want[] = {1, w - 1, w, w + 1, 2 * w + 3, 37, quick_mode ? 157 : 300};
    int count = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int seen = want[i] < 1;
        for (int j = 0; j < count; j++)
            seen |= sizes[j] == want[i];
        if (!seen)
            sizes[count++] = want[i];
    }
    for (int i = 1; i < count; i++)
        for (int j = i; j > 0 && sizes[j - 1] > sizes[j]; j--) {
            const int64_t t = sizes[j];
            sizes[j] = sizes[j - 1];
            sizes[j - 1] = t;
        }
    return count;
}

/* Bit-level identity, with every NaN equal to every NaN. */
static int same_float(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    uint32_t x, y;
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y;
}

/* The worst |got - want| / tol seen by one test. */
typedef struct worst {
    double ratio;
    int64_t failures, cases;
} worst;

/* Records one comparison; returns 1 if within tolerance. */
static int check_close(worst *w, double got, double want, double tol,
                       const char *what, int64_t i, int64_t j)
{
    const double ratio = fabs(got - want) / tol;
    if (ratio > w->ratio || isnan(ratio))
        w->ratio = isnan(ratio) ? INFINITY : ratio;
    if (ratio <= 1.0)
        return 1;
    w->failures++;
    note("%s[%lld][%lld]: got %.9g, want %.9g (tol %.3g)", what,
         (long long)i, (long long)j, got, want, tol);
    return 0;
}

/* ------------------------------------------------------------------ */
/* gemm_nt                                                            */
/* ------------------------------------------------------------------ */

static void fill_uniform(float *x, int64_t count, float lo, float hi)
{
    for (int64_t i = 0; i < count; i++)
        x[i] = rng_uniform(lo, hi);
}

/* Runs gemm_nt of table kt on (m, n, k) into a guarded C; compares with
   double; returns C (caller frees) through o. */
static void gemm_run(const qkv_kernels *kt, int64_t m, int64_t n, int64_t k,
                     const float *a, int64_t lda, const float *b, int64_t ldb,
                     const float *bias, out_buf *o, worst *w)
{
    const int64_t ldc = n + 5;
    float *c = out_alloc(o, m, n, ldc);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] = 1e30f;     /* every element must be written */
    out_snapshot(o);

    const int64_t scratch_floats = QKV_GEMM_SCRATCH_FLOATS(n, k);
    const int64_t canaries = 32;
    float *scratch = aligned_alloc(QKV_SCRATCH_ALIGN,
        (size_t)((scratch_floats + canaries + 15) / 16 * 16) * sizeof(float));
    for (int64_t i = 0; i < canaries; i++)
        scratch[scratch_floats + i] = -7.0f;

    kt->gemm_nt(m, n, k, a, lda, b, ldb, bias, c, ldc, scratch);

    if (!out_intact(o, "gemm_nt C"))
        w->failures++;
    for (int64_t i = 0; i < canaries; i++)
        if (scratch[scratch_floats + i] != -7.0f) {
            note("gemm_nt wrote past QKV_GEMM_SCRATCH_FLOATS(%lld, %lld)",
                 (long long)n, (long long)k);
            w->failures++;
            break;
        }
    free(scratch);
}

/* Random operands of a GEMM test on guarded input pages: A (m x k, row
   stride lda), B (n x k, row stride ldb) and, when asked for, a bias of n;
   all uniform in [-1, 1], drawn in that order. */
typedef struct gemm_operands {
    input_buf ia, ib, ibias;
    float *a, *b, *bias;   /* bias is NULL without one */
} gemm_operands;

static void gemm_operands_make(gemm_operands *g, int64_t m, int64_t n, int64_t k,
                               int64_t lda, int64_t ldb, int with_bias)
{
    g->a = input_floats(&g->ia, (m - 1) * lda + k);
    g->b = input_floats(&g->ib, (n - 1) * ldb + k);
    g->bias = with_bias ? input_floats(&g->ibias, n) : NULL;
    fill_uniform(g->a, (m - 1) * lda + k, -1.0f, 1.0f);
    fill_uniform(g->b, (n - 1) * ldb + k, -1.0f, 1.0f);
    if (g->bias)
        fill_uniform(g->bias, n, -1.0f, 1.0f);
    input_seal(&g->ia);
    input_seal(&g->ib);
    if (g->bias)
        input_seal(&g->ibias);
}

static void gemm_operands_free(gemm_operands *g)
{
    input_free(&g->ia);
    input_free(&g->ib);
    if (g->bias)
        input_free(&g->ibias);
}

/* sum_p a[p] * b[p] for p < k in double; *mag gets the sum of the terms'
   magnitudes, which bounds the float rounding error. */
static double dot_double(const float *a, const float *b, int64_t k, double *mag)
{
    double dot = 0.0;
    *mag = 0.0;
    for (int64_t p = 0; p < k; p++) {
        dot += (double)a[p] * b[p];
        *mag += fabs((double)a[p] * b[p]);
    }
    return dot;
}

static void gemm_case(const qkv_kernels *kt, const qkv_kernels *twin,
                      int64_t m, int64_t n, int64_t k, int with_bias, worst *w)
{
    const int64_t lda = k + 3, ldb = k + 1;
    gemm_operands g;
    gemm_operands_make(&g, m, n, k, lda, ldb, with_bias);
    const float *a = g.a, *b = g.b, *bias = g.bias;

    out_buf got, twin_out;
    gemm_run(kt, m, n, k, a, lda, b, ldb, bias, &got, w);
    gemm_run(twin, m, n, k, a, lda, b, ldb, bias, &twin_out, w);

    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double mag;
            const double dot = dot_double(a + i * lda, b + j * ldb, k, &mag) +
                               (bias ? bias[j] : 0.0);
            mag += bias ? fabs(bias[j]) : 0.0;
            /* Float accumulation of k+1 terms, in any order or with FMA. */
            const double tol = (double)(k + 2) * FLT_EPSILON * mag + FLT_MIN;
            const float c = got.data[i * got.ld + j];
            check_close(w, c, dot, tol, "gemm_nt vs double", i, j);
            check_close(w, c, twin_out.data[i * got.ld + j], 2 * tol,
                        "gemm_nt vs scalar", i, j);
        }
    w->cases++;
    out_free(&got);
    out_free(&twin_out);
    gemm_operands_free(&g);
}

static void test_gemm(const qkv_kernels *kt, const qkv_kernels *twin)
{
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "gemm_nt");
    for (int x = 0; x < count; x++)
        for (int y = 0; y < count; y++)
            for (int z = 0; z < count; z++)
                gemm_case(kt, twin, sizes[x], sizes[y], sizes[z], (x + y + z) & 1, &w);
    /* Every row count of the small-m (decode) paths, which read B rows
       directly instead of packing them. */
    for (int64_t m = 2; m <= 9; m++)
        for (int y = 0; y < count; y++)
            for (int z = 0; z < count; z++)
                gemm_case(kt, twin, m, sizes[y], sizes[z], (int)(m + y + z) & 1, &w);
    tap_result(w.failures == 0, "%s gemm_nt: %lld shapes vs double and scalar, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* pack_nt + gemm_packed                                              */
/* ------------------------------------------------------------------ */

/* Scratch for one packed n x k block, followed by canaries that must
   survive pack_nt; QKV_SCRATCH_ALIGN-aligned. */
#define PACK_CANARIES 32

static float *packed_alloc(int64_t n, int64_t k)
{
    const int64_t floats = QKV_GEMM_SCRATCH_FLOATS(n, k);
    float *packed = aligned_alloc(QKV_SCRATCH_ALIGN,
        (size_t)((floats + PACK_CANARIES + 15) / 16 * 16) * sizeof(float));
    if (!packed) {
        fprintf(stderr, "out of memory\n");
        exit(99);
    }
    for (int64_t i = 0; i < floats + PACK_CANARIES; i++)
        packed[i] = i < floats ? NAN : -7.0f;   /* NaN: unpacked floats show */
    return packed;
}

static int packed_intact(const float *packed, int64_t n, int64_t k)
{
    const int64_t floats = QKV_GEMM_SCRATCH_FLOATS(n, k);
    for (int64_t i = 0; i < PACK_CANARIES; i++)
        if (packed[floats + i] != -7.0f) {
            note("pack_nt wrote past QKV_GEMM_SCRATCH_FLOATS(%lld, %lld)",
                 (long long)n, (long long)k);
            return 0;
        }
    return 1;
}

/* C (initial values c0, row stride ldc) through pack_nt + gemm_packed of
   table kt, k split at k_split (0: one call): the blocks of k are packed
   separately and all but the first accumulate; bias goes with the last. */
static void packed_run(const qkv_kernels *kt, int64_t m, int64_t n, int64_t k,
                       int64_t k_split, const float *a, int64_t lda,
                       const float *b, int64_t ldb, const float *bias,
                       int accumulate, const float *c0, out_buf *o, worst *w)
{
    const int64_t ldc = n + 5;
    float *c = out_alloc(o, m, n, ldc);
    for (int64_t i = 0; i < m; i++)
        memcpy(c + i * ldc, c0 + i * n, (size_t)n * sizeof(float));
    out_snapshot(o);

    const int64_t k0 = k_split > 0 ? k_split : k;
    float *first = packed_alloc(n, k0);
    kt->pack_nt(n, k0, b, ldb, first);
    int ok = packed_intact(first, n, k0);
    kt->gemm_packed(m, n, k0, a, lda, first, k0 == k ? bias : NULL,
                    accumulate, c, ldc);
    if (k0 < k) {
        float *second = packed_alloc(n, k - k0);
        kt->pack_nt(n, k - k0, b + k0, ldb, second);
        ok &= packed_intact(second, n, k - k0);
        kt->gemm_packed(m, n, k - k0, a + k0, lda, second, bias, 1, c, ldc);
        free(second);
    }
    free(first);
    ok &= out_intact(o, "gemm_packed C");
    if (!ok)
        w->failures++;
}

/* One shape: the kernel vs the double reference and the scalar twin, and
   (where k > 1) k split in two vs one call, which must agree bit for bit
   (gemm_packed's contract). */
static void packed_case(const qkv_kernels *kt, const qkv_kernels *twin,
                        int64_t m, int64_t n, int64_t k, int with_bias,
                        int accumulate, worst *w)
{
    const int64_t lda = k + 3, ldb = k + 1;
    gemm_operands g;
    gemm_operands_make(&g, m, n, k, lda, ldb, with_bias);
    const float *a = g.a, *b = g.b, *bias = g.bias;
    /* Without accumulate C's old values must not matter: NaN shows it. */
    float *c0 = malloc((size_t)(m * n) * sizeof(float));
    if (!c0) {
        fprintf(stderr, "out of memory\n");
        exit(99);
    }
    for (int64_t i = 0; i < m * n; i++)
        c0[i] = accumulate ? rng_uniform(-4.0f, 4.0f) : NAN;

    out_buf got, twin_out, split;
    packed_run(kt, m, n, k, 0, a, lda, b, ldb, bias, accumulate, c0, &got, w);
    packed_run(twin, m, n, k, 0, a, lda, b, ldb, bias, accumulate, c0, &twin_out, w);
    const int64_t k_split = k > 1 ? (k / 2 + 7) / 8 * 8 : 0;
    if (k_split > 0 && k_split < k)
        packed_run(kt, m, n, k, k_split, a, lda, b, ldb, bias, accumulate, c0,
                   &split, w);

    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const double start = accumulate ? c0[i * n + j] : 0.0;
            double mag;
            const double dot = start + (bias ? bias[j] : 0.0) +
                               dot_double(a + i * lda, b + j * ldb, k, &mag);
            mag += fabs(start) + (bias ? fabs(bias[j]) : 0.0);
            const double tol = (double)(k + 3) * FLT_EPSILON * mag + FLT_MIN;
            const float c = got.data[i * got.ld + j];
            check_close(w, c, dot, tol, "gemm_packed vs double", i, j);
            check_close(w, c, twin_out.data[i * got.ld + j], 2 * tol,
                        "gemm_packed vs scalar", i, j);
            if (k_split > 0 && k_split < k &&
                !same_float(split.data[i * got.ld + j], c)) {
                note("gemm_packed, k %lld split at %lld: [%lld][%lld] %.9g, one call %.9g",
                     (long long)k, (long long)k_split, (long long)i, (long long)j,
                     split.data[i * got.ld + j], c);
                w->failures++;
            }
        }
    w->cases++;
    if (k_split > 0 && k_split < k)
        out_free(&split);
    out_free(&got);
    out_free(&twin_out);
    free(c0);
    gemm_operands_free(&g);
}

/* A block packed with n_packed columns serves any n of its columns from
   c0 on, c0 a multiple of QKV_PACK_COLUMN_ALIGN (gemm_packed's contract;
   sdpa reads runs of keys of a cached key block on the diagonal of a
   causal or windowed task): pack n_packed rows of B, multiply by columns
   c0..c0+n-1, and check against the double reference, with the columns
   of C past n (inside its row stride) left untouched. */
static void packed_prefix_case(const qkv_kernels *kt, int64_t m, int64_t n_packed,
                               int64_t c0, int64_t n, int64_t k, worst *w)
{
    const int64_t lda = k + 2, ldb = k + 1, ldc = n_packed + 3;
    gemm_operands g;
    gemm_operands_make(&g, m, n_packed, k, lda, ldb, 0);
    const float *a = g.a, *b = g.b;
    float *packed = packed_alloc(n_packed, k);
    kt->pack_nt(n_packed, k, b, ldb, packed);
    out_buf o;
    float *c = out_alloc(&o, m, n, ldc);   /* guards cover columns n.. too */
    out_snapshot(&o);
    kt->gemm_packed(m, n, k, a, lda, packed + c0 * k, NULL, 0, c, ldc);
    if (!out_intact(&o, "gemm_packed prefix C") || !packed_intact(packed, n_packed, k))
        w->failures++;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double mag;
            const double dot = dot_double(a + i * lda, b + (c0 + j) * ldb, k, &mag);
            check_close(w, c[i * ldc + j], dot, (double)(k + 3) * FLT_EPSILON * mag + FLT_MIN,
                        "gemm_packed column run vs double", i, j);
        }
    w->cases++;
    out_free(&o);
    free(packed);
    gemm_operands_free(&g);
}

static void test_gemm_packed_prefix(const qkv_kernels *kt)
{
    static const int64_t packed_ns[] = {16, 17, 64, 128};
    static const int64_t ks[] = {1, 17, 64};
    worst w = {0};
    tap_begin(kt->isa, "gemm_packed column runs");
    for (size_t x = 0; x < sizeof packed_ns / sizeof packed_ns[0]; x++) {
        const int64_t np = packed_ns[x];
        const int64_t ns[] = {1, 7, 8, 9, 15, 16, 17, np - 1, np};
        for (int64_t c0 = 0; c0 < np; c0 += QKV_PACK_COLUMN_ALIGN)
            for (size_t y = 0; y < sizeof ns / sizeof ns[0]; y++)
                for (size_t z = 0; z < sizeof ks / sizeof ks[0]; z++)
                    for (int64_t m = 1; m <= 13; m += 4)
                        if (c0 + ns[y] <= np && (c0 > 0 || ns[y] < np))
                            packed_prefix_case(kt, m, np, c0, ns[y], ks[z], &w);
    }
    tap_result(w.failures == 0,
               "%s gemm_packed on runs of columns of a packed block: %lld shapes vs double, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* Every row count of the micro-kernels (1..13: two 6-row tiles and a
   tail), columns and depths around the panel widths (16 floats on x86,
   8 on NEON) and the sizes the drivers use (64, 128, 256, 512); each shape
   with and without bias and accumulate. --quick keeps the odd row counts
   and drops k = 512. */
static void test_gemm_packed(const qkv_kernels *kt, const qkv_kernels *twin)
{
    static const int64_t ns[] = {1, 15, 16, 17, 63, 64, 65, 128};
    static const int64_t ks[] = {1, 15, 16, 17, 64, 128, 256, 512};
    worst w = {0};
    tap_begin(kt->isa, "gemm_packed");
    for (int64_t m = 1; m <= 13; m += quick_mode ? 2 : 1)
        for (size_t y = 0; y < sizeof ns / sizeof ns[0]; y++)
            for (size_t z = 0; z < sizeof ks / sizeof ks[0]; z++) {
                if (quick_mode && ks[z] > 256)
                    continue;
                for (int mode = 0; mode < 4; mode++)
                    packed_case(kt, twin, m, ns[y], ks[z], mode & 1, mode >> 1, &w);
            }
    tap_result(w.failures == 0,
               "%s pack_nt + gemm_packed: %lld shapes vs double and scalar, k split, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* The projection GEMM driver (src/gemm.c), one thread                */
/* ------------------------------------------------------------------ */

/* qkv_gemm_nt_blocked_in with table kt into a guarded C, in exactly
   qkv_gemm_nt_scratch_floats floats of scratch followed by canaries. */
static void driver_run(const qkv_kernels *kt, int64_t m, int64_t n, int64_t k,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       const float *bias, out_buf *o, worst *w)
{
    const int64_t ldc = n + 3;
    float *c = out_alloc(o, m, n, ldc);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] = NAN;       /* every element must be written */
    out_snapshot(o);
    const int64_t floats = qkv_gemm_nt_scratch_floats(m, n, k, 1);
    float *scratch = aligned_alloc(QKV_SCRATCH_ALIGN,
        (size_t)((floats + PACK_CANARIES + 15) / 16 * 16) * sizeof(float));
    if (floats < 0 || !scratch) {
        fprintf(stderr, "gemm driver: no scratch\n");
        exit(99);
    }
    for (int64_t i = 0; i < PACK_CANARIES; i++)
        scratch[floats + i] = -7.0f;
    qkv_gemm_nt_blocked_in(kt, m, n, k, a, lda, b, ldb, bias, c, ldc, 1, scratch);
    int ok = out_intact(o, "gemm driver C");
    for (int64_t i = 0; i < PACK_CANARIES; i++)
        if (scratch[floats + i] != -7.0f) {
            note("gemm driver wrote past qkv_gemm_nt_scratch_floats(%lld, %lld, %lld)",
                 (long long)m, (long long)n, (long long)k);
            ok = 0;
            break;
        }
    if (!ok)
        w->failures++;
    free(scratch);
}

/* One shape: the driver vs the double reference, vs the driver on the
   scalar table, and bit for bit vs one gemm_nt call on the whole problem
   (its blocking must not change the order of any sum). */
static void driver_case(const qkv_kernels *kt, const qkv_kernels *twin,
                        int64_t m, int64_t n, int64_t k, int with_bias, worst *w)
{
    const int64_t lda = k + 1, ldb = k + 2;
    gemm_operands g;
    gemm_operands_make(&g, m, n, k, lda, ldb, with_bias);
    const float *a = g.a, *b = g.b, *bias = g.bias;

    out_buf got, twin_out, whole;
    driver_run(kt, m, n, k, a, lda, b, ldb, bias, &got, w);
    driver_run(twin, m, n, k, a, lda, b, ldb, bias, &twin_out, w);
    gemm_run(kt, m, n, k, a, lda, b, ldb, bias, &whole, w);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double mag;
            const double dot = dot_double(a + i * lda, b + j * ldb, k, &mag) +
                               (bias ? bias[j] : 0.0);
            mag += bias ? fabs(bias[j]) : 0.0;
            const double tol = (double)(k + 2) * FLT_EPSILON * mag + FLT_MIN;
            const float c = got.data[i * got.ld + j];
            check_close(w, c, dot, tol, "gemm driver vs double", i, j);
            check_close(w, c, twin_out.data[i * twin_out.ld + j], 2 * tol,
                        "gemm driver vs scalar", i, j);
            if (!same_float(c, whole.data[i * whole.ld + j])) {
                note("gemm driver %lldx%lldx%lld [%lld][%lld]: %.9g, one gemm_nt call %.9g",
                     (long long)m, (long long)n, (long long)k, (long long)i,
                     (long long)j, c, whole.data[i * whole.ld + j]);
                w->failures++;
            }
        }
    w->cases++;
    out_free(&got);
    out_free(&twin_out);
    out_free(&whole);
    gemm_operands_free(&g);
}

/* Rows around the direct (few rows) path and the row tasks, columns and
   depths around the column blocks and the blocks of k. */
static void test_gemm_driver(const qkv_kernels *kt, const qkv_kernels *twin)
{
    static const int64_t ms[] = {1, 8, 9, 97, 200};
    static const int64_t ns[] = {1, 63, 65, 130};
    static const int64_t ks[] = {1, 127, 128, 129, 300};
    /* --quick leaves out the largest m and k (the same blocking paths). */
    const size_t n_ms = sizeof ms / sizeof ms[0] - (quick_mode ? 1 : 0);
    const size_t n_ks = sizeof ks / sizeof ks[0] - (quick_mode ? 1 : 0);
    worst w = {0};
    tap_begin(kt->isa, "gemm driver");
    for (size_t x = 0; x < n_ms; x++)
        for (size_t y = 0; y < sizeof ns / sizeof ns[0]; y++)
            for (size_t z = 0; z < n_ks; z++)
                driver_case(kt, twin, ms[x], ns[y], ks[z], (int)(x + y + z) & 1, &w);
    /* A deep B is packed and used in groups of 64 columns (64 x 16400
       floats fill the packing budget): three groups, the last of 2. */
    driver_case(kt, twin, 13, 130, 16400, 1, &w);
    tap_result(w.failures == 0,
               "%s gemm driver (src/gemm.c): %lld shapes vs double, scalar and one gemm_nt call, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* pv_tile                                                            */
/* ------------------------------------------------------------------ */

static void pv_run(const qkv_kernels *kt, int64_t m, int64_t n, int64_t dv,
                   const float *p, int64_t ldp, const float *v, int64_t ldv,
                   const float *alpha, const float *acc0, out_buf *o, worst *w)
{
    const int64_t ldacc = dv + 2;
    float *acc = out_alloc(o, m, dv, ldacc);
    for (int64_t i = 0; i < m; i++)
        memcpy(acc + i * ldacc, acc0 + i * dv, (size_t)dv * sizeof(float));
    out_snapshot(o);
    kt->pv_tile(m, n, dv, p, ldp, v, ldv, alpha, acc, ldacc);
    if (!out_intact(o, "pv_tile acc"))
        w->failures++;
}

static void pv_case(const qkv_kernels *kt, const qkv_kernels *twin,
                    int64_t m, int64_t n, int64_t dv, worst *w)
{
    const int64_t ldp = n + 3, ldv = dv + 1;
    input_buf ip, iv, ialpha;
    float *p = input_floats(&ip, (m - 1) * ldp + n);
    float *v = input_floats(&iv, (n - 1) * ldv + dv);
    float *alpha = input_floats(&ialpha, m);
    fill_uniform(p, (m - 1) * ldp + n, 0.0f, 1.0f);
    fill_uniform(v, (n - 1) * ldv + dv, -1.0f, 1.0f);
    for (int64_t i = 0; i < m; i++)
        alpha[i] = i % 3 == 0 ? 1.0f : i % 3 == 1 ? rng_uniform(0.0f, 1.0f) : 0.0f;
    input_seal(&ip);
    input_seal(&iv);
    input_seal(&ialpha);
    float *acc0 = malloc((size_t)(m * dv) * sizeof(float));
    fill_uniform(acc0, m * dv, -4.0f, 4.0f);

    out_buf got, twin_out;
    pv_run(kt, m, n, dv, p, ldp, v, ldv, alpha, acc0, &got, w);
    pv_run(twin, m, n, dv, p, ldp, v, ldv, alpha, acc0, &twin_out, w);
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < dv; c++) {
            double sum = (double)alpha[i] * acc0[i * dv + c];
            double mag = fabs(sum);
            for (int64_t j = 0; j < n; j++) {
                sum += (double)p[i * ldp + j] * v[j * ldv + c];
                mag += fabs((double)p[i * ldp + j] * v[j * ldv + c]);
            }
            const double tol = (double)(n + 3) * FLT_EPSILON * mag + FLT_MIN;
            const float out = got.data[i * got.ld + c];
            check_close(w, out, sum, tol, "pv_tile vs double", i, c);
            check_close(w, out, twin_out.data[i * got.ld + c], 2 * tol,
                        "pv_tile vs scalar", i, c);
        }
    w->cases++;
    free(acc0);
    out_free(&got);
    out_free(&twin_out);
    input_free(&ip);
    input_free(&iv);
    input_free(&ialpha);
}

static void test_pv(const qkv_kernels *kt, const qkv_kernels *twin)
{
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "pv_tile");
    for (int x = 0; x < count; x++)
        for (int y = 0; y < count; y++)
            for (int z = 0; z < count; z++)
                pv_case(kt, twin, sizes[x], sizes[y], sizes[z], &w);
    tap_result(w.failures == 0, "%s pv_tile: %lld shapes vs double and scalar, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* softmax_tile                                                       */
/* ------------------------------------------------------------------ */

/* Relative tolerance of 2^x computed in float from a float argument
   that itself came from one float subtraction: a few ulps of exp2 plus the
   rounding of the argument (which moves 2^x by |x| ln2 ulps). The softmax
   kernels take logits in base-2 units (kernels.h). */
static double exp_tol(double x, double value)
{
    if (isinf(x))
        return FLT_MIN;   /* 2^-inf must be 0 */
    return (6.0 + 2.0 * fabs(x)) * FLT_EPSILON * fabs(value) + FLT_MIN;
}

/* The kinds of rows of a softmax test tile, by row index. */
enum row_kind { ROW_FRESH, ROW_RUNNING, ROW_ALL_BLOCKED_FRESH,
                ROW_ALL_BLOCKED_RUNNING, ROW_NAN, ROW_NAN_ENDS, ROW_KINDS };

static enum row_kind row_kind_of(int64_t i)
{
    return (enum row_kind)(i % ROW_KINDS);
}

/* Logits and the state on entry of one row of the given kind. */
static void softmax_fill_row(enum row_kind kind, int64_t n, float *s,
                             float *row_max, float *row_sum)
{
    const int fresh = kind == ROW_FRESH || kind == ROW_ALL_BLOCKED_FRESH;
    *row_max = fresh ? -INFINITY : rng_uniform(-4.0f, 4.0f);
    *row_sum = fresh ? 0.0f : rng_uniform(1.0f, 3.0f);
    for (int64_t j = 0; j < n; j++) {
        const int blocked = kind == ROW_ALL_BLOCKED_FRESH ||
                            kind == ROW_ALL_BLOCKED_RUNNING || j % 5 == 3;
        s[j] = blocked ? -INFINITY : rng_uniform(-8.0f, 8.0f);
    }
    if (kind == ROW_NAN)
        s[n / 2] = NAN;
    if (kind == ROW_NAN_ENDS) {
        /* First and last: the lanes a vector max sees first and last. */
        s[0] = NAN;
        s[n - 1] = NAN;
    }
}

typedef struct softmax_out {
    out_buf s, max, sum, alpha;
} softmax_out;

static void softmax_run(const qkv_kernels *kt, int64_t m, int64_t n,
                        const float *s0, const float *max0, const float *sum0,
                        softmax_out *o, worst *w)
{
    const int64_t lds = n + 7;
    float *s = out_alloc(&o->s, m, n, lds);
    float *max = out_alloc(&o->max, 1, m, m);
    float *sum = out_alloc(&o->sum, 1, m, m);
    float *alpha = out_alloc(&o->alpha, 1, m, m);
    for (int64_t i = 0; i < m; i++) {
        memcpy(s + i * lds, s0 + i * n, (size_t)n * sizeof(float));
        max[i] = max0[i];
        sum[i] = sum0[i];
        alpha[i] = -3.0f;
    }
    out_snapshot(&o->s);
    out_snapshot(&o->max);
    out_snapshot(&o->sum);
    out_snapshot(&o->alpha);
    kt->softmax_tile(m, n, s, lds, max, sum, alpha);
    if (!out_intact(&o->s, "softmax s") || !out_intact(&o->max, "softmax row_max") ||
        !out_intact(&o->sum, "softmax row_sum") || !out_intact(&o->alpha, "softmax alpha"))
        w->failures++;
}

static void softmax_out_free(softmax_out *o)
{
    out_free(&o->s);
    out_free(&o->max);
    out_free(&o->sum);
    out_free(&o->alpha);
}

/* A row whose logits are all blocked: zeros, alpha 1, state unchanged. */
static void softmax_check_blocked_row(const softmax_out *o, int64_t i, int64_t n,
                                      float max0, float sum0, worst *w)
{
    const float *s = o->s.data + i * o->s.ld;
    int ok = o->alpha.data[i] == 1.0f && same_float(o->max.data[i], max0) &&
             same_float(o->sum.data[i], sum0);
    for (int64_t j = 0; j < n; j++)
        ok &= s[j] == 0.0f && !signbit(s[j]);
    if (!ok) {
        w->failures++;
        note("softmax: fully blocked row %lld changed its state or is not +0", (long long)i);
    }
}

/* Every row against the recurrence in double. */
static void softmax_check_row(const softmax_out *o, int64_t i, int64_t n,
                              const float *s0, float max0, float sum0, worst *w)
{
    double new_max = max0;
    for (int64_t j = 0; j < n; j++)
        if (s0[j] > new_max)
            new_max = s0[j];
    if (new_max == -INFINITY) {
        softmax_check_blocked_row(o, i, n, max0, sum0, w);
        return;
    }
    const float *s = o->s.data + i * o->s.ld;
    double sum = 0.0, worst_rel = 0.0;
    int has_nan = 0;
    for (int64_t j = 0; j < n; j++) {
        if (isnan(s0[j])) {
            has_nan = 1;
            if (!isnan(s[j])) {
                w->failures++;
                note("softmax: NaN logit [%lld][%lld] gave %g", (long long)i, (long long)j, s[j]);
            }
            continue;
        }
        const double x = (double)s0[j] - new_max;
        const double want = exp2(x);
        if (s0[j] == -INFINITY && !(s[j] == 0.0f && !signbit(s[j]))) {
            w->failures++;
            note("softmax: -inf logit [%lld][%lld] gave %g, not +0", (long long)i, (long long)j, s[j]);
        }
        check_close(w, s[j], want, exp_tol(x, want), "softmax s", i, j);
        sum += want;
        worst_rel = fmax(worst_rel, exp_tol(x, 1.0));
    }
    const double alpha = exp2((double)max0 - new_max);
    check_close(w, o->alpha.data[i], alpha, exp_tol((double)max0 - new_max, alpha),
                "softmax alpha", i, 0);
    check_close(w, o->max.data[i], new_max, 0.0 + FLT_MIN * 0.5, "softmax row_max", i, 0);
    const double want_sum = sum0 * alpha + sum;
    if (has_nan) {
        if (!isnan(o->sum.data[i])) {
            w->failures++;
            note("softmax: row %lld had a NaN logit but row_sum %g", (long long)i, o->sum.data[i]);
        }
        return;
    }
    const double tol = ((double)(n + 4) * FLT_EPSILON + worst_rel) * want_sum + FLT_MIN;
    check_close(w, o->sum.data[i], want_sum, tol, "softmax row_sum", i, 0);
}

static void softmax_case(const qkv_kernels *kt, const qkv_kernels *twin,
                         int64_t m, int64_t n, worst *w)
{
    float *s0 = malloc((size_t)(m * n) * sizeof(float));
    float *max0 = malloc((size_t)m * sizeof(float));
    float *sum0 = malloc((size_t)m * sizeof(float));
    for (int64_t i = 0; i < m; i++)
        softmax_fill_row(row_kind_of(i), n, s0 + i * n, &max0[i], &sum0[i]);

    softmax_out got, twin_out;
    softmax_run(kt, m, n, s0, max0, sum0, &got, w);
    softmax_run(twin, m, n, s0, max0, sum0, &twin_out, w);
    for (int64_t i = 0; i < m; i++) {
        softmax_check_row(&got, i, n, s0 + i * n, max0[i], sum0[i], w);
        /* The twin agrees on every row, NaN placement included. */
        const float a = got.sum.data[i], b = twin_out.sum.data[i];
        if (isnan(a) != isnan(b) || (!isnan(a) && fabs(a - b) > 1e-5 * fabs(b) + FLT_MIN)) {
            w->failures++;
            note("softmax row_sum[%lld]: %.9g, scalar %.9g", (long long)i, a, b);
        }
    }
    w->cases++;
    softmax_out_free(&got);
    softmax_out_free(&twin_out);
    free(s0);
    free(max0);
    free(sum0);
}

static void test_softmax(const qkv_kernels *kt, const qkv_kernels *twin)
{
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "softmax_tile");
    for (int x = 0; x < count; x++)
        for (int y = 0; y < count; y++)
            softmax_case(kt, twin, sizes[x], sizes[y], &w);
    tap_result(w.failures == 0,
               "%s softmax_tile: %lld shapes (-inf logits, blocked rows, NaN rows) vs double and scalar, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* exp_shift_scale                                                    */
/* ------------------------------------------------------------------ */

static void exp_shift_case(const qkv_kernels *kt, int64_t n, int in_place, worst *w)
{
    input_buf isrc;
    float *src = input_floats(&isrc, n);
    for (int64_t j = 0; j < n; j++)
        src[j] = j % 7 == 2 ? -INFINITY : rng_uniform(-20.0f, 5.0f);
    input_seal(&isrc);
    const float shift = rng_uniform(-3.0f, 3.0f), mul = rng_uniform(0.1f, 2.0f);

    out_buf o;
    float *dst = out_alloc(&o, 1, n, n);
    if (in_place)
        memcpy(dst, src, (size_t)n * sizeof(float));
    out_snapshot(&o);
    kt->exp_shift_scale(n, in_place ? dst : src, shift, mul, dst);
    if (!out_intact(&o, "exp_shift_scale dst"))
        w->failures++;
    for (int64_t j = 0; j < n; j++) {
        const double x = (double)src[j] - shift;
        const double want = exp2(x) * mul;
        check_close(w, dst[j], want, exp_tol(x, want) + FLT_EPSILON * fabs(want),
                    "exp_shift_scale", 0, j);
    }
    w->cases++;
    out_free(&o);
    input_free(&isrc);
}

static void test_exp_shift_scale(const qkv_kernels *kt)
{
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "exp_shift_scale");
    for (int x = 0; x < count; x++) {
        exp_shift_case(kt, sizes[x], 0, &w);
        exp_shift_case(kt, sizes[x], 1, &w);
    }
    tap_result(w.failures == 0, "%s exp_shift_scale: %lld sizes, in place and not, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* add_base2                                                          */
/* ------------------------------------------------------------------ */

/* A mask entry of the add_base2 tests: specials (infinities, NaN, the
   saturation edge near FLT_MAX / log2 e = 2.3587e38, FLT_MAX itself,
   subnormals) among ordinary values. */
static float add_base2_entry(int64_t j)
{
    static const float specials[] = {
        INFINITY, -INFINITY, NAN, FLT_MAX, -FLT_MAX, 3e38f, -3e38f,
        2.3587e38f, -2.3587e38f, 2.3588e38f, -2.3588e38f, 2e38f, -1e30f,
        0.0f, -0.0f, 1e-40f, -1e-40f, FLT_MIN,
    };
    const int64_t count = (int64_t)(sizeof specials / sizeof specials[0]);
    if (j % 3 == 1)
        return specials[(j / 3) % count];
    /* More blocking entries, to meet the NaN and +inf logits of the case. */
    return j % 5 == 2 ? -INFINITY : rng_uniform(-20.0f, 20.0f);
}

/* m * log2(e) saturated at +-FLT_MAX for finite m, in double. */
static double base2_reference(float m)
{
    const double y = (double)m * 1.4426950408889634;
    return isfinite(m) ? fmax(-FLT_MAX, fmin(FLT_MAX, y)) : y;
}

static void add_base2_case(const qkv_kernels *kt, const qkv_kernels *twin,
                           int64_t n, worst *w)
{
    input_buf im;
    float *m = input_floats(&im, n);
    for (int64_t j = 0; j < n; j++)
        m[j] = add_base2_entry(j);
    input_seal(&im);

    out_buf o, ot;
    float *s = out_alloc(&o, 1, n, n), *st = out_alloc(&ot, 1, n, n);
    float *s0 = malloc((size_t)n * sizeof *s0);
    if (!s0)
        abort();
    for (int64_t j = 0; j < n; j++)
        s0[j] = s[j] = st[j] = j % 11 == 5  ? -INFINITY
                               : j % 7 == 3  ? NAN
                               : j % 13 == 9 ? INFINITY
                                             : rng_uniform(-30.0f, 30.0f);
    out_snapshot(&o);
    kt->add_base2(n, s, m);
    twin->add_base2(n, st, m);
    if (!out_intact(&o, "add_base2 s"))
        w->failures++;
    for (int64_t j = 0; j < n; j++) {
        if (!same_float(s[j], st[j])) {
            w->failures++;
            note("add_base2[%lld]: %a, scalar twin %a (m %a)", (long long)j, s[j], st[j], m[j]);
        }
        /* A -inf entry blocks: -inf even where the logit is NaN or +inf. */
        const double want = m[j] == -INFINITY ? -INFINITY
                                              : (double)s0[j] + base2_reference(m[j]);
        if (!isfinite(want)) {
            /* inf - inf is NaN; otherwise the infinity itself. */
            const int ok = isnan(want) ? isnan(s[j]) : s[j] == (float)want;
            if (!ok) {
                w->failures++;
                note("add_base2[%lld]: got %a, want %g (m %a)", (long long)j, s[j], want, m[j]);
            }
            continue;
        }
        /* One rounding of the product, one of the sum; a sum past
           FLT_MAX may round to it or overflow. */
        if (fabs(want) > FLT_MAX && (isinf(s[j]) || fabs(s[j]) == FLT_MAX) &&
            signbit(s[j]) == signbit(want))
            continue;
        const double tol = 0x1p-23 * (fabs(s0[j]) + fabs(base2_reference(m[j]))) + 0x1p-149;
        check_close(w, s[j], want, tol, "add_base2", 0, j);
    }
    w->cases++;
    free(s0);
    out_free(&o);
    out_free(&ot);
    input_free(&im);
}

static void test_add_base2(const qkv_kernels *kt, const qkv_kernels *twin)
{
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "add_base2");
    for (int x = 0; x < count; x++)
        add_base2_case(kt, twin, sizes[x], &w);
    tap_result(w.failures == 0,
               "%s add_base2: %lld sizes, infinities, NaN, saturation and -inf blocking NaN/+inf logits, bitwise = scalar, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* alibi                                                              */
/* ------------------------------------------------------------------ */

/* One row: logits with -inf and NaN among them, the bias of one slope and
   one diagonal; bitwise against the twin, and within the two roundings of
   the twin (the distance is exact here) of s - slope * |diag - c| in
   double. */
static void alibi_case(const qkv_kernels *kt, const qkv_kernels *twin, int64_t n,
                       float slope, int64_t diag, worst *w)
{
    out_buf o, ot;
    float *s = out_alloc(&o, 1, n, n), *st = out_alloc(&ot, 1, n, n);
    float *s0 = malloc((size_t)n * sizeof *s0);
    if (!s0)
        abort();
    for (int64_t c = 0; c < n; c++)
        s0[c] = s[c] = st[c] = c % 13 == 4 ? -INFINITY : c % 17 == 9 ? NAN
                                            : rng_uniform(-30.0f, 30.0f);
    out_snapshot(&o);
    kt->alibi(n, s, slope, diag);
    twin->alibi(n, st, slope, diag);
    if (!out_intact(&o, "alibi s"))
        w->failures++;
    for (int64_t c = 0; c < n; c++) {
        if (!same_float(s[c], st[c])) {
            w->failures++;
            note("alibi[%lld]: %a, scalar twin %a (slope %a, diag %lld)", (long long)c, s[c],
                 st[c], slope, (long long)diag);
        }
        const double dist = fabs((double)diag - (double)c);
        const double want = (double)s0[c] - (double)slope * dist;
        if (!isfinite(want) || fabs(want) > FLT_MAX) {
            const int ok = isnan(want) ? isnan(s[c])
                           : isinf(s[c]) ? !signbit(s[c]) == !signbit(want)
                                         : fabs(s[c]) >= FLT_MAX * (1.0 - 0x1p-23);
            if (!ok) {
                w->failures++;
                note("alibi[%lld]: got %a, want %g", (long long)c, s[c], want);
            }
            continue;
        }
        /* The distance rounds to float past 2^24 (the twin's conversion),
           then the product and the difference once each. */
        const double tol = 0x1p-23 * (fabs((double)s0[c]) + 2.0 * fabs((double)slope) * dist) +
                           0x1p-149;
        check_close(w, s[c], want, tol, "alibi", 0, c);
    }
    w->cases++;
    free(s0);
    out_free(&o);
    out_free(&ot);
}

/* Edge sizes, slopes of both signs, zero and one whose products overflow,
   and diagonals before, inside and after the row, at the edge of the
   exact range 2^24 (the SIMD kernels' vector path) and past it (the
   twin's path). */
static void test_alibi(const qkv_kernels *kt, const qkv_kernels *twin)
{
    static const float slopes[] = {0.5f, -0.0625f, 0.0f, 0x1.715476p-3f, 3e37f};
    const int64_t exact = (int64_t)1 << 24;
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "alibi");
    for (int x = 0; x < count; x++) {
        const int64_t n = sizes[x];
        const int64_t diags[] = {0, n / 2, n - 1, n + 5, -7, 100000, exact, exact + 1,
                                 -exact + n - 1, -exact + n - 2, (int64_t)1 << 40};
        for (size_t d = 0; d < sizeof diags / sizeof diags[0]; d++)
            for (size_t k = 0; k < sizeof slopes / sizeof slopes[0]; k++)
                alibi_case(kt, twin, n, slopes[k], diags[d], &w);
    }
    tap_result(w.failures == 0,
               "%s alibi: %lld rows (diagonals in and past the exact range), bitwise = scalar, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, w.ratio);
}

/* ------------------------------------------------------------------ */
/* scale_row                                                          */
/* ------------------------------------------------------------------ */

/* One row at one multiplier, src in a read-only page that ends where the
   row does: every element must be the correctly rounded product, which
   the product in double (exact for two floats) rounded to float is. */
static void scale_row_case(const qkv_kernels *kt, const qkv_kernels *twin, int64_t n,
                           float mul, worst *w)
{
    static const float specials[] = {INFINITY, -INFINITY, NAN, 0.0f, -0.0f, FLT_MAX,
                                     -FLT_MIN, 1e-40f, 3.0f};
    const int64_t count = (int64_t)(sizeof specials / sizeof specials[0]);
    input_buf in;
    float *src = input_floats(&in, n);
    for (int64_t j = 0; j < n; j++)
        src[j] = j % 4 == 3 ? specials[(j / 4) % count] : rng_uniform(-8.0f, 8.0f);
    input_seal(&in);
    out_buf o, ot;
    float *dst = out_alloc(&o, 1, n, n), *dt = out_alloc(&ot, 1, n, n);
    out_snapshot(&o);
    kt->scale_row(n, src, mul, dst);
    twin->scale_row(n, src, mul, dt);
    if (!out_intact(&o, "scale_row dst"))
        w->failures++;
    for (int64_t j = 0; j < n; j++) {
        const float want = (float)((double)src[j] * (double)mul);
        if (!same_float(dst[j], want) || !same_float(dt[j], want)) {
            w->failures++;
            note("scale_row[%lld]: %a * %a: got %a, twin %a, want %a", (long long)j, src[j],
                 mul, dst[j], dt[j], want);
        }
    }
    w->cases++;
    out_free(&o);
    out_free(&ot);
    input_free(&in);
}

/* Edge sizes and multipliers that round, overflow, underflow, or are 0
   (a row with no key seen), against the correctly rounded product. */
static void test_scale_row(const qkv_kernels *kt, const qkv_kernels *twin)
{
    static const float muls[] = {0.125f, 1.0f / 3.0f, -7.5f, 0.0f, 1e30f, 1e-30f, 0x1.715476p-3f};
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "scale_row");
    for (int x = 0; x < count; x++)
        for (size_t k = 0; k < sizeof muls / sizeof muls[0]; k++)
            scale_row_case(kt, twin, sizes[x], muls[k], &w);
    tap_result(w.failures == 0,
               "%s scale_row: %lld rows, specials, correctly rounded and bitwise = scalar",
               qkv_isa_name(kt->isa), (long long)w.cases);
}

/* ------------------------------------------------------------------ */
/* softcap                                                            */
/* ------------------------------------------------------------------ */

/* Largest accepted error of softcap against cap * tanh(s / cap) in
   double, relative to the result: about 4 ulps; the twin (tanhf after one
   rounded division) and the rational approximations of the SIMD kernels
   measure about 2. Plus cap times the spacing of subnormal floats (where
   s / cap is subnormal, it has lost bits in the twin as much as in the
   kernels) and twice that spacing itself (a subnormal result). */
#define SOFTCAP_MAX_REL 4.8e-7
#define SOFTCAP_ABS 0x1p-149

static double softcap_reference(float s, float cap)
{
    return (double)cap * tanh((double)s / (double)cap);
}

/* Compares one result with the double reference: NaN for NaN, +-0 kept
   bit for bit, everything else within SOFTCAP_MAX_REL. Returns the
   relative error (0 for the exact cases). */
static double softcap_check(worst *w, float s, float cap, float got, const char *who,
                            int64_t j)
{
    if (isnan(s) || s == 0.0f) {
        if (!same_float(got, s)) {
            w->failures++;
            note("%s softcap(%a, cap %a): got %a, want %a", who, s, cap, got, s);
        }
        return 0.0;
    }
    const double want = softcap_reference(s, cap);
    const double tol = SOFTCAP_MAX_REL * fabs(want) + SOFTCAP_ABS * (cap + 2.0);
    if (!check_close(w, got, want, tol, who, 0, j))
        note("  (s %a, cap %a)", s, cap);
    return fabs(got - want) / fabs(want);
}

/* A logit of the softcap tests: specials (infinities, NaN, zeros, FLT_MAX,
   the clamp edge QKV_TANH_CLAMP * cap, tiny values) among values spread
   over +-12 caps. */
static float softcap_entry(int64_t j, float cap)
{
    const float specials[] = {
        INFINITY, -INFINITY, NAN, 0.0f, -0.0f, FLT_MAX, -FLT_MAX,
        QKV_TANH_CLAMP * cap, -QKV_TANH_CLAMP * cap, 8.99f * cap, 9.01f * cap,
        0x1p-140f, -0x1p-20f * cap, cap, -cap, 0.5f * cap, 1e30f, -1e-30f,
    };
    const int64_t count = (int64_t)(sizeof specials / sizeof specials[0]);
    return j % 3 == 1 ? specials[(j / 3) % count] : rng_uniform(-12.0f, 12.0f) * cap;
}

static void softcap_case(const qkv_kernels *kt, const qkv_kernels *twin, int64_t n,
                         float cap, worst *w)
{
    out_buf o, ot;
    float *s = out_alloc(&o, 1, n, n), *st = out_alloc(&ot, 1, n, n);
    float *s0 = malloc((size_t)n * sizeof *s0);
    if (!s0)
        abort();
    for (int64_t j = 0; j < n; j++)
        s0[j] = s[j] = st[j] = softcap_entry(j, cap);
    out_snapshot(&o);
    kt->softcap(n, s, cap);
    twin->softcap(n, st, cap);
    if (!out_intact(&o, "softcap s"))
        w->failures++;
    for (int64_t j = 0; j < n; j++) {
        softcap_check(w, s0[j], cap, s[j], qkv_isa_name(kt->isa), j);
        softcap_check(w, s0[j], cap, st[j], "scalar twin", j);
        /* The twin itself, directly: both within the tolerance of the
           reference, so within twice that of each other. */
        if (!isnan(s0[j]) && s0[j] != 0.0f) {
            const double tol = 2.0 * (SOFTCAP_MAX_REL * fabs(softcap_reference(s0[j], cap)) +
                                      SOFTCAP_ABS * (cap + 2.0));
            check_close(w, s[j], st[j], tol, "softcap vs twin", 0, j);
        }
    }
    w->cases++;
    free(s0);
    out_free(&o);
    out_free(&ot);
}

/* Edge sizes for caps on the vector path (1, Gemma 2's 50 in base-2
   units, small and large) and caps the SIMD kernels hand to the twin
   (subnormal, past 2^126, FLT_MAX); then a sweep, at cap 1, of every
   step-th bit pattern and densely over +-(QKV_TANH_CLAMP + 1), where the
   maximum relative error is printed. */
static void test_softcap(const qkv_kernels *kt, const qkv_kernels *twin)
{
    static const float caps[] = {
        1.0f, 50.0f * 1.44269504f, 0.3f, 1e30f, 1e-30f, FLT_MIN, 0x1p126f,
        0x1p-127f, 1e-40f, 0x1p127f, FLT_MAX,
    };
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    worst w = {0};
    tap_begin(kt->isa, "softcap");
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++)
        for (int x = 0; x < count; x++)
            softcap_case(kt, twin, sizes[x], caps[c], &w);

    enum { BATCH = 4096 };
    float x[BATCH], out[BATCH];
    double max_rel = 0.0;
    float worst_x = 0.0f;
    int64_t checked = 0, fill = 0;
    const uint64_t step = quick_mode ? 65521 : 4093;
    const float dense_lo = -(QKV_TANH_CLAMP + 1.0f), dense_step = 0x1p-9f;
    const int64_t dense = (int64_t)(2.0f * (QKV_TANH_CLAMP + 1.0f) / dense_step) + 1;
    const int64_t total = (int64_t)(0x100000000ull / step) + 1 + dense;
    for (int64_t i = 0; i < total; i++) {
        if (i < dense) {
            x[fill++] = dense_lo + (float)i * dense_step;
        } else {
            const uint32_t b32 = (uint32_t)((uint64_t)(i - dense) * step);
            memcpy(&x[fill++], &b32, sizeof b32);
        }
        if (fill == BATCH || i == total - 1) {
            memcpy(out, x, (size_t)fill * sizeof *x);
            kt->softcap(fill, out, 1.0f);
            for (int64_t k = 0; k < fill; k++) {
                const double rel = softcap_check(&w, x[k], 1.0f, out[k], qkv_isa_name(kt->isa), k);
                if (rel > max_rel) {
                    max_rel = rel;
                    worst_x = x[k];
                }
            }
            checked += fill;
            fill = 0;
        }
    }
    printf("# %s softcap: %lld inputs at cap 1, max relative error %.3g (%.2f ulp of 2^-23) at %.9g\n",
           qkv_isa_name(kt->isa), (long long)checked, max_rel, max_rel / 0x1p-23, worst_x);
    tap_result(w.failures == 0,
               "%s softcap: %lld cases of %d caps, specials, sweep; max rel err %.3g <= %.2g, worst err/tol %.3g",
               qkv_isa_name(kt->isa), (long long)w.cases, (int)(sizeof caps / sizeof caps[0]),
               max_rel, SOFTCAP_MAX_REL, w.ratio);
}

/* The vector exp2 over the float range. */
typedef struct exp_stats {
    double max_rel;
    float worst_x;
    int64_t checked, failures, denormals;
} exp_stats;

/* Largest accepted relative error of exp2 in the normal range (~3 ulp). */
#define EXP_MAX_REL 3.6e-7
/* A SIMD exp2 may flush to +0 slightly above the underflow threshold (its
   cut-off is a float x near -126): results below FLT_MIN * (1 + 2^-10)
   may be 0, an absolute error below 1.2e-41. */
#define EXP_FLUSH_BAND (1.0 + 0x1p-10)

static void exp_check_one(float x, float got, int flush_ok, exp_stats *st)
{
    st->checked++;
    const double want = exp2((double)x);
    int ok;
    if (isnan(x)) {
        ok = isnan(got);
    } else if (want > FLT_MAX) {
        /* Overflow: +inf, or FLT_MAX-sized values just below x = 128. */
        ok = got == INFINITY || (want < FLT_MAX * (1.0 + 4 * EXP_MAX_REL) &&
                                 fabs(got - want) <= EXP_MAX_REL * want);
    } else if (want < FLT_MIN) {
        /* Below the normal range: the SIMD exps flush to +0; the scalar
           twin (libm) may return a denormal within its absolute error. */
        ok = (got == 0.0f && !signbit(got)) ||
             (!flush_ok && fabs(got - want) <= 0x1p-149);
        if (flush_ok && !ok && want > FLT_MIN * (1.0 - 4 * EXP_MAX_REL))
            ok = got == FLT_MIN;   /* FLT_MIN by rounding up: allowed */
    } else {
        const double rel = fabs(got - want) / want;
        ok = rel <= EXP_MAX_REL ||
             (flush_ok && got == 0.0f && !signbit(got) && want < FLT_MIN * EXP_FLUSH_BAND);
        if (got != 0.0f && rel > st->max_rel) {
            st->max_rel = rel;
            st->worst_x = x;
        }
    }
    if (got != 0.0f && fabsf(got) < FLT_MIN)
        st->denormals++;
    if (flush_ok && got != 0.0f && fabsf(got) < FLT_MIN)
        ok = 0;
    if (!ok) {
        st->failures++;
        note("exp2(%a = %.9g): got %a, want %.9g", x, x, got, want);
    }
}

static void exp_check_batch(const qkv_kernels *kt, const float *x, int64_t n,
                            float *out, exp_stats *st)
{
    kt->exp_shift_scale(n, x, 0.0f, 1.0f, out);
    for (int64_t i = 0; i < n; i++)
        exp_check_one(x[i], out[i], kt->isa != QKV_ISA_SCALAR, st);
}

static void test_exp_sweep(const qkv_kernels *kt)
{
    enum { BATCH = 4096 };
    float x[BATCH], out[BATCH];
    exp_stats st = {0};
    tap_begin(kt->isa, "exp_sweep");

    const float specials[] = {
        0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 1.0f, -1.0f,
        FLT_MIN, -FLT_MIN, 0x1p-149f, -0x1p-149f, FLT_MAX, -FLT_MAX,
        127.0f, 0x1.fffffep6f, 128.0f, 0x1.000002p7f, 128.5f, 129.0f, 200.0f,
        -126.0f, -0x1.f80002p6f, -0x1.f7fffep6f, -126.5f, -127.0f,
        -149.0f, -150.0f, -151.0f, -200.0f,
        0.5f, -0.5f, 0.99999994f, -0.99999994f, 1e-7f, -1e-7f, 1e-40f, -1e-40f,
    };
    const int64_t n_special = (int64_t)(sizeof specials / sizeof specials[0]);
    memcpy(x, specials, sizeof specials);
    exp_check_batch(kt, x, n_special, out, &st);

    /* Every step-th bit pattern: all signs, exponents and many mantissas. */
    const uint64_t step = quick_mode ? 65521 : 4093;
    int64_t fill = 0;
    for (uint64_t bits = 0; bits <= 0xffffffffull; bits += step) {
        const uint32_t b32 = (uint32_t)bits;
        memcpy(&x[fill++], &b32, sizeof b32);
        if (fill == BATCH) {
            exp_check_batch(kt, x, fill, out, &st);
            fill = 0;
        }
    }
    exp_check_batch(kt, x, fill, out, &st);

    /* Densely around the ends of the range, where the clamps work, and
       around 0 and -1 (the ends of the reduced argument). */
    const float edges[] = {-126.0f, 128.0f, -150.0f, 0.0f, -1.0f};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
        float v = edges[e];
        for (int i = 0; i < 2048; i++)
            v = nextafterf(v, -INFINITY);
        for (int i = 0; i < BATCH; i++) {
            x[i] = v;
            v = nextafterf(v, INFINITY);
        }
        exp_check_batch(kt, x, BATCH, out, &st);
    }

    printf("# %s exp2: %lld inputs, max relative error %.3g (%.2f ulp of 2^-23) at x = %.9g, %lld denormal results\n",
           qkv_isa_name(kt->isa), (long long)st.checked, st.max_rel,
           st.max_rel / 0x1p-23, st.worst_x, (long long)st.denormals);
    tap_result(st.failures == 0, "%s exp2 over the float range: max rel err %.3g <= %.2g, specials, no denormals",
               qkv_isa_name(kt->isa), st.max_rel, EXP_MAX_REL);
}

/* The exp2 inside softmax_tile, over x <= 0: a one-row tile of logits x
   with row_max 0 on entry keeps M' = 0, so it returns s = 2^x. */
static void softmax_exp_batch(const qkv_kernels *kt, const float *x, int64_t n,
                              float *s, exp_stats *st)
{
    float row_max = 0.0f, row_sum = 0.0f, alpha = 0.0f;
    memcpy(s, x, (size_t)n * sizeof(float));
    kt->softmax_tile(1, n, s, n, &row_max, &row_sum, &alpha);
    for (int64_t i = 0; i < n; i++)
        exp_check_one(x[i], s[i], kt->isa != QKV_ISA_SCALAR, st);
    if (row_max != 0.0f || alpha != 1.0f) {
        st->failures++;
        note("softmax exp batch: row_max %g, alpha %g (want 0, 1)", row_max, alpha);
    }
}

static void test_softmax_exp_sweep(const qkv_kernels *kt)
{
    enum { BATCH = 4096 };
    float x[BATCH], s[BATCH];
    exp_stats st = {0};
    tap_begin(kt->isa, "softmax_exp_sweep");
    const uint64_t step = quick_mode ? 32749 : 2039;
    int64_t fill = 0;
    /* Every step-th negative pattern, -0 and -inf included, NaN excluded. */
    for (uint64_t bits = 0x80000000ull; bits <= 0xff800000ull; bits += step) {
        const uint32_t b32 = (uint32_t)bits;
        memcpy(&x[fill++], &b32, sizeof b32);
        if (fill == BATCH) {
            softmax_exp_batch(kt, x, fill, s, &st);
            fill = 0;
        }
    }
    const float specials[] = {-0.0f, 0.0f, -INFINITY, -126.0f, -0x1.f80002p6f, -0x1p-149f,
                              -0x1.fffffep-1f, -1.0f};
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        x[fill++] = specials[i];
    softmax_exp_batch(kt, x, fill, s, &st);
    printf("# %s softmax exp2 (x <= 0): %lld inputs, max relative error %.3g at x = %.9g, %lld denormal results\n",
           qkv_isa_name(kt->isa), (long long)st.checked, st.max_rel, st.worst_x,
           (long long)st.denormals);
    tap_result(st.failures == 0, "%s softmax_tile exp2 over x <= 0: max rel err %.3g <= %.2g, no denormals",
               qkv_isa_name(kt->isa), st.max_rel, EXP_MAX_REL);
}

/* ------------------------------------------------------------------ */
/* Conversions                                                        */
/* ------------------------------------------------------------------ */

typedef void (*cvt_fn)(int64_t n, const uint16_t *src, float *dst);

/* All 65536 patterns, at a 2-byte-aligned (odd-in-floats) offset, against
   the twin and the independent reference. */
static void test_cvt_all(const qkv_kernels *kt, const qkv_kernels *twin,
                         int bf16)
{
    const cvt_fn fn = bf16 ? kt->cvt_bf16_f32 : kt->cvt_f16_f32;
    const cvt_fn twin_fn = bf16 ? twin->cvt_bf16_f32 : twin->cvt_f16_f32;
    const char *name = bf16 ? "cvt_bf16_f32" : "cvt_f16_f32";
    enum { N = 65536 };
    input_buf isrc;
    uint16_t *src = input_alloc(&isrc, N * sizeof(uint16_t));
    for (int i = 0; i < N; i++)
        src[i] = (uint16_t)i;
    input_seal(&isrc);
    out_buf o, t;
    float *dst = out_alloc(&o, 1, N, N);
    float *want = out_alloc(&t, 1, N, N);
    out_snapshot(&o);
    tap_begin(kt->isa, name);
    fn(N, src, dst);
    twin_fn(N, src, want);
    int64_t failures = !out_intact(&o, name);
    for (int i = 0; i < N; i++) {
        const float ref = bf16 ? ref_bf16_to_f32((uint16_t)i) : ref_f16_to_f32((uint16_t)i);
        if (!same_float(dst[i], want[i]) || !same_float(dst[i], ref)) {
            failures++;
            note("%s(0x%04x): got %a, scalar %a, reference %a", name, i, dst[i], want[i], ref);
        }
    }
    tap_result(failures == 0, "%s %s: all 65536 patterns vs scalar and reference",
               qkv_isa_name(kt->isa), name);
    out_free(&o);
    out_free(&t);
    input_free(&isrc);
}

/* Every length 1 .. 3*width+5 and the edge sizes: tails and canaries. */
static void test_cvt_tails(const qkv_kernels *kt)
{
    int64_t sizes[MAX_SIZES];
    const int count = edge_sizes(kt->isa, sizes);
    const int64_t short_max = 3 * isa_width(kt->isa) + 5;
    int64_t failures = 0, cases = 0;
    tap_begin(kt->isa, "cvt_tails");
    for (int64_t s = 0; s < short_max + count; s++) {
        const int64_t n = s < short_max ? s + 1 : sizes[s - short_max];
        for (int bf16 = 0; bf16 < 2; bf16++) {
            input_buf isrc;
            uint16_t *src = input_alloc(&isrc, (size_t)n * sizeof(uint16_t));
            for (int64_t j = 0; j < n; j++)
                src[j] = (uint16_t)rng_u32();
            input_seal(&isrc);
            out_buf o;
            float *dst = out_alloc(&o, 1, n, n);
            out_snapshot(&o);
            (bf16 ? kt->cvt_bf16_f32 : kt->cvt_f16_f32)(n, src, dst);
            failures += !out_intact(&o, bf16 ? "cvt_bf16_f32" : "cvt_f16_f32");
            for (int64_t j = 0; j < n; j++) {
                const float want = bf16 ? ref_bf16_to_f32(src[j]) : ref_f16_to_f32(src[j]);
                if (!same_float(dst[j], want)) {
                    failures++;
                    note("n=%lld: element %lld: got %a, want %a", (long long)n, (long long)j, dst[j], want);
                }
            }
            cases++;
            out_free(&o);
            input_free(&isrc);
        }
    }
    tap_result(failures == 0, "%s cvt_f16_f32 / cvt_bf16_f32: %lld lengths, tails and canaries",
               qkv_isa_name(kt->isa), (long long)cases);
}

/* ------------------------------------------------------------------ */
/* qk_stream, pv_stream (F32, F16 and BF16 K and V, decoding)           */
/* ------------------------------------------------------------------ */

/* The decode shapes: every row count 1..8, keys and depths around the
   16-lane and 8-lane tails, the head sizes 64, 96 and 128. */
#define STREAM_MAX_ROWS 8
static const int64_t stream_keys[] = {1, 15, 16, 17, 128};
static const int64_t stream_depths[] = {1, 15, 16, 17, 64, 96, 128};

/* inf, -inf, quiet and signalling NaNs (both signs), subnormals, zeros,
   and a large finite value, per type. */
static const uint16_t f16_specials[] = {0x7c00, 0xfc00, 0x7e00, 0x7c01, 0xfd55,
                                        0x0001, 0x83ff, 0x0000, 0x8000, 0x7bff};
static const uint16_t bf16_specials[] = {0x7f80, 0xff80, 0x7fc0, 0x7f81, 0xffa5,
                                         0x0001, 0x807f, 0x0000, 0x8000, 0x5f00};
static const uint32_t f32_specials[] = {0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001,
                                        0xffa00005, 0x00000001, 0x807fffff, 0x00000000,
                                        0x80000000, 0x5f000000};
#define KV_SPECIALS 10

/* Element `at` of K or V rows of type dt, widened by the reference
   conversions. */
static float kv_ref(qkv_dtype dt, const void *rows, int64_t at)
{
    if (dt == QKV_F32)
        return ((const float *)rows)[at];
    const uint16_t h = ((const uint16_t *)rows)[at];
    return dt == QKV_BF16 ? ref_bf16_to_f32(h) : ref_f16_to_f32(h);
}

static int64_t kv_bytes(qkv_dtype dt)
{
    return dt == QKV_F32 ? 4 : 2;
}

/* Element `at` of K or V rows of type dt, as an address. */
static const void *kv_at(qkv_dtype dt, const void *rows, int64_t at)
{
    return (const char *)rows + at * kv_bytes(dt);
}

/* A random finite value of magnitude below 1: random sign, exponent and
   fraction bits (F16 subnormals included). */
static uint16_t random_half(qkv_dtype dt)
{
    const uint32_t r = rng_u32();
    const uint16_t sign = (uint16_t)((r & 1u) << 15);
    if (dt == QKV_BF16)   /* exponents 2^-15 .. 2^-1 */
        return (uint16_t)(sign | (112u + (r >> 1) % 15u) << 7 | ((r >> 8) & 0x7fu));
    return (uint16_t)(sign | ((r >> 1) % 15u) << 10 | ((r >> 8) & 0x3ffu));
}

/* rows x width elements of type dt (row stride ld) in a guarded, sealed
   input: random values of magnitude below 1. With `specials`, every third
   row holds one special value, at a column that moves with the row (tails
   included). */
static const void *kv_input(input_buf *in, qkv_dtype dt, int64_t rows,
                            int64_t width, int64_t ld, int specials)
{
    const int64_t count = (rows - 1) * ld + width;
    void *x = input_alloc(in, (size_t)(count * kv_bytes(dt)));
    if (dt == QKV_F32)
        fill_uniform(x, count, -1.0f, 1.0f);
    else
        for (int64_t i = 0; i < count; i++)
            ((uint16_t *)x)[i] = random_half(dt);
    for (int64_t j = 1; specials && j < rows; j += 3) {
        const int64_t at = j * ld + (j * 5) % width, which = (j / 3) % KV_SPECIALS;
        if (dt == QKV_F32)
            memcpy((uint32_t *)x + at, &f32_specials[which], sizeof(uint32_t));
        else
            ((uint16_t *)x)[at] = (dt == QKV_BF16 ? bf16_specials : f16_specials)[which];
    }
    input_seal(in);
    return x;
}

/* n rows of type dt (stride ld elements, width columns) as contiguous
   floats, through the twin's conversions (F32 copied): what the driver
   hands gemm_nt and pv_tile on its other paths. */
static float *kv_as_floats(const qkv_kernels *twin, qkv_dtype dt, const void *rows,
                           int64_t n, int64_t width, int64_t ld)
{
    float *f = malloc((size_t)(n * width) * sizeof(float));
    for (int64_t j = 0; j < n; j++) {
        const void *row = kv_at(dt, rows, j * ld);
        if (dt == QKV_F32)
            memcpy(f + j * width, row, (size_t)width * sizeof(float));
        else
            (dt == QKV_BF16 ? twin->cvt_bf16_f32 : twin->cvt_f16_f32)(width, row, f + j * width);
    }
    return f;
}

/* Outputs whose double reference is inf or NaN, checked so far: the
   special-value tests must see some. */
static int64_t stream_nonfinite_checked;

/* check_close, where the double reference may be inf or NaN (special
   inputs): then got must be the same infinity, or a NaN. */
static void check_stream_value(worst *w, double got, double want, double tol,
                             const char *what, int64_t i, int64_t j)
{
    if (isnan(want) || isinf(want)) {
        stream_nonfinite_checked++;
        if (isnan(want) ? isnan(got) : got == want)
            return;
        w->failures++;
        note("%s[%lld][%lld]: got %.9g, want %.9g", what, (long long)i,
             (long long)j, got, want);
        return;
    }
    check_close(w, got, want, tol, what, i, j);
}

/* Bit-level identity of two m x cols outputs (row strides ld). */
static void check_same_bits(worst *w, const float *got, const float *want,
                            int64_t m, int64_t cols, int64_t ld, const char *what)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < cols; j++)
            if (!same_float(got[i * ld + j], want[i * ld + j])) {
                w->failures++;
                note("%s[%lld][%lld]: %a, want %a bit for bit", what, (long long)i,
                     (long long)j, got[i * ld + j], want[i * ld + j]);
                return;
            }
}

static void qk_stream_run(const qkv_kernels *kt, qkv_dtype dt, int64_t m, int64_t n,
                          int64_t k, const float *a, int64_t lda,
                          const void *b, int64_t ldb, const void *b_next,
                          out_buf *o, worst *w)
{
    const int64_t ldc = n + 5;
    float *c = out_alloc(o, m, n, ldc);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            c[i * ldc + j] = 1e30f;     /* every element must be written */
    out_snapshot(o);
    kt->qk_stream(dt, m, n, k, a, lda, b, ldb, c, ldc, b_next);
    if (!out_intact(o, "qk_stream C"))
        w->failures++;
}

/* The twin's definition: the scalar qk_stream equals converting B with the
   scalar cvt (F32: as it is) and calling the scalar gemm_nt, bit for bit. */
static void qk_stream_twin_definition(const qkv_kernels *twin, qkv_dtype dt,
                                      int64_t m, int64_t n, int64_t k,
                                      const float *a, int64_t lda,
                                      const void *b, int64_t ldb,
                                      const out_buf *twin_out, worst *w)
{
    float *bf = kv_as_floats(twin, dt, b, n, k, ldb);
    float *c = malloc((size_t)(m * twin_out->ld) * sizeof(float));
    float *scratch = aligned_alloc(QKV_SCRATCH_ALIGN,
        (size_t)((QKV_GEMM_SCRATCH_FLOATS(n, k) + 15) / 16 * 16) * sizeof(float));
    twin->gemm_nt(m, n, k, a, lda, bf, k, NULL, c, twin_out->ld, scratch);
    check_same_bits(w, twin_out->data, c, m, n, twin_out->ld,
                    "scalar qk_stream vs cvt + gemm_nt");
    free(bf);
    free(c);
    free(scratch);
}

static void qk_stream_case(const qkv_kernels *kt, const qkv_kernels *twin,
                           qkv_dtype dt, int64_t m, int64_t n, int64_t k,
                           int specials, worst *w)
{
    const int64_t lda = k + 3, ldb = k + 1;
    input_buf ia, ib;
    float *a = input_floats(&ia, (m - 1) * lda + k);
    fill_uniform(a, (m - 1) * lda + k, -1.0f, 1.0f);
    for (int64_t i = 0; i < (m - 1) * lda + k; i++)
        if (a[i] == 0.0f)
            a[i] = 0.5f;   /* inf * 0 would make NaN where inf is meant */
    input_seal(&ia);
    const void *b = kv_input(&ib, dt, n, k, ldb, specials);

    /* The prefetch hint: "next" rows one row on, so that the last one lies
       past the end of B, on the guard page: a hint must not fault, nor
       change a bit of the result. */
    out_buf got, twin_out, no_hint;
    qk_stream_run(kt, dt, m, n, k, a, lda, b, ldb, kv_at(dt, b, ldb), &got, w);
    qk_stream_run(kt, dt, m, n, k, a, lda, b, ldb, NULL, &no_hint, w);
    check_same_bits(w, got.data, no_hint.data, m, n, got.ld, "qk_stream with vs without b_next");
    qk_stream_run(twin, dt, m, n, k, a, lda, b, ldb, NULL, &twin_out, w);
    qk_stream_twin_definition(twin, dt, m, n, k, a, lda, b, ldb, &twin_out, w);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double dot = 0.0, mag = 0.0;
            for (int64_t p = 0; p < k; p++) {
                const double term = (double)a[i * lda + p] * kv_ref(dt, b, j * ldb + p);
                dot += term;
                mag += fabs(term);
            }
            const double tol = (double)(k + 2) * FLT_EPSILON * mag + FLT_MIN;
            const float c = got.data[i * got.ld + j];
            check_stream_value(w, c, dot, tol, "qk_stream vs double", i, j);
            check_stream_value(w, c, twin_out.data[i * got.ld + j], 2 * tol,
                             "qk_stream vs scalar", i, j);
        }
    w->cases++;
    out_free(&got);
    out_free(&no_hint);
    out_free(&twin_out);
    input_free(&ia);
    input_free(&ib);
}

static void pv_stream_run(const qkv_kernels *kt, qkv_dtype dt, int64_t m, int64_t n,
                          int64_t dv, const float *p, int64_t ldp,
                          const void *v, int64_t ldv, const void *v_next,
                          const float *alpha, const float *acc0, out_buf *o, worst *w)
{
    const int64_t ldacc = dv + 2;
    float *acc = out_alloc(o, m, dv, ldacc);
    for (int64_t i = 0; i < m; i++)
        memcpy(acc + i * ldacc, acc0 + i * dv, (size_t)dv * sizeof(float));
    out_snapshot(o);
    kt->pv_stream(dt, m, n, dv, p, ldp, v, ldv, alpha, acc, ldacc, v_next);
    if (!out_intact(o, "pv_stream acc"))
        w->failures++;
}

/* The twin's definition: the scalar pv_stream equals converting V with the
   scalar cvt (F32: as it is) and calling the scalar pv_tile, bit for bit. */
static void pv_stream_twin_definition(const qkv_kernels *twin, qkv_dtype dt,
                                      int64_t m, int64_t n, int64_t dv,
                                      const float *p, int64_t ldp,
                                      const void *v, int64_t ldv,
                                      const float *alpha, const float *acc0,
                                      const out_buf *twin_out, worst *w)
{
    const int64_t ld = twin_out->ld;
    float *vf = kv_as_floats(twin, dt, v, n, dv, ldv);
    float *acc = malloc((size_t)(m * ld) * sizeof(float));
    for (int64_t i = 0; i < m; i++)
        memcpy(acc + i * ld, acc0 + i * dv, (size_t)dv * sizeof(float));
    twin->pv_tile(m, n, dv, p, ldp, vf, dv, alpha, acc, ld);
    check_same_bits(w, twin_out->data, acc, m, dv, ld, "scalar pv_stream vs cvt + pv_tile");
    free(vf);
    free(acc);
}

static void pv_stream_case(const qkv_kernels *kt, const qkv_kernels *twin,
                           qkv_dtype dt, int64_t m, int64_t n, int64_t dv,
                           int specials, worst *w)
{
    const int64_t ldp = n + 3, ldv = dv + 1;
    input_buf ip, iv, ialpha;
    float *p = input_floats(&ip, (m - 1) * ldp + n);
    float *alpha = input_floats(&ialpha, m);
    fill_uniform(p, (m - 1) * ldp + n, 0.0f, 1.0f);
    for (int64_t i = 0; i < m; i++)
        alpha[i] = i % 3 == 0 ? 1.0f : i % 3 == 1 ? rng_uniform(0.0f, 1.0f) : 0.0f;
    input_seal(&ip);
    input_seal(&ialpha);
    const void *v = kv_input(&iv, dt, n, dv, ldv, specials);
    float *acc0 = malloc((size_t)(m * dv) * sizeof(float));
    fill_uniform(acc0, m * dv, -4.0f, 4.0f);

    /* The prefetch hint reaches past the end of V, as in qk_stream_case. */
    out_buf got, twin_out, no_hint;
    pv_stream_run(kt, dt, m, n, dv, p, ldp, v, ldv, kv_at(dt, v, ldv), alpha, acc0, &got, w);
    pv_stream_run(kt, dt, m, n, dv, p, ldp, v, ldv, NULL, alpha, acc0, &no_hint, w);
    check_same_bits(w, got.data, no_hint.data, m, dv, got.ld, "pv_stream with vs without v_next");
    pv_stream_run(twin, dt, m, n, dv, p, ldp, v, ldv, NULL, alpha, acc0, &twin_out, w);
    pv_stream_twin_definition(twin, dt, m, n, dv, p, ldp, v, ldv, alpha, acc0,
                              &twin_out, w);
    for (int64_t i = 0; i < m; i++)
        for (int64_t c = 0; c < dv; c++) {
            double sum = (double)alpha[i] * acc0[i * dv + c];
            double mag = fabs(sum);
            for (int64_t j = 0; j < n; j++) {
                const double term = (double)p[i * ldp + j] * kv_ref(dt, v, j * ldv + c);
                sum += term;
                mag += fabs(term);
            }
            const double tol = (double)(n + 3) * FLT_EPSILON * mag + FLT_MIN;
            const float out = got.data[i * got.ld + c];
            check_stream_value(w, out, sum, tol, "pv_stream vs double", i, c);
            check_stream_value(w, out, twin_out.data[i * got.ld + c], 2 * tol,
                             "pv_stream vs scalar", i, c);
        }
    w->cases++;
    free(acc0);
    out_free(&got);
    out_free(&no_hint);
    out_free(&twin_out);
    input_free(&ip);
    input_free(&iv);
    input_free(&ialpha);
}

/* One of the two kernels over every decode shape, every storage type;
   with `specials`, K or V hold inf, NaN and subnormal values. */
static void test_stream_kernel(const qkv_kernels *kt, const qkv_kernels *twin,
                             int pv, int specials)
{
    const char *name = pv ? "pv_stream" : "qk_stream";
    char what[64];
    snprintf(what, sizeof what, "%s%s", name, specials ? " specials" : "");
    tap_begin(kt->isa, what);
    if (pv ? !kt->pv_stream : !kt->qk_stream) {
        tap_result(0, "%s %s: missing from the table", qkv_isa_name(kt->isa), name);
        return;
    }
    worst w = {0};
    stream_nonfinite_checked = 0;
    const int64_t n_keys = (int64_t)(sizeof stream_keys / sizeof stream_keys[0]);
    const int64_t n_depths = (int64_t)(sizeof stream_depths / sizeof stream_depths[0]);
    static const qkv_dtype types[] = {QKV_F16, QKV_BF16, QKV_F32};
    for (int t = 0; t < 3; t++)
        for (int64_t m = 1; m <= STREAM_MAX_ROWS; m += quick_rows_step(m, STREAM_MAX_ROWS))
            for (int64_t x = 0; x < n_keys; x++)
                for (int64_t y = 0; y < n_depths; y++) {
                    const qkv_dtype dt = types[t];
                    if (pv)
                        pv_stream_case(kt, twin, dt, m, stream_keys[x], stream_depths[y], specials, &w);
                    else
                        qk_stream_case(kt, twin, dt, m, stream_keys[x], stream_depths[y], specials, &w);
                }
    if (specials && stream_nonfinite_checked == 0) {
        w.failures++;
        note("no output was inf or NaN: the special values were not exercised");
    }
    tap_result(w.failures == 0, "%s %s: %lld shapes (f16, bf16, f32) vs double and scalar, worst err/tol %.3g, %lld inf/NaN outputs",
               qkv_isa_name(kt->isa), what, (long long)w.cases, w.ratio,
               (long long)stream_nonfinite_checked);
}

/* ------------------------------------------------------------------ */
/* Golden cases through the public API                                */
/* ------------------------------------------------------------------ */

static void test_golden(qkv_isa isa)
{
    char **names = NULL;
    const int count = golden_list(&names);
    if (count <= 0) {
        tap_result(0, "%s golden: no golden cases found in %s", qkv_isa_name(isa),
                   golden_data_dir());
        return;
    }
    if (qkv_isa_set(isa) != QKV_OK) {
        tap_result(0, "%s golden: qkv_isa_set failed", qkv_isa_name(isa));
        golden_list_free(names, count);
        return;
    }
    double worst_ratio = 0.0;
    char worst_case[160] = "none";
    for (int i = 0; i < count; i++) {
        char path[4096], err[256];
        snprintf(path, sizeof path, "%s/%s.txt", golden_data_dir(), names[i]);
        golden_case c;
        tap_begin(isa, names[i]);
        if (golden_load(path, &c, err, (int)sizeof err) != 0) {
            tap_result(0, "%s golden %s: cannot load: %s", qkv_isa_name(isa), names[i], err);
            continue;
        }
        golden_result r;
        memset(&r, 0, sizeof r);
        const int rc = golden_run(&c, 1, &r);
        tap_result(rc == 0, "%s golden %s: status %d, %lld values, worst ratio %.3g at %s",
                   qkv_isa_name(isa), names[i], r.status, (long long)r.values_checked,
                   r.worst_ratio, r.worst_where);
        if (r.worst_ratio > worst_ratio) {
            worst_ratio = r.worst_ratio;
            snprintf(worst_case, sizeof worst_case, "%.63s %.80s", names[i], r.worst_where);
        }
        golden_free(&c);
    }
    printf("# %s worst golden ratio %.4g (%s)\n", qkv_isa_name(isa), worst_ratio, worst_case);
    golden_list_free(names, count);
    qkv_isa_set(QKV_ISA_AUTO);
}

/* ------------------------------------------------------------------ */
/* Driver                                                             */
/* ------------------------------------------------------------------ */

static void check_isa(qkv_isa isa)
{
    const qkv_kernels *kt = qkv_kernels_for(isa);
    const qkv_kernels *twin = qkv_kernels_for(QKV_ISA_SCALAR);
    printf("# ISA %s (block_q %lld, block_k %lld)\n", qkv_isa_name(isa),
           (long long)kt->block_q, (long long)kt->block_k);
    tap_begin(isa, "table");
    tap_result(kt->isa == isa && kt->block_q > 0 && kt->block_k > 0 && kt->gemm_nt &&
               kt->softmax_tile && kt->pv_tile && kt->exp_shift_scale && kt->add_base2 && kt->softcap &&
               kt->alibi && kt->scale_row &&
               kt->cvt_f16_f32 && kt->cvt_bf16_f32 && kt->pack_nt && kt->gemm_packed,
               "%s table is complete", qkv_isa_name(isa));
    test_gemm(kt, twin);
    test_gemm_packed(kt, twin);
    test_gemm_packed_prefix(kt);
    test_gemm_driver(kt, twin);
    test_pv(kt, twin);
    test_softmax(kt, twin);
    test_exp_shift_scale(kt);
    test_add_base2(kt, twin);
    test_softcap(kt, twin);
    test_alibi(kt, twin);
    test_scale_row(kt, twin);
    test_exp_sweep(kt);
    test_softmax_exp_sweep(kt);
    test_cvt_all(kt, twin, 0);
    test_cvt_all(kt, twin, 1);
    test_cvt_tails(kt);
    test_stream_kernel(kt, twin, 0, 0);
    test_stream_kernel(kt, twin, 0, 1);
    test_stream_kernel(kt, twin, 1, 0);
    test_stream_kernel(kt, twin, 1, 1);
    test_golden(isa);
}

static const qkv_isa all_isas[] = {
    QKV_ISA_SCALAR, QKV_ISA_AVX2, QKV_ISA_AVX512, QKV_ISA_NEON,
};

/* The exit status of a run whose ISA is unavailable: 77 (the automake /
   meson "skipped" code) by default; meson's TAP protocol wants 0 and reads
   the skip from the "1..0 # SKIP" plan, so tests/meson.build passes
   --skip-status=0. */
static int skip_status = 77;

static int parse_args(int argc, char **argv, qkv_isa *only)
{
    *only = QKV_ISA_AUTO;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick_mode = 1;
        } else if (strcmp(argv[i], "--no-guard") == 0) {
            guard_pages = 0;
        } else if (strncmp(argv[i], "--skip-status=", 14) == 0) {
            skip_status = atoi(argv[i] + 14);
        } else if (strncmp(argv[i], "--isa=", 6) == 0) {
            int found = 0;
            for (size_t j = 0; j < sizeof all_isas / sizeof all_isas[0]; j++)
                if (strcmp(argv[i] + 6, qkv_isa_name(all_isas[j])) == 0) {
                    *only = all_isas[j];
                    found = 1;
                }
            if (!found) {
                fprintf(stderr, "unknown ISA '%s'\n", argv[i] + 6);
                return -1;
            }
        } else {
            fprintf(stderr, "usage: %s [--isa=scalar|avx2|avx512|neon] [--quick] [--no-guard] [--skip-status=N]\n",
                    argv[0]);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    qkv_isa only;
    if (parse_args(argc, argv, &only) != 0)
        return 2;
    signal(SIGSEGV, on_fault);
    signal(SIGBUS, on_fault);
    /* What dispatch picks on its own (QKV_ISA unset): the emulated runs
       check it. */
    printf("# active ISA %s\n", qkv_isa_name(qkv_isa_active()));
    if (only != QKV_ISA_AUTO && !qkv_kernels_for(only)) {
        printf("1..0 # SKIP %s is not available on this CPU or in this build\n",
               qkv_isa_name(only));
        return skip_status;
    }
    for (size_t i = 0; i < sizeof all_isas / sizeof all_isas[0]; i++) {
        const qkv_isa isa = all_isas[i];
        if ((only == QKV_ISA_AUTO || only == isa) && qkv_kernels_for(isa))
            check_isa(isa);
    }
    printf("1..%d\n", tap_count);
    if (tap_failed)
        printf("# %d of %d failed\n", tap_failed, tap_count);
    return tap_failed ? 1 : 0;
}
