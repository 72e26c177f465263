"""End-to-end harness: the real build/herald on a free loopback port, real
sockets, the real `herald client`, `herald call` and `herald run`.

    with Server() as srv:
        c = srv.wire("Vanessa", systemUserName="Vanessa")   # raw protocol
        srv.run_script('print(1)')                           # herald run
        srv.wait_log("session .* opened")

The environment adapts it to the other builds and tools: HERALD_BUILD is
the build folder whose herald runs (default build; make asan uses
build/asan), HERALD_WRAPPER a command the server runs under (make
valgrind), HERALD_SLOW a factor for every wait (a server under valgrind is
slow). A sanitizer or valgrind report in the output of the server or of a
command fails the test.
"""
import json
import os
import re
import shlex
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
HERALD = os.path.join(ROOT, os.environ.get("HERALD_BUILD", "build"),
                      "herald")
SCRIPTS = os.path.join(ROOT, "scripts")
WRAPPER = shlex.split(os.environ.get("HERALD_WRAPPER", ""))
SLOW = float(os.environ.get("HERALD_SLOW", "1"))
# What AddressSanitizer, LeakSanitizer, UBSan and valgrind print when they
# found something (valgrind may die of a corrupted heap before its summary),
# and where such a report starts (valgrind's summary comes last, its first
# error well before).
REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|"
                    r"\.[ch]:\d+:\d+: runtime error: |ERROR SUMMARY: [1-9]|"
                    r"valgrind: m_\w+\.c:\d+ .*Assertion")
REPORT_START = re.compile(r"=+\n==\d+==ERROR: |[^\n]*runtime error: |"
                          r"==\d+== (?!(Memcheck|Copyright|Using|Command)\b)"
                          r"[A-Z0-9]")


def check_report(text, who):
    """Fails the test when text holds a sanitizer or valgrind report,
    quoting the report from its start."""
    m = REPORT.search(text or "")
    if m:
        start = REPORT_START.search(text)
        at = start.start() if start and start.start() < m.start() \
            else m.start()
        raise AssertionError(f"{who}: {m.group(0).strip()}:\n"
                             + text[at:][:20000])


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
        deadline = time.monotonic() + timeout * SLOW
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


class TimedLines(Lines):
    """Lines that also records when each line arrived (monotonic s)."""

    def __init__(self, stream):
        self.times = []
        super().__init__(stream)

    def _pump(self, stream):
        for line in iter(stream.readline, ""):
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.times.append(time.monotonic())
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)
            self.times.append(time.monotonic())
            self.cond.notify_all()

    def matching(self, pattern):
        """(time, match) of every line matching pattern, in order."""
        rx = re.compile(pattern)
        with self.cond:
            pairs = list(zip(self.times, self.lines))
        return [(t, rx.search(l)) for t, l in pairs
                if l is not None and rx.search(l)]

    def time_of(self, pattern):
        """When the first line matching pattern arrived."""
        found = self.matching(pattern)
        if not found:
            raise AssertionError(f"no line matching {pattern!r}")
        return found[0][0]


