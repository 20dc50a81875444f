#!/usr/bin/env python3
"""Baseline stays baseline: disassemble every member of libqkv.a (x86-64).

Only the objects built from kernels/avx2/ and kernels/avx512/ may use AVX.
Everything else (drivers, dispatch, CPU detection, scalar kernels) runs
before or instead of them on any x86-64 CPU, so one stray VEX instruction
there is a SIGILL on a CPU without AVX. Meson names the members after their
sources (kernels/avx2/gemm_nt_avx2.c -> avx2_gemm_nt_avx2.c.o), which is how
a member's ISA is recognised.

  check_baseline.py OBJDUMP LIBQKV_A HAVE_AVX2 HAVE_AVX512

HAVE_* (0 or 1) say which ISA objects this build compiled. Checks, as TAP:
  - baseline members: no ymm/zmm/opmask register, no VEX/EVEX instruction
    (no mnemonic starting with 'v'), so not even 128-bit AVX;
  - avx2 members: no zmm, no opmask and no register 16..31 (all EVEX-only:
    would fault on an AVX2-only CPU such as Haswell);
  - when built, the avx2 objects together do use ymm and the avx512 objects
    zmm, so the recognition above is known to work and the test can fail.
"""
import re
import subprocess
import sys

MEMBER_RE = re.compile(r'^(\S+\.o):\s+file format')
SYMBOL_RE = re.compile(r'^[0-9a-f]+ <(.+)>:$')
INSN_RE = re.compile(r'^\s*[0-9a-f]+:\t(.*)$')
YMM_RE = re.compile(r'%ymm\d+')
ZMM_RE = re.compile(r'%zmm\d+')
OPMASK_RE = re.compile(r'%k[0-7]\b')
HIGH_REG_RE = re.compile(r'%[xy]mm(1[6-9]|2\d|3[01])\b')
# Instruction prefixes objdump prints before the mnemonic.
PREFIXES = {'lock', 'rep', 'repz', 'repnz', 'repe', 'repne', 'data16',
            'addr32', 'notrack', 'bnd', 'cs', 'ds'}
# The only x86 mnemonics starting with 'v' that are not VEX/EVEX encoded.
LEGACY_V = {'verr', 'verw'}


def disassemble(objdump, archive):
    """{member: [(symbol, instruction text), ...]} in archive order."""
    out = subprocess.run([objdump, '-d', '--no-show-raw-insn', archive],
                         check=True, capture_output=True, text=True).stdout
    members, current, symbol = {}, None, '?'
    for line in out.splitlines():
        m = MEMBER_RE.match(line)
        if m:
            current = members.setdefault(m.group(1), [])
            continue
        m = SYMBOL_RE.match(line)
        if m:
            symbol = m.group(1)
            continue
        m = INSN_RE.match(line)
        if m and current is not None:
            current.append((symbol, m.group(1).strip()))
    return members


def mnemonic(insn):
    for token in insn.split():
        if token not in PREFIXES:
            return token
    return ''


def is_vex(insn):
    op = mnemonic(insn)
    return op.startswith('v') and op not in LEGACY_V


def isa_of(member):
    for isa in ('avx512', 'avx2'):
        if member.startswith(isa + '_'):
            return isa
    return 'baseline'


def offenders(insns, bad):
    """The first few (symbol, instruction) pairs for which bad() holds."""
    return [f'{sym}: {insn}' for sym, insn in insns if bad(insn)][:3]


class Tap:
    def __init__(self):
        self.count = 0
        self.failed = 0

    def result(self, ok, text, details=()):
        self.count += 1
        self.failed += not ok
        print(f'{"ok" if ok else "not ok"} {self.count} - {text}')
        for d in details:
            print(f'#   {d}')


def check_member(tap, member, insns):
    isa = isa_of(member)
    if isa == 'baseline':
        bad = offenders(insns, lambda i: is_vex(i) or YMM_RE.search(i) or
                        ZMM_RE.search(i) or OPMASK_RE.search(i))
        tap.result(not bad, f'{member}: baseline, no AVX of any width '
                   f'({len(insns)} instructions)', bad)
    elif isa == 'avx2':
        bad = offenders(insns, lambda i: ZMM_RE.search(i) or
                        OPMASK_RE.search(i) or HIGH_REG_RE.search(i))
        tap.result(not bad, f'{member}: avx2, no AVX-512 '
                   f'({len(insns)} instructions)', bad)


def check_isa_uses_its_registers(tap, members, isa, expected, reg_re, reg):
    objs = [m for m in members if isa_of(m) == isa]
    if not expected:
        tap.result(not objs, f'{isa} not built: no {isa}_* members',
                   objs[:3])
        return
    uses = sum(1 for m in objs for _, insn in members[m] if reg_re.search(insn))
    tap.result(len(objs) > 0 and uses > 0,
               f'{isa} built: {len(objs)} {isa}_* members, '
               f'{uses} instructions on {reg} registers')


def main(argv):
    if len(argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    objdump, archive = argv[1], argv[2]
    have_avx2, have_avx512 = argv[3] == '1', argv[4] == '1'
    members = disassemble(objdump, archive)
    tap = Tap()
    tap.result(len(members) > 0 and any(isa_of(m) == 'baseline' for m in members),
               f'{archive}: {len(members)} members disassembled')
    for member, insns in members.items():
        check_member(tap, member, insns)
    check_isa_uses_its_registers(tap, members, 'avx2', have_avx2, YMM_RE, 'ymm')
    check_isa_uses_its_registers(tap, members, 'avx512', have_avx512, ZMM_RE, 'zmm')
    print(f'1..{tap.count}')
    if tap.failed:
        print(f'# {tap.failed} of {tap.count} failed')
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
