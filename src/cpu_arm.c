/*
 * AArch64 feature detection: AdvSIMD (NEON) is part of the AArch64
 * baseline, but the kernel's HWCAP is the authority on what userspace may
 * run, so it is asked all the same. Compiled for the baseline target.
 */
#include "internal.h"

#if defined(__aarch64__)
#include <sys/auxv.h>

#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif

unsigned qkv_cpu_detect_arm(void)
{
    unsigned mask = 1u << QKV_ISA_SCALAR;
    if (getauxval(AT_HWCAP) & HWCAP_ASIMD)
        mask |= 1u << QKV_ISA_NEON;
    return mask;
}

#else

unsigned qkv_cpu_detect_arm(void)
{
    return 0;
}

#endif
