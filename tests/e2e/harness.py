"""End-to-end harness: the real build/herald on a free loopback port, real
sockets, the real `herald client`, `herald call` and `herald run`.

    with Server() as srv:
        c = srv.wire("Vanessa", systemUserName="Vanessa")   # raw protocol
        srv.run_script('print(1)')                           # herald run
        srv.wait_log("session .* opened")
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERALD = os.path.join(ROOT, "build", "herald")
SCRIPTS = os.path.join(ROOT, "scripts")


class Lines:
    """Collects a stream's lines from a thread, so tests can wait on them."""

    def __init__(self, stream):
        self.lines = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._pump, args=(stream,),
                                       daemon=True)
        self.thread.start()

    def _pump(self, stream):
        for line in iter(stream.readline, ""):
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of stream
            self.cond.notify_all()

    def wait(self, pattern, timeout=5, start=0):
        """The first line from index start that matches pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is not None and rx.search(line):
                        return line
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] is None):
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s; "
                        f"got:\n" + "\n".join(l for l in self.lines if l))
                self.cond.wait(left)

    def text(self):
        with self.cond:
            return "\n".join(l for l in self.lines if l is not None)


class Wire:
    """A raw protocol connection: JSON lines over TCP."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, timeout=5):
        """The next frame as a dict; None when the server closed."""
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def recv_type(self, type_, timeout=5):
        """Skips frames until one of type_ (answering pings)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"closed while waiting for {type_}")
            if frame.get("type") == type_:
                return frame
            if frame.get("type") == "ping":
                self.send({"type": "pong"})

    def closed(self, timeout=5):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def hello(self, user="user", **fields):
        frame = {"type": "hello", "userName": user, "protocol": 1}
        frame.update(fields)
        self.send(frame)
        return self.recv()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    """build/herald serve on a free port with its own admin socket."""

    def __init__(self, config=None, scripts=SCRIPTS, args=(), env=None):
        self.dir = tempfile.mkdtemp(prefix="herald-test-")
        self.socket = os.path.join(self.dir, "admin", "herald.sock")
        cmd = [HERALD, "serve", "--listen", "127.0.0.1:0", "--admin-socket",
               self.socket, "--no-console", "--scripts", scripts,
               "--log-level", "debug"]
        if config is not None:
            path = os.path.join(self.dir, "herald.conf.lua")
            with open(path, "w") as f:
                f.write(config)
            cmd += ["--config", path]
        cmd += list(args)
        self.env = dict(os.environ, HERALD_SOCKET=self.socket)
        self.env.update(env or {})
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=self.env,
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.log = Lines(self.proc.stdout)
        self.wires = []
        self.children = []
        line = self.log.wait(r"listening on|herald: ", timeout=10)
        m = re.search(r"listening on [^:]+:(\d+)", line)
        if not m:
            raise AssertionError("server did not start: " + self.log.text())
        self.port = int(m.group(1))
        self.log.wait("admin socket", timeout=5)
        self.env["HERALD_SERVER"] = f"127.0.0.1:{self.port}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def wire(self, user=None, **fields):
        """A raw connection, greeted as user when given."""
        w = Wire(self.port)
        self.wires.append(w)
        if user is not None:
            welcome = w.hello(user, **fields)
            assert welcome and welcome["type"] == "welcome", welcome
            w.welcome = welcome
        return w

    def cli(self, *args, timeout=20, input=None):
        """Runs `herald ARGS` to the end; returns the CompletedProcess."""
        return subprocess.run([HERALD, *args], env=self.env, cwd=self.dir,
                              capture_output=True, text=True, input=input,
                              timeout=timeout)

    def spawn(self, *args):
        """Starts `herald ARGS` (e.g. client); returns (Popen, Lines)."""
        proc = subprocess.Popen([HERALD, *args], env=self.env, cwd=self.dir,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.children.append(proc)
        return proc, Lines(proc.stdout)

    def run_script(self, source, *args, timeout=20):
        """`herald run` of source (a Lua text) with args."""
        path = os.path.join(self.dir, f"script{len(self.children)}.lua")
        with open(path, "w") as f:
            f.write(source)
        return self.cli("run", "--socket", self.socket, path, *args,
                        timeout=timeout)

    def lua(self, source):
        """Runs source on the server; returns its printed output, or fails
        the test with the script's error."""
        r = self.run_script(source)
        if r.returncode != 0:
            raise AssertionError(f"script failed ({r.returncode}): "
                                 f"{r.stderr}")
        return r.stdout

    def wait_log(self, pattern, timeout=5):
        return self.log.wait(pattern, timeout)

    def stop(self, sig=signal.SIGTERM):
        """Stops the server; returns its exit status."""
        for w in self.wires:
            w.close()
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode


class HeraldTest(unittest.TestCase):
    """Base class: self.server() starts a server stopped after the test."""

    def server(self, **kw):
        srv = Server(**kw)
        self.addCleanup(srv.stop)
        return srv
