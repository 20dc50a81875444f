/*
 * The ops table of the process: detected once (thread-safely, on the first
 * call that needs it), then chosen by QKV_ISA or qkv_isa_set. The active
 * table is one atomic pointer, so a call fetches it once and keeps it;
 * changing it while other threads compute affects only calls that start
 * later.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "qkv_config.h"

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static unsigned usable_mask;               /* CPU and build both have it */
static const qkv_kernels *best_table;
static _Atomic(const qkv_kernels *) active_table;

/* The table this build compiled for isa, ignoring the CPU. */
static const qkv_kernels *built_table(qkv_isa isa)
{
    switch (isa) {
    case QKV_ISA_SCALAR: return &qkv_kernels_scalar;
#if QKV_HAVE_AVX2
    case QKV_ISA_AVX2:   return &qkv_kernels_avx2;
#endif
#if QKV_HAVE_AVX512
    case QKV_ISA_AVX512: return &qkv_kernels_avx512;
#endif
#if QKV_HAVE_NEON
    case QKV_ISA_NEON:   return &qkv_kernels_neon;
#endif
    default:             return NULL;
    }
}

/* Best first. */
static const qkv_isa isa_ladder[] = {
    QKV_ISA_AVX512, QKV_ISA_AVX2, QKV_ISA_NEON, QKV_ISA_SCALAR,
};

static qkv_isa isa_from_name(const char *name)
{
    for (int i = QKV_ISA_AUTO; i <= QKV_ISA_NEON; i++)
        if (strcmp(name, qkv_isa_name((qkv_isa)i)) == 0)
            return (qkv_isa)i;
    return (qkv_isa)-1;
}

static void detect(void)
{
    const unsigned cpu = qkv_cpu_detect_x86() | qkv_cpu_detect_arm() |
                         (1u << QKV_ISA_SCALAR);
    for (size_t i = 0; i < sizeof isa_ladder / sizeof isa_ladder[0]; i++) {
        const qkv_isa isa = isa_ladder[i];
        if ((cpu & (1u << isa)) && built_table(isa)) {
            usable_mask |= 1u << isa;
            if (!best_table)
                best_table = built_table(isa);
        }
    }
    const qkv_kernels *chosen = best_table;
    const char *env = getenv("QKV_ISA");
    if (env && *env) {
        const qkv_isa want = isa_from_name(env);
        if (want == QKV_ISA_AUTO)
            chosen = best_table;
        else if ((int)want > 0 && (usable_mask & (1u << want)))
            chosen = built_table(want);
        else
            fprintf(stderr, "qkv: QKV_ISA=%s is not available here; using %s\n",
                    env, qkv_isa_name(best_table->isa));
    }
    atomic_store_explicit(&active_table, chosen, memory_order_release);
}

static void ensure_detected(void)
{
    pthread_once(&detect_once, detect);
}

const qkv_kernels *qkv_kernels_active(void)
{
    ensure_detected();
    return atomic_load_explicit(&active_table, memory_order_acquire);
}

const qkv_kernels *qkv_kernels_for(qkv_isa isa)
{
    ensure_detected();
    if ((int)isa <= 0 || (int)isa > QKV_ISA_NEON || !(usable_mask & (1u << isa)))
        return NULL;
    return built_table(isa);
}

qkv_isa qkv_isa_active(void)
{
    return qkv_kernels_active()->isa;
}

const char *qkv_isa_name(qkv_isa isa)
{
    switch (isa) {
    case QKV_ISA_AUTO:   return "auto";
    case QKV_ISA_SCALAR: return "scalar";
    case QKV_ISA_AVX2:   return "avx2";
    case QKV_ISA_AVX512: return "avx512";
    case QKV_ISA_NEON:   return "neon";
    }
    return "unknown";
}

int qkv_isa_supported(qkv_isa isa)
{
    if (isa == QKV_ISA_AUTO)
        return 1;
    return qkv_kernels_for(isa) != NULL;
}

qkv_status qkv_isa_set(qkv_isa isa)
{
    if ((int)isa < QKV_ISA_AUTO || (int)isa > QKV_ISA_NEON)
        return QKV_E_ARG;
    ensure_detected();
    const qkv_kernels *table = isa == QKV_ISA_AUTO ? best_table : qkv_kernels_for(isa);
    if (!table)
        return QKV_E_UNSUPPORTED;
    atomic_store_explicit(&active_table, table, memory_order_release);
    return QKV_OK;
}
