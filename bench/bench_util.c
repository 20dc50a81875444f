/* Helpers shared by the benchmarks; see bench_util.h. */
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static bench_clock selected_clock = BENCH_CLOCK_WALL;

void bench_set_clock(bench_clock c)
{
    selected_clock = c;
}

const char *bench_clock_name(void)
{
    return selected_clock == BENCH_CLOCK_WALL ? "wall" : "thread-cpu";
}

static double read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

double bench_now_ns(void)
{
    return read_clock(selected_clock == BENCH_CLOCK_WALL ? CLOCK_MONOTONIC
                                                          : CLOCK_THREAD_CPUTIME_ID);
}

double bench_thread_ns(void)
{
    return read_clock(CLOCK_THREAD_CPUTIME_ID);
}

long bench_page_faults(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return ru.ru_minflt + ru.ru_majflt;
}

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void *bench_alloc(size_t bytes)
{
    void *p = NULL;
    /* Round up: aligned_alloc wants a multiple of the alignment. */
    const size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0 || posix_memalign(&p, 64, rounded) != 0) {
        fprintf(stderr, "bench: cannot allocate %zu bytes\n", bytes);
        exit(2);
    }
    return p;
}

void bench_free(void *p)
{
    free(p);
}

/* splitmix64: tiny, good enough for test data, identical everywhere. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float uniform(float lo, float hi, uint64_t *seed)
{
    /* 24 random bits: every value is an exact float in [0, 1). */
    const float u = (float)(next_random(seed) >> 40) * 0x1p-24f;
    return lo + (hi - lo) * u;
}

void bench_fill_f32(float *x, size_t n, float lo, float hi, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = uniform(lo, hi, seed);
}

/* Round-to-nearest-even float -> binary16 for |x| < 65504 (the benchmarks
   only store small values): normal halves by rounding the fraction,
   subnormal halves by scaling to an integer multiple of 2^-24. */
static uint16_t f32_to_f16(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t mag = bits & 0x7fffffffu;
    if (mag >= 0x38800000u) {                    /* >= 2^-14: normal half */
        const uint32_t rounded = mag + 0xfffu + ((mag >> 13) & 1u);
        return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
    }
    return (uint16_t)(sign | (uint16_t)lrintf(fabsf(x) * 0x1p24f));
}

static uint16_t f32_to_bf16(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void bench_fill_f16(uint16_t *x, size_t n, float lo, float hi, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = f32_to_f16(uniform(lo, hi, seed));
}

void bench_fill_bf16(uint16_t *x, size_t n, float lo, float hi, uint64_t *seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = f32_to_bf16(uniform(lo, hi, seed));
}

void bench_cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        /* x86 says "model name", some AArch64 kernels only "CPU part". */
        if (strncmp(line, "model name", 10) == 0) {
            const char *colon = strchr(line, ':');
            if (colon) {
                snprintf(buf, size, "%s", colon + 2);
                buf[strcspn(buf, "\n")] = '\0';
            }
            break;
        }
    }
    fclose(f);
}

void bench_date(char *buf, size_t size)
{
    const time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%d", &tm);
}

void bench_json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        const unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}
