#!/usr/bin/env python3
"""herald's benchmarks side by side with Redis and with the machine's floor
(`make bench`).

Starts its own Redis (loopback, a free port, no persistence), its own
herald and the floor (tests/bench/floor.c, below), puts the same load on
them with tests/bench/loadgen, stops them by PID, and writes into
build/bench/:

    report.md      machine, method, and the tables: each figure for herald,
                   for Redis, their ratio, the target, met or missed; the
                   same figures for the floor (herald/Redis next to
                   herald/floor); the servers' CPU time per delivery and per
                   call; the scaling sweep
    fanout.png     fan-out latency against N for the three (gnuplot)
    sweep-fanout.png, sweep-calls.png, sweep-memory.png
                   the sweep: fan-out latency and CPU per delivery against
                   N, calls per second and CPU per call against the number
                   of connections, memory per idle session against N
    results.json   every figure and every loadgen line behind it
    herald.log, herald-tls.log, herald-state.log, redis.log, floor.log,
    sweep.log      the servers' own logs (sweep.log: the memory sweep's
                   freshly started servers)

The floor: a minimal epoll server (libc only) that speaks just enough of
herald's protocol for loadgen's herald modes to run against it unchanged:
a fixed welcome for each hello, a fixed result (the call's id copied) for
each call, and for a call of broadcast one prebuilt message frame written
to every greeted socket; acks are read and discarded. It is what this
machine costs for the same load: herald/floor says how far herald is from
it (fan-out target FLOOR_TARGET, the one-connection round trip
RTT_FLOOR_TARGET; calls per second are information). It runs in the
fan-out, calls and memory loops with herald and Redis, the order
alternating.

CPU per delivery and per call: loadgen --phases marks the measured part
of each fan-out and calls run, and the server's utime + stime (from
/proc/PID/stat, all threads) is read at both marks (Loadgen.run_cpu); the
difference is divided by N x rounds (fan-out) or by the calls completed.

The scaling sweep: fan-out at sweep_fanout_n, calls with
sweep_calls_conns connections, memory per idle session at sweep_mem_n (each
on freshly started servers), for herald, Redis and the floor. Points the
main figures measure are taken from them; the others are measured by the
sweep. An N beyond the open-file limit (19,000 needs 19,300 descriptors)
is lowered to the largest that fits, and the report says so.

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

Placement: with two usable CPUs or more, loadgen runs on the first and
every server on the others (sched_setaffinity), so that all servers meet
the same placement (see placement()); BENCH_PIN=0 or --no-pin leaves them
to the scheduler.

Usage: python3 tests/bench/run.py [--quick] [--only state] [--no-pin]
                                  [--out DIR]
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
# The floor rows: herald's fan-out latency against that of the floor
# (tests/bench/floor.c, the least a server can do for the same load on this
# machine), same run. Calls per second against the floor are information
# (no target); the one-connection round trip against the floor's (an echo
# of a fixed reply) has RTT_FLOOR_TARGET.
FLOOR_TARGET = 1.15
RTT_FLOOR_TARGET = 1.10

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
    # the scaling sweep: its points that the figures above already measure
    # (fan-out at fanout_n, memory at mem_n, calls with 1 and calls_conns
    # connections) are taken from them; the others are measured in the
    # sweep's own runs, herald, Redis and the floor alternating
    "sweep_fanout_n": [1000, 2000, 5000, 10000, 19000],
    "sweep_runs": 2,            # loadgen runs per extra point and server
    "sweep_rounds": 30,
    "sweep_warmup": 3,
    "sweep_calls_conns": [1, 10, 50, 200],
    "sweep_calls_seconds": 3,
    "sweep_mem_n": [1000, 2000, 5000, 10000, 19000],
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
    "sweep_fanout_n": [500, 1000, 2000],
    "sweep_runs": 1,
    "sweep_rounds": 10,
    "sweep_warmup": 2,
    "sweep_calls_conns": [1, 10, 50],
    "sweep_calls_seconds": 2,
    "sweep_mem_n": [1000, 2000],
}

LOADGEN_TIMEOUT = 30            # loadgen's own bound on a round or greeting
STOP_TIMEOUT = 10               # SIGTERM, then SIGKILL after this long
START_TIMEOUT = 15
FD_MARGIN = 300                 # descriptors a server needs beyond sessions
CLK_TCK = os.sysconf("SC_CLK_TCK")  # unit of utime and stime in /proc


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


def nofile_preexec(limit, cpus=None):
    """preexec_fn of a server: the open-file limit, and the CPUs it may
    run on when the benchmark pins (cpus; None: any)."""
    def apply():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, max(hard, limit)))
        if cpus:
            os.sched_setaffinity(0, cpus)
    return apply


def placement(disabled):
    """(loadgen's CPUs, the servers' CPUs) when the benchmark pins, else
    None: with two usable CPUs or more, loadgen gets the first and every
    server the others, so that each server meets the same placement. Left
    to the scheduler, a request and its reply between two processes go
    either on one CPU or across two from one run to the next, and on a
    virtual machine the crossing costs tens of microseconds (on the 2-CPU
    virtual machine this was written on, the floor's round trip with one
    connection was 16 or 55 µs, Redis's 19 or 58 µs, run by run), which
    made the round trips and calls per second bimodal."""
    usable = sorted(os.sched_getaffinity(0))
    if disabled or len(usable) < 2:
        return None
    return {usable[0]}, set(usable[1:])


# The servers' CPUs when the benchmark pins (set by Bench before it makes
# any server), else None.
SERVER_CPUS = [None]


def cpus_text(cpus):
    return "CPU%s %s" % ("s" if len(cpus) > 1 else "",
                         ", ".join(str(c) for c in sorted(cpus)))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- CPU time of a server ---------------------------------------------------

def proc_cpu(pid):
    """The CPU time process pid has used so far, all its threads: (utime +
    stime in clock ticks from /proc/PID/stat, the same in nanoseconds as
    the sum of its live threads' /proc/PID/task/*/schedstat or None, stime
    alone: the part spent in the kernel). The figures come from the first;
    the second, finer (ticks are 1/CLK_TCK s), is kept in results.json as
    a check."""
    with open("/proc/%d/stat" % pid) as f:
        text = f.read()
    # the fields after the command name, which may hold spaces: state is
    # field 3, utime and stime fields 14 and 15
    fields = text[text.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    kernel = int(fields[12])
    sched = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                sched += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        sched = None
    return ticks, sched, kernel


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
        self.cpus = SERVER_CPUS[0]  # the CPUs it runs on when pinned

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
                preexec_fn=nofile_preexec(self.nofile, self.cpus),
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


class Floor(Server):
    """tests/bench/floor.c: a minimal epoll server that answers hello with
    a fixed welcome, each call with a fixed result (its id copied), and a
    call of broadcast by writing one message frame to every greeted
    socket. loadgen drives it as a herald (--target herald)."""

    def __init__(self, binary, log_path, workdir, nofile):
        super().__init__("herald", "floor", log_path, workdir, nofile,
                         "floor")
        self.binary = binary

    def argv(self):
        return [self.binary, "--port", "0"]

    def ready(self, text):
        m = re.search(r"floor: listening on 127\.0\.0\.1:(\d+)", text)
        return int(m.group(1)) if m else None


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
        self.cpus = None        # loadgen's CPUs when the benchmark pins

    def preexec(self):
        cpus = self.cpus
        if not cpus:
            return None
        return lambda: os.sched_setaffinity(0, cpus)

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
                               timeout=bound, preexec_fn=self.preexec())
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

    def run_cpu(self, server, mode, bound, **opts):
        """Run one loadgen with --phases (fanout or calls mode) and read the
        server's CPU time (proc_cpu) at its phase=measuring and
        phase=measured lines: in fanout mode loadgen waits for our go on
        its stdin after each, so that the stretch between holds exactly
        the measured rounds (and their acks); in calls mode it does not
        wait (the load runs on) and the stretch is the recorded seconds.
        Returns (parsed lines, {"ticks", "ns", "sched_ns", "wall_s"}) for
        that stretch."""
        argv = self.argv(server, mode, opts) + ["--phases"]
        pid = server.proc.pid
        wait = mode == "fanout"
        marks = {}
        errf = tempfile.TemporaryFile()
        p = subprocess.Popen(argv, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=errf,
                             preexec_fn=self.preexec())
        out = b""
        scanned = 0
        deadline = time.monotonic() + bound
        try:
            sel = selectors.DefaultSelector()
            sel.register(p.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(argv, bound)
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
                while True:
                    nl = out.find(b"\n", scanned)
                    if nl < 0:
                        break
                    line = out[scanned:nl]
                    scanned = nl + 1
                    m = re.search(rb" phase=(\w+)", line)
                    if m is None:
                        continue
                    try:
                        marks[m.group(1).decode()] = (proc_cpu(pid),
                                                      time.monotonic())
                    except (OSError, ValueError, IndexError):
                        pass        # the server is gone: the run fails
                    if wait:
                        try:
                            p.stdin.write(b"\n")
                            p.stdin.flush()
                        except OSError:
                            pass
            sel.close()
            p.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            errf.seek(0)
            raise self.failure(server, argv, "killed after %d s" % bound,
                               out.decode(errors="replace"),
                               errf.read().decode(errors="replace"))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            try:
                p.stdin.close()
            except OSError:
                pass
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        errf.close()
        text = out.decode(errors="replace")
        lines = [parse_line(l) for l in text.splitlines() if l.strip()]
        cpu = None
        if "measuring" in marks and "measured" in marks:
            (t0, s0, k0), w0 = marks["measuring"]
            (t1, s1, k1), w1 = marks["measured"]
            cpu = {"ticks": t1 - t0, "kernel_ticks": k1 - k0,
                   "ns": (t1 - t0) * 1e9 / CLK_TCK,
                   "sched_ns": None if s0 is None or s1 is None
                   else s1 - s0, "wall_s": round(w1 - w0, 4)}
        self.runs.append({"server": server.name, "argv": argv[1:],
                          "status": p.returncode, "lines": lines,
                          "stderr": err.strip(), "cpu": cpu})
        if p.returncode != 0 or not lines or \
                lines[-1].get("status") != "ok":
            raise self.failure(server, argv, p.returncode, text, err)
        if cpu is None:
            raise self.failure(server, argv, p.returncode, text,
                               err + "\n(no CPU time read around the "
                               "measured part: phase lines %s)" %
                               (sorted(marks) or "missing"))
        return lines, cpu

    def hold(self, server, clients, idle):
        """Connect `clients` idle sessions, wait `idle` seconds once all are
        greeted, and return (rss_before_kb, rss_after_kb, held line)."""
        margin = 2
        argv = self.argv(server, "hold", {"clients": clients,
                                          "seconds": idle + margin})
        before = server.rss_kb()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             preexec_fn=self.preexec())
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
        self.cpu_acc = {}       # figure key -> server -> [ticks, units, ns]
        self.sweep_fanout_n = list(cfg["sweep_fanout_n"])
        self.sweep_mem_n = list(cfg["sweep_mem_n"])
        self.sweep_note = None  # why the sweep's largest N was lowered
        self.sweep_plot_notes = []
        # loadgen on one CPU, the servers on the others (placement())
        self.pin = placement(getattr(args, "no_pin", False))
        if self.pin:
            self.loadgen.cpus = self.pin[0]
            SERVER_CPUS[0] = self.pin[1]
        # --only state: the plain herald and the herald with the state
        # database, in the state rows' loops only
        self.only_state = getattr(args, "only", None) == "state"

    # -- servers

    def make_servers(self):
        need = max(self.cfg["fanout_n"] + [self.cfg["mem_n"],
                                           self.cfg["connect_n"],
                                           self.cfg["list_n"]])
        self.nofile = raise_nofile()
        # The sweep goes as far as the open-file limit allows: a larger N
        # is replaced by the largest multiple of 1,000 that fits, and the
        # report says so.
        fit = (self.nofile - FD_MARGIN) // 1000 * 1000
        over = sorted(set(n for n in self.sweep_fanout_n + self.sweep_mem_n
                          if n + FD_MARGIN > self.nofile))
        if over and not self.only_state:
            self.sweep_note = (
                "N=%s would need %s descriptors in each of the server and "
                "loadgen (N sessions and %d more), but the open-file limit "
                "is %s and its hard limit could not be raised (that takes "
                "root with CAP_SYS_RESOURCE); the sweep's largest N is %s "
                "instead" % (
                    "/".join(fmt_int(n) for n in over),
                    fmt_int(max(over) + FD_MARGIN), FD_MARGIN,
                    fmt_int(self.nofile), fmt_int(fit)))
            self.notes.append(self.sweep_note)
            self.sweep_fanout_n = sorted(set(
                min(n, fit) for n in self.sweep_fanout_n))
            self.sweep_mem_n = sorted(set(
                min(n, fit) for n in self.sweep_mem_n))
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
                     "redis.log", "floor.log", "sweep.log"):
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
            fdir = os.path.join(self.workdir, "floor")
            os.makedirs(fdir)
            self.servers["floor"] = Floor(
                self.args.floor, os.path.join(self.out, "floor.log"), fdir,
                self.nofile)

    def fresh(self, kind, n):
        """A new server of kind (herald, redis or floor) in a folder of its
        own, logging into sweep.log: the memory sweep's fresh servers. The
        herald has the plain herald's configuration."""
        d = os.path.join(self.workdir, "sweep-%s-%d" % (kind, n))
        os.makedirs(d)
        logp = os.path.join(self.out, "sweep.log")
        if kind == "herald":
            return Herald(self.args.herald, logp, d, self.nofile,
                          self.max_sessions, http=True)
        if kind == "redis":
            return Redis(logp, d, self.nofile, self.maxclients)
        return Floor(self.args.floor, logp, d, self.nofile)

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

    def order(self, rep, tls=False, state=False, ws=False, floor=False):
        """Alternate which server goes first, so drift weighs on both. With
        tls, state and ws (each when that herald, or the plain herald's
        WebSocket side, is up), up to five: herald with TLS, herald with
        the state database, herald over WebSocket, herald, Redis, then the
        reverse, so that herald and Redis keep their alternation and the
        TLS and state heralds and the WebSocket side alternate with the
        plain herald too. With floor, the floor comes last (after Redis),
        then first."""
        names = ["herald", "redis"]
        if floor:
            names.append("floor")
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

    def cpu_add(self, key, kind, cpu, units):
        """Pool one run's server CPU time (Loadgen.run_cpu) into figure
        key's: cpu_<key> is CPU nanoseconds per unit (a delivery, a call)
        over every run so far, from /proc/PID/stat's utime + stime;
        cpu_ticks_<key> the clock ticks behind it; cpu_kernel_<key> the
        share of them spent in the kernel (stime: the system calls, the
        network stack); cpu_sched_<key> the same per unit from the
        threads' schedstat (a finer check)."""
        a = self.cpu_acc.setdefault(key, {}).setdefault(kind, [0, 0, 0, 0])
        a[0] += cpu["ticks"]
        a[1] += units
        a[3] += cpu["kernel_ticks"]
        if a[0] > 0:
            self.put("cpu_kernel_" + key, kind, a[3] / a[0])
        if cpu["sched_ns"] is None or a[2] is None:
            a[2] = None
        else:
            a[2] += cpu["sched_ns"]
        self.put("cpu_" + key, kind, a[0] * 1e9 / CLK_TCK / a[1])
        self.put("cpu_ticks_" + key, kind, a[0])
        if a[2] is not None:
            self.put("cpu_sched_" + key, kind, a[2] / a[1])

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
        for s in self.order(0, floor=True):
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
                                    state=n == largest, ws=n == largest,
                                    floor=not self.only_state):
                    first.setdefault(s.name, [])
                    last.setdefault(s.name, [])
                    # Rounds are spaced so that the server has taken the
                    # previous round's acks (herald's clients ack every
                    # message) before the next trigger: each round times a
                    # broadcast to an idle server, for both servers alike.
                    lines, cpu = self.loadgen.run_cpu(
                        s, "fanout", 600, clients=n, rounds=rounds,
                        warmup=c["fanout_warmup"], text_size=100,
                        gap_ms=max(10, n // 40))
                    self.cpu_add("fanout_%d" % n, s.name, cpu, n * rounds)
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
                for k in ("herald", "redis", "floor", "herald_tls",
                          "herald_state", "herald_ws")
                if k in v)))

    def calls(self):
        c = self.cfg
        rate = {}
        rtt = {}
        rate1 = {}
        many = c["calls_conns"]
        for rep in range(c["calls_runs"]):
            # herald with TLS and herald with the state database in the
            # many-connection runs (their rows)
            for s in self.order(rep, tls=True, state=True,
                                floor=not self.only_state):
                lines, cpu = self.loadgen.run_cpu(
                    s, "calls", c["calls_seconds"] + 60,
                    conns=many, seconds=c["calls_seconds"], warmup=1)
                line = lines[-1]
                rate.setdefault(s.name, []).append(line["calls_per_s"])
                self.cpu_add("calls_c%d" % many, s.name, cpu, line["calls"])
                self.put("rtt_c%d" % many, s.name, line["rtt_median_us"])
                time.sleep(0.3)
        for rep in range(0 if self.only_state else c["calls_runs"]):
            for s in self.order(rep, floor=True):
                lines, cpu = self.loadgen.run_cpu(
                    s, "calls", c["calls_seconds"] + 60, conns=1,
                    seconds=c["calls_seconds"], warmup=1)
                line = lines[-1]
                rtt.setdefault(s.name, []).append(line["rtt_median_us"])
                rate1.setdefault(s.name, []).append(line["calls_per_s"])
                self.cpu_add("calls_c1", s.name, cpu, line["calls"])
                time.sleep(0.3)
        for kind in rate:
            self.put("calls", kind, statistics.median(rate[kind]))
            self.put("calls_c%d" % many, kind, statistics.median(rate[kind]))
        for kind in rtt:
            self.put("rtt", kind, statistics.median(rtt[kind]))
            self.put("rtt_c1", kind, statistics.median(rtt[kind]))
            self.put("calls_c1", kind, statistics.median(rate1[kind]))

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

    # -- the scaling sweep: herald, Redis and the floor side by side

    def sweep_fanout(self):
        """Fan-out at the sweep's N that the fan-out group did not measure,
        with the same spacing of rounds, the order alternating across runs
        and points."""
        c = self.cfg
        extra = [n for n in self.sweep_fanout_n if n not in c["fanout_n"]]
        turn = 0
        for n in extra:
            last = {}
            for rep in range(c["sweep_runs"]):
                for s in self.order(turn, floor=True):
                    lines, cpu = self.loadgen.run_cpu(
                        s, "fanout", 600, clients=n,
                        rounds=c["sweep_rounds"], warmup=c["sweep_warmup"],
                        text_size=100, gap_ms=max(10, n // 40))
                    self.cpu_add("fanout_%d" % n, s.name, cpu,
                                 n * c["sweep_rounds"])
                    last.setdefault(s.name, []).extend(
                        l["last_us"] / 1000 for l in lines if "round" in l)
                    time.sleep(0.3)
                turn += 1
            for kind, v in last.items():
                self.put("fanout_%d" % n, kind, statistics.median(v))
            log("  N=%d: %s" % (n, ", ".join(
                "%s %.2f ms" % (k, statistics.median(last[k]))
                for k in ("herald", "redis", "floor") if k in last)))

    def sweep_calls(self):
        """Calls with the sweep's numbers of connections that the calls
        group did not measure (it measures 1 and calls_conns)."""
        c = self.cfg
        extra = [k for k in c["sweep_calls_conns"]
                 if k not in (1, c["calls_conns"])]
        turn = 0
        for k in extra:
            rate = {}
            rtt = {}
            for rep in range(c["sweep_runs"]):
                for s in self.order(turn, floor=True):
                    lines, cpu = self.loadgen.run_cpu(
                        s, "calls", c["sweep_calls_seconds"] + 60, conns=k,
                        seconds=c["sweep_calls_seconds"], warmup=1)
                    line = lines[-1]
                    rate.setdefault(s.name, []).append(line["calls_per_s"])
                    rtt.setdefault(s.name, []).append(line["rtt_median_us"])
                    self.cpu_add("calls_c%d" % k, s.name, cpu, line["calls"])
                    time.sleep(0.3)
                turn += 1
            for kind in rate:
                self.put("calls_c%d" % k, kind, statistics.median(rate[kind]))
                self.put("rtt_c%d" % k, kind, statistics.median(rtt[kind]))
            log("  %d connections: %s" % (k, ", ".join(
                "%s %s/s" % (n, fmt_int(int(self.values["calls_c%d" % k][n])))
                for n in ("herald", "redis", "floor") if n in rate)))

    def sweep_memory(self):
        """Memory per idle session at each of the sweep's N, each server
        freshly started for it (RSS growth means little on a heap that an
        earlier load has grown), then stopped; at mem_n, the memory group's
        figure (also on fresh servers)."""
        c = self.cfg
        for turn, n in enumerate(self.sweep_mem_n):
            for kind in [s.name for s in self.order(turn, floor=True)]:
                main = self.values.get("mem_per_session", {})
                if n == c["mem_n"] and kind in main:
                    self.put("mem_sweep_%d" % n, kind, main[kind])
                    continue
                s = self.fresh(kind, n)
                try:
                    s.start()
                    # as long idle as in the memory group: Redis's RSS
                    # still shrinks seconds after its clients are in
                    before, after, _ = self.loadgen.hold(
                        s, n, c["mem_idle"])
                except SetupError as e:
                    raise BenchError(str(e))
                finally:
                    note = s.stop()
                    if note:
                        self.notes.append(note)
                self.put("mem_sweep_%d" % n, kind, (after - before) * 1024 / n)
                log("  %s: RSS %d kB -> %d kB with %d idle sessions" % (
                    s.label, before, after, n))
                time.sleep(0.3)

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
                extra = [n for n in self.sweep_fanout_n
                         if n not in c["fanout_n"]]
                if extra:
                    self.group("sweep: fan-out (N=%s)" % "/".join(
                        fmt_int(n) for n in extra), self.sweep_fanout)
                extra = [k for k in c["sweep_calls_conns"]
                         if k not in (1, c["calls_conns"])]
                if extra:
                    self.group("sweep: method calls (%s connections)" %
                               "/".join(str(k) for k in extra),
                               self.sweep_calls)
                self.group("sweep: memory per idle session (N=%s)" %
                           "/".join(fmt_int(n) for n in self.sweep_mem_n),
                           self.sweep_memory)
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
         cfg["calls_conns"], "calls/s", "higher", 1.2),
        ("rtt", "Method call round trip, 1 connection, median", "µs",
         "lower", 1.0),
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
        return "%s µs" % fmt_int(int(round(value))) if value >= 1000 \
            else "%.1f µs" % value
    if value >= 100:
        return "%.0f ms" % value
    if value >= 10:
        return "%.1f ms" % value
    return "%.2f ms" % value


def why_missed(row, values, cfg):
    """For a missed herald/Redis figure that the floor also measures: how
    far the floor itself is from Redis (so how close to the floor the
    target asks herald to be, against how close it is), and each server's
    CPU per unit split into its own code and the kernel (stime). None for
    other rows."""
    key = row["key"]
    if row["subject"] != "herald" or key not in (
            ["fanout_%d" % n for n in cfg["fanout_n"]] +
            ["fanout_p99", "calls", "rtt"]):
        return None
    v = values.get(key, {})
    h, r, f = v.get("herald"), v.get("redis"), v.get("floor")
    if None in (h, r, f) or min(h, r, f) <= 0:
        return None
    if key == "calls":      # of the time per call: rates the other way
        h, r, f = 1 / h, 1 / r, 1 / f
        cpu_key, unit = "calls_c%d" % cfg["calls_conns"], "call"
    elif key == "rtt":
        cpu_key, unit = "calls_c1", "call"
    else:
        cpu_key = key if key != "fanout_p99" else \
            "fanout_%d" % max(cfg["fanout_n"])
        unit = "delivery"
    target = row["target"] if row["better"] == "lower" else 1 / row["target"]
    text = ("the floor itself is at %.2f of Redis, so the target asks herald "
            "to be within %.2f of the floor; it is at %.2f" % (
                f / r, target * r / f, h / f))
    cpu = values.get("cpu_" + cpu_key, {})
    kern = values.get("cpu_kernel_" + cpu_key, {})
    parts = []
    for kind, name in (("herald", "herald"), ("redis", "Redis"),
                       ("floor", "the floor")):
        if cpu.get(kind) is not None and kern.get(kind) is not None:
            c, k = cpu[kind], kern[kind]
            parts.append("%s %s + %s in the kernel" % (
                name, show_cpu(c * (1 - k)), show_cpu(c * k)))
    if parts:
        text += ". CPU per %s, its own code + the kernel: %s" % (
            unit, "; ".join(parts))
    return text


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


def show_cpu(ns):
    if ns is None:
        return "—"
    if ns >= 100:
        return "%s ns" % fmt_int(int(round(ns)))
    return "%.1f ns" % ns


def ratio_text(a, b, inverse=False):
    """a/b (b/a when inverse) as text, or a dash."""
    if inverse:
        a, b = b, a
    if a is None or b is None or b <= 0:
        return "—", None
    return "%.2f" % (a / b), a / b


def floor_rows(values, cfg):
    """The floor table: each figure for herald, Redis and the floor, and
    herald/Redis next to herald/floor. The fan-out rows have the target
    FLOOR_TARGET against the floor, the round trip RTT_FLOOR_TARGET; calls
    per second are information. For calls the
    ratios are of the time per call (the other server's calls per second
    divided by herald's), so that lower is better in every column."""
    n = cfg["fanout_n"]
    big = fmt_int(max(n))
    specs = [("fanout_%d" % x, "Broadcast fan-out latency, median, N=%s" %
              fmt_int(x), "ms", False, FLOOR_TARGET) for x in n]
    specs += [
        ("fanout_p99", "Broadcast fan-out latency, p99, N=%s" % big, "ms",
         False, FLOOR_TARGET),
        ("calls", "Method calls per second, %d connections (ratios: of the "
         "time per call)" % cfg["calls_conns"], "calls/s", True, None),
        ("rtt", "Method call round trip, 1 connection, median", "µs", False,
         RTT_FLOOR_TARGET),
    ]
    rows = []
    for key, label, unit, inverse, target in specs:
        v = values.get(key, {})
        h, r, f = v.get("herald"), v.get("redis"), v.get("floor")
        hr_text, _ = ratio_text(h, r, inverse)
        hf_text, hf = ratio_text(h, f, inverse)
        met = None if target is None or hf is None else hf <= target
        rows.append({"key": key, "figure": label, "unit": unit,
                     "herald": h, "redis": r, "floor": f,
                     "herald_redis": hr_text, "herald_floor": hf,
                     "herald_floor_text": hf_text, "target": target,
                     "met": met})
    return rows


def floor_table(rows):
    out = ["| Figure | herald | Redis | floor | herald / Redis | "
           "herald / floor | target (herald / floor) | met? |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["target"] is None:
            target, verdict = "none", ("information" if r["herald_floor"]
                                       is not None else "not measured")
        elif r["met"] is None:
            target, verdict = "≤ %.2f" % r["target"], "not measured"
        else:
            target = "≤ %.2f" % r["target"]
            verdict = "yes" if r["met"] else "**no**: %.0f%% above" % (
                100 * (r["herald_floor"] / r["target"] - 1))
        out.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["figure"], show(r["herald"], r["unit"]),
            show(r["redis"], r["unit"]), show(r["floor"], r["unit"]),
            r["herald_redis"], r["herald_floor_text"], target, verdict))
    return "\n".join(out)


