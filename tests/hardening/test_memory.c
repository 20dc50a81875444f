/*
 * Peak memory of qkv_sdpa without weights: the flash-style driver keeps
 * O(threads x block) scratch and never stores the Lq x Lk scores. For
 * Lq = Lk = 16384, H = 1, D = 64 the scores alone would be 1 GiB; the
 * process's peak resident set (VmHWM) may grow by at most SLACK_MIB over
 * what it was with the inputs and the output allocated and touched.
 * Sampled output rows are checked against the double reference. Skipped
 * under AddressSanitizer, whose shadow memory makes RSS meaningless.
 * TAP output.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"
#include "ref/ref.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifdef UNDER_ASAN
int main(void)
{
    printf("1..0 # SKIP peak RSS is meaningless under AddressSanitizer\n");
    return 0;
}
#else
enum { L = 16384, D = 64, SLACK_MIB = 16, SAMPLES = 8 };

/* The peak resident set size of this process, in KiB (-1 if unknown). */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

int main(void)
{
    hu_tensor q = hu_tensor_new(QKV_F32, 1, 1, L, D, 1);
    hu_tensor k = hu_tensor_new(QKV_F32, 1, 1, L, D, 2);
    hu_tensor v = hu_tensor_new(QKV_F32, 1, 1, L, D, 3);
    float *out = malloc((size_t)L * D * sizeof *out);
    if (!out)
        return 1;
    /* Touched (not zeroed: the compiler may turn malloc + memset 0 into
       calloc, which leaves fresh pages untouched), so the baseline counts it. */
    for (size_t i = 0; i < (size_t)L * D; i++)
        out[i] = -1.0f;
    const long before = peak_rss_kib();
    if (!hu_check(before > 0, "VmHWM is readable"))
        return hu_finish();

    const qkv_tensor out_t = qkv_tensor_bhsd(out, QKV_F32, 1, 1, L, D);
    const qkv_status st = qkv_sdpa(&q.t, &k.t, &v.t, &out_t, NULL);
    const long after = peak_rss_kib();
    const long extra = after - before;
    hu_note("isa %s: inputs + output %ld MiB; peak RSS %ld KiB before, %ld KiB after: +%ld KiB",
            qkv_isa_name(qkv_isa_active()), 4L * L * D * 4 >> 20, before, after, extra);
    hu_check(st == QKV_OK, "qkv_sdpa Lq = Lk = %d, D = %d succeeds", L, D);
    hu_check(extra < SLACK_MIB * 1024L, "peak RSS grows by %ld KiB < %d MiB (scores would be %d MiB)",
             extra, SLACK_MIB, (int)((int64_t)L * L * 4 >> 20));

    /* Rows 0, L/8, 2L/8, ...: a strided view of q, and the same rows of out. */
    qkv_tensor q_rows = q.t;
    q_rows.shape[2] = SAMPLES;
    q_rows.stride[2] = (int64_t)(L / SAMPLES) * D;
    double *want = malloc((size_t)SAMPLES * D * sizeof *want);
    float *got = malloc((size_t)SAMPLES * D * sizeof *got);
    if (!want || !got || ref_sdpa(&q_rows, &k.t, &v.t, NULL, want, NULL, NULL))
        return 1;
    for (int s = 0; s < SAMPLES; s++)
        memcpy(got + s * D, out + (size_t)s * (L / SAMPLES) * D, D * sizeof *got);
    hu_check(st == QKV_OK && hu_close("out", got, want, SAMPLES * D, 0.0),
             "%d sampled rows match the double reference", SAMPLES);
    free(want);
    free(got);
    free(out);
    hu_tensor_free(&q);
    hu_tensor_free(&k);
    hu_tensor_free(&v);
    return hu_finish();
}
#endif
