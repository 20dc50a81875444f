/* Helpers of the hardening tests and fuzz targets; see hard_util.h. */
#include "hard_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/ref.h"

uint64_t hu_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float hu_uniform(uint64_t *state, float lo, float hi)
{
    /* 24 random bits: every value is exactly representable. */
    const float unit = (float)(hu_next(state) >> 40) * 0x1p-24f;
    return lo + (hi - lo) * unit;
}

void hu_fill(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    uint64_t st = seed;
    for (int64_t i = 0; i < n; i++)
        x[i] = hu_uniform(&st, lo, hi);
}

hu_tensor hu_tensor_new(qkv_dtype dt, int64_t b, int64_t h, int64_t s, int64_t d,
                        uint64_t seed)
{
    hu_tensor r;
    r.count = b * h * s * d;
    const size_t elem = dt == QKV_F32 ? sizeof(float) : sizeof(uint16_t);
    void *data = malloc((size_t)r.count * elem);
    if (!data) {
        fprintf(stderr, "hu_tensor_new: out of memory\n");
        abort();
    }
    uint64_t st = seed;
    for (int64_t i = 0; i < r.count; i++) {
        const float x = hu_uniform(&st, -1.0f, 1.0f);
        if (dt == QKV_F16)
            ((uint16_t *)data)[i] = ref_f32_to_f16(x);
        else if (dt == QKV_BF16)
            ((uint16_t *)data)[i] = ref_f32_to_bf16(x);
        else
            ((float *)data)[i] = x;
    }
    r.t = qkv_tensor_bhsd(data, dt, b, h, s, d);
    return r;
}

void hu_tensor_free(hu_tensor *t)
{
    free(t->t.data);
    t->t.data = NULL;
}

int hu_close(const char *what, const float *got, const double *want, int64_t n,
             double abs_tol)
{
    double max_abs = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > max_abs)
            max_abs = fabs(want[i]);
    double worst = 0.0;
    int64_t worst_i = -1;
    for (int64_t i = 0; i < n; i++) {
        double ratio;
        if (!isfinite(want[i]))
            ratio = (double)got[i] == want[i] ? 0.0 : INFINITY;
        else if (isnan(got[i]))
            ratio = INFINITY;
        else
            ratio = fabs((double)got[i] - want[i]) /
                    (1e-5 * max_abs + 1e-4 * fabs(want[i]) + abs_tol);
        if (ratio > worst || (worst_i < 0 && ratio > 1.0)) {
            worst = ratio;
            worst_i = i;
        }
    }
    if (worst > 1.0) {
        fprintf(stderr, "%s: index %lld got %.9g want %.12g (%.3g x tolerance)\n",
                what, (long long)worst_i, (double)got[worst_i], want[worst_i], worst);
        return 0;
    }
    return 1;
}

int hu_same_bits(const void *a, const void *b, size_t bytes)
{
    return memcmp(a, b, bytes) == 0;
}

int hu_isas(qkv_isa list[4])
{
    static const qkv_isa all[] = {QKV_ISA_SCALAR, QKV_ISA_NEON, QKV_ISA_AVX2,
                                  QKV_ISA_AVX512};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (qkv_isa_supported(all[i]))
            list[n++] = all[i];
    return n;
}

static int checks_run, checks_failed;

int hu_check(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++checks_run);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    if (!cond)
        checks_failed++;
    return cond;
}

void hu_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("# ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

int hu_finish(void)
{
    printf("1..%d\n", checks_run);
    if (checks_failed)
        printf("# %d of %d checks failed\n", checks_failed, checks_run);
    return checks_failed ? 1 : 0;
}