def cpu_specs(cfg, bench):
    """(figure key, label, unit word) of every CPU figure measured: the
    fan-out at each N (per delivery) and the calls at each number of
    connections (per call), of the main figures and the sweep."""
    fanout_n = sorted(set(cfg["fanout_n"]) | set(bench.sweep_fanout_n))
    calls_conns = sorted(set(cfg["sweep_calls_conns"]) |
                         {1, cfg["calls_conns"]})
    out = [("fanout_%d" % n, "Fan-out, N=%s" % fmt_int(n), "delivery")
           for n in fanout_n]
    out += [("calls_c%d" % k, "Method calls, %s" % count(k, "connection"),
             "call") for k in calls_conns]
    return out


def cpu_table(values, specs):
    out = ["| Server CPU time | herald | Redis | floor | herald / Redis | "
           "herald / floor | in the kernel: herald, Redis, floor | "
           "CPU measured: herald, Redis, floor |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    kinds = ("herald", "redis", "floor")
    for key, label, unit in specs:
        v = values.get("cpu_" + key, {})
        t = values.get("cpu_ticks_" + key, {})
        k = values.get("cpu_kernel_" + key, {})
        if not v:
            continue
        h, r, f = v.get("herald"), v.get("redis"), v.get("floor")
        out.append("| %s, per %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, unit, show_cpu(h), show_cpu(r), show_cpu(f),
            ratio_text(h, r)[0], ratio_text(h, f)[0], ", ".join(
                "—" if k.get(x) is None else "%.0f%%" % (100 * k[x])
                for x in kinds), ", ".join(
                "—" if t.get(x) is None else "%.2f s" % (t[x] / CLK_TCK)
                for x in kinds)))
    return "\n".join(out)


