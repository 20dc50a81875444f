/*
 * The naive double-precision reference (see ref.h). Everything is written
 * the obvious way: one logit at a time, a two-pass softmax with the row
 * maximum subtracted, no blocking. It shares nothing with libqkv but the
 * public types, and converts F16/BF16 with its own arithmetic (frexp /
 * ldexp / rint rather than bit tricks), so a bug in the library's kernels
 * cannot hide in a bug shared with the reference.
 *
 * Built with -ffp-contract=off: no fused multiply-adds sneak in.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Small floating-point formats                                       */
/* ------------------------------------------------------------------ */

/* A binary floating-point format with `mant_bits` stored mantissa bits
   and `exp_bits` exponent bits, IEEE layout (sign, exponent, mantissa). */
typedef struct small_format { int mant_bits, exp_bits; } small_format;

static const small_format FMT_F16 = {10, 5};
static const small_format FMT_BF16 = {7, 8};

/* x rounded to the format, round-to-nearest-even (rint under the default
   rounding mode), with overflow to infinity and gradual underflow. */
static uint16_t encode_small(double x, small_format f)
{
    const int bias = (1 << (f.exp_bits - 1)) - 1;
    const int emin = 1 - bias, emax = bias;
    const uint32_t exp_all_ones = (1u << f.exp_bits) - 1;
    const uint32_t sign = signbit(x) ? 1u << (f.mant_bits + f.exp_bits) : 0;
    const double hidden = ldexp(1.0, f.mant_bits);

    if (isnan(x))   /* a quiet NaN: all-ones exponent, top mantissa bit */
        return (uint16_t)(sign | exp_all_ones << f.mant_bits | 1u << (f.mant_bits - 1));
    if (isinf(x))
        return (uint16_t)(sign | exp_all_ones << f.mant_bits);
    const double a = fabs(x);
    if (a == 0.0)
        return (uint16_t)sign;

    int e;
    frexp(a, &e);
    int exponent = e - 1;            /* a = 1.m * 2^exponent */
    if (exponent < emin)
        exponent = emin;             /* subnormal: fixed scale */
    double m = rint(ldexp(a, f.mant_bits - exponent));
    if (m >= 2.0 * hidden) {         /* rounding carried into a new binade */
        m /= 2.0;
        exponent++;
    }
    if (m < hidden)                  /* subnormal (or rounded up to the smallest normal below) */
        return (uint16_t)(sign | (uint32_t)m);
    if (exponent > emax)
        return (uint16_t)(sign | exp_all_ones << f.mant_bits);
    return (uint16_t)(sign | (uint32_t)(exponent + bias) << f.mant_bits |
                      (uint32_t)(m - hidden));
}

static double decode_small(uint16_t bits, small_format f)
{
    const int bias = (1 << (f.exp_bits - 1)) - 1;
    const uint32_t mant_mask = (1u << f.mant_bits) - 1;
    const uint32_t exp_all_ones = (1u << f.exp_bits) - 1;
    const uint32_t mant = bits & mant_mask;
    const uint32_t expo = (bits >> f.mant_bits) & exp_all_ones;
    const double sign = (bits >> (f.mant_bits + f.exp_bits)) & 1u ? -1.0 : 1.0;

    if (expo == exp_all_ones)
        return mant ? NAN : sign * INFINITY;
    if (expo == 0)
        return sign * ldexp((double)mant, 1 - bias - f.mant_bits);
    return sign * ldexp((double)(mant + (1u << f.mant_bits)),
                        (int)expo - bias - f.mant_bits);
}

uint16_t ref_f32_to_f16(float f) { return encode_small(f, FMT_F16); }
float ref_f16_to_f32(uint16_t h) { return (float)decode_small(h, FMT_F16); }
uint16_t ref_f32_to_bf16(float f) { return encode_small(f, FMT_BF16); }
float ref_bf16_to_f32(uint16_t h) { return (float)decode_small(h, FMT_BF16); }

/* ------------------------------------------------------------------ */
/* Tensor access                                                      */
/* ------------------------------------------------------------------ */

/* Element (i0, i1, i2, i3) of t as a double. Size-1 dimensions are only
   ever indexed with 0, so their strides do not matter. */