def detached_client(test, port, *args):
    """`herald client --server 127.0.0.1:port ARGS`, the child of no
    server (stopping a server leaves it running), killed after the test:
    (Popen, TimedLines)."""
    env = dict(os.environ)
    env.pop("HERALD_SERVER", None)
    env.pop("HERALD_PASSWORD", None)
    proc = subprocess.Popen([HERALD, "client", "--server",
                             f"127.0.0.1:{port}", *args], env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = TimedLines(proc.stdout)

    def stop():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        lines.thread.join(5)
        proc.stdout.close()
        check_report(lines.text(), "herald client")
    test.addCleanup(stop)
    return proc, lines


def json_frames(out, type_):
    """The frames of type_ a `herald client --json` printed, in order."""
    frames = []
    for line in out.text().splitlines():
        if line.startswith("{"):
            frame = json.loads(line)
            if frame.get("type") == type_:
                frames.append(frame)
    return frames


class Wire:
    """A raw protocol connection: JSON lines over TCP."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout * SLOW)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def recv(self, timeout=5):
        """The next frame as a dict; None when the server closed."""
        self.sock.settimeout(timeout * SLOW)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def recv_type(self, type_, timeout=5):
        """Skips frames until one of type_ (answering pings)."""
        deadline = time.monotonic() + timeout * SLOW
        while True:
            frame = self.recv(max(0.01, deadline - time.monotonic()) / SLOW)
            if frame is None:
                raise AssertionError(f"closed while waiting for {type_}")
            if frame.get("type") == type_:
                return frame
            if frame.get("type") == "ping":
                self.send({"type": "pong"})

    def closed(self, timeout=5):
        """True when the server closes the connection within timeout."""
        self.sock.settimeout(timeout * SLOW)
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

    def __init__(self, config=None, scripts=SCRIPTS, args=(), env=None,
                 http=False):
        """http: also the browser side, on a free port (self.http_port,
        self.url)."""
        self.dir = tempfile.mkdtemp(prefix="herald-test-")
        self.socket = os.path.join(self.dir, "admin", "herald.sock")
        cmd = [*WRAPPER, HERALD, "serve", "--listen", "127.0.0.1:0",
               "--admin-socket", self.socket, "--no-console", "--scripts",
               scripts, "--log-level", "debug"]
        if http:
            cmd += ["--http-listen", "127.0.0.1:0"]
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
        self.outputs = []
        self.checked = False
        line = self.log.wait(r"listening on|herald: ", timeout=10)
        m = re.search(r"listening on [^:]+:(\d+)", line)
        if not m:
            raise AssertionError("server did not start: " + self.log.text())
        self.port = int(m.group(1))
        self.log.wait("admin socket", timeout=5)
        self.http_port = None
        if http:
            line = self.log.wait(r"pages at ", timeout=5)
            m = re.search(r"pages at (https?)://[^ ]+:(\d+)/", line)
            self.http_port = int(m.group(2))
            self.url = f"{m.group(1)}://127.0.0.1:{self.http_port}"
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
        r = subprocess.run([HERALD, *args], env=self.env, cwd=self.dir,
                           capture_output=True, text=True, input=input,
                           timeout=timeout * SLOW)
        check_report(r.stdout + r.stderr, f"herald {args[0]}")
        return r

    def spawn(self, *args):
        """Starts `herald ARGS` (e.g. client); returns (Popen, Lines)."""
        proc = subprocess.Popen([HERALD, *args], env=self.env, cwd=self.dir,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.children.append(proc)
        out = Lines(proc.stdout)
        self.outputs.append((f"herald {args[0]}", out))
        return proc, out

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
        """Stops the server; returns its exit status. Fails the test when
        the server or a command it spawned printed a sanitizer or valgrind
        report (checked once)."""
        for w in self.wires:
            w.close()
        for child in self.children:
            if child.poll() is None:
                child.kill()
            child.wait()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        if not self.checked:
            self.checked = True
            # The report comes last: read the output to its end first.
            self.log.thread.join(timeout=10 * SLOW)
            check_report(self.log.text(), "herald serve")
            for who, out in self.outputs:
                out.thread.join(timeout=5)
                check_report(out.text(), who)
        return self.proc.returncode


def add_user(path, name, password, *groups):
    """Adds a user to the users file at path with `herald user add`."""
    args = [HERALD, "user", "add", name, "--file", path]
    for g in groups:
        args += ["--group", g]
    r = subprocess.run(args, input=password + "\n", capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def message_status(srv, msg_id):
    """{queued, delivered, acknowledged, pending: [ids]} or None (nil)."""
    out = srv.lua(f"""
local st = message_status({msg_id})
if st == nil then print("nil") return end
print(st.queued, st.delivered, st.acknowledged)
for _, id in ipairs(st.pending) do print(id) end
""").splitlines()
    if out == ["nil"]:
        return None
    queued, delivered, acked = (int(x) for x in out[0].split("\t"))
    return {"queued": queued, "delivered": delivered,
            "acknowledged": acked, "pending": out[1:]}


def free_port():
    """A loopback TCP port nobody listens on (just released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sync(w):
    """Returns once the server has handled every frame w sent before (a
    ping is not a user frame: it changes no session state)."""
    w.send({"type": "ping"})
    w.recv_type("pong", timeout=3)


def wait_until(predicate, timeout=5, interval=0.05, what="condition"):
    """predicate()'s first true value within timeout (scaled by
    HERALD_SLOW); fails otherwise."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not true within {timeout} s "
                                 f"(last value {value!r})")
        time.sleep(interval)


def send(srv, text, sid=None):
    """send_message_to_remote_user through `herald run`: (count, id)."""
    target = f', "{sid}"' if sid is not None else ""
    out = srv.lua(f'print(send_message_to_remote_user("{text}"{target}))')
    count, msg_id = out.split()
    return int(count), int(msg_id)


def states(srv):
    """{sessionID: (userName, state)} from get_process_activity."""
    out = srv.lua("for _, s in ipairs(get_process_activity(SESSIONS_ONLY)"
                  ".sessions) do print(s.ID, s.userName, s.state) end")
    result = {}
    for line in out.splitlines():
        sid, user, state = line.split("\t")
        result[sid] = (user, state)
    return result


class HeraldTest(unittest.TestCase):
    """Base class: self.server() starts a server stopped after the test."""

    def server(self, **kw):
        srv = Server(**kw)
        self.addCleanup(srv.stop)
        return srv
