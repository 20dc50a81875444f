/* Multi-head attention layer: being written. */
#include "internal.h"

qkv_status qkv_mha_create(qkv_mha **out, const qkv_mha_config *cfg, const qkv_mha_weights *w)
{
    (void)out; (void)cfg; (void)w;
    return QKV_E_UNSUPPORTED;
}

void qkv_mha_destroy(qkv_mha *m)
{
    (void)m;
}

qkv_status qkv_mha_forward(const qkv_mha *m, int64_t batch,
                           const float *x_q, int64_t lq,
                           const float *x_k, const float *x_v, int64_t lk,
                           float *y, const qkv_mha_params *params)
{
    (void)m; (void)batch; (void)x_q; (void)lq; (void)x_k; (void)x_v; (void)lk; (void)y; (void)params;
    return QKV_E_UNSUPPORTED;
}
