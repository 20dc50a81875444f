#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus_sdpa,
tests/fuzz/corpus_mha): byte strings laid out the way fuzz_sdpa.c and
fuzz_mha.c decode them, one per interesting kind of call (valid calls of
every shape family first, then one fault each), plus a few random ones.
Deterministic: rerunning rewrites the same files.

    python3 tests/fuzz/gen_corpus.py
"""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))


def sdpa_seed(isa=0, b=1, hkv=1, group=1, lq=7, lk=20, d=15, dv=15, kdt=0, vdt=0,
              fault=(0,), mask=0, layouts=((0, 0),) * 5, flags=0, kv_len=(),
              scale=0, threads=2, extras=(0,), null=0, alias=0, mode=0, seed=1):
    # Sizes are decoded as 1 + byte % range: pass size - 1.
    out = [isa, b - 1, hkv - 1, group - 1, lq - 1, lk - 1, d - 1, dv - 1, kdt, vdt]
    out += list(fault) + [mask]
    for layout, pad in layouts:
        out += [layout, pad]
    out += [flags] + list(kv_len) + [scale, threads] + list(extras)
    out += [null, alias, mode] + [0] * 10 + list(seed.to_bytes(8, 'big'))
    return bytes(out)


def sdpa_seeds():
    s = {}
    s['basic'] = sdpa_seed()
    s['defaults_empty'] = b''
    for isa in range(5):
        s[f'isa{isa}'] = sdpa_seed(isa=isa, lq=33, lk=70, d=17, dv=9)
    s['gqa_mask_full'] = sdpa_seed(b=2, hkv=2, group=3, mask=1, flags=3)
    s['mask_bcast_rows'] = sdpa_seed(mask=4, layouts=((0, 0),) * 4 + ((4 + 256 % 5, 0),))
    s['f16_kv'] = sdpa_seed(kdt=1, vdt=1, flags=3, lk=130)
    s['bf16_kv'] = sdpa_seed(kdt=2, vdt=2, lq=40, lk=140, d=40, dv=40)
    s['causal_br'] = sdpa_seed(flags=1 << 3 | 3, lq=40, lk=20)
    s['causal_tl'] = sdpa_seed(flags=2 << 3 | 1, lq=40, lk=60)
    s['causal_bad'] = sdpa_seed(flags=6 << 3)
    s['kv_len'] = sdpa_seed(b=2, flags=4 | 3, kv_len=(5, 0, 0, 0, 0, 0, 0, 0))
    s['kv_len_bad'] = sdpa_seed(b=2, flags=4, kv_len=(250, 253, 0, 0, 0, 0, 0, 0))
    s['bshd'] = sdpa_seed(layouts=((1, 0), (1, 0), (1, 0), (1, 0), (0, 0)), b=2, hkv=2)
    s['padded'] = sdpa_seed(layouts=((2, 3),) * 5, mask=1)
    s['heads_outer'] = sdpa_seed(layouts=((3, 0),) * 5, b=2, hkv=3)
    s['rows_overlap_in'] = sdpa_seed(layouts=((196, 0), (196, 0), (0, 0), (0, 0), (0, 0)))
    s['rows_overlap_out'] = sdpa_seed(layouts=((0, 0),) * 3 + ((196, 0), (0, 0)))
    s['inner_stride'] = sdpa_seed(layouts=((198, 1),) + ((0, 0),) * 4)
    s['negative_stride'] = sdpa_seed(layouts=((0, 0), (199, 1)) + ((0, 0),) * 3)
    s['huge_stride'] = sdpa_seed(b=2, layouts=((0, 0), (0, 0), (200, 0), (0, 0), (0, 0)))
    s['bad_size_zero'] = sdpa_seed(fault=(200, 1, 0))
    s['bad_size_huge'] = sdpa_seed(fault=(201, 2, 2))
    s['shape_mismatch'] = sdpa_seed(fault=(182, 3))
    s['bad_dtype'] = sdpa_seed(fault=(171,))
    s['bad_kv_dtype'] = sdpa_seed(kdt=6)
    s['scale_neg'] = sdpa_seed(scale=110)
    s['scale_nan'] = sdpa_seed(scale=250)
    s['scale_inf'] = sdpa_seed(scale=251)
    s['scale_huge'] = sdpa_seed(scale=253)
    s['threads_neg'] = sdpa_seed(threads=0)
    s['threads_many'] = sdpa_seed(threads=136, lq=40, b=2, hkv=3, group=3)
    s['window'] = sdpa_seed(extras=(1, 5, 3), lq=30, lk=90)
    s['softcap'] = sdpa_seed(extras=(2, 40))
    s['softcap_bad'] = sdpa_seed(extras=(2, 255))
    s['alibi_sinks'] = sdpa_seed(extras=(4 | 8,), group=3, flags=3)
    s['sinks_bad'] = sdpa_seed(extras=(8 | 32, 1, 2))
    s['params_null'] = sdpa_seed(extras=(192,))
    for n in (1, 4, 5, 9):
        s[f'null{n}'] = sdpa_seed(null=n, mask=1)
    for a in range(1, 8):
        s[f'alias{a}'] = sdpa_seed(alias=a, flags=4 | 3, mask=1, kv_len=(3,) * 8)
    for m in (5, 6, 7):
        s[f'values{m}'] = sdpa_seed(mode=m, flags=3)
    return s


def mha_seed(isa=0, d_model=16, heads=4, kv=(0,), hd=(1,), kvd=(0,), bias=1, fault=(0,),
             seed=3, null=0, batch=1, lq=5, lk=9, ffault=(0,), inputs=0, flags=3,
             kv_len=(), threads=2, extras=(0,), fnull=0, alias=0, moderate=0):
    out = [isa, d_model - 1, heads - 1] + list(kv) + list(hd) + list(kvd) + [bias]
    out += list(fault) + [seed, null, batch - 1, lq - 1, lk - 1] + list(ffault)
    out += [inputs, flags] + list(kv_len) + [threads] + list(extras)
    out += [fnull, alias, moderate] + [0] * 9
    return bytes(out)


def mha_seeds():
    s = {}
    s['basic'] = mha_seed()
    s['defaults_empty'] = b''
    for isa in range(5):
        s[f'isa{isa}'] = mha_seed(isa=isa, d_model=48, heads=6, lq=20, lk=70)
    s['self'] = mha_seed(inputs=1, lq=12)
    s['shared_kv'] = mha_seed(inputs=2, kvd=(1 | 2 | 4, 11))
    s['cross_dims'] = mha_seed(kvd=(3, 9, 20), hd=(0, 7))
    s['gqa'] = mha_seed(d_model=24, heads=6, kv=(3, 1), flags=3 | 1 << 2)
    s['mqa'] = mha_seed(kv=(1,), inputs=1)
    s['no_bias'] = mha_seed(bias=0)
    s['heads_not_dividing'] = mha_seed(d_model=10, heads=4)
    s['kv_not_dividing'] = mha_seed(heads=6, kv=(3, 3))
    s['bad_dmodel'] = mha_seed(fault=(224, 0))
    s['huge_dmodel'] = mha_seed(fault=(224, 2))
    s['huge_kdim'] = mha_seed(fault=(228, 3))
    s['neg_head_dim'] = mha_seed(fault=(227, 1))
    for n in (1, 4, 5, 9, 10, 11):
        s[f'create_null{n}'] = mha_seed(null=n)
    s['causal_kvlen'] = mha_seed(flags=3 | 1 << 2 | 32, batch=2, kv_len=(4, 0, 0, 0, 0, 0, 0, 0))
    s['kvlen_bad'] = mha_seed(flags=32, kv_len=(251,) * 8)
    s['causal_bad'] = mha_seed(flags=6 << 2)
    s['batch_zero'] = mha_seed(ffault=(232, 0))
    s['lk_huge'] = mha_seed(ffault=(234, 2))
    s['threads_neg'] = mha_seed(threads=0)
    s['features'] = mha_seed(extras=(1 | 2 | 4 | 8, 3, 4, 16))
    for n in range(1, 7):
        s[f'fwd_null{n}'] = mha_seed(fnull=n)
    for a in range(1, 8):
        s[f'alias{a}'] = mha_seed(alias=a, flags=3 | 32, kv_len=(2,) * 8, extras=(4,))
    s['huge_values'] = mha_seed(moderate=7)
    return s


def write(dirname, seeds, n_random, length):
    path = os.path.join(HERE, dirname)
    os.makedirs(path, exist_ok=True)
    rng = random.Random(dirname)
    for i in range(n_random):
        seeds[f'random{i:02d}'] = bytes(rng.randrange(256) for _ in range(length))
    for name, data in seeds.items():
        with open(os.path.join(path, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    write('corpus_sdpa', sdpa_seeds(), 6, 64)
    write('corpus_mha', mha_seeds(), 6, 48)
