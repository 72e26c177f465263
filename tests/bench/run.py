#!/usr/bin/env python3
"""herald's benchmarks side by side with Redis (`make bench`).

Starts its own Redis (loopback, a free port, no persistence) and its own
herald, puts the same load on both with tests/bench/loadgen, stops both by
PID, and writes into build/bench/:

    report.md      machine, method, and the table: each figure for herald,
                   for Redis, their ratio, the target, met or missed
    fanout.png     fan-out latency against N for both (gnuplot)
    results.json   every figure and every loadgen line behind it
    herald.log, herald-tls.log, herald-state.log, redis.log
                   the servers' own logs

Which herald runs with which configuration: every herald gets its own
folder, port, admin socket and log, and the same `max_sessions`. The
plain herald, the one compared with Redis, has `state = false` (no state
database, as in the figures from before herald had one) and `http_listen
= "127.0.0.1:0"` (WebSocket, below; the port it took is read from its
log); the herald with TLS has `state = false` too; the herald with the
state database has `state = "<its folder>/herald.db"` (herald's defaults
otherwise: WAL, synchronous=NORMAL).

The cost of TLS: a second herald serves TLS (`tls = {...}` with a pair
made by `herald cert` in its temporary folder, its own port and admin
socket), and loadgen --tls drives it in the fan-out at the largest N and in
the calls with many connections, its runs interleaved with the plaintext
herald's. Those two rows compare herald with TLS to herald in plaintext
from the same run (Redis is not involved).

The cost of the state database: a third herald has `state` set, and is
measured like the herald with TLS (fan-out at the largest N, calls with
many connections, in the same loops, the order alternating), and in the
connect-and-greet runs (each new session is one transaction: a row for
information, without a target). Those rows compare it with the plain
herald (`state = false`) from the same run.

The cost of WebSocket: the plain herald also listens on http_listen, and
loadgen --ws drives it there (every connection upgrades on GET /ws, then
each frame is one masked text message) in the fan-out at the largest N,
its runs interleaved with the same herald's over TCP. Those two rows
(median and p99) compare fan-out to WebSocket sessions with fan-out to TCP
sessions of the same herald process in the same run. A short probe (one
session over WebSocket) comes first: when it fails, the two rows are
recorded as not measured and the rest goes on.

Each figure is the median of several rounds after a warm-up. Runs of the
two servers alternate (herald first, then Redis first) so that a drift of
the machine weighs on both alike. BENCH_QUICK=1 (or --quick) runs a small
version for CI's smoke test.

Exit status: 0 when every figure was measured, whether or not its target
is met (the report says which); 1 when some figure could not be measured
(a loadgen failure or a server crash: the report and stderr say what
happened, with the server's last log lines); 2 when the benchmark cannot
start at all (a missing binary, a server that does not come up).

--only state runs just the state database's rows and their plaintext
twins (the plain herald and the herald with the state database; no Redis,
no TLS, no WebSocket): fan-out at the largest N, calls with many
connections, connect and greet.

Usage: python3 tests/bench/run.py [--quick] [--only state] [--out DIR]
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# The two TLS rows: herald with TLS against herald in plaintext, same run.
TLS_TARGET = 1.15
# The two state database rows: herald with `state` set against herald with
# `state = false`, same run.
STATE_TARGET = 1.15
# The two WebSocket rows: fan-out to sessions over WebSocket against the
# same herald's fan-out to TCP sessions, same run (reported, not asserted).
WS_TARGET = 1.15

FULL = {
    "fanout_n": [1000, 5000, 10000],
    "fanout_runs": 3,           # loadgen runs per N and server
    "fanout_rounds": 60,        # measured rounds per run (pooled: 180)
    "fanout_rounds_max_n": 100,  # at the largest N, for a p99 (pooled: 300)
    "fanout_warmup": 3,         # unmeasured rounds at the start of a run
    "mem_n": 10000,
    "mem_idle": 15,             # seconds idle before RSS is read
    "connect_n": 10000,
    "connect_runs": 5,
    "connect_warmup_runs": 1,   # unmeasured runs per server first
    "calls_conns": 50,
    "calls_seconds": 5,         # measured seconds per run, after 1 s warm-up
    "calls_runs": 3,
    "list_n": 10000,
    "list_runs": 3,
    "list_rounds": 5,
    "list_warmup": 2,
}

QUICK = {
    "fanout_n": [200, 500, 1000],
    "fanout_runs": 1,
    "fanout_rounds": 10,
    "fanout_rounds_max_n": 20,
    "fanout_warmup": 2,
    "mem_n": 1000,
    "mem_idle": 2,
    "connect_n": 1000,
    "connect_runs": 2,
    "connect_warmup_runs": 1,
    "calls_conns": 50,
    "calls_seconds": 2,
    "calls_runs": 1,
    "list_n": 1000,
    "list_runs": 1,
    "list_rounds": 5,
    "list_warmup": 1,
}

LOADGEN_TIMEOUT = 30            # loadgen's own bound on a round or greeting
STOP_TIMEOUT = 10               # SIGTERM, then SIGKILL after this long
START_TIMEOUT = 15
FD_MARGIN = 300                 # descriptors a server needs beyond sessions


class BenchError(Exception):
    """A measurement could not be made; the text says what happened."""


class SetupError(Exception):
    """The benchmark cannot start at all."""


def log(msg):
    print("bench: " + msg, flush=True)


def fmt_int(n):
    return "{:,}".format(n)


def count(n, word):
    return "%d %s%s" % (n, word, "" if n == 1 else "s")


# ---- descriptors -----------------------------------------------------------

def raise_nofile(want=65536):
    """Raise this process' open-file limit to want: the hard limit too when
    permitted (root with CAP_SYS_RESOURCE), else the soft one as far as the
    hard one goes. Returns the soft limit now in force; the servers set it
    again in their preexec_fn, loadgen raises its own."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return want
    if hard == resource.RLIM_INFINITY or hard >= want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        return want
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        return want
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


def nofile_preexec(limit):
    def apply():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
    return apply


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- servers ---------------------------------------------------------------

# herald's info line for each session opened, postponed or closed
SESSION_LINE = re.compile(r" info: session [0-9A-F]{32} ")


