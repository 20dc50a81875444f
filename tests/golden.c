/*
 * Golden cases: the loader of tests/data/<case>.txt (format in
 * tests/data/README.md) and the checker that runs a case through the
 * public API. No Criterion and no OpenMP here: the kernel checker links
 * this file too.
 */
#include "golden.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref/ref.h"

#ifndef QKV_TEST_DATA_DIR
#error "QKV_TEST_DATA_DIR must be defined (the absolute path of tests/data)"
#endif

/* ------------------------------------------------------------------ */
/* Loading                                                            */
/* ------------------------------------------------------------------ */

/* A cursor over the text of one file. */
typedef struct reader {
    const char *pos;
    char *err;
    int err_size;
} reader;

static int fail(reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, (size_t)r->err_size, fmt, ap);
    va_end(ap);
    return -1;
}

/* The next whitespace-separated token, copied into buf (size bytes).
   0 on success, -1 at the end of the text or if it does not fit. */
static int next_token(reader *r, char *buf, size_t size)
{
    while (*r->pos == ' ' || *r->pos == '\t' || *r->pos == '\n' || *r->pos == '\r')
        r->pos++;
    size_t n = strcspn(r->pos, " \t\r\n");
    if (n == 0 || n >= size)
        return -1;
    memcpy(buf, r->pos, n);
    buf[n] = '\0';
    r->pos += n;
    return 0;
}

static int parse_double(const char *tok, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(tok, &end);
    /* ERANGE on underflow is expected: tiny expected weights. */
    return *end == '\0' && end != tok ? 0 : -1;
}

