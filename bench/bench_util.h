/*
 * Small helpers shared by the benchmarks: a monotonic clock, medians,
 * aligned buffers with reproducible contents, and a description of the
 * machine. Plain C, compiled for the baseline target like src/.
 */
#ifndef QKV_BENCH_UTIL_H
#define QKV_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The clock that bench_now_ns reads. The wall clock is what a user
   waits; the CPU time of the calling thread leaves out the time the
   thread was descheduled, which on a busy (shared, virtual) machine is
   much closer to what the code would take on an idle one. It counts only
   the calling thread, so it suits single-threaded runs only. */
typedef enum bench_clock { BENCH_CLOCK_WALL, BENCH_CLOCK_THREAD_CPU } bench_clock;
void bench_set_clock(bench_clock c);
const char *bench_clock_name(void);

/* Nanoseconds from the selected clock (monotonic; wall by default). */
double bench_now_ns(void);

/* Nanoseconds of CPU time of the calling thread, whatever the clock. */
double bench_thread_ns(void);

/* Page faults the process has taken so far (minor and major): a call
   that takes some is still being served fresh pages by the allocator. */
long bench_page_faults(void);

/* The median of n > 0 values; sorts v in place. */
double bench_median(double *v, int n);

/* 64-byte aligned memory of `bytes` bytes; exits with a message if it
   cannot be had (a benchmark has nothing sensible to do without it). */
void *bench_alloc(size_t bytes);
void bench_free(void *p);

/* Deterministic pseudo-random values in [lo, hi), from a seed that the
   caller advances so that different buffers differ. */
void bench_fill_f32(float *x, size_t n, float lo, float hi, uint64_t *seed);
/* The same values stored as binary16 or bfloat16 bit patterns (rounded
   to nearest even); used for K and V in F16 / BF16. */
void bench_fill_f16(uint16_t *x, size_t n, float lo, float hi, uint64_t *seed);
void bench_fill_bf16(uint16_t *x, size_t n, float lo, float hi, uint64_t *seed);

/* The "model name" line of /proc/cpuinfo (or a fallback) into buf. */
void bench_cpu_model(char *buf, size_t size);

/* Today's date as YYYY-MM-DD into buf (at least 11 bytes). */
void bench_date(char *buf, size_t size);

/* Writes s as a JSON string literal (with quotes) to stdout. */
void bench_json_string(const char *s);

#endif /* QKV_BENCH_UTIL_H */
