#!/usr/bin/env python3
"""qkv-bench's bookkeeping, not its speed: runs the benchmark on tiny shapes
with --json (and once without) and checks, as TAP, what every figure of the
README's table rests on:

  - the FLOPs of a row are 4 * B * H * D * (visible query-key pairs), the
    pairs counted here independently for a plain, a causal (bottom-right)
    and a sliding-window shape;
  - GFLOP/s = FLOPs / median ns, and % peak = GFLOP/s / the peak measured
    beside the row;
  - decode rows (one query): the K and V bytes streamed, GB/s from them and
    % of the read bandwidth measured at the start;
  - with --runs N: every row appears once per run, tagged 0..N-1, and the
    summary's medians, % peak range and median ratio to OpenBLAS (when the
    baseline is built in) are those of the per-run results, recomputed here;
  - the text summary has a row per ISA; --runs outside 1..1000 is refused.

  check_bench_json.py QKV_BENCH
"""
import json
import statistics
import subprocess
import sys

TINY = ['--budget', '0.002', '--reps', '3']
RUNS = 3

checks = []


def check(ok, what):
    checks.append((bool(ok), what))


def close(a, b, tol):
    return abs(a - b) <= tol


def run_bench(exe, args):
    out = subprocess.run([exe] + args, capture_output=True, text=True, timeout=300)
    return out.returncode, out.stdout, out.stderr


def visible_pairs(lq, lk, causal, window):
    """Pairs (i, j) that the bottom-right causal rule and the window keep."""
    pairs = 0
    for i in range(lq):
        diag = i + lk - lq
        lo, hi = 0, lk
        if causal:
            hi = min(hi, diag + 1)
        if window:
            left, right = window
            if left >= 0:
                lo = max(lo, diag - left)
            if right >= 0:
                hi = min(hi, diag + right + 1)
        pairs += max(0, hi - lo)
    return pairs


def check_shape(exe, name, args, b, h, d, lq, lk, causal=False, window=None,
                kv_heads=None, kv_elem_bytes=4):
    rc, out, err = run_bench(exe, args + TINY + ['--runs', str(RUNS), '--json'])
    check(rc == 0, f'{name}: qkv-bench exits 0 ({err.strip()[:200]})')
    if rc != 0:
        return
    doc = json.loads(out)
    results, summary = doc['results'], doc['summary']
    isas = list(doc['fma_peak_gflops'])
    check(doc['runs'] == RUNS, f'{name}: "runs" is {RUNS}')
    check(len(results) == RUNS * len(isas),
          f'{name}: one result per ISA and run ({len(results)})')
    check(len(summary) == len(isas), f'{name}: one summary row per ISA')
    flops = 4 * b * h * d * visible_pairs(lq, lk, causal, window)
    for r in results:
        tag = f'{name} {r["isa"]} run {r.get("run")}'
        check(r.get('run') in range(RUNS), f'{tag}: run index in 0..{RUNS - 1}')
        check(r['flops'] == flops, f'{tag}: FLOPs {r["flops"]} == {flops}')
        check(close(r['gflops'], r['flops'] / r['median_ns'], 1e-3 * r['gflops'] + 1e-3),
              f'{tag}: GFLOP/s = FLOPs / median ns')
        check(close(r['peak_pct'], 100 * r['gflops'] / r['peak_now_gflops'], 0.02),
              f'{tag}: % peak = GFLOP/s / peak beside the row')
        if lq == 1:
            kv_bytes = 2 * kv_elem_bytes * b * (kv_heads or h) * lk * d
            check(r.get('kv_bytes') == kv_bytes, f'{tag}: K+V bytes {r.get("kv_bytes")} == {kv_bytes}')
            check(close(r.get('kv_gbs', -1), kv_bytes / r['median_ns'], 1e-3 * r.get('kv_gbs', 0) + 1e-3),
                  f'{tag}: GB/s = bytes / median ns')
            check(close(r.get('bw_pct', -1), 100 * r.get('kv_gbs', 0) / doc['read_bandwidth_gbs'], 0.05),
                  f'{tag}: % bandwidth = GB/s / read bandwidth')
    baseline = doc['baseline'] != 'none'
    for s in summary:
        mine = [r for r in results if r['isa'] == s['isa']]
        tag = f'{name} {s["isa"]} summary'
        check(s['runs'] == RUNS and len(mine) == RUNS, f'{tag}: over {RUNS} runs')
        gflops = statistics.median(r['gflops'] for r in mine)
        pct = [r['peak_pct'] for r in mine]
        check(close(s['median_gflops'], gflops, 2e-3), f'{tag}: median GFLOP/s')
        check(close(s['median_peak_pct'], statistics.median(pct), 0.011), f'{tag}: median % peak')
        check(close(s['min_peak_pct'], min(pct), 0.011) and
              close(s['max_peak_pct'], max(pct), 0.011), f'{tag}: % peak range')
        if lq == 1:
            bw = statistics.median(r['bw_pct'] for r in mine)
            check(close(s.get('median_bw_pct', -1), bw, 0.011), f'{tag}: median % bandwidth')
        if baseline and not window:
            ratio = statistics.median(r['speedup_vs_blas'] for r in mine)
            check(close(s.get('median_speedup_vs_blas', -1), ratio, 2e-4),
                  f'{tag}: median of the runs\' ratios to OpenBLAS')
        else:
            check('median_speedup_vs_blas' not in s, f'{tag}: no ratio without a baseline')


def main():
    exe = sys.argv[1]
    check_shape(exe, 'gqa', ['--heads', '2', '--kv-heads', '1', '--lq', '24', '--lk', '40',
                             '--dim', '16'], 1, 2, 16, 24, 40)
    check_shape(exe, 'causal', ['--no-blas', '--batch', '2', '--lq', '33', '--dim', '8',
                                '--causal'], 2, 8, 8, 33, 33, causal=True)
    check_shape(exe, 'window', ['--lq', '40', '--lk', '48', '--dim', '8', '--window', '5,2'],
                1, 8, 8, 40, 48, window=(5, 2))
    check_shape(exe, 'decode', ['--no-blas', '--heads', '4', '--kv-heads', '2', '--lq', '1',
                                '--lk', '96', '--dim', '16', '--kv-dtype', 'f16'],
                1, 4, 16, 1, 96, kv_heads=2, kv_elem_bytes=2)

    rc, out, _ = run_bench(exe, ['--lq', '16', '--dim', '8', '--no-blas'] + TINY + ['--runs', '2'])
    lines = out.splitlines()
    at = next((i for i, l in enumerate(lines) if l.startswith('summary of 2 runs')), None)
    check(rc == 0 and at is not None, 'text: a summary of 2 runs')
    rows = [l for l in lines[at + 2:] if l.strip()] if at is not None else []
    check(len(rows) >= 1 and all(' sdpa ' in l and ' 2 ' in l for l in rows),
          f'text: one sdpa row per ISA over 2 runs ({len(rows)} rows)')
    for bad in ('0', '1001'):
        rc, _, err = run_bench(exe, ['--runs', bad])
        check(rc == 1 and '--runs' in err, f'--runs {bad} is refused with a message')

    print('TAP version 13')
    print(f'1..{len(checks)}')
    for n, (ok, what) in enumerate(checks, 1):
        print(f'{"ok" if ok else "not ok"} {n} - {what}')
    return 0 if all(ok for ok, _ in checks) else 1


if __name__ == '__main__':
    sys.exit(main())