static int parse_int(const char *tok, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(tok, &end, 10);
    if (*end != '\0' || end == tok || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

static int read_tensor(reader *r, golden_case *c)
{
    if (c->n_tensors >= GOLDEN_MAX_TENSORS)
        return fail(r, "too many tensors");
    golden_tensor *t = &c->tensors[c->n_tensors];
    char tok[64];
    int64_t v;
    if (next_token(r, t->name, sizeof t->name) || next_token(r, tok, sizeof tok) ||
        parse_int(tok, &v) || v < 1 || v > 8)
        return fail(r, "bad tensor header");
    t->ndim = (int)v;
    t->count = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (next_token(r, tok, sizeof tok) || parse_int(tok, &t->dims[d]) ||
            t->dims[d] < 1 || t->dims[d] > (1 << 24))
            return fail(r, "bad dimension of tensor %s", t->name);
        t->count *= t->dims[d];
    }
    if (t->count > (1 << 26))
        return fail(r, "tensor %s too large", t->name);
    t->data = malloc((size_t)t->count * sizeof *t->data);
    if (!t->data)
        return fail(r, "out of memory");
    c->n_tensors++;   /* owned by c from here: golden_free releases it */
    for (int64_t i = 0; i < t->count; i++)
        if (next_token(r, tok, sizeof tok) || parse_double(tok, &t->data[i]))
            return fail(r, "tensor %s: bad or missing value %lld", t->name, (long long)i);
    return 0;
}

static int read_scalar(reader *r, golden_case *c, int is_int)
{
    char key[32], tok[64];
    if (next_token(r, key, sizeof key) || next_token(r, tok, sizeof tok))
        return fail(r, "bad %s line", is_int ? "int" : "float");
    if (is_int) {
        if (c->n_ints >= GOLDEN_MAX_KEYS)
            return fail(r, "too many int keys");
        if (parse_int(tok, &c->int_values[c->n_ints]))
            return fail(r, "bad integer for %s", key);
        memcpy(c->int_keys[c->n_ints++], key, sizeof key);
    } else {
        if (c->n_floats >= GOLDEN_MAX_KEYS)
            return fail(r, "too many float keys");
        if (parse_double(tok, &c->float_values[c->n_floats]))
            return fail(r, "bad number for %s", key);
        memcpy(c->float_keys[c->n_floats++], key, sizeof key);
    }
    return 0;
}

static int parse_text(reader *r, golden_case *c)
{
    char tok[64];
    if (next_token(r, tok, sizeof tok) || strcmp(tok, "qkv-golden") != 0 ||
        next_token(r, tok, sizeof tok) || strcmp(tok, "1") != 0)
        return fail(r, "not a qkv-golden 1 file");
    for (;;) {
        if (next_token(r, tok, sizeof tok))
            return fail(r, "missing 'end'");
        if (strcmp(tok, "end") == 0)
            return 0;
        int rc;
        if (strcmp(tok, "case") == 0)
            rc = next_token(r, c->name, sizeof c->name) ? fail(r, "bad case line") : 0;
        else if (strcmp(tok, "op") == 0)
            rc = next_token(r, c->op, sizeof c->op) ? fail(r, "bad op line") : 0;
        else if (strcmp(tok, "int") == 0)
            rc = read_scalar(r, c, 1);
        else if (strcmp(tok, "float") == 0)
            rc = read_scalar(r, c, 0);
        else if (strcmp(tok, "tensor") == 0)
            rc = read_tensor(r, c);
        else
            rc = fail(r, "unexpected token '%s'", tok);
        if (rc)
            return rc;
    }
}

static char *read_file(const char *path, reader *r)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(r, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    while (text) {
        len += fread(text + len, 1, cap - len - 1, f);
        if (len < cap - 1)
            break;
        char *bigger = realloc(text, cap * 2);
        if (!bigger) {
            free(text);
            text = NULL;
            break;
        }
        text = bigger;
        cap *= 2;
    }
    fclose(f);
    if (!text)
        fail(r, "out of memory reading %s", path);
    else
        text[len] = '\0';
    return text;
}

int golden_load(const char *path, golden_case *c, char *err, int err_size)
{
    reader r = {.err = err, .err_size = err_size};
    memset(c, 0, sizeof *c);
    char *text = read_file(path, &r);
    if (!text)
        return -1;
    r.pos = text;
    int rc = parse_text(&r, c);
    free(text);
    if (rc == 0 && strcmp(c->op, "sdpa") != 0 && strcmp(c->op, "mha") != 0)
        rc = fail(&r, "unknown op '%s'", c->op);
    if (rc)
        golden_free(c);
    return rc;
}

void golden_free(golden_case *c)
{
    for (int i = 0; i < c->n_tensors; i++) {
        free(c->tensors[i].data);
        c->tensors[i].data = NULL;
    }
    c->n_tensors = 0;
}

const golden_tensor *golden_tensor_get(const golden_case *c, const char *name)
{
    for (int i = 0; i < c->n_tensors; i++)
        if (strcmp(c->tensors[i].name, name) == 0)
            return &c->tensors[i];
    return NULL;
}

int64_t golden_int(const golden_case *c, const char *key, int64_t dflt)
{
    for (int i = 0; i < c->n_ints; i++)
        if (strcmp(c->int_keys[i], key) == 0)
            return c->int_values[i];
    return dflt;
}

double golden_float(const golden_case *c, const char *key, double dflt)
{
    for (int i = 0; i < c->n_floats; i++)
        if (strcmp(c->float_keys[i], key) == 0)
            return c->float_values[i];
    return dflt;
}

/* ------------------------------------------------------------------ */
/* Listing                                                            */
/* ------------------------------------------------------------------ */

const char *golden_data_dir(void)
{
    const char *env = getenv("QKV_TEST_DATA");
    return env && *env ? env : QKV_TEST_DATA_DIR;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int golden_list(char ***names)
{
    *names = NULL;
    DIR *dir = opendir(golden_data_dir());
    if (!dir)
        return -1;
    int n = 0, cap = 0;
    char **list = NULL;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".txt") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **bigger = realloc(list, (size_t)cap * sizeof *list);
            if (!bigger)
                goto oom;
            list = bigger;
        }
        if (!(list[n] = malloc(len - 3)))
            goto oom;
        memcpy(list[n], e->d_name, len - 4);
        list[n++][len - 4] = '\0';
    }
    closedir(dir);
    qsort(list, (size_t)n, sizeof *list, compare_names);
    *names = list;
    return n;
oom:
    closedir(dir);
    golden_list_free(list, n);
    return -1;
}

