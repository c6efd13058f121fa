#!/usr/bin/env python3
"""Where each CPU feature of the binary lives: its CPUID leaf, subleaf, register and bit,
or its MSR and bit, as the binary itself says.

Usage: tools/catalog/feature_bits.py [OUT_DIR]
(default: crates/machine/data/qemu-10.0.2-x86_64, relative to the repository root).

For each boolean static property of model `base` (cpu-properties.json, written by
extract.py), starts `qemu-system-x86_64 -machine pc -accel tcg -cpu base,+FEATURE` and
reads where the feature is: the vCPU's `feature-words` (or `filtered-features`) show the
one CPUID bit it set, and the binary's warning about a feature it cannot give names the
bit (`CPUID.07H:ECX.gfni [bit 8]`, `MSR(10AH).ibrs-all [bit 1]`). Features neither tells
about (the binary's own, such as `kvmclock` under TCG) are asked again under KVM.
Writes cpu-feature-bits.json: `words`, the feature words in the binary's order, each
[kind, leaf, subleaf, register], kind "cpuid" (subleaf null when the leaf has none) or
"msr" (leaf is the MSR, subleaf and register null); `features`: {feature: [word, bit]},
bit a list for a feature of several bits. (`lmce` is no CPUID or MSR
feature bit the binary names.)
"""
import json, os, re, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'crates/machine/data/qemu-10.0.2-x86_64')
CPU = '/machine/unattached/device[0]'

def ask(accel, feature):
    args = ['qemu-system-x86_64', '-S', '-display', 'none', '-nodefaults', '-machine', 'pc',
            '-accel', accel, '-cpu', 'base,+' + feature, '-qmp', 'stdio']
    msgs = [{'execute': 'qmp_capabilities'},
            {'execute': 'qom-get', 'arguments': {'path': CPU, 'property': 'feature-words'}},
            {'execute': 'qom-get', 'arguments': {'path': CPU, 'property': 'filtered-features'}},
            {'execute': 'quit'}]
    p = subprocess.run(args, input=''.join(json.dumps(m) + '\n' for m in msgs),
                       capture_output=True, text=True, timeout=60)
    replies = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    replies = [r for r in replies if 'return' in r or 'error' in r]
    return replies, p.stderr

WARN = re.compile(r'(CPUID(?:\.([0-9A-F]+)H|\[eax=([0-9a-f]+)h,ecx=([0-9a-f]+)h\]):([A-Z]+)|MSR\(([0-9A-F]+)H\))\.([^ ]+) \[bit (\d+)\]')

def locate(accel, feature):
    replies, err = ask(accel, feature)
    # (The vCPU's words name the subleaf; the warnings do not always.)
    found = []
    for r in replies[1:3]:
        for w in r.get('return', []):
            if w['features']:
                bits = [b for b in range(32) if w['features'] >> b & 1]
                found.append(['cpuid', w['cpuid-input-eax'], w.get('cpuid-input-ecx'),
                              w['cpuid-register'], bits])
    if len(found) > 1:
        # (`xsave` brings the XSAVE components it can save, in leaf 0DH.)
        found = [f for f in found if f[1] != 0xd]
    if len(found) == 1:
        # (A feature of more than one bit, such as `kvmclock`, has them all.)
        f = found[0]
        f[4] = f[4][0] if len(f[4]) == 1 else f[4]
        return f
    for m in WARN.finditer(err):
        if m.group(7) == feature and m.group(6):
            return ['msr', int(m.group(6), 16), None, None, int(m.group(8))]
    return None

def main():
    props = json.load(open(os.path.join(OUT, 'cpu-properties.json')))
    features = [k for k, v in props['base'].items() if isinstance(v, bool)]
    out = {}
    with ThreadPoolExecutor(2) as ex:
        for f, where in zip(features, ex.map(lambda f: locate('tcg', f), features)):
            out[f] = where
        rest = [f for f in features if out[f] is None]
        for f, where in zip(rest, ex.map(lambda f: locate('kvm', f), rest)):
            out[f] = where
    missing = [f for f, w in out.items() if w is None]
    if missing:
        print('not located:', missing, file=sys.stderr)
    located = {f: w for f, w in out.items() if w is not None}
    key = lambda w: (w[0], w[1], w[2], w[3])
    # The order of the feature words, in which the binary lists unavailable features: the
    # vCPU's `feature-words` lists the CPUID words last first; the lists of unavailable
    # features (cpu-properties.json) place the MSR words among them.
    replies, _ = ask('tcg', 'fpu')
    chains = [[('cpuid', w['cpuid-input-eax'], w.get('cpuid-input-ecx'), w['cpuid-register'])
               for w in reversed(replies[1]['return'])]]
    for accel in ('kvm', 'tcg'):
        chain = []
        for f in props['unsupported'].get(accel, []):
            if f in located and key(located[f]) not in chain:
                chain.append(key(located[f]))
        chains.append(chain)
    words = []
    pending = {w for c in chains for w in c}
    while pending:
        # The first word of a chain that no other chain has after an unplaced word.
        for c in chains:
            head = next((w for w in c if w in pending), None)
            if head is None:
                continue
            if all(head not in d or all(w not in pending for w in d[:d.index(head)]) for d in chains):
                words.append(head)
                pending.discard(head)
                break
        else:
            raise SystemExit('feature words in no consistent order')
    index = {w: i for i, w in enumerate(words)}
    data = {'words': [list(w) for w in words],
            'features': {f: [index[key(w)], w[4]] for f, w in located.items() if key(w) in index}}
    with open(os.path.join(OUT, 'cpu-feature-bits.json'), 'w') as f:
        json.dump(data, f, separators=(',', ':'))
        f.write('\n')

main()