class Server:
    """One server process: herald or redis-server, started with the
    runner's open-file limit, its output appended to a log file. Stopped by
    its PID only."""

    def __init__(self, kind, label, log_path, workdir, nofile, name=None):
        self.kind = kind        # loadgen's --target
        self.name = name or kind  # key of its figures: herald, herald_tls..
        self.label = label
        self.log_path = log_path
        self.workdir = workdir
        self.nofile = nofile
        self.proc = None
        self.port = None
        self.log_start = 0      # offset of this start's output in the log

    def argv(self):
        raise NotImplementedError

    def ready(self, text):
        """The port when text (this start's log) says the server accepts
        connections, else None."""
        raise NotImplementedError

    def start(self):
        with open(self.log_path, "a") as f:
            f.write("==== bench: starting %s at %s\n" % (
                self.label, datetime.datetime.now().isoformat(" ", "seconds")))
            self.log_start = f.tell()
        logf = open(self.log_path, "a")
        try:
            self.proc = subprocess.Popen(
                self.argv(), cwd=self.workdir, stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT,
                preexec_fn=nofile_preexec(self.nofile),
                start_new_session=True)
        except OSError as e:
            raise SetupError("cannot start %s: %s" % (self.label, e))
        finally:
            logf.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            port = self.ready(self.log_text())
            if port is not None:
                self.port = port
                log("%s started: pid %d, port %d" % (
                    self.label, self.proc.pid, port))
                return
            if self.proc.poll() is not None:
                raise SetupError("%s exited with status %s at start:\n%s" % (
                    self.label, self.proc.returncode, self.log_tail()))
            time.sleep(0.05)
        self.stop()
        raise SetupError("%s did not come up within %d s:\n%s" % (
            self.label, START_TIMEOUT, self.log_tail()))

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                f.seek(self.log_start)
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=15):
        """The last n lines of this start's log, without herald's routine
        one-per-session lines (thousands of them would hide the warning or
        the crash that matters)."""
        lines = self.log_text().splitlines()
        keep = [l for l in lines if not SESSION_LINE.search(l)]
        text = "\n".join("    " + l for l in keep[-n:]) or "    (empty)"
        if len(keep) < len(lines):
            text += "\n    (%d routine session lines left out)" % (
                len(lines) - len(keep))
        return text

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise BenchError("no VmRSS for %s (pid %d)" % (
            self.label, self.proc.pid))

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; by PID only. Returns a
        note when the server had to be killed or had died, else None."""
        if self.proc is None:
            return None
        p, self.proc = self.proc, None
        if p.poll() is not None:
            return "%s had already exited with status %s" % (
                self.label, p.returncode)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return "%s ignored SIGTERM for %d s and was killed" % (
                self.label, STOP_TIMEOUT)
        log("%s stopped (pid %d, status %s)" % (
            self.label, p.pid, p.returncode))
        return None


class Herald(Server):
    """herald serve in workdir; with tls, a certificate and key are made
    there first with `herald cert` and the configuration serves TLS, and
    loadgen is told to trust that certificate (tls_ca). state: the path of
    its state database, or None for `state = false`. http: also listen
    for HTTP and WebSocket (`http_listen`, a port of the system's choice,
    read from the log into http_port)."""

    def __init__(self, binary, log_path, workdir, nofile, max_sessions,
                 tls=False, state=None, http=False):
        if tls:
            name, label = "herald_tls", "herald with TLS"
        elif state:
            name, label = "herald_state", "herald with the state database"
        else:
            name, label = "herald", "herald"
        super().__init__("herald", label, log_path, workdir, nofile, name)
        self.binary = binary
        self.conf = os.path.join(workdir, "herald.conf.lua")
        self.sock = os.path.join(workdir, "admin.sock")
        self.max_sessions = max_sessions
        self.tls_ca = None
        self.state = state
        self.http = http
        self.http_port = None
        lines = ["-- written by tests/bench/run.py",
                 "max_sessions = %d" % max_sessions,
                 'state = "%s"' % state if state else "state = false"]
        if http:
            lines.append('http_listen = "127.0.0.1:0"')
        if tls:
            certdir = os.path.join(workdir, "cert")
            try:
                p = subprocess.run([binary, "cert", "--out", certdir,
                                    "127.0.0.1"], capture_output=True,
                                   text=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                raise SetupError("herald cert could not run: %s" % e)
            if p.returncode != 0:
                raise SetupError("herald cert --out %s 127.0.0.1 exited with "
                                 "status %d: %s" % (certdir, p.returncode,
                                                    p.stderr.strip()))
            self.tls_ca = os.path.join(certdir, "server.crt")
            lines.append('tls = { cert = "%s", key = "%s" }' % (
                self.tls_ca, os.path.join(certdir, "server.key")))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def config_text(self):
        with open(self.conf) as f:
            return f.read()

    def argv(self):
        return [self.binary, "serve", "--config", self.conf,
                "--listen", "127.0.0.1:0", "--admin-socket", self.sock,
                "--no-console", "--scripts", os.path.join(ROOT, "scripts")]

    def ready(self, text):
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
        if m is None:
            return None
        if self.http:
            h = re.search(r"pages at https?://127\.0\.0\.1:(\d+)/", text)
            if h is None:
                return None
            self.http_port = int(h.group(1))
        return int(m.group(1))


class WebSocketSide:
    """A herald with http_listen, as loadgen --ws sees it: the same
    process (its log, liveness and restarts are the herald's), reached on
    its http_listen port, its figures kept under the name herald_ws."""

    name = "herald_ws"
    label = "herald over WebSocket"
    ws = True
    tls_ca = None

    def __init__(self, herald):
        self.herald = herald

    @property
    def port(self):
        return self.herald.http_port

    def __getattr__(self, attr):
        return getattr(self.herald, attr)


class Redis(Server):
    def __init__(self, log_path, workdir, nofile, maxclients):
        super().__init__("redis", "redis-server", log_path, workdir, nofile)
        self.maxclients = maxclients
        self.want_port = None

    def argv(self):
        return ["redis-server", "--port", str(self.want_port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--maxclients", str(self.maxclients), "--daemonize", "no",
                "--dir", self.workdir]

    def ready(self, text):
        if "Ready to accept connections" in text:
            return self.want_port
        return None

    def start(self):
        # The port is free when chosen but may be taken before redis binds
        # it: try a few.
        for attempt in range(3):
            self.want_port = free_port()
            try:
                return super().start()
            except SetupError:
                if attempt == 2 or "in use" not in self.log_text():
                    raise


# ---- loadgen ---------------------------------------------------------------

PAIR = re.compile(r'(\w+)=("[^"]*"|\S+)')


def parse_line(line):
    out = {}
    for k, v in PAIR.findall(line):
        if v.startswith('"'):
            out[k] = v[1:-1]
            continue
        try:
            out[k] = float(v) if "." in v else int(v)
        except ValueError:
            out[k] = v
    return out


class Loadgen:
    """Runs tests/bench/loadgen and keeps every line it printed."""

    def __init__(self, binary):
        self.binary = binary
        self.runs = []

    def argv(self, server, mode, opts):
        args = [self.binary, "--target", server.kind, "--port",
                str(server.port), "--mode", mode,
                "--timeout", str(LOADGEN_TIMEOUT)]
        if getattr(server, "tls_ca", None):
            args += ["--tls", server.tls_ca]
        if getattr(server, "ws", False):
            args.append("--ws")
        for k, v in opts.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        return args

    def failure(self, server, argv, rc, out, err):
        state = ("still running" if server.alive() else
                 "DEAD (exit status %s)" % (
                     server.proc.returncode if server.proc else "?"))
        return BenchError(
            "%s: loadgen %s exited with status %s\n  stderr: %s\n"
            "  last stdout: %s\n  %s is %s; its last log lines:\n%s" % (
                server.label, " ".join(argv[1:]), rc,
                err.strip() or "(none)",
                (out.strip().splitlines() or ["(none)"])[-1],
                server.label, state, server.log_tail()))

    def run(self, server, mode, bound, **opts):
        """Run one loadgen to completion; returns its parsed lines (the last
        one is the summary). bound: seconds after which it is killed."""
        argv = self.argv(server, mode, opts)
        try:
            p = subprocess.run(argv, capture_output=True, text=True,
                               timeout=bound)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else ""
            raise self.failure(server, argv, "killed after %d s" % bound,
                               out or "", "")
        lines = [parse_line(l) for l in p.stdout.splitlines() if l.strip()]
        self.runs.append({"server": server.name, "argv": argv[1:],
                          "status": p.returncode, "lines": lines,
                          "stderr": p.stderr.strip()})
        if p.returncode != 0 or not lines or \
                lines[-1].get("status") != "ok":
            raise self.failure(server, argv, p.returncode, p.stdout,
                               p.stderr)
        return lines

    def hold(self, server, clients, idle):
        """Connect `clients` idle sessions, wait `idle` seconds once all are
        greeted, and return (rss_before_kb, rss_after_kb, held line)."""
        margin = 2
        argv = self.argv(server, "hold", {"clients": clients,
                                          "seconds": idle + margin})
        before = server.rss_kb()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        head = b""              # stdout read before the held line is in
        try:
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + LOADGEN_TIMEOUT + 60
            while b"phase=held" not in head and \
                    time.monotonic() < deadline:
                if sel.select(timeout=1):
                    chunk = os.read(p.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    head += chunk
                elif p.poll() is not None:
                    break
            sel.close()
            if b"phase=held" not in head or not head.endswith(b"\n"):
                # the line is written at once (line-buffered): a partial
                # one means loadgen died while writing it
                p.kill()
                out, err = p.communicate()
                raise self.failure(server, argv, p.returncode,
                                   (head + out).decode(), err.decode())
            time.sleep(idle)
            after = server.rss_kb()
            out, err = p.communicate(timeout=margin + LOADGEN_TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            raise self.failure(server, argv, "killed", (head + out).decode(),
                               err.decode())
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out, err = (head + out).decode(), err.decode()
        held = [parse_line(l) for l in out.splitlines()
                if "phase=held" in l][0]
        lines = [parse_line(l) for l in out.splitlines() if l.strip()]
        self.runs.append({"server": server.name, "argv": argv[1:],
                          "status": p.returncode, "lines": lines,
                          "stderr": err.strip(), "rss_before_kb": before,
                          "rss_after_kb": after})
        if p.returncode != 0 or lines[-1].get("status") != "ok":
            raise self.failure(server, argv, p.returncode, out, err)
        return before, after, held


# ---- the benchmark ---------------------------------------------------------

def pct(values, p):
    """Nearest-rank percentile p (1..100), as loadgen computes it."""
    v = sorted(values)
    rank = max(1, -(-p * len(v) // 100))
    return v[rank - 1]


class Bench:
    def __init__(self, args, cfg):
        self.args = args
        self.cfg = cfg
        self.out = args.out
        self.workdir = tempfile.mkdtemp(prefix="herald-bench-")
        self.loadgen = Loadgen(args.loadgen)
        self.values = {}        # figure key -> {"herald": x, "redis": y}
        self.failures = {}      # group -> error text
        self.notes = []
        self.servers = {}
        self.ws = None          # the plain herald over WebSocket, once probed
        self.nofile = None
        self.state_fs = None
        self.state_db_size = None
        self.herald_configs = []
        # --only state: the plain herald and the herald with the state
        # database, in the state rows' loops only
        self.only_state = getattr(args, "only", None) == "state"

    # -- servers

    def make_servers(self):
        need = max(self.cfg["fanout_n"] + [self.cfg["mem_n"],
                                           self.cfg["connect_n"],
                                           self.cfg["list_n"]])
        self.nofile = raise_nofile()
        if self.nofile < need + FD_MARGIN:
            raise SetupError(
                "the open-file limit is %d; %d connections need %d. Raise "
                "the hard limit first (as root: ulimit -Hn %d)" % (
                    self.nofile, need, need + FD_MARGIN, 2 * need + 1000))
        # 20000 as asked, or as many as the limit allows: herald warns when
        # max_sessions + 256 exceeds it, Redis lowers maxclients itself.
        self.max_sessions = min(20000, self.nofile - 256)
        self.maxclients = min(20000, self.nofile - 32)
        hdir = os.path.join(self.workdir, "herald")
        rdir = os.path.join(self.workdir, "redis")
        os.makedirs(hdir)
        os.makedirs(rdir)
        for name in ("herald.log", "herald-tls.log", "herald-state.log",
                     "redis.log"):
            open(os.path.join(self.out, name), "w").close()
        # state = false, said explicitly: the figures compared with Redis
        # (and with earlier reports) are those of herald without its state
        # database; the herald with it is measured on its own rows. The
        # plain herald also serves WebSocket (its rows), except with --only
        # state.
        self.servers["herald"] = Herald(
            self.args.herald, os.path.join(self.out, "herald.log"), hdir,
            self.nofile, self.max_sessions, http=not self.only_state)
        if not self.only_state:
            self.servers["redis"] = Redis(
                os.path.join(self.out, "redis.log"), rdir, self.nofile,
                self.maxclients)

    def start_tls(self):
        """The herald with TLS, in a folder of its own (its certificate,
        configuration and admin socket). When it cannot be set up, its two
        rows are recorded as not measured and the rest goes on."""
        tdir = os.path.join(self.workdir, "herald-tls")
        os.makedirs(tdir)
        try:
            s = Herald(self.args.herald,
                       os.path.join(self.out, "herald-tls.log"), tdir,
                       self.nofile, self.max_sessions, tls=True)
            self.servers[s.name] = s
            s.start()
        except SetupError as e:
            self.servers.pop("herald_tls", None)
            self.failures["herald with TLS"] = str(e)
            log("FAILED: herald with TLS: %s" % e)

    def start_state(self):
        """The herald with the state database, in a folder of its own (its
        configuration, admin socket and herald.db). When it cannot be set
        up, its rows are recorded as not measured and the rest goes on."""
        sdir = os.path.join(self.workdir, "herald-state")
        os.makedirs(sdir)
        try:
            s = Herald(self.args.herald,
                       os.path.join(self.out, "herald-state.log"), sdir,
                       self.nofile, self.max_sessions,
                       state=os.path.join(sdir, "herald.db"))
            self.servers[s.name] = s
            s.start()
            self.state_fs = filesystem(sdir)
        except SetupError as e:
            self.servers.pop("herald_state", None)
            self.failures["herald with the state database"] = str(e)
            log("FAILED: herald with the state database: %s" % e)

    def start_ws(self):
        """The plain herald over WebSocket: one session upgraded, greeted
        and closed by loadgen --ws. When that fails, the WebSocket rows are
        recorded as not measured and the rest goes on (a broken upgrade
        must not cost the fan-out rows over TCP)."""
        side = WebSocketSide(self.servers["herald"])
        try:
            self.loadgen.run(side, "connect", 60, clients=1)
        except BenchError as e:
            self.failures["herald over WebSocket"] = str(e)
            log("FAILED: herald over WebSocket: %s" % e)
            return
        log("herald over WebSocket: port %d" % side.port)
        self.ws = side

    def restart(self, kind, why):
        s = self.servers[kind]
        note = s.stop()
        self.notes.append("%s restarted (%s)%s" % (
            s.label, why, "; " + note if note else ""))
        s.start()

    def stop_all(self):
        for s in self.servers.values():
            try:
                note = s.stop()
            except Exception as e:  # keep stopping the others
                note = "stopping %s failed: %s" % (s.label, e)
            if note:
                self.notes.append(note)
                log(note)

    def order(self, rep, tls=False, state=False, ws=False):
        """Alternate which server goes first, so drift weighs on both. With
        tls, state and ws (each when that herald, or the plain herald's
        WebSocket side, is up), up to five: herald with TLS, herald with
        the state database, herald over WebSocket, herald, Redis, then the
        reverse, so that herald and Redis keep their alternation and the
        TLS and state heralds and the WebSocket side alternate with the
        plain herald too."""
        names = ["herald", "redis"]
        if ws:
            names.insert(0, "herald_ws")
        if state:
            names.insert(0, "herald_state")
        if tls:
            names.insert(0, "herald_tls")
        targets = dict(self.servers)
        if self.ws is not None:
            targets["herald_ws"] = self.ws
        pair = [targets[n] for n in names if n in targets]
        return pair if rep % 2 == 0 else pair[::-1]

    def group(self, name, fn):
        """Run one group of figures; a failure is recorded, a dead server
        restarted, and the benchmark goes on with the next group."""
        t = time.monotonic()
        log("%s ..." % name)
        try:
            fn()
        except BenchError as e:
            self.failures[name] = str(e)
            log("FAILED: %s" % e)
            for kind, s in self.servers.items():
                if not s.alive():
                    self.restart(kind, "it died during %s" % name)
            time.sleep(1)
        log("%s done in %.1f s" % (name, time.monotonic() - t))

    def db_size(self):
        """Bytes of the state database's files (herald.db, -wal, -shm) at
        the end of the measurements, or None."""
        s = self.servers.get("herald_state")
        if s is None:
            return None
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(s.state + suffix)
            except OSError:
                pass
        return total

    def configs(self):
        """Each herald's configuration file, as written, for the report."""
        return [(s.label, s.config_text()) for s in self.servers.values()
                if isinstance(s, Herald)]

    def put(self, key, kind, value):
        self.values.setdefault(key, {})[kind] = value

    def tls_negotiated(self):
        """'TLSv1.3, TLS_AES_256_GCM_SHA384' as loadgen reported it, or
        None."""
        for run in self.loadgen.runs:
            for line in run["lines"]:
                if "tls_version" in line:
                    return "%s, %s" % (line["tls_version"],
                                       line.get("tls_cipher", "?"))
        return None

    # -- figures

    def memory(self):
        c = self.cfg
        for s in self.order(0):
            before, after, _ = self.loadgen.hold(s, c["mem_n"], c["mem_idle"])
            self.put("mem_rss_before_kb", s.name, before)
            self.put("mem_rss_after_kb", s.name, after)
            self.put("mem_per_session", s.name,
                     (after - before) * 1024 / c["mem_n"])
            log("  %s: RSS %d kB -> %d kB with %d idle sessions" % (
                s.label, before, after, c["mem_n"]))
            time.sleep(0.5)

    def connect(self):
        c = self.cfg
        times = {}
        total = c["connect_warmup_runs"] + c["connect_runs"]
        for rep in range(total):
            # the herald with the state database too (its informational row)
            for s in self.order(rep, state=True):
                line = self.loadgen.run(s, "connect", 120,
                                        clients=c["connect_n"])[-1]
                if rep >= c["connect_warmup_runs"]:
                    times.setdefault(s.name, []).append(line["connect_ms"])
                time.sleep(0.3)
        for kind, v in times.items():
            self.put("connect", kind, statistics.median(v))

    def fanout(self):
        c = self.cfg
        largest = max(c["fanout_n"])
        for n in [largest] if self.only_state else c["fanout_n"]:
            rounds = c["fanout_rounds_max_n"] if n == largest \
                else c["fanout_rounds"]
            first = {}
            last = {}
            for rep in range(c["fanout_runs"]):
                # herald with TLS, herald with the state database and the
                # plain herald over WebSocket at the largest N only (their
                # rows)
                for s in self.order(rep, tls=n == largest,
                                    state=n == largest, ws=n == largest):
                    first.setdefault(s.name, [])
                    last.setdefault(s.name, [])
                    # Rounds are spaced so that the server has taken the
                    # previous round's acks (herald's clients ack every
                    # message) before the next trigger: each round times a
                    # broadcast to an idle server, for both servers alike.
                    lines = self.loadgen.run(
                        s, "fanout", 600, clients=n, rounds=rounds,
                        warmup=c["fanout_warmup"], text_size=100,
                        gap_ms=max(10, n // 40))
                    for l in lines:
                        if "round" in l:
                            first[s.name].append(l["first_us"] / 1000)
                            last[s.name].append(l["last_us"] / 1000)
                    time.sleep(0.3)
            for kind in first:
                self.put("fanout_%d" % n, kind, statistics.median(last[kind]))
                if n == largest:
                    self.put("fanout_first", kind,
                             statistics.median(first[kind]))
                    self.put("fanout_p99", kind, pct(last[kind], 99))
                    self.put("fanout_rounds_pooled", kind, len(last[kind]))
            v = self.values["fanout_%d" % n]
            labels = {k: s.label for k, s in self.servers.items()}
            labels["herald_ws"] = WebSocketSide.label
            log("  N=%d: %s" % (n, ", ".join(
                "%s %.2f ms" % (labels[k], v[k])
                for k in ("herald", "redis", "herald_tls", "herald_state",
                          "herald_ws")
                if k in v)))

    def calls(self):
        c = self.cfg
        rate = {}
        rtt = {}
        for rep in range(c["calls_runs"]):
            # herald with TLS and herald with the state database in the
            # many-connection runs (their rows)
            for s in self.order(rep, tls=True, state=True):
                line = self.loadgen.run(
                    s, "calls", c["calls_seconds"] + 60,
                    conns=c["calls_conns"], seconds=c["calls_seconds"],
                    warmup=1)[-1]
                rate.setdefault(s.name, []).append(line["calls_per_s"])
                time.sleep(0.3)
        for rep in range(0 if self.only_state else c["calls_runs"]):
            for s in self.order(rep):
                line = self.loadgen.run(
                    s, "calls", c["calls_seconds"] + 60, conns=1,
                    seconds=c["calls_seconds"], warmup=1)[-1]
                rtt.setdefault(s.name, []).append(line["rtt_median_us"])
                time.sleep(0.3)
        for kind in rate:
            self.put("calls", kind, statistics.median(rate[kind]))
        for kind in rtt:
            self.put("rtt", kind, statistics.median(rtt[kind]))

    def listing(self):
        c = self.cfg
        lat = {"herald": [], "redis": []}
        size = {}
        for rep in range(c["list_runs"]):
            for s in self.order(rep):
                line = self.loadgen.run(
                    s, "list", 300, clients=c["list_n"],
                    rounds=c["list_rounds"], warmup=c["list_warmup"])[-1]
                lat[s.name].append(line["median_us"] / 1000)
                size[s.name] = line["reply_bytes"]
                time.sleep(0.3)
        for kind in lat:
            self.put("list", kind, statistics.median(lat[kind]))
            self.put("list_reply_bytes", kind, size[kind])

    def run(self):
        c = self.cfg
        self.make_servers()
        try:
            for s in list(self.servers.values()):
                s.start()
            if not self.only_state:
                self.start_tls()
            self.start_state()
            self.herald_configs = self.configs()
            if not self.only_state:
                # First, on fresh servers: RSS growth is only meaningful
                # before other loads have grown (and kept) the servers'
                # heaps.
                self.group("memory per idle session (N=%s, %d s idle)" % (
                    fmt_int(c["mem_n"]), c["mem_idle"]), self.memory)
                # after the memory figures, which want untouched servers
                self.start_ws()
            self.group("connect and greet (N=%s)" % fmt_int(c["connect_n"]),
                       self.connect)
            fan_n = [max(c["fanout_n"])] if self.only_state else \
                c["fanout_n"]
            self.group("fan-out (N=%s)" % "/".join(
                fmt_int(n) for n in fan_n), self.fanout)
            self.group("method calls (%d connections%s)" % (
                c["calls_conns"], "" if self.only_state else ", then 1"),
                self.calls)
            if not self.only_state:
                self.group("listing every session (N=%s)" % fmt_int(
                    c["list_n"]), self.listing)
            self.state_db_size = self.db_size()
        finally:
            self.stop_all()
            shutil.rmtree(self.workdir, ignore_errors=True)


# ---- figures, report, plot -------------------------------------------------

def figures(cfg, only_state=False):
    """Every figure, in the order of the issue, as dicts: key, label, unit,
    better, target (a ratio), src (its values' key), subject and reference
    (the servers compared) and inverse (the ratio is reference/subject: for
    the TLS calls row, the time per call). The TLS rows follow their
    plaintext twins, whose values (src) they share, and so do the rows of
    the herald with the state database (target None: information only);
    the two WebSocket rows (median and p99 of the fan-out at the largest
    N, against the same herald's over TCP) follow the fan-out's TLS and
    state rows. With only_state, just the rows of the state database."""
    n = cfg["fanout_n"]
    big = fmt_int(max(n))
    rows = [
        ("fanout_%d" % n[0], "Broadcast fan-out latency, median, N=%s" %
         fmt_int(n[0]), "ms", "lower", 0.85),
        ("fanout_%d" % n[1], "Broadcast fan-out latency, median, N=%s" %
         fmt_int(n[1]), "ms", "lower", 0.85),
        ("fanout_%d" % n[2], "Broadcast fan-out latency, median, N=%s" %
         fmt_int(n[2]), "ms", "lower", 0.85),
        ("fanout_first", "Time until the first session has it, N=%s" % big,
         "ms", "lower", 0.1),
        ("fanout_p99", "Broadcast fan-out latency, p99, N=%s" % big, "ms",
         "lower", 0.85),
        ("mem_per_session", "Resident memory per idle session, N=%s" %
         fmt_int(cfg["mem_n"]), "KB", "lower", 0.5),
        ("calls", "Method calls per second, %d connections" %
         cfg["calls_conns"], "calls/s", "higher", 1.0),
        ("rtt", "Method call round trip, 1 connection, median", "µs",
         "lower", 1.1),
        ("list", "Listing every session, N=%s" % fmt_int(cfg["list_n"]),
         "ms", "lower", 1.0),
        ("connect", "Connect and greet N=%s sessions" %
         fmt_int(cfg["connect_n"]), "ms", "lower", 1.2),
    ]
    out = []
    for key, label, unit, better, target in rows:
        out.append({"key": key, "label": label, "unit": unit,
                    "better": better, "target": target, "src": key,
                    "subject": "herald", "reference": "redis",
                    "inverse": False})
        if key == "fanout_%d" % max(n):
            out.append({"key": "fanout_tls",
                        "label": label + ", with TLS", "unit": unit,
                        "better": "lower", "target": TLS_TARGET, "src": key,
                        "subject": "herald_tls", "reference": "herald",
                        "inverse": False})
            out.append({"key": "fanout_state",
                        "label": label + ", with the state database",
                        "unit": unit, "better": "lower",
                        "target": STATE_TARGET, "src": key,
                        "subject": "herald_state", "reference": "herald",
                        "inverse": False})
            out.append({"key": "fanout_ws",
                        "label": label + ", to WebSocket sessions",
                        "unit": unit, "better": "lower",
                        "target": WS_TARGET, "src": key,
                        "subject": "herald_ws", "reference": "herald",
                        "inverse": False})
            out.append({"key": "fanout_p99_ws",
                        "label": "Broadcast fan-out latency, p99, N=%s, to "
                        "WebSocket sessions" % big,
                        "unit": unit, "better": "lower",
                        "target": WS_TARGET, "src": "fanout_p99",
                        "subject": "herald_ws", "reference": "herald",
                        "inverse": False})
        elif key == "calls":
            out.append({"key": "calls_tls",
                        "label": label + ", with TLS", "unit": unit,
                        "better": "lower", "target": TLS_TARGET, "src": key,
                        "subject": "herald_tls", "reference": "herald",
                        "inverse": True})
            out.append({"key": "calls_state",
                        "label": label + ", with the state database",
                        "unit": unit, "better": "lower",
                        "target": STATE_TARGET, "src": key,
                        "subject": "herald_state", "reference": "herald",
                        "inverse": True})
        elif key == "connect":
            out.append({"key": "connect_state",
                        "label": label + ", with the state database",
                        "unit": unit, "better": "lower", "target": None,
                        "src": key, "subject": "herald_state",
                        "reference": "herald", "inverse": False})
    if only_state:
        out = [f for f in out if f["subject"] == "herald_state"]
    return out


def show(value, unit):
    if value is None:
        return "—"
    if unit == "KB":
        return "%.2f KB" % (value / 1024)
    if unit == "calls/s":
        return "%s/s" % fmt_int(int(round(value)))
    if unit == "µs":
        return "%.1f µs" % value
    if value >= 100:
        return "%.0f ms" % value
    if value >= 10:
        return "%.1f ms" % value
    return "%.2f ms" % value


def judge(values, cfg, only_state=False):
    """Every figure with its ratio and verdict, as dicts. herald and redis
    are the plaintext servers' values of the figure, herald_tls that of the
    herald with TLS, herald_state that of the herald with the state
    database, herald_ws that of the plain herald over WebSocket; ratio is
    subject/reference (reference/subject when inverse).
    A row without a target (information) has its ratio and met None."""
    rows = []
    for f in figures(cfg, only_state):
        v = values.get(f["src"], {})
        h, r = v.get(f["subject"]), v.get(f["reference"])
        row = {"key": f["key"], "figure": f["label"], "unit": f["unit"],
               "herald": v.get("herald"), "redis": v.get("redis"),
               "subject": f["subject"], "reference": f["reference"],
               "ratio_of": RATIO_OF[(f["subject"], f["reference"],
                                     f["inverse"])],
               "better": f["better"], "target": f["target"],
               "ratio": None, "met": None, "miss": None}
        if f["subject"] in ("herald_tls", "herald_state", "herald_ws"):
            row[f["subject"]] = h
            row["redis"] = None     # not involved: herald against herald
        if f["inverse"]:
            h, r = r, h
        if h is not None and r is not None and r > 0 and h >= 0:
            ratio = h / r
            row["ratio"] = ratio
            if f["target"] is None:
                pass                # information only
            elif f["better"] == "lower":
                row["met"] = ratio <= f["target"]
                row["miss"] = ratio / f["target"] - 1
            else:
                row["met"] = ratio >= f["target"]
                row["miss"] = 1 - ratio / f["target"]
        rows.append(row)
    return rows


RATIO_OF = {
    ("herald", "redis", False): "herald/Redis",
    ("herald_tls", "herald", False): "TLS/plaintext",
    ("herald_tls", "herald", True): "TLS/plaintext, of the time per call",
    ("herald_state", "herald", False): "state on/off",
    ("herald_state", "herald", True): "state on/off, of the time per call",
    ("herald_ws", "herald", False): "WS/TCP",
}

# How the missed-targets list names what a row's subject costs.
COST_OF = {"herald_tls": "TLS", "herald_state": "the state database",
           "herald_ws": "WebSocket"}


def table(rows):
    out = ["| Figure | herald | Redis, or herald in plaintext / with "
           "`state = false` / over TCP | ratio | target | met? |",
           "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        if row["target"] is None:
            target = "none"
        else:
            target = ("≤ %.2f" if row["better"] == "lower" else
                      "≥ %.2f") % row["target"]
        if row["target"] is None:
            verdict = "information" if row["ratio"] is not None \
                else "not measured"
            ratio = "—" if row["ratio"] is None else "%.2f (%s)" % (
                row["ratio"], row["ratio_of"])
        elif row["met"] is None:
            verdict = "not measured"
            ratio = "—"
        else:
            ratio = "%.2f" % row["ratio"]
            if row["met"]:
                verdict = "yes"
            elif row["better"] == "lower":
                verdict = "**no**: %.0f%% above the target" % (
                    100 * row["miss"])
            else:
                verdict = "**no**: %.0f%% below the target" % (
                    100 * row["miss"])
        if row["subject"] == "herald_tls":
            subject = "%s with TLS" % show(row["herald_tls"], row["unit"])
            reference = "%s in plaintext" % show(row["herald"], row["unit"])
            ratio += " (%s)" % row["ratio_of"] if row["met"] is not None \
                else ""
        elif row["subject"] == "herald_state":
            subject = "%s with state" % show(row["herald_state"], row["unit"])
            reference = "%s with `state = false`" % show(row["herald"],
                                                         row["unit"])
            if row["met"] is not None:
                ratio += " (%s)" % row["ratio_of"]
        elif row["subject"] == "herald_ws":
            subject = "%s over WebSocket" % show(row["herald_ws"],
                                                 row["unit"])
            reference = "%s over TCP" % show(row["herald"], row["unit"])
            if row["met"] is not None:
                ratio += " (%s)" % row["ratio_of"]
        else:
            subject = show(row["herald"], row["unit"])
            reference = show(row["redis"], row["unit"])
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            row["figure"], subject, reference, ratio, target, verdict))
    return "\n".join(out)


def command_output(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                           cwd=ROOT)
        return (p.stdout or p.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def filesystem(path):
    """'ext4 (/dev/vda on /)': the mount that holds path, from
    /proc/mounts (the longest mount point that is a prefix), or None."""
    path = os.path.realpath(path)
    best = None
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, point, kind = line.split()[:3]
                point = point.replace("\\040", " ")
                inside = path == point or path.startswith(
                    point.rstrip("/") + "/")
                if inside and (best is None or len(point) > len(best[1])):
                    best = (dev, point, kind)
    except (OSError, ValueError):
        return None
    return "%s (%s on %s)" % (best[2], best[0], best[1]) if best else None


def loadavg():
    """The 1-minute load average: other work on the machine skews every
    figure, so the report states it."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine(herald):
    cpus, model = 0, "unknown"
    mem_kb = 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("processor"):
                    cpus += 1
                elif line.startswith("model name") and model == "unknown":
                    model = line.split(":", 1)[1].strip()
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_kb = int(line.split()[1])
    except OSError:
        pass
    commit = command_output(["git", "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "status", "--porcelain", "--",
                            "runtime", "modules", "scripts"],
                           capture_output=True, text=True, cwd=ROOT).stdout
    u = platform.uname()
    return {
        "cpu_model": model,
        "cpus": cpus or os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": "%s %s %s" % (u.system, u.release, u.machine),
        "herald": command_output([herald, "version"]),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "redis": command_output(["redis-server", "--version"]),
        "compiler": command_output(["cc", "--version"]),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%d %H:%M UTC"),
    }


def plot(out, cfg, values):
    """fanout.dat, fanout.gp, then fanout.png through gnuplot. Returns None
    or a note on why there is no plot."""
    rows = [(n, values.get("fanout_%d" % n, {})) for n in cfg["fanout_n"]]
    rows = [(n, v["herald"], v["redis"]) for n, v in rows
            if "herald" in v and "redis" in v]
    if not rows:
        return "no fan-out figures to plot"
    with open(os.path.join(out, "fanout.dat"), "w") as f:
        f.write("# N herald_median_ms redis_median_ms\n")
        for n, h, r in rows:
            f.write("%d %.4f %.4f\n" % (n, h, r))
    script = """\
set terminal pngcairo size 800,500 font ',10'
set output 'fanout.png'
set title 'Broadcast fan-out to N sessions, 100-byte text (median)'
set xlabel 'connected sessions N'
set ylabel 'ms until the last session has the message'
set key top left
set grid
set xrange [0:*]
set yrange [0:*]
set format x '%.0f'
plot 'fanout.dat' using 1:2 with linespoints lw 2 pt 7 title 'herald', \\
     'fanout.dat' using 1:3 with linespoints lw 2 pt 5 title 'Redis pub/sub'
"""
    with open(os.path.join(out, "fanout.gp"), "w") as f:
        f.write(script)
    try:
        p = subprocess.run(["gnuplot", "fanout.gp"], cwd=out,
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "gnuplot could not run: %s" % e
    if p.returncode != 0:
        return "gnuplot failed: %s" % p.stderr.strip()
    return None


def report(bench, rows, info, elapsed, plot_note, quick):
    cfg = bench.cfg
    v = bench.values
    big = fmt_int(max(cfg["fanout_n"]))
    only = bench.only_state
    lines = ["# herald with and without its state database" if only else
             "# herald next to Redis", ""]
    if quick:
        lines += ["**Quick run (BENCH_QUICK=1)**: small N, few rounds; a "
                  "smoke test, not the figures to quote.", ""]
    if only:
        command = "python3 tests/bench/run.py --only state%s" % (
            " --quick" if quick else "")
        lines += ["Only the state database's rows (`--only state`): the "
                  "plain herald and the herald with the state database, "
                  "without Redis or TLS.", ""]
    else:
        command = "BENCH_QUICK=1 make bench" if quick else "make bench"
    lines += [
        "Produced by `%s` in %.0f s on %s." % (command, elapsed,
                                               info["date"]),
        "",
        "## Machine", "",
        "- CPU: %s, %d CPUs (%d usable by the benchmark)" % (
            info["cpu_model"], info["cpus"], info["cpus_usable"]),
        "- memory: %s GB; kernel: %s" % (info["memory_gb"], info["kernel"]),
        "- herald: %s, commit %s" % (info["herald"], info["commit"]),
        "- Redis: %s" % info["redis"],
        "- compiler: %s; Python %s" % (info["compiler"], info["python"]),
        "- 1-minute load average: %s before the run, %s after it (the "
        "benchmark's own processes count; more than about 2 means other "
        "work shared the CPUs)" % (info["load_before"], info["load_after"]),
        "- open-file limit %d; herald `max_sessions = %d`, Redis "
        "`--maxclients %d`, both on 127.0.0.1, Redis without persistence" % (
            bench.nofile, bench.max_sessions, bench.maxclients),
        "- the state database of the herald with it: on %s" % (
            bench.state_fs or "unknown filesystem"),
        "",
        "## Servers", "",
        "Each herald has its own folder, port, admin socket and log; their "
        "configuration files, as written:", "",
    ]
    for label, text in bench.herald_configs:
        lines += ["- %s:" % label, "", "  ```lua"] + [
            "  " + l for l in text.strip().splitlines()] + ["  ```", ""]
    lines += [
        "## Results", "",
        table(rows), "",
        "Lower is better for every figure except calls per second. "
        "The ratio is herald's figure divided by Redis's, except in the two "
        "rows *with TLS*: there it is herald with TLS against the same "
        "herald figure in plaintext from this run (Redis is not involved): "
        "the fan-out latency with TLS divided by that in plaintext, and for "
        "calls the time per call, i.e. plaintext calls per second divided "
        "by calls per second with TLS; so a target of ≤ %.2f means TLS "
        "costs at most %.0f%% in both. Likewise in the rows *with the state "
        "database*: the herald with `state` set against the plain herald "
        "(`state = false`) of this run, the fan-out latency with the state "
        "database divided by that without, and for calls the time per call "
        "(calls per second without it divided by calls per second with it); "
        "a target of ≤ %.2f means the state database costs at most %.0f%%. "
        "Connect and greet with the state database has no target: each new "
        "session is one transaction, and the row says what that costs. "
        "In the two rows *to WebSocket sessions* (median and p99 at N=%s), "
        "the same herald process is driven over WebSocket (its "
        "`http_listen`) and over TCP in the same run, and the ratio is the "
        "fan-out latency over WebSocket divided by that over TCP (WS/TCP); "
        "its target of ≤ %.2f is reported, not asserted. "
        "Fan-out rounds "
        "are N/40 ms apart (at least 10 ms), so that each round times a "
        "broadcast to an idle server: herald's clients acknowledge every "
        "message, and the previous round's acknowledgements are taken "
        "before the next trigger." % (
            TLS_TARGET, 100 * (TLS_TARGET - 1), STATE_TARGET,
            100 * (STATE_TARGET - 1), big, WS_TARGET),
        "",
    ]
    missed = [r for r in rows if r["met"] is False]
    unmeasured = [r for r in rows if r["ratio"] is None]
    if missed:
        lines += ["Targets missed:", ""]
        for r in missed:
            lines.append("- %s: ratio %.2f against a target of %s %.2f%s" % (
                r["figure"], r["ratio"],
                "≤" if r["better"] == "lower" else "≥", r["target"],
                "" if r["subject"] == "herald" else
                ": %s costs %.0f%%, %.0f points over the %.0f%% allowed" % (
                    COST_OF[r["subject"]],
                    100 * (r["ratio"] - 1), 100 * (r["ratio"] - r["target"]),
                    100 * (r["target"] - 1))))
        lines.append("")
    elif not unmeasured:
        lines += ["Every target is met.", ""]
    if bench.failures:
        lines += ["## Failures", ""]
        for name, err in bench.failures.items():
            lines += ["### %s" % name, "", "```", err, "```", ""]
    if bench.notes:
        lines += ["## Notes", ""] + ["- " + n for n in bench.notes] + [""]
    extra = []
    if "mem_rss_before_kb" in v:
        for kind, label in (("herald", "herald"), ("redis", "Redis")):
            if kind in v["mem_rss_before_kb"]:
                extra.append("- %s RSS: %s kB before, %s kB with %s idle "
                             "sessions" % (
                                 label, fmt_int(v["mem_rss_before_kb"][kind]),
                                 fmt_int(v["mem_rss_after_kb"][kind]),
                                 fmt_int(cfg["mem_n"])))
    if "list_reply_bytes" in v:
        extra.append("- listing reply: herald %s bytes, Redis %s bytes" % (
            fmt_int(v["list_reply_bytes"].get("herald", 0)),
            fmt_int(v["list_reply_bytes"].get("redis", 0))))
    if bench.state_db_size is not None:
        extra.append("- the state database (herald.db, -wal, -shm) at the "
                     "end: %s bytes" % fmt_int(bench.state_db_size))
    if extra:
        lines += ["Raw figures:", ""] + extra + [""]
    lines += [
        "## Method", "",
        "One load tool, `tests/bench/loadgen` (one process, epoll), drives "
        "both servers in the same run; runs of the two alternate. Each "
        "figure is a median:", "",
        "- **fan-out**: N greeted sessions (Redis: N SUBSCRIBE "
        "connections); per round a control connection calls method "
        "`broadcast` with a 100-byte text (Redis: PUBLISH) and the round "
        "ends when the last of the N has it. %s per N and server, each "
        "%s then %d measured (%d at the largest N); median and p99 over the "
        "pooled rounds. \"First\" is the time until the first session has "
        "the message." % (
            count(cfg["fanout_runs"], "loadgen run"),
            count(cfg["fanout_warmup"], "warm-up round"),
            cfg["fanout_rounds"], cfg["fanout_rounds_max_n"]),
        "- **memory**: on freshly started servers, VmRSS of the server "
        "process before %s idle sessions connect and %d s after all are "
        "greeted; the growth divided by N (KB = 1024 bytes)." % (
            fmt_int(cfg["mem_n"]), cfg["mem_idle"]),
        "- **calls**: %d connections each keep one call of method `noop` "
        "in flight (Redis: EVALSHA of `return 1`) for %d s after 1 s of "
        "warm-up; median of %s. The round trip is the median latency with "
        "one connection, median of %s." % (
            cfg["calls_conns"], cfg["calls_seconds"],
            count(cfg["calls_runs"], "run"), count(cfg["calls_runs"], "run")),
        "- **listing**: %s idle sessions; one call of method "
        "`list_sessions` (`get_process_activity(SESSIONS_ONLY)`) against "
        "CLIENT LIST, until the whole reply is in; %d warm-up and %d "
        "measured listings per run, the median of the runs' medians (%s)."
        % (fmt_int(cfg["list_n"]), cfg["list_warmup"], cfg["list_rounds"],
           count(cfg["list_runs"], "run")),
        "- **TLS**: a second herald, started with `tls = { cert = ..., "
        "key = ... }` and a certificate and key made by `herald cert "
        "127.0.0.1` in its temporary folder (its own port and admin socket). "
        "loadgen `--tls` makes every connection do a TLS handshake (%s; the "
        "certificate verified against that file and 127.0.0.1) before its "
        "hello, then reads and writes through OpenSSL in the same epoll "
        "loop. It is measured exactly as its plaintext twin: at N=%s in the "
        "fan-out runs and with %d connections in the calls runs, in the same "
        "loop over runs, the order alternating (herald with TLS, herald, "
        "Redis, then the reverse)." % (
            bench.tls_negotiated() or "protocol not recorded", big,
            cfg["calls_conns"]),
        "- **state database**: one more herald, started with `state = "
        "\"<its folder>/herald.db\"` (WAL, synchronous=NORMAL: herald's "
        "defaults), its own port, admin socket and log; each message is "
        "written to it (one transaction) before it is sent, each new "
        "session before its welcome, acks and counters once a second in "
        "one transaction. Measured exactly as its twin with `state = "
        "false`: at N=%s in the fan-out runs, with %d connections in the "
        "calls runs, and in the connect runs, in the same loops, the order "
        "alternating (herald with TLS, herald with the state database, "
        "herald, Redis, then the reverse)." % (big, cfg["calls_conns"]),
        "- **WebSocket**: the plain herald also has `http_listen = "
        "\"127.0.0.1:0\"` (the port it took is read from its log). loadgen "
        "`--ws` makes every connection, the N sessions and the control "
        "connection alike, do the HTTP/1.1 upgrade on `GET /ws` (the 101 "
        "and its `Sec-WebSocket-Accept` checked), then send each frame of "
        "the protocol as one masked text message and read each text "
        "message from the server as one line (libwslay's frame API, in the "
        "same epoll loop). One session over WebSocket is probed first. "
        "Measured at N=%s in the fan-out runs, in the same loop over runs "
        "as the same herald over TCP, the order alternating (at that N: "
        "herald with TLS, herald with the state database, herald over "
        "WebSocket, herald over TCP, Redis, then the reverse); median and "
        "p99 over the pooled rounds." % big,
        "- **connect**: time to connect and greet %s sessions (herald, and "
        "the herald with the state database: "
        "hello until welcome; Redis: SUBSCRIBE until its reply), at most "
        "256 not yet greeted at once; %s, then the median of %s." % (
            fmt_int(cfg["connect_n"]),
            count(cfg["connect_warmup_runs"], "warm-up run"),
            count(cfg["connect_runs"], "run")),
        "",
        "![fan-out latency against N](fanout.png)" if plot_note is None
        else "No plot: %s." % plot_note,
        "",
        "Every loadgen line behind these figures is in `results.json`; the "
        "servers' logs are `herald.log`, `herald-tls.log`, "
        "`herald-state.log` and `redis.log`.",
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK", "") not in
                    ("", "0"), help="small run (also BENCH_QUICK=1)")
    ap.add_argument("--only", choices=["state"],
                    help="state: just the state database's rows and their "
                    "twins with state = false (no Redis, no TLS)")
    ap.add_argument("--out", help="default build/bench, with --only "
                    "state build/bench/state")
    ap.add_argument("--herald", default=os.path.join(ROOT, "build",
                                                     "herald"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "build", "bench",
                                                      "loadgen"))
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(ROOT, "build", "bench",
                                *(["state"] if args.only else []))
    # the servers run in a temporary directory: no relative paths
    for name in ("out", "herald", "loadgen"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    cfg = QUICK if args.quick else FULL
    # make's or a supervisor's SIGTERM: unwind, so that the servers stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    t0 = time.monotonic()
    load_before = loadavg()
    os.makedirs(args.out, exist_ok=True)
    for path in (args.herald, args.loadgen):
        if not os.access(path, os.X_OK):
            print("bench: %s is missing; run `make bench`" % path,
                  file=sys.stderr)
            return 2
    bench = Bench(args, cfg)
    try:
        bench.run()
    except SetupError as e:
        print("bench: cannot run: %s" % e, file=sys.stderr)
        return 2
    elapsed = time.monotonic() - t0
    rows = judge(bench.values, cfg, bench.only_state)
    info = machine(args.herald)
    info["load_before"], info["load_after"] = load_before, loadavg()
    plot_note = "not drawn with --only state" if bench.only_state else \
        plot(args.out, cfg, bench.values)
    if plot_note:
        bench.notes.append("no plot: " + plot_note)
    text = report(bench, rows, info, elapsed, plot_note, args.quick)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"quick": args.quick, "machine": info, "params": cfg,
                   "elapsed_s": round(elapsed, 1), "figures": rows,
                   "values": bench.values, "failures": bench.failures,
                   "notes": bench.notes, "runs": bench.loadgen.runs},
                  f, indent=1, ensure_ascii=False)
    print()
    print(table(rows))
    print()
    rel = os.path.relpath(args.out, os.getcwd())
    if bench.only_state:
        print("bench: %s/report.md, %s/results.json (%.0f s)" % (
            rel, rel, elapsed))
    else:
        print("bench: %s/report.md, %s/fanout.png, %s/results.json "
              "(%.0f s)" % (rel, rel, rel, elapsed))
    if bench.failures:
        print("bench: %d group(s) could not be measured: %s" % (
            len(bench.failures), ", ".join(bench.failures)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