void golden_list_free(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ------------------------------------------------------------------ */
/* Running                                                            */
/* ------------------------------------------------------------------ */

/* A float copy of a golden input tensor (NULL if absent). */
static float *to_floats(const golden_tensor *t)
{
    if (!t)
        return NULL;
    float *f = malloc((size_t)t->count * sizeof *f);
    if (f)
        for (int64_t i = 0; i < t->count; i++)
            f[i] = (float)t->data[i];
    return f;
}

static int32_t *to_int32s(const golden_tensor *t)
{
    if (!t)
        return NULL;
    int32_t *v = malloc((size_t)t->count * sizeof *v);
    if (v)
        for (int64_t i = 0; i < t->count; i++)
            v[i] = (int32_t)t->data[i];
    return v;
}

/* A buffer of n floats filled with NaN, so that an element the library
   forgets to write fails the comparison. */
static float *nan_buffer(int64_t n)
{
    float *f = malloc((size_t)n * sizeof *f);
    if (f)
        for (int64_t i = 0; i < n; i++)
            f[i] = NAN;
    return f;
}

/* Compares n values (got_f or, when it is NULL, got_d) against want,
   folding the worst ratio into r. Tolerance per value: tol_scale *
   (1e-5 * max|want| + 1e-4 * |want|). Non-finite want (-inf lse) must be
   matched exactly. */
static void compare_scaled(const char *what, const float *got_f,
                           const double *got_d, const double *want, int64_t n,
                           double tol_scale, golden_result *r)
{
    double max_abs = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > max_abs)
            max_abs = fabs(want[i]);
    for (int64_t i = 0; i < n; i++) {
        const double got = got_f ? (double)got_f[i] : got_d[i];
        double ratio;
        if (!isfinite(want[i]))
            ratio = got == want[i] ? 0.0 : INFINITY;
        else if (!isfinite(got))
            ratio = INFINITY;
        else {
            const double tol = tol_scale * (1e-5 * max_abs + 1e-4 * fabs(want[i]));
            const double diff = fabs(got - want[i]);
            ratio = tol > 0.0 ? diff / tol : (diff == 0.0 ? 0.0 : INFINITY);
        }
        if (r->values_checked == 0 || ratio > r->worst_ratio) {
            r->worst_ratio = ratio;
            snprintf(r->worst_where, sizeof r->worst_where,
                     "%s[%lld]: got %.9g want %.9g", what, (long long)i, got, want[i]);
        }
        r->values_checked++;
    }
}

static void compare(const char *what, const float *got, const double *want,
                    int64_t n, golden_result *r)
{
    compare_scaled(what, got, NULL, want, n, 1.0, r);
}

typedef struct sdpa_dims {
    int64_t B, H, Hkv, Lq, Lk, D, Dv;
} sdpa_dims;

static int sdpa_dims_of(const golden_case *c, sdpa_dims *d)
{
    d->B = golden_int(c, "batch", 0);
    d->H = golden_int(c, "heads", 0);
    d->Hkv = golden_int(c, "kv_heads", d->H);
    d->Lq = golden_int(c, "lq", 0);
    d->Lk = golden_int(c, "lk", 0);
    d->D = golden_int(c, "head_dim", 0);
    d->Dv = golden_int(c, "v_dim", d->D);
    return d->B > 0 && d->H > 0 && d->Hkv > 0 && d->Lq > 0 && d->Lk > 0 &&
           d->D > 0 && d->Dv > 0 ? 0 : -1;
}

/* The case's scale, or 0 (the library default) when it is the default,
   so that the default path is what the case checks. */
static float sdpa_scale_param(const golden_case *c, int64_t D)
{
    const float scale = (float)golden_float(c, "scale", 0.0);
    const float dflt = (float)(1.0 / sqrt((double)D));
    return scale == dflt ? 0.0f : scale;
}

/* The inputs of an sdpa case as the library takes them: float arrays,
   BHSD views, the [Lq, Lk] mask broadcast over batch and heads with
   stride 0, and the parameters (no outputs). */
typedef struct sdpa_inputs {
    sdpa_dims d;
    const golden_tensor *want_out, *want_w;
    float *q, *k, *v, *mask;
    int32_t *kv_len;
    qkv_tensor tq, tk, tv, tmask;
    qkv_sdpa_params p;
} sdpa_inputs;

static void sdpa_inputs_free(sdpa_inputs *in)
{
    free(in->q); free(in->k); free(in->v); free(in->mask); free(in->kv_len);
}

/* 0, or -1 (with nothing left to free) if the case is malformed or memory
   runs out. The views point into *in: do not copy it. */
