/*
 * FMA peak and read bandwidth of one core; see peak.h.
 *
 * The ISA-specific loops use GCC function attributes
 * (__attribute__((target("avx2,fma"))), target("avx512f")) instead of
 * per-file ISA flags: the project keeps -mavx2 and friends on
 * kernels/<isa>/ only, so that everything else, this file included, is
 * compiled for the baseline target and runs on any x86-64 CPU. Each
 * attributed function is called only after the CPU has been checked, so
 * no AVX instruction can leak into code that runs unconditionally.
 *
 * The peak loop runs PEAK_CHAINS independent chains x = x * mul + add:
 * with an FMA latency of 4 cycles and two FMA ports, 8 chains keep every
 * port busy; 12 leave margin for cores with longer latency. mul < 1 makes
 * each chain converge to add / (1 - mul), so no value overflows or goes
 * subnormal however long the loop runs.
 */
#include "peak.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bench_util.h"

#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

enum { PEAK_CHAINS = 12 };

/* Inputs the compiler cannot see through, so it cannot fold the loops. */
static volatile float peak_mul = 0.999999f, peak_add = 1e-6f;

/* One loop per ISA: returns a value that depends on every chain. */
typedef float (*fma_loop_fn)(int64_t iters);

/* ---- scalar ---------------------------------------------------------- */

#if defined(__x86_64__)
/* Baseline x86-64 has no FMA instruction; fmaf would be a libm call.
   With the fma target the builtin becomes vfmadd231ss. */
__attribute__((target("fma")))
#endif
static float fma_loop_scalar(int64_t iters)
{
    const float mul = peak_mul, add = peak_add;
    float x[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++)
        x[c] = (float)c;
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < PEAK_CHAINS; c++)
            x[c] = __builtin_fmaf(x[c], mul, add);
    }
    float sum = 0.0f;
    for (int c = 0; c < PEAK_CHAINS; c++)
        sum += x[c];
    return sum;
}

/* ---- x86-64: AVX2 (ymm) and AVX-512 (zmm) ---------------------------- */

#if defined(__x86_64__)
__attribute__((target("avx2,fma")))
static float fma_loop_avx2(int64_t iters)
{
    const __m256 mul = _mm256_set1_ps(peak_mul), add = _mm256_set1_ps(peak_add);
    __m256 x[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++)
        x[c] = _mm256_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < PEAK_CHAINS; c++)
            x[c] = _mm256_fmadd_ps(x[c], mul, add);
    }
    __m256 sum = x[0];
    for (int c = 1; c < PEAK_CHAINS; c++)
        sum = _mm256_add_ps(sum, x[c]);
    return _mm256_cvtss_f32(sum);
}

__attribute__((target("avx512f")))
static float fma_loop_avx512(int64_t iters)
{
    const __m512 mul = _mm512_set1_ps(peak_mul), add = _mm512_set1_ps(peak_add);
    __m512 x[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++)
        x[c] = _mm512_set1_ps((float)c);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < PEAK_CHAINS; c++)
            x[c] = _mm512_fmadd_ps(x[c], mul, add);
    }
    __m512 sum = x[0];
    for (int c = 1; c < PEAK_CHAINS; c++)
        sum = _mm512_add_ps(sum, x[c]);
    return _mm512_reduce_add_ps(sum);
}
#endif

/* ---- AArch64: NEON (q registers, baseline there) --------------------- */

#if defined(__aarch64__)
static float fma_loop_neon(int64_t iters)
{
    const float32x4_t mul = vdupq_n_f32(peak_mul), add = vdupq_n_f32(peak_add);
    float32x4_t x[PEAK_CHAINS];
    for (int c = 0; c < PEAK_CHAINS; c++)
        x[c] = vdupq_n_f32((float)c);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < PEAK_CHAINS; c++)
            x[c] = vfmaq_f32(add, x[c], mul);
    }
    float32x4_t sum = x[0];
    for (int c = 1; c < PEAK_CHAINS; c++)
        sum = vaddq_f32(sum, x[c]);
    return vaddvq_f32(sum);
}
#endif

/* The loop and its vector width (floats) for isa; NULL if none here. */
static fma_loop_fn fma_loop_for(qkv_isa isa, int *lanes)
{
    switch (isa) {
    case QKV_ISA_SCALAR:
#if defined(__x86_64__)
        if (!__builtin_cpu_supports("fma"))
            return NULL;
#endif
        *lanes = 1;
        return fma_loop_scalar;
#if defined(__x86_64__)
    case QKV_ISA_AVX2:
        *lanes = 8;
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
                   ? fma_loop_avx2 : NULL;
    case QKV_ISA_AVX512:
        *lanes = 16;
        return __builtin_cpu_supports("avx512f") ? fma_loop_avx512 : NULL;
#endif
#if defined(__aarch64__)
    case QKV_ISA_NEON:
        *lanes = 4;
        return fma_loop_neon;
#endif
    default:
        return NULL;
    }
}

/* Keeps a result alive so that the loops are not removed. */
static volatile float peak_sink;

/* Iterations of one ~2 ms pass of isa's loop (calibrated on first use). */
static int64_t pass_iters[QKV_ISA_NEON + 1];