def sweep_tables(values, bench):
    """The sweep's three tables (fan-out, calls, memory) as text."""
    cfg = bench.cfg
    kinds = ("herald", "redis", "floor")

    def cells(key, unit):
        v = values.get(key, {})
        return [show(v.get(k), unit) for k in kinds]

    def ratios(key, inverse=False):
        v = values.get(key, {})
        return [ratio_text(v.get("herald"), v.get(k), inverse)[0]
                for k in ("redis", "floor")]

    fan = ["| N | herald | Redis | floor | herald / Redis | herald / floor | "
           "CPU per delivery: herald | Redis | floor |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n in bench.sweep_fanout_n:
        key = "fanout_%d" % n
        cpu = values.get("cpu_" + key, {})
        fan.append("| %s | %s |" % (fmt_int(n), " | ".join(
            cells(key, "ms") + ratios(key) +
            [show_cpu(cpu.get(k)) for k in kinds])))
    calls = ["| connections | herald | Redis | floor | herald / Redis | "
             "herald / floor | CPU per call: herald | Redis | floor | "
             "round trip, median: herald | Redis | floor |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in cfg["sweep_calls_conns"]:
        key = "calls_c%d" % k
        cpu = values.get("cpu_" + key, {})
        calls.append("| %d | %s |" % (k, " | ".join(
            cells(key, "calls/s") + ratios(key, inverse=True) +
            [show_cpu(cpu.get(x)) for x in kinds] +
            cells("rtt_c%d" % k, "µs"))))
    mem = ["| N | herald | Redis | floor | herald / Redis | herald / floor |",
           "|---:|---:|---:|---:|---:|---:|"]
    for n in bench.sweep_mem_n:
        key = "mem_sweep_%d" % n
        mem.append("| %s | %s |" % (fmt_int(n), " | ".join(
            cells(key, "KB") + ratios(key))))
    return "\n".join(fan), "\n".join(calls), "\n".join(mem)


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
    rows = [(n, v["herald"], v["redis"], v.get("floor")) for n, v in rows
            if "herald" in v and "redis" in v]
    if not rows:
        return "no fan-out figures to plot"
    with open(os.path.join(out, "fanout.dat"), "w") as f:
        f.write("# N herald_median_ms redis_median_ms floor_median_ms\n")
        for n, h, r, fl in rows:
            f.write("%d %.4f %.4f %s\n" % (
                n, h, r, "-" if fl is None else "%.4f" % fl))
    floor_line = "" if all(r[3] is None for r in rows) else \
        ", \\\n     'fanout.dat' using 1:4 with linespoints lw 2 pt 9 " \
        "dt 2 title 'floor (minimal epoll server)'"
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
set datafile missing '-'
plot 'fanout.dat' using 1:2 with linespoints lw 2 pt 7 title 'herald', \\
     'fanout.dat' using 1:3 with linespoints lw 2 pt 5 title 'Redis pub/sub'\
""" + floor_line + "\n"
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


SWEEP_KINDS = (("herald", "herald", 7, 1), ("redis", "Redis", 5, 1),
               ("floor", "floor", 9, 2))


def gnuplot(out, name, script):
    """Write name.gp and run gnuplot on it in out; None or why not."""
    with open(os.path.join(out, name + ".gp"), "w") as f:
        f.write(script)
    try:
        p = subprocess.run(["gnuplot", name + ".gp"], cwd=out,
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "gnuplot could not run %s.gp: %s" % (name, e)
    if p.returncode != 0:
        return "gnuplot failed on %s.gp: %s" % (name, p.stderr.strip())
    return None


def sweep_dat(out, name, xs, columns, values):
    """name.dat: one line per x, then for each (key pattern, scale) column
    the herald, Redis and floor values ('-' when missing). Returns whether
    any value was there."""
    seen = False
    with open(os.path.join(out, name + ".dat"), "w") as f:
        f.write("# x " + " ".join(
            "%s_%s" % (pattern.split("_")[0], k) for pattern, _ in columns
            for k, _, _, _ in SWEEP_KINDS) + "\n")
        for x in xs:
            cells = []
            for pattern, scale in columns:
                v = values.get(pattern % x, {})
                for k, _, _, _ in SWEEP_KINDS:
                    if v.get(k) is None:
                        cells.append("-")
                    else:
                        seen = True
                        cells.append("%.6g" % (v[k] * scale))
            f.write("%d %s\n" % (x, " ".join(cells)))
    return seen


def sweep_panel(dat, first_col, title, ylabel, xlabel, logx=False):
    lines = ["set title '%s'" % title, "set xlabel '%s'" % xlabel,
             "set ylabel '%s'" % ylabel,
             "set logscale x" if logx else "unset logscale x",
             "set xrange [%s]" % ("0.7:*" if logx else "0:*"),
             "set yrange [0:*]"]
    plots = []
    for i, (k, label, pt, dt) in enumerate(SWEEP_KINDS):
        plots.append("'%s' using 1:%d with linespoints lw 2 pt %d dt %d "
                     "title '%s'" % (dat, first_col + i, pt, dt, label))
    lines.append("plot " + ", \\\n     ".join(plots))
    return "\n".join(lines) + "\n"


def plot_sweep(out, bench):
    """sweep-fanout.png (latency and CPU per delivery against N),
    sweep-calls.png (calls per second and CPU per call against the number
    of connections), sweep-memory.png (memory per idle session against N).
    Returns a list of notes on plots not drawn."""
    v = bench.values
    head = ("set terminal pngcairo size %d,500 font ',10'\n"
            "set output '%s.png'\nset key below horizontal\nset grid\n"
            "set format x '%%.0f'\nset datafile missing '-'\n")
    notes = []
    fan_n = bench.sweep_fanout_n
    if sweep_dat(out, "sweep-fanout", fan_n,
                 [("fanout_%d", 1), ("cpu_fanout_%d", 1)], v):
        notes.append(gnuplot(out, "sweep-fanout", head % (
            1200, "sweep-fanout") + "set multiplot layout 1,2\n" +
            sweep_panel("sweep-fanout.dat", 2, "Broadcast fan-out to N "
                        "sessions (median)", "ms until the last session has "
                        "it", "connected sessions N") +
            sweep_panel("sweep-fanout.dat", 5, "Server CPU per delivery",
                        "CPU ns per delivery", "connected sessions N") +
            "unset multiplot\n"))
    else:
        notes.append("sweep-fanout.png: no figures")
    conns = bench.cfg["sweep_calls_conns"]
    if sweep_dat(out, "sweep-calls", conns,
                 [("calls_c%d", 1), ("cpu_calls_c%d", 1)], v):
        notes.append(gnuplot(out, "sweep-calls", head % (
            1200, "sweep-calls") + "set multiplot layout 1,2\n" +
            sweep_panel("sweep-calls.dat", 2, "Method calls per second, one "
                        "in flight per connection", "calls per second",
                        "connections", logx=True) +
            sweep_panel("sweep-calls.dat", 5, "Server CPU per call",
                        "CPU ns per call", "connections", logx=True) +
            "unset multiplot\n"))
    else:
        notes.append("sweep-calls.png: no figures")
    if sweep_dat(out, "sweep-memory", bench.sweep_mem_n,
                 [("mem_sweep_%d", 1 / 1024)], v):
        notes.append(gnuplot(out, "sweep-memory", head % (
            800, "sweep-memory") + sweep_panel(
                "sweep-memory.dat", 2, "Resident memory per idle session "
                "(fresh servers)", "KB per session", "idle sessions N")))
    else:
        notes.append("sweep-memory.png: no figures")
    return [n for n in notes if n]


def floor_section(bench):
    """The report's sections on the floor, the servers' CPU time and the
    scaling sweep, as lines."""
    cfg = bench.cfg
    v = bench.values
    frows = floor_rows(v, cfg)
    lines = [
        "## The machine's floor", "",
        "The same figures for the floor (`tests/bench/floor.c`: a minimal "
        "epoll server that does only what loadgen needs, see Method), "
        "herald / Redis next to herald / floor. The fan-out target is "
        "herald within %.0f%% of the floor (≤ %.2f), the round trip's "
        "within %.0f%% of the floor's echo (≤ %.2f); calls per second are "
        "information. For calls, both ratios are of the time per call "
        "(the other's calls per second divided by herald's), so lower is "
        "better in every ratio column." % (
            100 * (FLOOR_TARGET - 1), FLOOR_TARGET,
            100 * (RTT_FLOOR_TARGET - 1), RTT_FLOOR_TARGET), "",
        floor_table(frows), "",
        "## Server CPU per delivery and per call", "",
        "CPU time of the server process (utime + stime from "
        "`/proc/PID/stat`, all threads) over the measured part of each run, "
        "divided by the deliveries (N × rounds) or by the calls completed; "
        "pooled over the runs of each figure. *In the kernel* is the share "
        "of it that is stime (system calls and the network stack, which a "
        "server's own code cannot make cheaper): what is left to herald's "
        "code is the rest, and the floor's share shows how little a server "
        "can do besides. The last column is the CPU "
        "time behind each figure: with ticks of %.0f ms, a figure from less "
        "than about 0.2 s is coarse." % (1000.0 / CLK_TCK), "",
        cpu_table(v, cpu_specs(cfg, bench)), "",
        "## Scaling sweep", "",
        "How each figure grows with the work, herald, Redis and the floor "
        "side by side (see Method for which points come from the figures "
        "above and which from the sweep's own runs).", "",
    ]
    if bench.sweep_note:
        lines += ["**Largest N**: %s." % bench.sweep_note, ""]
    fan, calls, mem = sweep_tables(v, bench)
    lines += [
        "Fan-out, median latency until the last session has the message, "
        "and server CPU per delivery:", "", fan, "",
        "Method calls (`noop`; Redis: EVALSHA), one in flight per "
        "connection: calls per second (ratios of the time per call), CPU "
        "per call, median round trip:", "", calls, "",
        "Resident memory per idle session, each server freshly started "
        "(KB = 1024 bytes):", "", mem, "",
    ]
    drawn = [n for n in ("sweep-fanout", "sweep-calls", "sweep-memory")
             if not any(n + "." in x for x in bench.sweep_plot_notes)]
    for name in drawn:
        lines += ["![%s](%s.png)" % (name, name), ""]
    for note in bench.sweep_plot_notes:
        lines += ["No plot: %s." % note, ""]
    return lines


def report(bench, rows, info, elapsed, plot_note, quick):
    cfg = bench.cfg
    v = bench.values
    big = fmt_int(max(cfg["fanout_n"]))
    only = bench.only_state
    lines = ["# herald with and without its state database" if only else
             "# herald next to Redis and the machine's floor", ""]
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
        "- floor: tests/bench/floor.c (`build/bench/floor`), built by the "
        "same compiler",
        "- compiler: %s; Python %s" % (info["compiler"], info["python"]),
        "- 1-minute load average: %s before the run, %s after it (the "
        "benchmark's own processes count; more than about 2 means other "
        "work shared the CPUs)" % (info["load_before"], info["load_after"]),
        "- placement: %s" % (
            "loadgen on %s, every server on %s (sched_setaffinity; "
            "`BENCH_PIN=0` leaves them to the scheduler)" % (
                cpus_text(bench.pin[0]), cpus_text(bench.pin[1]))
            if bench.pin else "left to the scheduler (%s)" % (
                "BENCH_PIN=0" if getattr(bench.args, "no_pin", False)
                else "fewer than 2 usable CPUs")),
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
            why = why_missed(r, v, bench.cfg)
            if why:
                lines.append("  - why: " + why)
        lines.append("")
    elif not unmeasured:
        lines += ["Every target is met.", ""]
    if not only:
        lines += floor_section(bench)
    if bench.failures:
        lines += ["## Failures", ""]
        for name, err in bench.failures.items():
            lines += ["### %s" % name, "", "```", err, "```", ""]
    if bench.notes:
        lines += ["## Notes", ""] + ["- " + n for n in bench.notes] + [""]
    extra = []
    if "mem_rss_before_kb" in v:
        for kind, label in (("herald", "herald"), ("redis", "Redis"),
                            ("floor", "floor")):
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
        "both servers in the same run; runs of the two alternate. %s Each "
        "figure is a median:" % (
            "loadgen runs on %s and every server on %s: left to the "
            "scheduler, a request and its reply go on one CPU or across two "
            "from one run to the next, and on a virtual machine the crossing "
            "costs tens of microseconds, which made round trips and calls "
            "per second bimodal; pinned, every server meets the same "
            "placement." % (cpus_text(bench.pin[0]), cpus_text(bench.pin[1]))
            if bench.pin else "loadgen and the servers are left to the "
            "scheduler."), "",
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
        "- **floor**: `tests/bench/floor.c`, one process with one "
        "level-triggered epoll loop and libc only, speaks just enough of "
        "herald's protocol for loadgen to drive it unchanged (`--target "
        "herald`): a `hello` line gets one fixed `welcome` line; a `call` "
        "line gets one fixed `result` line with the call's id digits "
        "copied; a call of `broadcast` first makes ONE message frame of "
        "herald's shape around its text and writes that buffer to every "
        "greeted socket, one `send` each; acks are read and discarded. It "
        "is what this machine's kernel costs for the same load, and is "
        "measured in the same loops as herald and Redis (fan-out at each N, "
        "calls with %d and 1 connections, memory at N=%s), the order "
        "alternating (herald, Redis, floor, then the reverse)." % (
            cfg["calls_conns"], fmt_int(cfg["mem_n"])),
        "- **CPU per delivery and per call**: loadgen `--phases` prints a "
        "line where the measured part starts and one where it ends; run.py "
        "reads the server process's utime + stime (all its threads, "
        "`/proc/PID/stat`, in ticks of 1/%d s) at each. In the fan-out, "
        "loadgen waits for run.py's go after each line, so the stretch "
        "holds exactly the measured rounds and the reading of their acks "
        "(not the connects, the greetings or the warm-up), and the CPU time "
        "is divided by N × rounds (herald and the floor also deliver to "
        "the control connection: N + 1 writes a round, Redis N; and they "
        "read an ack for each, which Redis's subscribers do not send). In "
        "the "
        "calls the load runs on and the stretch is the recorded seconds, "
        "divided by the calls completed in them. Pooled over every run of "
        "a figure; the CPU time behind each figure is in its table. "
        "`results.json` also has the same from the threads' "
        "`/proc/PID/task/*/schedstat` (nanoseconds) as a check "
        "(`cpu_sched_*`)." % CLK_TCK,
        "- **sweep**: fan-out at N=%s, calls with %s connections, memory "
        "per idle session at N=%s, for herald, Redis and the floor. Points "
        "that the figures above measure are theirs (fan-out at N=%s, calls "
        "with %d and 1 connections, memory at N=%s); the others have %s "
        "per point and server (fan-out: %s then %d measured, rounds spaced "
        "as above; calls: %d s after 1 s of warm-up), the order alternating "
        "across runs and points; memory on freshly started servers, each "
        "stopped after its reading (%d s idle, as in the memory group; "
        "their output in "
        "`sweep.log`)." % (
            "/".join(fmt_int(n) for n in bench.sweep_fanout_n),
            "/".join(str(k) for k in cfg["sweep_calls_conns"]),
            "/".join(fmt_int(n) for n in bench.sweep_mem_n),
            "/".join(fmt_int(n) for n in cfg["fanout_n"]),
            cfg["calls_conns"], fmt_int(cfg["mem_n"]),
            count(cfg["sweep_runs"], "loadgen run"),
            count(cfg["sweep_warmup"], "warm-up round"),
            cfg["sweep_rounds"], cfg["sweep_calls_seconds"],
            cfg["mem_idle"]),
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
        "`herald-state.log`, `redis.log`, `floor.log` and `sweep.log`.",
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
    ap.add_argument("--no-pin", action="store_true",
                    default=os.environ.get("BENCH_PIN", "") == "0",
                    help="leave loadgen and the servers to the scheduler "
                    "(also BENCH_PIN=0); by default loadgen runs on the "
                    "first usable CPU and the servers on the others")
    ap.add_argument("--out", help="default build/bench, with --only "
                    "state build/bench/state")
    ap.add_argument("--herald", default=os.path.join(ROOT, "build",
                                                     "herald"))
    ap.add_argument("--loadgen", default=os.path.join(ROOT, "build", "bench",
                                                      "loadgen"))
    ap.add_argument("--floor", default=os.path.join(ROOT, "build", "bench",
                                                    "floor"))
    args = ap.parse_args()
    if args.out is None:
        args.out = os.path.join(ROOT, "build", "bench",
                                *(["state"] if args.only else []))
    # the servers run in a temporary directory: no relative paths
    for name in ("out", "herald", "loadgen", "floor"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    cfg = QUICK if args.quick else FULL
    # make's or a supervisor's SIGTERM: unwind, so that the servers stop.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    t0 = time.monotonic()
    load_before = loadavg()
    os.makedirs(args.out, exist_ok=True)
    for path in (args.herald, args.loadgen) + (
            () if args.only else (args.floor,)):
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
    bench.sweep_plot_notes = [] if bench.only_state else \
        plot_sweep(args.out, bench)
    frows = [] if bench.only_state else floor_rows(bench.values, cfg)
    text = report(bench, rows, info, elapsed, plot_note, args.quick)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"quick": args.quick, "machine": info, "params": cfg,
                   "elapsed_s": round(elapsed, 1), "figures": rows,
                   "floor_figures": frows,
                   "sweep": {"fanout_n": bench.sweep_fanout_n,
                             "calls_conns": cfg["sweep_calls_conns"],
                             "mem_n": bench.sweep_mem_n,
                             "note": bench.sweep_note},
                   "clk_tck": CLK_TCK,
                   "values": bench.values, "failures": bench.failures,
                   "notes": bench.notes, "runs": bench.loadgen.runs},
                  f, indent=1, ensure_ascii=False)
    print()
    print(table(rows))
    print()
    if frows:
        print(floor_table(frows))
        print()
        print(cpu_table(bench.values, cpu_specs(cfg, bench)))
        print()
    rel = os.path.relpath(args.out, os.getcwd())
    if bench.only_state:
        print("bench: %s/report.md, %s/results.json (%.0f s)" % (
            rel, rel, elapsed))
    else:
        print("bench: %s/report.md, %s/fanout.png, %s/sweep-*.png, "
              "%s/results.json (%.0f s)" % (rel, rel, rel, rel, elapsed))
    if bench.failures:
        print("bench: %d group(s) could not be measured: %s" % (
            len(bench.failures), ", ".join(bench.failures)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
