#!/usr/bin/env python3
"""Ask a real qemu-system-x86_64 about its interface and write the machine's catalogue.

Usage: tools/catalog/extract.py [OUT_DIR]
(default: crates/machine/data/qemu-10.0.2-x86_64, relative to the repository root).

Runs `qemu-system-x86_64 -S -display none -nodefaults -machine none -qmp stdio`
with `-accel kvm` and with `-accel tcg` and writes compact JSON-lines files; see
crates/machine/data/README.md for what each holds.  Needs /dev/kvm for the KVM pass.
"""
import json, os, sys
sys.path.insert(0, os.path.dirname(__file__))
from qmp import Q

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'crates/machine/data/qemu-10.0.2-x86_64')
os.makedirs(OUT, exist_ok=True)

class Fresh:
    """A QMP session that starts over when a command makes QEMU abort."""
    def __init__(self, accel):
        self.accel = accel; self.q = Q(accel)
    def cmd(self, ex, **a):
        for attempt in (0, 1):
            try:
                return self.q.cmd(ex, **a)
            except RuntimeError:
                self.q = Q(self.accel)
        return {'aborts': True}
    def close(self):
        self.q.close()

def ret(r):
    assert 'return' in r, r
    return r['return']

def dump_lines(name, rows):
    with open(os.path.join(OUT, name), 'w') as f:
        for row in rows:
            f.write(json.dumps(row, separators=(',', ':'), ensure_ascii=False) + '\n')

def prop_row(p):
    row = [p['name'], p['type'], p.get('description')]
    if 'default-value' in p:
        row.append(p['default-value'])
    return row

# ---------------------------------------------------------------- QOM types
k = Fresh('kvm')
types = ret(k.cmd('qom-list-types', abstract=True))
order = [t['name'] for t in types]
parent = {t['name']: t.get('parent') for t in types}
abstract = {t['name']: t.get('abstract', False) for t in types}
def ancestors(n):
    out = []
    while n:
        out.append(n); n = parent[n]
    return out
implementers = {t: set(x['name'] for x in ret(k.cmd('qom-list-types', implements=t, abstract=True)))
                for t in order}
# Interfaces a type has (ancestors aside), then those it adds to its parent's.
# ("interface" itself is left out: a cast to it is ambiguous for a type with
# more than one interface, which the catalogue computes.)
full_ifaces = {t: set(i for i in order if i != 'interface' and t in implementers[i]) for t in order}
own_ifaces = {t: full_ifaces[t] - (full_ifaces[parent[t]] if parent[t] else set()) - set(ancestors(t))
              for t in order}
qlp = {t: k.cmd('qom-list-properties', typename=t) for t in order}
dlp = {t: k.cmd('device-list-properties', typename=t) for t in order}

rows = []
for t in order:
    row = {'name': t}
    if parent[t]: row['parent'] = parent[t]
    if abstract[t]: row['abstract'] = True
    if own_ifaces[t]: row['interfaces'] = sorted(own_ifaces[t], key=order.index)
    r = qlp[t]
    if r.get('aborts'):
        row['aborts'] = True
    elif 'error' in r and r['error']['desc'] == f"Class '{t}' not found":
        row['unloaded'] = True
    if 'return' in r:
        mine = r['return']
        p = parent[t]
        theirs = qlp[p]['return'] if p and 'return' in qlp.get(p, {}) else []
        names = [x['name'] for x in theirs]
        if [x['name'] for x in mine[:len(theirs)]] == names and all(
                a == b for a, b in zip(mine, theirs)):
            row['props'] = [prop_row(x) for x in mine[len(theirs):]]
        else:
            row['props'] = [prop_row(x) for x in mine]
            row['complete'] = True
    rows.append(row)
dump_lines('qom-types.jsonl', rows)
k.close()

# The checks the catalogue's computation relies on (any failure: fix the format).
for t in order:
    want = dlp[t]
    if 'return' in want:
        skip = ('type', 'realized', 'hotpluggable', 'hotplugged', 'parent_bus')
        got = [x for x in qlp[t]['return'] if x['name'] not in skip and not x['name'].startswith('legacy-')]
        assert got == want['return'], t

# ---------------------------------------------------------------- per accelerator
def expansions(q, names):
    out = {}
    for n in names:
        for ty in ('static', 'full'):
            out[(ty, n, '')] = ret(q.cmd('query-cpu-model-expansion', type=ty, model={'name': n}))['model']
    for n in ('host', 'max'):
        for props in ({'migratable': False}, {'migratable': False, 'hv-passthrough': True}):
            for ty in ('static', 'full'):
                out[(ty, n, json.dumps(props, sort_keys=True))] = ret(q.cmd(
                    'query-cpu-model-expansion', type=ty, model={'name': n, 'props': props}))['model']
    return out