static int64_t calibrated_iters(qkv_isa isa, fma_loop_fn loop)
{
    if (pass_iters[isa] > 0)
        return pass_iters[isa];
    int64_t iters = 1 << 10;
    for (;;) {
        const double t0 = bench_thread_ns();
        peak_sink = loop(iters);
        if (bench_thread_ns() - t0 > 2e6 || iters > ((int64_t)1 << 40))
            break;
        iters *= 2;
    }
    return pass_iters[isa] = iters;
}

/* The best GFLOP/s of `passes` passes after warm_passes untimed ones.
   Thread CPU time, so that a pass during which the thread was descheduled
   is not counted short. */
static double best_of_passes(qkv_isa isa, int warm_passes, int passes)
{
    int lanes = 0;
    const fma_loop_fn loop = fma_loop_for(isa, &lanes);
    if (!loop)
        return 0.0;
    const int64_t iters = calibrated_iters(isa, loop);
    peak_sink = loop(iters * warm_passes);
    double best = 0.0;
    for (int pass = 0; pass < passes; pass++) {
        const double t0 = bench_thread_ns();
        peak_sink = loop(iters);
        const double ns = bench_thread_ns() - t0;
        const double gflops = 2.0 * PEAK_CHAINS * lanes * (double)iters / ns;
        if (gflops > best)
            best = gflops;
    }
    return best;
}

/* About 20 ms of warm-up brings the core to the clock (and, for zmm, the
   frequency licence) it will keep; then the best of 30 passes. */
double bench_fma_peak_gflops(qkv_isa isa)
{
    return best_of_passes(isa, 10, 30);
}

/* A short re-measurement (about 25 ms) for use right beside a benchmark. */
double bench_fma_peak_now_gflops(qkv_isa isa)
{
    return best_of_passes(isa, 2, 10);
}

/* ---- read bandwidth -------------------------------------------------- */

/* Sums n floats (n a multiple of 64) with four vector accumulators, so
   that the adds never wait on each other and the loads set the pace. */
typedef float (*sum_fn)(const float *x, size_t n);

#if defined(__x86_64__)
__attribute__((target("avx512f")))
static float sum_avx512(const float *x, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(x + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(x + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(x + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(x + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1),
                                              _mm512_add_ps(s2, s3)));
}

__attribute__((target("avx2")))
static float sum_avx2(const float *x, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 64) {
        for (size_t j = 0; j < 64; j += 32) {
            s0 = _mm256_add_ps(s0, _mm256_load_ps(x + i + j));
            s1 = _mm256_add_ps(s1, _mm256_load_ps(x + i + j + 8));
            s2 = _mm256_add_ps(s2, _mm256_load_ps(x + i + j + 16));
            s3 = _mm256_add_ps(s3, _mm256_load_ps(x + i + j + 24));
        }
    }
    const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    return _mm256_cvtss_f32(s);
}

/* SSE2 is part of baseline x86-64. */
static float sum_sse2(const float *x, size_t n)
{
    __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 16) {
        s0 = _mm_add_ps(s0, _mm_load_ps(x + i));
        s1 = _mm_add_ps(s1, _mm_load_ps(x + i + 4));
        s2 = _mm_add_ps(s2, _mm_load_ps(x + i + 8));
        s3 = _mm_add_ps(s3, _mm_load_ps(x + i + 12));
    }
    return _mm_cvtss_f32(_mm_add_ps(_mm_add_ps(s0, s1), _mm_add_ps(s2, s3)));
}
#endif

#if defined(__aarch64__)
static float sum_neon(const float *x, size_t n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < n; i += 16) {
        s0 = vaddq_f32(s0, vld1q_f32(x + i));
        s1 = vaddq_f32(s1, vld1q_f32(x + i + 4));
        s2 = vaddq_f32(s2, vld1q_f32(x + i + 8));
        s3 = vaddq_f32(s3, vld1q_f32(x + i + 12));
    }
    return vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
}
#endif

#if !defined(__x86_64__) && !defined(__aarch64__)
/* Plain C for other targets. */
static float sum_plain(const float *x, size_t n)
{
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (size_t i = 0; i < n; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += x[i + (size_t)j];
    return s[0] + s[1] + s[2] + s[3];
}
#endif

static sum_fn widest_sum(void)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f"))
        return sum_avx512;
    if (__builtin_cpu_supports("avx2"))
        return sum_avx2;
    return sum_sse2;
#elif defined(__aarch64__)
    return sum_neon;
#else
    return sum_plain;
#endif
}

double bench_read_bandwidth_gbs(size_t bytes)
{
    const size_t n = bytes / sizeof(float) / 64 * 64;
    float *x = bench_alloc(n * sizeof *x);
    /* Touch every page before timing; small values keep the sum finite. */
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(i & 7) * 0.125f;
    const sum_fn sum = widest_sum();
    double best = 0.0;
    for (int pass = 0; pass < 4; pass++) {
        const double t0 = bench_thread_ns();
        peak_sink = sum(x, n);
        const double gbs = (double)(n * sizeof *x) / (bench_thread_ns() - t0);
        if (gbs > best)
            best = gbs;
    }
    bench_free(x);
    return best;
}
