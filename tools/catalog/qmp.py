"""A minimal QMP client over a QEMU child's standard input and output."""
import json, subprocess, threading, queue
class Q:
    def __init__(self, accel=None):
        args=['qemu-system-x86_64','-S','-display','none','-nodefaults','-machine','none','-qmp','stdio']
        if accel: args+=['-accel',accel]
        self.p=subprocess.Popen(args,stdin=subprocess.PIPE,stdout=subprocess.PIPE,stderr=subprocess.DEVNULL,text=True)
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
    def close(self):
        try: self.cmd('quit')
        except Exception: pass
        self.p.stdin.close(); self.p.wait()
