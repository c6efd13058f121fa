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
    """A QMP session that starts over when a command makes QEMU abort. Every process
    loads all its modules first (`qom-list-types` does), so that the answers are those
    of a binary with every type registered; the modules section below models when
    that happens."""
    def __init__(self, accel):
        self.accel = accel; self.q = self.start()
    def start(self):
        q = Q(self.accel)
        q.cmd('qom-list-types')
        return q
    def cmd(self, ex, **a):
        for attempt in (0, 1):
            try:
                return self.q.cmd(ex, **a)
            except RuntimeError:
                self.q.kill(); self.q = self.start()
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
    q = Fresh(accel)  # a process per accelerator
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

# Turning `vmx` on brings a model's VMX capabilities (features that are off while `vmx` is
# off): per accelerator, those of each model that has any.
vmx_brings = {}
for a in per:
    q = Q(a)
    vmx_brings[a] = {}
    for c in per[a]['cpus']:
        off = per[a]['exp'][('static', c['name'], '')]['props']
        if off.get('vmx') is not False:
            continue
        r = q.cmd('query-cpu-model-expansion', type='static',
                  model={'name': c['name'], 'props': {'vmx': True}})
        if 'return' not in r:
            continue
        on = r['return']['model']['props']
        brought = [kk for kk in on if kk != 'vmx' and on[kk] is True and off.get(kk) is False]
        if brought:
            vmx_brings[a][c['name']] = brought
    q.close()
# And what each of those models then lacks (with features that have no name), as a
# process whose `-cpu` turns `vmx` on for every model lists it.
with_vmx = {}
for a in per:
    q = Q(a, machine='pc', extra=['-cpu', 'qemu64,+vmx'])
    with_vmx[a] = {c['name']: c['unavailable-features'] for c in ret(q.cmd('query-cpu-definitions'))}
    q.close()

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
    if c['name'] in vmx_brings['kvm'] or c['name'] in vmx_brings['tcg']:
        vk, vt = vmx_brings['kvm'].get(c['name'], []), vmx_brings['tcg'].get(c['name'], [])
        row['vmx-brings'] = {'kvm': vk} if vk == vt else {'kvm': vk, 'tcg': vt}
        uk, ut = with_vmx['kvm'][c['name']], with_vmx['tcg'][c['name']]
        row['unavailable-with-vmx'] = {'kvm': uk} if uk == ut else {'kvm': uk, 'tcg': ut}
    rows.append(row)
dump_lines('cpu-models.jsonl', rows)
# What each accelerator cannot give, in the order the binary lists unavailable features
# (CPUID order): a vCPU of model `base` with every feature it may lack turned on (under
# KVM, those `host` lacks; under TCG, all) lists exactly those.
unsupported = {}
for a in per:
    host = dict(base, **per[a]['exp'][('static', 'host' if a == 'kvm' else 'max', '')]['props'])
    feats = [kk for kk, v in base.items() if isinstance(v, bool) and (a == 'tcg' or host[kk] is False)]
    q = Q(a, machine='pc', extra=['-cpu', 'base,' + ','.join('+' + kk for kk in feats)])
    unsupported[a] = ret(q.cmd('qom-get', path='/machine/unattached/device[0]',
                               property='unavailable-features'))
    q.close()
with open(os.path.join(OUT, 'cpu-properties.json'), 'w') as f:
    json.dump({'base': base, 'aliases': aliases, 'common': common, 'unsupported': unsupported},
              f, indent=0, sort_keys=False)
    f.write('\n')

# ---------------------------------------------------------------- modules
# Some types, and option `spice`, live in modules (shared objects) that the binary loads
# when something needs them; which modules a process has loaded shows in its memory map.
# In a fresh process, listing a type's properties either finds a built-in type, loads
# modules, or fails (a module's type that no look-up loads the module by). What a
# look-up alone loads (a module and the modules it needs) shows with `device_add`, which
# fails on `-machine none` before making an instance; listing a concrete type's
# properties makes one, whose parts may need more. Then, per look-up that loads modules,
# which of those failing types and which options are there afterwards: each module type
# and option is put in the one module whose presence it follows.
q = Q('tcg')
q.cmd('qom-list-types')
every_module = q.modules()
every_option = [o['option'] for o in ret(q.cmd('query-command-line-options'))]
q.close()
interfaces = set(t for t in order if 'interface' in ancestors(t))
loads, absent = {}, []
q = Q('tcg')
for t in order:
    if t in interfaces or qlp[t].get('aborts'):
        continue
    try:
        r = q.cmd('qom-list-properties', typename=t)
    except RuntimeError:
        q.kill(); q = Q('tcg'); continue
    now = q.modules()
    if now:
        loads[t] = now
        q.close(); q = Q('tcg')
    elif 'error' in r:
        absent.append(t)
q.close()
looks, after = {}, {}
for t in loads:
    q = Q('tcg')
    q.cmd('device_add', driver=t)
    looks[t] = q.modules()
    assert looks[t] and looks[t] <= loads[t], t
    q.close()
    q = Q('tcg')
    q.cmd('qom-list-properties', typename=t)
    found = set(a for a in absent if 'return' in q.cmd('qom-list-properties', typename=a))
    opts = set(o['option'] for o in ret(q.cmd('query-command-line-options')))
    assert q.modules() == loads[t], t
    after[t] = (found, opts)
    q.close()
q = Q('tcg')
fresh_options = set(o['option'] for o in ret(q.cmd('query-command-line-options')))
q.close()
def owner_of_lookup(t):
    """The module a look-up of `t` loads with what it needs: the one that every look-up
    loading it loads all of `t`'s with."""
    fits = [m for m in looks[t] if all(looks[t] <= looks[l] for l in looks if m in looks[l])]
    assert len(fits) == 1, (t, fits)
    return fits[0]
def owner(present):
    """The one module whose being loaded matches `present(look-up)` for every look-up."""
    fits = [m for m in sorted(every_module) if all((m in loads[l]) == present(l) for l in loads)]
    assert len(fits) == 1, fits
    return fits[0]
modules = {m: {'deps': [], 'types': [], 'lookup': [], 'options': [], 'instances': {}}
           for m in sorted(every_module)}
for t in order:
    if t in loads:
        m = owner_of_lookup(t)
        modules[m]['types'].append(t); modules[m]['lookup'].append(t)
        deps = sorted(looks[t] - {m})
        assert modules[m]['deps'] in ([], deps), (t, deps)
        modules[m]['deps'] = deps
        if loads[t] != looks[t]:
            modules[m]['instances'][t] = sorted(loads[t] - looks[t])
    elif t in absent:
        modules[owner(lambda l: t in after[l][0])]['types'].append(t)
for o in every_option:
    if o not in fresh_options:
        modules[owner(lambda l: o in after[l][1])]['options'].append(o)
for m, rec in modules.items():
    if not rec['lookup']:
        with_m = [looks[l] for l in looks if m in looks[l]]
        rec['deps'] = sorted(set.intersection(*with_m) - {m})
    for k in list(rec):
        if not rec[k]: del rec[k]
with open(os.path.join(OUT, 'modules.json'), 'w') as f:
    json.dump(modules, f, indent=1, sort_keys=True)
    f.write('\n')
assert set().union(*loads.values()) == every_module
print('wrote', OUT)
