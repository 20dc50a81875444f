/*
 * x86-64 feature detection: CPUID says what the core implements, XGETBV
 * says what state the OS saves on a context switch. An ISA is usable only
 * if both agree (an OS that does not enable ZMM state makes AVX-512 fault).
 * Compiled for the baseline target, like everything in src/.
 */
#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

/* XCR0 bits: SSE (1), AVX/YMM upper (2), opmask (5), ZMM0-15 upper (6),
   ZMM16-31 (7). */
#define XCR0_YMM   0x06u
#define XCR0_ZMM   0xe6u

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    /* xgetbv with ECX = 0, spelled as bytes so no -mxsave is needed. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

unsigned qkv_cpu_detect_x86(void)
{
    unsigned eax, ebx, ecx, edx;
    unsigned mask = 1u << QKV_ISA_SCALAR;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
        return mask;
    const int has_osxsave = (ecx >> 27) & 1;
    const int has_fma = (ecx >> 12) & 1;
    const int has_f16c = (ecx >> 29) & 1;
    const int has_avx = (ecx >> 28) & 1;
    if (!has_osxsave || !has_avx)
        return mask;
    const uint64_t xcr0 = read_xcr0();
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        return mask;
    const int has_avx2 = (ebx >> 5) & 1;
    const int has_avx512f = (ebx >> 16) & 1;
    const int has_avx512dq = (ebx >> 17) & 1;
    const int has_avx512bw = (ebx >> 30) & 1;
    const int has_avx512vl = (ebx >> 31) & 1;

    if ((xcr0 & XCR0_YMM) == XCR0_YMM && has_avx2 && has_fma && has_f16c) {
        mask |= 1u << QKV_ISA_AVX2;
        if ((xcr0 & XCR0_ZMM) == XCR0_ZMM && has_avx512f && has_avx512dq &&
            has_avx512bw && has_avx512vl)
            mask |= 1u << QKV_ISA_AVX512;
    }
    return mask;
}

#else

unsigned qkv_cpu_detect_x86(void)
{
    return 0;
}

#endif