static double tensor_at(const qkv_tensor *t, int64_t i0, int64_t i1,
                        int64_t i2, int64_t i3)
{
    const int64_t off = i0 * t->stride[0] + i1 * t->stride[1] +
                        i2 * t->stride[2] + i3 * t->stride[3];
    switch (t->dtype) {
    case QKV_F16:  return decode_small(((const uint16_t *)t->data)[off], FMT_F16);
    case QKV_BF16: return decode_small(((const uint16_t *)t->data)[off], FMT_BF16);
    default:       return ((const float *)t->data)[off];
    }
}

/* ------------------------------------------------------------------ */
/* Softmax over one row                                               */
/* ------------------------------------------------------------------ */

/* In place: logit[j] (blocked[j] set for blocked keys) becomes the
   softmax probability, exactly 0 where blocked. sink is an extra logit
   that joins the maximum and the denominator but has no weight of its
   own (-INFINITY: none). Returns the log-sum-exp of the unblocked logits
   and the sink, -INFINITY if every key is blocked and there is no sink
   (the row is then all 0; with a finite sink it is all 0 too and the
   log-sum-exp is the sink). */
static double softmax_row(double *logit, const unsigned char *blocked, int64_t n,
                          double sink)
{
    double m = sink;
    for (int64_t j = 0; j < n; j++)
        if (!blocked[j] && logit[j] > m)
            m = logit[j];
    if (m == -INFINITY) {
        for (int64_t j = 0; j < n; j++)
            logit[j] = 0.0;
        return -INFINITY;
    }
    double sum = sink == -INFINITY ? 0.0 : exp(sink - m);
    for (int64_t j = 0; j < n; j++) {
        logit[j] = blocked[j] ? 0.0 : exp(logit[j] - m);
        sum += logit[j];
    }
    for (int64_t j = 0; j < n; j++)
        logit[j] /= sum;
    return m + log(sum);
}

/* 1 if the causal rule blocks key j for query i. */
static int causal_blocks(qkv_causal c, int64_t i, int64_t j, int64_t lq, int64_t lk)
{
    switch (c) {
    case QKV_CAUSAL_BOTTOM_RIGHT: return j > i + (lk - lq);
    case QKV_CAUSAL_TOP_LEFT:     return j > i;
    default:                      return 0;
    }
}

/* 1 if the sliding window of p blocks key j for query i: visible are
   i + Lk - Lq - left <= j <= i + Lk - Lq + right, a negative side
   unlimited. */