static int sdpa_inputs_load(const golden_case *c, sdpa_inputs *in)
{
    memset(in, 0, sizeof *in);
    sdpa_dims *d = &in->d;
    in->want_out = golden_tensor_get(c, "out");
    in->want_w = golden_tensor_get(c, "weights");
    if (sdpa_dims_of(c, d) || !in->want_out || !in->want_w)
        return -1;
    const int has_mask = golden_int(c, "has_mask", 0) != 0;
    const int has_kv_len = golden_int(c, "has_kv_len", 0) != 0;
    in->q = to_floats(golden_tensor_get(c, "q"));
    in->k = to_floats(golden_tensor_get(c, "k"));
    in->v = to_floats(golden_tensor_get(c, "v"));
    in->mask = has_mask ? to_floats(golden_tensor_get(c, "mask")) : NULL;
    in->kv_len = has_kv_len ? to_int32s(golden_tensor_get(c, "kv_len")) : NULL;
    if (!in->q || !in->k || !in->v || (has_mask && !in->mask) ||
        (has_kv_len && !in->kv_len)) {
        sdpa_inputs_free(in);
        return -1;
    }
    in->tq = qkv_tensor_bhsd(in->q, QKV_F32, d->B, d->H, d->Lq, d->D);
    in->tk = qkv_tensor_bhsd(in->k, QKV_F32, d->B, d->Hkv, d->Lk, d->D);
    in->tv = qkv_tensor_bhsd(in->v, QKV_F32, d->B, d->Hkv, d->Lk, d->Dv);
    in->tmask = (qkv_tensor){.data = in->mask, .dtype = QKV_F32,
                             .shape = {d->B, d->H, d->Lq, d->Lk},
                             .stride = {0, 0, d->Lk, 1}};
    in->p = (qkv_sdpa_params){
        .scale = sdpa_scale_param(c, d->D),
        .causal = golden_int(c, "causal", 0) ? QKV_CAUSAL_BOTTOM_RIGHT : QKV_CAUSAL_NONE,
        .mask = has_mask ? &in->tmask : NULL,
        .kv_len = in->kv_len,
    };
    return 0;
}

static int run_sdpa(const golden_case *c, int num_threads, golden_result *r)
{
    sdpa_inputs in;
    if (sdpa_inputs_load(c, &in))
        return -1;
    const int64_t rows = in.d.B * in.d.H * in.d.Lq;
    float *out = nan_buffer(rows * in.d.Dv);
    float *weights = nan_buffer(rows * in.d.Lk);
    float *lse = nan_buffer(rows);
    double *want_lse = malloc((size_t)rows * sizeof *want_lse);
    int rc = -1;
    if (!out || !weights || !lse || !want_lse)
        goto done;

    qkv_tensor tout = qkv_tensor_bhsd(out, QKV_F32, in.d.B, in.d.H, in.d.Lq, in.d.Dv);
    qkv_sdpa_params p = in.p;
    p.weights = weights;
    p.lse = lse;
    p.num_threads = num_threads;
    r->status = (int)qkv_sdpa(&in.tq, &in.tk, &in.tv, &tout, &p);
    if (r->status != QKV_OK)
        goto done;
    /* The files carry no lse: recompute it in double from the inputs. */
    if (ref_sdpa(&in.tq, &in.tk, &in.tv, &p, NULL, NULL, want_lse))
        goto done;
    compare("out", out, in.want_out->data, rows * in.d.Dv, r);
    compare("weights", weights, in.want_w->data, rows * in.d.Lk, r);
    compare("lse", lse, want_lse, rows, r);
    rc = 0;
done:
    sdpa_inputs_free(&in);
    free(out); free(weights); free(lse); free(want_lse);
    return rc;
}

/* The layer's configuration and weights from an mha case; the float
   arrays are returned in f[8] (w_q w_k w_v w_o b_q b_k b_v b_o). */
