/* Attention through OpenBLAS, the baseline of qkv-bench; see blas_attn.h. */
#include "blas_attn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__linux__)
#include <unistd.h>
#endif

#include "bench_util.h"

#if QKV_BENCH_HAVE_CBLAS

#include <cblas.h>

int bench_blas_available(void)
{
    return 1;
}

const char *bench_blas_name(void)
{
#if QKV_BENCH_HAVE_OPENBLAS_API
    static char name[256];
    snprintf(name, sizeof name, "%s (core %s)", openblas_get_config(),
             openblas_get_corename());
    return name;
#else
    return "CBLAS";
#endif
}

void bench_blas_set_threads(int threads)
{
#if QKV_BENCH_HAVE_OPENBLAS_API
    openblas_set_num_threads(threads);
#else
    (void)threads;
#endif
}

int64_t bench_blas_scratch_floats(int64_t lq, int64_t lk)
{
    /* The scores, then row_max, row_sum and alpha. */
    return lq * lk + 3 * lq;
}

/* Blocks keys j > i + shift of row i. */
static void mask_causal(int64_t lq, int64_t lk, float *s, int64_t shift)
{
    for (int64_t i = 0; i < lq; i++) {
        const int64_t first = i + shift + 1 < 0 ? 0 : i + shift + 1;
        for (int64_t j = first; j < lk; j++)
            s[i * lk + j] = -INFINITY;
    }
}

/* One (batch, head): q [lq, d], k [lk, d], v [lk, dv], out [lq, dv],
   each with its own row stride. */
typedef struct head_views {
    const float *q, *k, *v;
    float *out;
    int64_t ldq, ldk, ldv, ldo;
} head_views;

static void attention_head(const qkv_kernels *kt, const head_views *hv,
                           int64_t lq, int64_t lk, int64_t d, int64_t dv,
                           int causal, float *scratch, double *softmax_ns)
{
    float *s = scratch;
    float *row_max = s + lq * lk, *row_sum = row_max + lq, *alpha = row_sum + lq;
    /* softmax_tile takes logits in base-2 units (kernels.h). */
    const float scale = (float)(1.4426950408889634 / sqrt((double)d));

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)lq, (int)lk, (int)d,
                scale, hv->q, (int)hv->ldq, hv->k, (int)hv->ldk, 0.0f, s, (int)lk);

    const double t0 = bench_now_ns();
    if (causal)
        mask_causal(lq, lk, s, lk - lq);
    for (int64_t i = 0; i < lq; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    kt->softmax_tile(lq, lk, s, lk, row_max, row_sum, alpha);
    *softmax_ns += bench_now_ns() - t0;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)lq, (int)dv, (int)lk,
                1.0f, s, (int)lk, hv->v, (int)hv->ldv, 0.0f, hv->out, (int)hv->ldo);
    for (int64_t i = 0; i < lq; i++) {
        const float inv = row_sum[i] > 0.0f ? 1.0f / row_sum[i] : 0.0f;
        cblas_sscal((int)dv, inv, hv->out + i * hv->ldo, 1);
    }
}

int bench_blas_attention(const qkv_kernels *kt, const qkv_tensor *q,
                         const qkv_tensor *k, const qkv_tensor *v,
                         const qkv_tensor *out, int causal, float *scratch,
                         double *softmax_ns)
{
    if (q->dtype != QKV_F32 || k->dtype != QKV_F32 || v->dtype != QKV_F32 ||
        out->dtype != QKV_F32)
        return 0;
    const int64_t batch = q->shape[0], heads = q->shape[1];
    const int64_t group = heads / k->shape[1];
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t h = 0; h < heads; h++) {
            const int64_t g = h / group;
            const head_views hv = {
                .q = (const float *)q->data + b * q->stride[0] + h * q->stride[1],
                .k = (const float *)k->data + b * k->stride[0] + g * k->stride[1],
                .v = (const float *)v->data + b * v->stride[0] + g * v->stride[1],
                .out = (float *)out->data + b * out->stride[0] + h * out->stride[1],
                .ldq = q->stride[2], .ldk = k->stride[2],
                .ldv = v->stride[2], .ldo = out->stride[2],
            };
            attention_head(kt, &hv, q->shape[2], k->shape[2], q->shape[3],
                           v->shape[3], causal, scratch, softmax_ns);
        }
    }
    return 1;
}

int bench_blas_linear(int64_t m, int64_t n, int64_t k, const float *a,
                      const float *b, const float *bias, float *c)
{
    if (bias) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * n + j] = bias[j];
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k,
                1.0f, a, (int)k, b, (int)k, bias ? 1.0f : 0.0f, c, (int)n);
    return 1;
}

#else /* no CBLAS in this build */

int bench_blas_available(void)
{
    return 0;
}

const char *bench_blas_name(void)
{
    return "none";
}

void bench_blas_set_threads(int threads)
{
    (void)threads;
}

int64_t bench_blas_scratch_floats(int64_t lq, int64_t lk)
{
    (void)lq;
    (void)lk;
    return 0;
}

int bench_blas_attention(const qkv_kernels *kt, const qkv_tensor *q,
                         const qkv_tensor *k, const qkv_tensor *v,
                         const qkv_tensor *out, int causal, float *scratch,
                         double *softmax_ns)
{
    (void)kt; (void)q; (void)k; (void)v; (void)out; (void)causal;
    (void)scratch; (void)softmax_ns;
    return 0;
}

int bench_blas_linear(int64_t m, int64_t n, int64_t k, const float *a,
                      const float *b, const float *bias, float *c)
{
    (void)m; (void)n; (void)k; (void)a; (void)b; (void)bias; (void)c;
    return 0;
}

#endif

void bench_blas_restart_with_threads(int threads, char **argv)
{
#if QKV_BENCH_HAVE_OPENBLAS_API && defined(__linux__)
    if (getenv("OPENBLAS_NUM_THREADS"))
        return;
    char value[16];
    snprintf(value, sizeof value, "%d", threads);
    if (setenv("OPENBLAS_NUM_THREADS", value, 1) != 0)
        return;
    fflush(NULL);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_NUM_THREADS");   /* exec failed: carry on as we are */
#else
    (void)threads;
    (void)argv;
#endif
}