per = {}
for accel in ('kvm', 'tcg'):
    q = Fresh(accel)  # a fresh process: answers change once modules are loaded
    d = {}
    d['cpus'] = ret(q.cmd('query-cpu-definitions'))
    d['exp'] = expansions(q, [c['name'] for c in d['cpus']])
    d['machines'] = ret(q.cmd('query-machines'))
    d['options'] = ret(q.cmd('query-command-line-options'))
    d['caps'] = ret(q.cmd('query-migrate-capabilities'))
    d['tpm-models'] = ret(q.cmd('query-tpm-models'))
    d['tpm-types'] = ret(q.cmd('query-tpm-types'))
    d['sev'] = q.cmd('query-sev-capabilities')['error']
    d['sgx'] = q.cmd('query-sgx-capabilities')['error']
    per[accel] = d
    q.close()

for key in ('machines', 'options', 'caps', 'tpm-models', 'tpm-types'):
    assert per['kvm'][key] == per['tcg'][key], key
dump_lines('machines.jsonl', per['kvm']['machines'])
dump_lines('command-line-options.jsonl', per['kvm']['options'])
with open(os.path.join(OUT, 'misc.json'), 'w') as f:
    json.dump({
        'migrate-capabilities': per['kvm']['caps'],
        'tpm-models': per['kvm']['tpm-models'],
        'tpm-types': per['kvm']['tpm-types'],
        'sev-capabilities': {a: per[a]['sev'] for a in per},
        'sgx-capabilities': {a: per[a]['sgx'] for a in per},
    }, f, indent=1, sort_keys=True)
    f.write('\n')

# ---------------------------------------------------------------- CPU models
# Static expansions are `base` plus every static property; a model is its
# differences from `base`. Full expansions add properties that are not static:
# aliases of static ones (same value in every expansion), values common to
# every model of an accelerator, and the model's own.
base = per['kvm']['exp'][('static', 'base', '')]['props']
static_keys = list(base)
all_full = [(a, key, m['props']) for a in per for key, m in per[a]['exp'].items() if key[0] == 'full']
def static_of(a, key):
    return per[a]['exp'][('static',) + key[1:]]['props']
extra_keys = sorted(set(kk for _, _, p in all_full for kk in p) - set(static_keys))
# An alias is a non-static boolean property that, set on a model, changes one
# static property: ask the binary which (qemu64's static expansion with the
# property flipped).
q = Fresh('tcg')
ref = ret(q.cmd('query-cpu-model-expansion', type='full', model={'name': 'qemu64'}))['model']['props']
ref_static = ret(q.cmd('query-cpu-model-expansion', type='static', model={'name': 'qemu64'}))['model']['props']
aliases = {}
for kk in extra_keys:
    if not isinstance(ref.get(kk), bool):
        continue
    r = q.cmd('query-cpu-model-expansion', type='static',
              model={'name': 'qemu64', 'props': {kk: not ref[kk]}})
    if 'return' not in r:
        continue
    changed = [s for s, v in r['return']['model']['props'].items() if ref_static[s] != v]
    if len(changed) == 1 and ref_static[changed[0]] == ref[kk]:
        aliases[kk] = changed[0]
q.close()
common = {}
for a in per:
    c = {}
    for kk in extra_keys:
        if kk in aliases: continue
        vals = [json.dumps(p[kk]) for aa, key, p in all_full if aa == a and kk in p and key[2] == '']
        if vals:
            c[kk] = json.loads(max(set(vals), key=vals.count))
    common[a] = c

def expansion_row(a, key):
    s = static_of(a, key)
    f = per[a]['exp'][('full',) + key[1:]]
    row = {'static': {kk: v for kk, v in s.items() if base[kk] != v}}
    full_extra = {kk: v for kk, v in f['props'].items()
                  if kk not in base and kk not in aliases and common[a].get(kk, None) != v}
    missing = [kk for kk in common[a] if kk not in f['props']]
    if full_extra: row['full'] = full_extra
    if missing: row['full-absent'] = missing
    return row

rows = []
for i, c in enumerate(per['kvm']['cpus']):
    t = per['tcg']['cpus'][i]
    assert {kk: v for kk, v in c.items() if kk != 'unavailable-features'} == \
           {kk: v for kk, v in t.items() if kk != 'unavailable-features'}
    row = {kk: v for kk, v in c.items() if kk != 'unavailable-features'}
    row['unavailable-features'] = {'kvm': c['unavailable-features'], 'tcg': t['unavailable-features']}
    ek = expansion_row('kvm', ('', c['name'], ''))
    et = expansion_row('tcg', ('', c['name'], ''))
    row['expansion'] = {'kvm': ek} if ek == et else {'kvm': ek, 'tcg': et}
    variants = {}
    for a in per:
        for key in per[a]['exp']:
            if key[0] == 'static' and key[1] == c['name'] and key[2]:
                variants.setdefault(a, {})[key[2]] = expansion_row(a, key)
    if variants: row['variants'] = variants
    rows.append(row)
dump_lines('cpu-models.jsonl', rows)
with open(os.path.join(OUT, 'cpu-properties.json'), 'w') as f:
    json.dump({'base': base, 'aliases': aliases, 'common': common}, f, indent=0, sort_keys=False)
    f.write('\n')
print('wrote', OUT)