static int mha_setup(const golden_case *c, qkv_mha_config *cfg,
                     qkv_mha_weights *w, float *f[8])
{
    static const char *const names[8] = {"w_q", "w_k", "w_v", "w_o",
                                         "b_q", "b_k", "b_v", "b_o"};
    memset(cfg, 0, sizeof *cfg);
    cfg->d_model = golden_int(c, "d_model", 0);
    cfg->n_heads = golden_int(c, "n_heads", 0);
    cfg->kdim = golden_int(c, "kdim", 0);
    cfg->vdim = golden_int(c, "vdim", 0);
    cfg->bias = golden_int(c, "bias", 0) != 0;
    int ok = 1;
    for (int i = 0; i < 8; i++) {
        f[i] = i < 4 || cfg->bias ? to_floats(golden_tensor_get(c, names[i])) : NULL;
        if (!f[i] && (i < 4 || cfg->bias))
            ok = 0;
    }
    *w = (qkv_mha_weights){f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]};
    return ok ? 0 : -1;
}

static int run_mha(const golden_case *c, int num_threads, golden_result *r)
{
    qkv_mha_config cfg;
    qkv_mha_weights w;
    float *wf[8];
    const int64_t B = golden_int(c, "batch", 0), lq = golden_int(c, "lq", 0);
    const int64_t lk = golden_int(c, "lk", 0);
    const golden_tensor *want_y = golden_tensor_get(c, "y");
    const golden_tensor *want_w = golden_tensor_get(c, "weights");
    const golden_tensor *want_avg = golden_tensor_get(c, "weights_avg");
    const int self_attn = golden_int(c, "self_attn", 0) != 0;
    const int has_kv_len = golden_int(c, "has_kv_len", 0) != 0;
    int rc = -1;
    qkv_mha *m = NULL;

    int setup_rc = mha_setup(c, &cfg, &w, wf);
    float *x_q = to_floats(golden_tensor_get(c, "x_q"));
    float *x_k = self_attn ? NULL : to_floats(golden_tensor_get(c, "x_k"));
    float *x_v = self_attn ? NULL : to_floats(golden_tensor_get(c, "x_v"));
    int32_t *kv_len = has_kv_len ? to_int32s(golden_tensor_get(c, "kv_len")) : NULL;
    const int64_t H = cfg.n_heads, E = cfg.d_model;
    float *y = nan_buffer(B * lq * E);
    float *weights = nan_buffer(B * H * lq * lk);
    float *weights_avg = nan_buffer(B * lq * lk);
    if (setup_rc || B <= 0 || lq <= 0 || lk <= 0 || !x_q || (!self_attn && (!x_k || !x_v)) ||
        (has_kv_len && !kv_len) || !want_y || !want_w || !want_avg ||
        !y || !weights || !weights_avg)
        goto done;

    r->status = (int)qkv_mha_create(&m, &cfg, &w);
    if (r->status != QKV_OK)
        goto done;
    /* Self-attention passes the same pointer three times, as users do. */
    qkv_mha_params p = {
        .causal = golden_int(c, "causal", 0) ? QKV_CAUSAL_BOTTOM_RIGHT : QKV_CAUSAL_NONE,
        .kv_len = kv_len,
        .weights = weights,
        .weights_avg = weights_avg,
        .num_threads = num_threads,
    };
    r->status = (int)qkv_mha_forward(m, B, x_q, lq, self_attn ? x_q : x_k,
                                     self_attn ? x_q : x_v, lk, y, &p);
    if (r->status != QKV_OK)
        goto done;
    compare("y", y, want_y->data, B * lq * E, r);
    compare("weights", weights, want_w->data, B * H * lq * lk, r);
    compare("weights_avg", weights_avg, want_avg->data, B * lq * lk, r);
    rc = 0;
done:
    qkv_mha_destroy(m);
    for (int i = 0; i < 8; i++)
        free(wf[i]);
    free(x_q); free(x_k); free(x_v); free(kv_len);
    free(y); free(weights); free(weights_avg);
    return rc;
}