static int window_blocks(const qkv_sdpa_params *p, int64_t i, int64_t j, int64_t lq,
                         int64_t lk)
{
    if (!p->window)
        return 0;
    /* offsets from the diagonal, so that no window size can overflow */
    const int64_t ahead = j - (i + lk - lq);
    if (p->window_left >= 0 && -ahead > p->window_left)
        return 1;
    if (p->window_right >= 0 && ahead > p->window_right)
        return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* sdpa                                                               */
/* ------------------------------------------------------------------ */

int ref_sdpa(const qkv_tensor *q, const qkv_tensor *k, const qkv_tensor *v,
             const qkv_sdpa_params *p,
             double *out, double *weights, double *lse)
{
    static const qkv_sdpa_params defaults;
    if (!p)
        p = &defaults;
    const int64_t B = q->shape[0], H = q->shape[1], Lq = q->shape[2], D = q->shape[3];
    const int64_t Hkv = k->shape[1], Lk = k->shape[2], Dv = v->shape[3];
    if (Hkv <= 0 || H % Hkv != 0 || Lk <= 0 || Lq <= 0)
        return -1;
    const int64_t group = H / Hkv;
    /* The default scale is the float nearest to 1/sqrt(D), as PyTorch and
       the golden files use it. */
    const double scale = p->scale != 0.0f ? (double)p->scale
                                          : (double)(float)(1.0 / sqrt((double)D));
    const double cap = (double)p->softcap;

    double *row = malloc((size_t)Lk * sizeof *row);
    unsigned char *blocked = malloc((size_t)Lk);
    if (!row || !blocked) {
        free(row);
        free(blocked);
        return -1;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / group;
            const int64_t mb = p->mask && p->mask->shape[0] > 1 ? b : 0;
            const int64_t mh = p->mask && p->mask->shape[1] > 1 ? h : 0;
            const double sink = p->sinks ? (double)p->sinks[h] : -INFINITY;
            for (int64_t i = 0; i < Lq; i++) {
                const int64_t r = (b * H + h) * Lq + i;
                for (int64_t j = 0; j < Lk; j++) {
                    double dot = 0.0;
                    for (int64_t d = 0; d < D; d++)
                        dot += tensor_at(q, b, h, i, d) * tensor_at(k, b, g, j, d);
                    row[j] = scale * dot;
                    if (p->softcap > 0.0f)
                        row[j] = cap * tanh(row[j] / cap);
                    const double mask = p->mask ? tensor_at(p->mask, mb, mh, i, j) : 0.0;
                    row[j] += mask;
                    if (p->alibi_slopes)
                        row[j] -= (double)p->alibi_slopes[h] *
                                  fabs((double)(i + Lk - Lq - j));
                    blocked[j] = causal_blocks(p->causal, i, j, Lq, Lk) ||
                                 window_blocks(p, i, j, Lq, Lk) ||
                                 (p->kv_len && j >= p->kv_len[b]) ||
                                 mask == -INFINITY || row[j] == -INFINITY;
                }
                const double l = softmax_row(row, blocked, Lk, sink);
                if (lse)
                    lse[r] = l;
                if (weights)
                    memcpy(weights + r * Lk, row, (size_t)Lk * sizeof *row);
                if (out)
                    for (int64_t c = 0; c < Dv; c++) {
                        double acc = 0.0;
                        for (int64_t j = 0; j < Lk; j++)
                            if (!blocked[j])
                                acc += row[j] * tensor_at(v, b, g, j, c);
                        out[r * Dv + c] = acc;
                    }
            }
        }
    free(row);
    free(blocked);
    return 0;
}

void ref_alibi_slopes(int64_t n, double *slopes)
{
    /* The geometric sequence of the largest power of two m <= n starts at
       and steps by 2^(-8/m); the remaining heads take the 1st, 3rd, 5th,
       ... terms of the sequence of 2m, whose ratio is 2^(-8/(2m)). */
    int64_t m = 1;
    while (2 * m <= n)
        m *= 2;
    const double ratio_m = pow(2.0, -8.0 / (double)m);
    const double ratio_2m = pow(2.0, -8.0 / (double)(2 * m));
    double term = 1.0;
    for (int64_t h = 0; h < m && h < n; h++) {
        term *= ratio_m;
        slopes[h] = term;
    }
    term = ratio_2m;   /* the 1st term of the 2m sequence */
    for (int64_t h = m; h < n; h++) {
        slopes[h] = term;
        term *= ratio_2m * ratio_2m;   /* skip one term */
    }
}

/* ------------------------------------------------------------------ */
/* Multi-head layer                                                   */
/* ------------------------------------------------------------------ */

/* y[m, n] = x[m, :] . w[n, :] + bias[n] (nn.Linear), in double. */
static void linear(int64_t m, int64_t n, int64_t kdim, const float *x,
                   const float *w, const float *bias, double *y)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++) {
            double acc = bias ? (double)bias[c] : 0.0;
            for (int64_t t = 0; t < kdim; t++)
                acc += (double)x[r * kdim + t] * (double)w[c * kdim + t];
            y[r * n + c] = acc;
        }
}

/* The same as linear() for a double input. */
static void linear_d(int64_t m, int64_t n, int64_t kdim, const double *x,
                     const float *w, const float *bias, double *y)
{
    for (int64_t r = 0; r < m; r++)
        for (int64_t c = 0; c < n; c++) {
            double acc = bias ? (double)bias[c] : 0.0;
            for (int64_t t = 0; t < kdim; t++)
                acc += x[r * kdim + t] * (double)w[c * kdim + t];
            y[r * n + c] = acc;
        }
}

typedef struct mha_dims {
    int64_t E, H, Hkv, hd, kdim, vdim;
} mha_dims;

static int mha_dims_of(const qkv_mha_config *cfg, mha_dims *d)
{
    d->E = cfg->d_model;
    d->H = cfg->n_heads;
    d->Hkv = cfg->n_kv_heads ? cfg->n_kv_heads : cfg->n_heads;
    d->hd = cfg->head_dim ? cfg->head_dim : (d->H > 0 ? cfg->d_model / d->H : 0);
    d->kdim = cfg->kdim ? cfg->kdim : cfg->d_model;
    d->vdim = cfg->vdim ? cfg->vdim : cfg->d_model;
    return d->E > 0 && d->H > 0 && d->Hkv > 0 && d->hd > 0 && d->H % d->Hkv == 0 &&
           d->kdim > 0 && d->vdim > 0 ? 0 : -1;
}

