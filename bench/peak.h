/*
 * What one core of this machine can do, measured in the same run as the
 * benchmarks so that "% of peak" compares like with like (same clock, same
 * frequency licence, same virtual machine):
 *   - the FMA peak of one ISA: a loop of independent FMA chains on that
 *     ISA's registers (scalar floats, ymm, zmm, NEON q);
 *   - the read bandwidth of one thread: a sum over a large array with
 *     vector loads.
 */
#ifndef QKV_BENCH_PEAK_H
#define QKV_BENCH_PEAK_H

#include <stddef.h>

#include "qkv.h"

/* Single-thread FMA peak of isa in GFLOP/s (an FMA counts as 2 FLOPs),
   or 0 if this build or CPU cannot run that ISA's loop. */
double bench_fma_peak_gflops(qkv_isa isa);

/* The same peak, measured briefly (best of 10 passes of about 2 ms): what
   the core delivers right now. On a shared machine the peak drifts by tens
   of percent between runs and within one (the run-start AVX-512 peak of
   the development guest read 70 to 139 GFLOP/s over an hour), so a
   benchmark is compared with the peak measured beside it. */
double bench_fma_peak_now_gflops(qkv_isa isa);

/* Single-thread read bandwidth in GB/s (1e9 bytes/s) over `bytes` bytes,
   the best of a few passes. */
double bench_read_bandwidth_gbs(size_t bytes);

#endif /* QKV_BENCH_PEAK_H */