int golden_run(const golden_case *c, int num_threads, golden_result *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    snprintf(r->worst_where, sizeof r->worst_where, "(nothing compared)");
    int rc = strcmp(c->op, "sdpa") == 0 ? run_sdpa(c, num_threads, r)
                                        : run_mha(c, num_threads, r);
    if (rc == 0 && r->values_checked == 0)
        rc = -1;
    return rc == 0 && r->worst_ratio <= 1.0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Checking the reference itself                                      */
/* ------------------------------------------------------------------ */

/* The reference must reproduce the files to about their 9 printed
   digits: a thousand times tighter than the library's tolerance. */
#define REF_TOL_SCALE 1e-3

static int ref_sdpa_case(const golden_case *c, golden_result *r)
{
    sdpa_inputs in;
    if (sdpa_inputs_load(c, &in))
        return -1;
    const int64_t rows = in.d.B * in.d.H * in.d.Lq;
    double *out = malloc((size_t)(rows * in.d.Dv) * sizeof *out);
    double *weights = malloc((size_t)(rows * in.d.Lk) * sizeof *weights);
    int rc = -1;
    if (!out || !weights || ref_sdpa(&in.tq, &in.tk, &in.tv, &in.p, out, weights, NULL))
        goto done;
    r->status = QKV_OK;
    compare_scaled("out", NULL, out, in.want_out->data, rows * in.d.Dv, REF_TOL_SCALE, r);
    compare_scaled("weights", NULL, weights, in.want_w->data, rows * in.d.Lk, REF_TOL_SCALE, r);
    rc = 0;
done:
    sdpa_inputs_free(&in);
    free(out); free(weights);
    return rc;
}

static int ref_mha_case(const golden_case *c, golden_result *r)
{
    qkv_mha_config cfg;
    qkv_mha_weights w;
    float *wf[8];
    const int64_t B = golden_int(c, "batch", 0), lq = golden_int(c, "lq", 0);
    const int64_t lk = golden_int(c, "lk", 0);
    const golden_tensor *want_y = golden_tensor_get(c, "y");
    const golden_tensor *want_w = golden_tensor_get(c, "weights");
    const golden_tensor *want_avg = golden_tensor_get(c, "weights_avg");
    const int has_kv_len = golden_int(c, "has_kv_len", 0) != 0;
    int rc = -1;
    int setup_rc = mha_setup(c, &cfg, &w, wf);
    float *x_q = to_floats(golden_tensor_get(c, "x_q"));
    float *x_k = to_floats(golden_tensor_get(c, "x_k"));
    float *x_v = to_floats(golden_tensor_get(c, "x_v"));
    int32_t *kv_len = has_kv_len ? to_int32s(golden_tensor_get(c, "kv_len")) : NULL;
    const int64_t H = cfg.n_heads, E = cfg.d_model;
    double *y = malloc((size_t)(B * lq * E) * sizeof *y);
    double *weights = malloc((size_t)(B * H * lq * lk) * sizeof *weights);
    double *avg = malloc((size_t)(B * lq * lk) * sizeof *avg);
    if (setup_rc || B <= 0 || lq <= 0 || lk <= 0 || !x_q || !x_k || !x_v ||
        (has_kv_len && !kv_len) || !want_y || !want_w || !want_avg || !y || !weights || !avg)
        goto done;
    qkv_mha_params p = {
        .causal = golden_int(c, "causal", 0) ? QKV_CAUSAL_BOTTOM_RIGHT : QKV_CAUSAL_NONE,
        .kv_len = kv_len,
    };
    if (ref_mha(&cfg, &w, B, x_q, lq, x_k, x_v, lk, &p, y, weights, avg))
        goto done;
    r->status = QKV_OK;
    compare_scaled("y", NULL, y, want_y->data, B * lq * E, REF_TOL_SCALE, r);
    compare_scaled("weights", NULL, weights, want_w->data, B * H * lq * lk, REF_TOL_SCALE, r);
    compare_scaled("weights_avg", NULL, avg, want_avg->data, B * lq * lk, REF_TOL_SCALE, r);
    rc = 0;
done:
    for (int i = 0; i < 8; i++)
        free(wf[i]);
    free(x_q); free(x_k); free(x_v); free(kv_len); free(y); free(weights); free(avg);
    return rc;
}

int golden_run_ref(const golden_case *c, golden_result *r)
{
    memset(r, 0, sizeof *r);
    r->status = -1;
    snprintf(r->worst_where, sizeof r->worst_where, "(nothing compared)");
    int rc = strcmp(c->op, "sdpa") == 0 ? ref_sdpa_case(c, r) : ref_mha_case(c, r);
    if (rc == 0 && r->values_checked == 0)
        rc = -1;
    return rc == 0 && r->worst_ratio <= 1.0 ? 0 : -1;
}
