"""A minimal QMP client over a QEMU child's standard input and output."""
import atexit, json, re, subprocess, threading, queue
_children = []
@atexit.register
def _end_children():
    """No child outlives the script (QEMU stays on after its monitor's input closes)."""
    for p in _children:
        if p.poll() is None:
            p.kill(); p.wait()
class Q:
    def __init__(self, accel=None, machine='none', extra=()):
        args=['qemu-system-x86_64','-S','-display','none','-nodefaults','-machine',machine,'-qmp','stdio']
        if accel: args+=['-accel',accel]
        args+=list(extra)
        self.p=subprocess.Popen(args,stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
        _children.append(self.p)
        self.q=queue.Queue()
        threading.Thread(target=self._read,daemon=True).start()
        self.q.get(timeout=20)
        self.cmd('qmp_capabilities')
    def _read(self):
        for line in self.p.stdout: self.q.put(line)
        self.q.put(None)
    def cmd(self, ex, **a):
        m={'execute':ex}
        if a: m['arguments']=a
        try:
            self.p.stdin.write(json.dumps(m)+'\n'); self.p.stdin.flush()
        except (BrokenPipeError, OSError):
            raise RuntimeError('closed '+json.dumps(m))
        while True:
            try: line=self.q.get(timeout=30)
            except queue.Empty:
                self.p.kill(); raise RuntimeError('timeout '+json.dumps(m))
            if line is None: raise RuntimeError('eof '+json.dumps(m))
            try: r=json.loads(line)
            except ValueError: continue
            if 'event' in r: continue
            return r
    def modules(self):
        """The modules (shared objects in QEMU's module directory) the process has loaded."""
        out = set()
        with open(f'/proc/{self.p.pid}/maps') as f:
            for line in f:
                m = re.search(r'/qemu/([^/]+)\.so$', line.strip())
                if m: out.add(m.group(1))
        return out
    def close(self):
        try: self.cmd('quit')
        except Exception: pass
        try: self.p.stdin.close()
        except OSError: pass
        try: self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill(); self.p.wait()
    def kill(self):
        if self.p.poll() is None:
            self.p.kill(); self.p.wait()