/* One head of one batch: concat[:, h*hd ..] and the head's weights. */
static void mha_head(const mha_dims *d, const double *Q, const double *K,
                     const double *V, int64_t lq, int64_t lk, int64_t h,
                     qkv_causal causal, int64_t kv_len,
                     double *concat, double *w_head,
                     double *row, unsigned char *blocked)
{
    const int64_t g = h / (d->H / d->Hkv);
    const int64_t qw = d->H * d->hd, kw = d->Hkv * d->hd;
    const double scale = 1.0 / sqrt((double)d->hd);
    for (int64_t i = 0; i < lq; i++) {
        for (int64_t j = 0; j < lk; j++) {
            double dot = 0.0;
            for (int64_t t = 0; t < d->hd; t++)
                dot += Q[i * qw + h * d->hd + t] * K[j * kw + g * d->hd + t];
            row[j] = scale * dot;
            blocked[j] = causal_blocks(causal, i, j, lq, lk) || j >= kv_len;
        }
        softmax_row(row, blocked, lk, -INFINITY);
        if (w_head)
            memcpy(w_head + i * lk, row, (size_t)lk * sizeof *row);
        for (int64_t t = 0; t < d->hd; t++) {
            double acc = 0.0;
            for (int64_t j = 0; j < lk; j++)
                if (!blocked[j])
                    acc += row[j] * V[j * kw + g * d->hd + t];
            concat[i * qw + h * d->hd + t] = acc;
        }
    }
}

int ref_mha(const qkv_mha_config *cfg, const qkv_mha_weights *w,
            int64_t batch, const float *x_q, int64_t lq,
            const float *x_k, const float *x_v, int64_t lk,
            const qkv_mha_params *p,
            double *y, double *weights, double *weights_avg)
{
    static const qkv_mha_params defaults;
    if (!p)
        p = &defaults;
    mha_dims d;
    if (mha_dims_of(cfg, &d) || batch <= 0 || lq <= 0 || lk <= 0)
        return -1;
    const int64_t qw = d.H * d.hd, kw = d.Hkv * d.hd;
    const int bias = cfg->bias != 0;

    double *Q = malloc((size_t)(lq * qw) * sizeof(double));
    double *K = malloc((size_t)(lk * kw) * sizeof(double));
    double *V = malloc((size_t)(lk * kw) * sizeof(double));
    double *concat = malloc((size_t)(lq * qw) * sizeof(double));
    double *row = malloc((size_t)lk * sizeof(double));
    double *w_head = malloc((size_t)(lq * lk) * sizeof(double));
    unsigned char *blocked = malloc((size_t)lk);
    int rc = -1;
    if (!Q || !K || !V || !concat || !row || !w_head || !blocked)
        goto done;

    for (int64_t b = 0; b < batch; b++) {
        linear(lq, qw, d.E, x_q + b * lq * d.E, w->w_q, bias ? w->b_q : NULL, Q);
        linear(lk, kw, d.kdim, x_k + b * lk * d.kdim, w->w_k, bias ? w->b_k : NULL, K);
        linear(lk, kw, d.vdim, x_v + b * lk * d.vdim, w->w_v, bias ? w->b_v : NULL, V);
        const int64_t kv_len = p->kv_len ? p->kv_len[b] : lk;
        if (weights_avg)
            memset(weights_avg + b * lq * lk, 0, (size_t)(lq * lk) * sizeof(double));
        for (int64_t h = 0; h < d.H; h++) {
            mha_head(&d, Q, K, V, lq, lk, h, p->causal, kv_len, concat, w_head,
                     row, blocked);
            if (weights)
                memcpy(weights + (b * d.H + h) * lq * lk, w_head,
                       (size_t)(lq * lk) * sizeof(double));
            if (weights_avg)
                for (int64_t c = 0; c < lq * lk; c++)
                    weights_avg[b * lq * lk + c] += w_head[c] / (double)d.H;
        }
        if (y)
            linear_d(lq, d.E, qw, concat, w->w_o, bias ? w->b_o : NULL,
                     y + b * lq * d.E);
    }
    rc = 0;
done:
    free(Q); free(K); free(V); free(concat); free(row); free(w_head); free(blocked);
    return rc;
}
