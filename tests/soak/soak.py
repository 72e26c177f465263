#!/usr/bin/env python3
"""herald's soak test: `make soak` (SOAK_SECONDS of load, default 300).

One process, Python 3 asyncio, standard library only. It starts
build/herald on a free port with its own admin socket and methods, then
runs SOAK_SESSIONS (default 2000) remote sessions. Each one greets, acks
every message it receives (recording its id in arrival order) and at
random:
  - logs out (bye) and comes back as a new session;
  - loses its connection (closed abruptly, unread data and all) and
    resumes its session with the token within resume_timeout: it then
    counts as having stayed connected;
  - loses its connection and never comes back (the session expires).
A driver session sends a broadcast and a few targeted messages every
100 ms through the method soak_send (now and then to a session that has
logged out: that must count 0), takes a snapshot of every session every
2 s as an administrator would, and calls a method that fails and one that
runs away until method_timeout kills it.

The verifier knows the order of events as this process saw them (one
counter for everything written and read), which the server must respect:
a send whose call was written after a session's welcome arrived, and
whose result arrived before that session wrote bye, is one it must get.
Each session's lifetime (welcome to bye, across resumes) must receive
every such broadcast and each of its targeted sends, exactly once, in id
order; a message may come again after a resume (PROTOCOL.md: clients
de-duplicate), never twice on one connection. Sessions that never came
back are checked for order and duplicates only. After the load, every
session connected, the server's message_status must show none of the
last 1000 messages still pending for anyone, and the messages of a last
quiet round must be acknowledged by all.

Memory: the server's RSS is measured at the same point after the warm-up
and at the end (the load stopped, every session connected, nothing
postponed or in flight, Lua's garbage collected), and must not grow by
more than 10 %. Under AddressSanitizer the figure means nothing (its
quarantine holds freed memory).

Restarts: every SOAK_RESTART_SECONDS of load (60; 0: none) the server
is stopped, alternately gracefully (SIGTERM: each client gets
`reconnect`; the soak waits for exit status 0) and with kill -9, and
started again on the same port, admin socket and state file (`state` in
its configuration), while the load goes on. Each session comes back as
`herald client` does: after a `reconnect`, it waits `after` plus up to
50 % and resumes; after a lost connection, it resumes with the client's
backoff (0.5 s doubling up to 10 s, +-25 %), also while the server is not
back; a hello or resume cut by the restart is tried again. A session that
resumed counts as having stayed connected: it must get every message the
rule above gives it, across the restarts, in id order (a message may come
again after a resume). A resume refused before the session's
resume_timeout ran out (from its own cut, from a graceful stop, or from
the next server's start after a kill -9) is a finding; a session refused
later (it came back too late) is counted and checked for order only, as
are sessions whose bye was cut by a restart (they will not come back).
The driver resumes too, and sends nothing while it is away (nor ever
more than max_calls_per_session calls under way, so that a stall does
not turn into a burst the server refuses). A send counts as sent only
when its result came: one whose result a restart cut may or may not
exist; if any session got it, it must have reached every session it was
for (its target, or each session open from its call on that resumed
after the restart) and none that began after, and its ids are reported
apart. Message ids must go on above every id known before a restart.
message_status is also checked for the 300 messages on either side of
each restart: nothing pending, delivered and acknowledged never above
queued. RSS is compared only within one server's lifetime (a restart
starts it again): with restarts, the points of each lifetime that has
two (SOAK_PHASES); the RSS under load just before each restart is
printed. Every lifetime runs a copy of the binary taken at the start.

Prints its figures; exits 1 on any loss, duplicate, order error, wrong
count, refused resume, unexpected drop or error frame, crash or leak, 0
otherwise. The sessions are asyncio protocols rather than streams: one
Python process must keep up with 20,000 messages a second.

Environment: SOAK_SECONDS (300), SOAK_SESSIONS (2000), SOAK_WARMUP
(SOAK_SECONDS / 5, within 20..60, at most half), SOAK_PHASES (1: more measures RSS at
as many points), SOAK_RESTART_SECONDS (60; 0: no restarts), SOAK_KEEP=1
keeps the server's folder (log, scripts, state), SOAK_HERALD another
herald binary to soak (default build/herald).
"""
import asyncio
import bisect
import collections
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
HERALD = os.path.abspath(os.environ.get("SOAK_HERALD") or
                         os.path.join(ROOT, "build", "herald"))
HOST = "127.0.0.1"

SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
SESSIONS = int(os.environ.get("SOAK_SESSIONS", "2000"))
# Long enough for the allocator to reach the high-water marks of this load
# (the peaks of postponed sessions, of pending messages, of snapshots),
# which it keeps: RSS then stays flat unless something leaks.
WARMUP = float(os.environ.get("SOAK_WARMUP") or
               min(60.0, max(20.0, SECONDS / 5), SECONDS / 2))
KEEP = os.environ.get("SOAK_KEEP") == "1"
PHASES = max(1, int(os.environ.get("SOAK_PHASES", "1")))
# Seconds of load between two restarts (graceful and kill -9 in turn).
RESTART_EVERY = float(os.environ.get("SOAK_RESTART_SECONDS") or "60")

RESUME_TIMEOUT = 5
MEAN_LIFE = 20.0        # seconds between two actions of one session
P_CUT, P_BYE = 0.6, 0.3  # the rest: cut and never come back
TICK = 0.1              # the driver's period
TARGETED = 5            # targeted sends per tick
FAIL_EVERY, SPIN_EVERY = 10, 50  # ticks
SNAPSHOT_EVERY = 20     # ticks: an administrator's look at the sessions
LEAK_LIMIT = 0.10
MAX_CALLS = 16          # the server's max_calls_per_session (its default)

CONFIG = f"""
max_sessions = 5000
method_timeout = 0.5
resume_timeout = {RESUME_TIMEOUT}
heartbeat = 10
handshake_timeout = 10
"""

METHODS = {
    "soak_send": """
-- soak_send(text, target): queues text for the session target, or for
-- everyone when target is nil; returns {count, id}.
return function(text, target)
  local count, id = send_message_to_remote_user(text, target)
  return {count, id}
end
""",
    "fail": """
-- fail(): always raises an error.
return function() error("soak: failing on purpose", 0) end
""",
    "spin": """
-- spin(): a runaway loop, for method_timeout to end.
return function() local n = 0 while true do n = n + 1 end end
""",
    "soak_status": """
-- soak_status(ids): {id, queued, delivered, acknowledged, {pending...}}
-- for each id the server still remembers.
return function(ids)
  local out = {}
  for _, id in ipairs(ids) do
    local st = message_status(id)
    if st ~= nil then
      out[#out + 1] = {id, st.queued, st.delivered, st.acknowledged,
                       st.pending}
    end
  end
  return out
end
""",
    "soak_count": """
-- soak_count(): {sessions, postponed}.
return function()
  local all = get_process_activity(SESSIONS_ONLY).sessions
  local postponed = 0
  for _, s in ipairs(all) do
    if s.state == "postponed" then postponed = postponed + 1 end
  end
  return {#all, postponed}
end
""",
}

ACK = b'{"type":"ack","id":%d}\n'
PONG = b'{"type":"pong"}\n'
INF = float("inf")


class ServerDied(Exception):
    pass


class Clock:
    """One counter for every event this process writes or reads: its
    order is one the server cannot contradict."""
    n = 0

    @classmethod
    def tick(cls):
        cls.n += 1
        return cls.n


def text_for(callno):
    """The text of the callno-th send: its length tells its number."""
    return f"m{callno}:" + "x" * (callno * 7919 % 300)


def backoff(attempt, rng=random):
    """herald client's wait before reconnection attempt n (1, 2, ...):
    0.5 s doubling up to 10 s, each +-25 % at random."""
    return min(0.5 * 2 ** (attempt - 1), 10.0) * (0.75 + 0.5 * rng.random())


class Figures:
    def __init__(self):
        self.c = collections.Counter()
        self.problems = collections.Counter()
        self.examples = collections.defaultdict(list)

    def problem(self, kind, example):
        self.problems[kind] += 1
        if len(self.examples[kind]) < 5:
            self.examples[kind].append(example)


FIG = Figures()
# Message id -> callno, from whoever saw it first (client or driver).
ID_CALLNO = {}


def check_id(msg_id, callno):
    known = ID_CALLNO.setdefault(msg_id, callno)
    if known != callno:
        FIG.problem("corrupted", f"id {msg_id} carried call {callno} and "
                    f"call {known}")


class Life:
    """One session, from its hello to its end, across resumes."""
    __slots__ = ("name", "sid", "token", "hello_seq", "welcome_seq",
                 "end_seq", "closed_seq", "kind", "got", "max_got",
                 "targeted", "conns", "resumes", "restarts")

    def __init__(self, name):
        self.name = name
        self.sid = self.token = None
        self.hello_seq = self.welcome_seq = None
        self.end_seq = INF      # bye written, or the abandoning reset
        self.closed_seq = None  # the server closed after bye
        self.kind = "open"      # open, bye, abandoned, lost, bye cut
        self.got = array("q")   # first arrivals, increasing
        self.max_got = 0
        self.targeted = []      # Send records aimed at it
        self.conns = 0
        self.resumes = 0
        self.restarts = 0       # server restarts it resumed across

    def on_message(self, conn, msg_id, text):
        FIG.c["received"] += 1
        if msg_id <= conn.last_id:
            FIG.problem("duplicate or reordered on one connection",
                        f"{self.name} {self.sid}: id {msg_id} after "
                        f"{conn.last_id}")
        conn.last_id = max(conn.last_id, msg_id)
        try:
            colon = text.index(":")
            callno = int(text[1:colon])
            ok = text[0] == "m" and \
                len(text) == colon + 1 + callno * 7919 % 300
        except ValueError:
            ok = False
        if not ok:
            FIG.problem("corrupted", f"{self.name}: id {msg_id} text "
                        f"{text[:40]!r}")
            return
        check_id(msg_id, callno)
        if msg_id > self.max_got:
            self.got.append(msg_id)
            self.max_got = msg_id
            return
        i = bisect.bisect_left(self.got, msg_id)
        if i < len(self.got) and self.got[i] == msg_id:
            FIG.c["redelivered"] += 1  # after a resume: allowed
        else:
            FIG.problem("out of order", f"{self.name} {self.sid}: id "
                        f"{msg_id} after {self.max_got}")
            self.got.insert(i, msg_id)


class Conn(asyncio.Protocol):
    """One TCP connection of a session: acks every message, answers
    pings, keeps a `reconnect`, and hands other frames to its waiter.
    gen: the server (its lifetime number) it was made to."""

    def __init__(self, life, gen):
        self.life = life
        self.gen = gen
        self.buf = b""
        self.transport = None
        self.last_id = 0
        self.restart = None     # the server's reconnect frame
        self.lost_seq = None
        self.frames = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        buf = self.buf + data
        if b"\n" not in buf:
            self.buf = buf
            return
        *lines, self.buf = buf.split(b"\n")
        out = []
        life = self.life
        for line in lines:
            frame = json.loads(line)
            kind = frame["type"]
            if kind == "message":
                life.on_message(self, frame["id"], frame["text"])
                out.append(ACK % frame["id"])
            elif kind == "ping":
                out.append(PONG)
            elif kind == "reconnect":
                FIG.c["reconnect frames"] += 1
                if self.restart is not None:
                    FIG.problem("reconnect", f"{life.name} {life.sid}: "
                                f"twice on one connection: {frame}")
                self.restart = frame
            else:
                self.frames.put_nowait(frame)
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def connection_lost(self, exc):
        self.lost_seq = Clock.tick()
        if not self.closed.done():
            self.closed.set_result(exc)
        self.frames.put_nowait(None)

    async def frame(self, timeout=30):
        return await asyncio.wait_for(self.frames.get(), timeout)

    def send(self, obj):
        if not self.transport.is_closing():
            self.transport.write(json.dumps(obj).encode() + b"\n")


def cut(conn, rng):
    """Drops conn abruptly, unread data and all: half the time with a
    reset (SO_LINGER 0), otherwise with a FIN, or the reset the kernel
    sends when data was still unread."""
    if rng.random() < 0.5:
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
    conn.transport.abort()


class Soak:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="herald-soak-")
        self.port = None
        self.proc = None
        self.load_on = None
        self.stopping = False
        self.slots = []
        self.lives = []
        self.ended = collections.deque(maxlen=200)
        self.sends = []          # every soak_send, in call order
        self.calls = {}          # call id -> (kind, record, when)
        self.slowest = 0.0       # the longest wait for a result (not spin)
        self.next_call = 0
        self.driver = None
        self.driver_conn = None
        self.callno = 0
        self.lag = 0.0
        self.rss = {}
        self.lua_kb = {}
        self.watchers = set()
        self.load_seconds = 0
        self.drive_from = None
        # Restarts: the server's lifetimes are numbered from 1 (gen).
        self.gen = 0
        self.restarting = False
        self.stops = {}          # gen -> its stop (dict), from the signal on
        self.restarts = []       # the stops, once the next server is up
        self.restart_task = None
        self.next_restart = RESTART_EVERY
        self.drive_base = 0.0    # seconds of load before this drive()
        self.up_at = None        # when the current server was listening
        self.driver_ready = False
        self.driver_gone = False
        self.unanswered = []     # sends whose result a restart cut

    # --- the server ------------------------------------------------------

    def start_server(self):
        """The first server: its folder, then launch() on a free port.
        Every lifetime runs a copy of HERALD taken now: a rebuild during
        the soak does not change the server a restart starts."""
        self.herald = os.path.join(self.dir, "herald")
        shutil.copy2(HERALD, self.herald)
        scripts = os.path.join(self.dir, "scripts")
        os.makedirs(os.path.join(scripts, "methods"))
        for name, source in METHODS.items():
            with open(os.path.join(scripts, "methods", name + ".lua"),
                      "w") as f:
                f.write(source.lstrip())
        self.admin_socket = os.path.join(self.dir, "admin", "herald.sock")
        self.conf = os.path.join(self.dir, "herald.conf.lua")
        self.state_path = os.path.join(self.dir, "herald.db")
        with open(self.conf, "w") as f:
            f.write(CONFIG + f"state = {json.dumps(self.state_path)}\n")
        self.log_path = os.path.join(self.dir, "herald.log")
        offset = self.launch()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.listening(offset):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("soak: the server did not start:\n" +
                         open(self.log_path).read())

    def launch(self):
        """Starts a server (the next lifetime) on self.port, or on a free
        port the first time; every lifetime appends to one log. Returns
        the log's offset where this one begins."""
        scripts = os.path.join(self.dir, "scripts")
        self.gen += 1
        log = open(self.log_path, "a")
        offset = log.tell()
        self.proc = subprocess.Popen(
            [self.herald, "serve", "--listen", f"{HOST}:{self.port or 0}",
             "--admin-socket", self.admin_socket, "--no-console",
             "--scripts", scripts, "--config", self.conf,
             "--log-level", "info"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()
        return offset

    def listening(self, offset):
        """Whether the server started at log offset says it listens."""
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            m = re.search(r"listening on [^:\s]+:(\d+)", f.read())
        if m is None:
            return False
        if self.port is None:
            self.port = int(m.group(1))
        elif int(m.group(1)) != self.port:
            raise RuntimeError(f"the server came back on port "
                               f"{m.group(1)}, not {self.port}")
        self.up_at = time.monotonic()
        return True

    async def wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.02)
        return self.proc.returncode

    async def restart(self, kind):
        """Stops the server (graceful: SIGTERM and its exit; kill: -9)
        and starts the next one on the same port, socket and state file,
        while the load goes on."""
        stop = {"kind": kind, "gen": self.gen, "rss": None}
        self.restarting = True
        try:
            stop["rss"] = self.rss_kb()
        except OSError:
            pass
        # Every id known now: the next server's must all be above.
        stop["floor"] = max(ID_CALLNO, default=0)
        t0 = stop["t"] = time.monotonic()
        stop["seq"] = Clock.tick()
        self.stops[self.gen] = stop
        if kind == "graceful":
            self.proc.send_signal(signal.SIGTERM)
            code = await self.wait_exit(20)
            if code is None:
                FIG.problem("graceful stop", "no exit within 20 s after "
                            "SIGTERM: killed")
                self.proc.kill()
                code = await self.wait_exit(10)
            elif code != 0:
                FIG.problem("graceful stop", f"exit status {code} after "
                            "SIGTERM")
        else:
            self.proc.kill()
            code = await self.wait_exit(10)
        stop["exit"] = code
        stop["stopped"] = time.monotonic() - t0
        offset = self.launch()
        deadline = time.monotonic() + 20
        while not self.listening(offset):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log_path, errors="replace") as f:
                    f.seek(offset)
                    tail = f.read().splitlines()[-5:]
                FIG.problem("restart failed", f"lifetime {self.gen}: "
                            f"status {self.proc.poll()}")
                FIG.examples["restart failed"] += tail
                self.restarting = False
                raise ServerDied("no restart")
            await asyncio.sleep(0.02)
        stop["down"] = time.monotonic() - t0
        self.restarts.append(stop)
        self.restarting = False
        with open(self.log_path, errors="replace") as f:
            f.seek(offset)
            m = re.search(r"(\d+) sessions restored .*?\((\d+) messages "
                          r"pending\); message ids go on from (\d+)",
                          f.read())
        stop["restored"] = m.groups() if m else None
        kb = f"{stop['rss'] / 1024:.1f} MiB" if stop["rss"] else "?"
        print(f"soak: restart {len(self.restarts)} "
              f"({'SIGTERM' if kind == 'graceful' else 'kill -9'}) at "
              f"{self.drive_clock():.0f} s of load: RSS before {kb}, exit "
              f"{code} in {stop['stopped']:.2f} s, listening again after "
              f"{stop['down']:.2f} s"
              + (f"; {m.group(1)} sessions restored, {m.group(2)} messages "
                 f"pending, ids from {m.group(3)}" if m else
                 "; nothing restored?"), flush=True)

    def drive_clock(self):
        """Seconds of load so far (the restarts' clock)."""
        loop = asyncio.get_running_loop()
        if self.drive_from is None:
            return self.drive_base
        return self.drive_base + loop.time() - self.drive_from

    async def restart_done(self):
        """Waits for a restart under way and for the driver to be back."""
        if self.restart_task is not None:
            await self.restart_task
            self.restart_task = None
        await self.wait_for(lambda: self.driver_ready or self.driver_gone,
                            60, "the driver back after a restart")
        if self.driver_gone:
            raise RuntimeError("the driver did not come back")

    def check_alive(self):
        if self.restarting:
            return
        code = self.proc.poll()
        if code is not None:
            name = signal.Signals(-code).name if code < 0 else "exit"
            raise ServerDied(f"status {code} ({name})")

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    # --- sessions --------------------------------------------------------

    async def connect(self, life, resume=False, watch=True, rng=random,
                      since=None, attempt=0, deadline=None):
        """A new connection for life, greeted (or resumed). Returns the
        Conn, or None when the server refused (recorded). watch: hand the
        frames that follow to watch(). While the server is away (a
        restart), tries again with the client's backoff, from attempt;
        a handshake that a restart cut is tried again too. For a resume,
        since: the server lifetime of the session's last connection;
        deadline: when (monotonic) its resume_timeout ends. A refusal
        before it is a finding; after it, once a restart came between,
        the session came back too late (counted)."""
        loop = asyncio.get_running_loop()
        began = time.monotonic()
        while True:
            try:
                _, conn = await loop.create_connection(
                    lambda: Conn(life, self.gen), HOST, self.port)
            except OSError:
                attempt += 1
                if time.monotonic() - began > 120:
                    raise RuntimeError("cannot connect to the server")
                await asyncio.sleep(backoff(attempt, rng))
                continue
            hello = {"type": "hello", "userName": life.name, "protocol": 1,
                     "machineName": "soak", "hostType": "linux"}
            if resume:
                hello["resume"] = {"sessionID": life.sid,
                                   "token": life.token}
            else:
                life.hello_seq = Clock.tick()
            hello_at = time.monotonic()
            conn.send(hello)
            try:
                frame = await conn.frame()
            except asyncio.TimeoutError:
                frame = "no answer to hello"
            if frame is None and conn.gen in self.stops:
                # The server stopped before it answered: as the client,
                # wait as a reconnect says, or back off, and try again.
                FIG.c["handshakes cut by a restart"] += 1
                if conn.restart is not None:
                    attempt = 0
                    await asyncio.sleep(conn.restart.get("after", 1) *
                                        (1 + 0.5 * rng.random()))
                else:
                    attempt += 1
                    await asyncio.sleep(backoff(attempt, rng))
                continue
            break
        if not isinstance(frame, dict) or frame["type"] != "welcome":
            conn.transport.abort()
            if not resume:
                FIG.problem("refused", f"{life.name}: {frame}")
            elif since is not None and since != conn.gen:
                # Its session went through a restart.
                if deadline is None:  # after a kill -9
                    deadline = self.up_at + RESUME_TIMEOUT
                left = deadline - hello_at
                if left > 0.5:
                    FIG.problem("resume refused after a restart",
                                f"{life.name} {life.sid}, {left:.1f} s "
                                f"before its resume_timeout ended: "
                                f"{frame}")
                else:
                    FIG.c["resumes too late after a restart"] += 1
            else:
                FIG.problem("resume refused", f"{life.name} {life.sid}: "
                            f"{frame}")
            return None
        life.conns += 1
        if resume:
            if frame["sessionID"] != life.sid:
                FIG.problem("resume refused", f"{life.sid} came back as "
                            f"{frame['sessionID']}")
            life.resumes += 1
            FIG.c["resumes"] += 1
            if since is not None and since != conn.gen:
                life.restarts += conn.gen - since
                FIG.c["resumes across a restart"] += 1
        else:
            life.welcome_seq = Clock.tick()
            life.sid, life.token = frame["sessionID"], frame["resumeToken"]
            FIG.c["opened"] += 1
        if watch:
            task = asyncio.ensure_future(self.watch(life, conn))
            self.watchers.add(task)
            task.add_done_callback(self.watchers.discard)
        return conn

    async def come_back(self, life, conn, rng, watch=True):
        """conn was lost under life, not by its own doing: the server
        restarted. Comes back as herald client does (after a reconnect:
        its `after` plus up to 50 %; otherwise the backoff) and resumes.
        Returns the new Conn, or None when the resume was refused (life
        is then lost)."""
        stop = self.stops.get(conn.gen)
        if stop is None:
            FIG.problem("connection lost", f"{life.name} {life.sid}: "
                        "the server closed it, with no restart")
        restart = conn.restart
        # Its resume_timeout runs from the stop when the server said
        # reconnect; after a kill -9, from the next server's start.
        if stop is None:
            deadline = time.monotonic() + RESUME_TIMEOUT
        elif stop["kind"] == "graceful":
            deadline = stop["t"] + RESUME_TIMEOUT
        else:
            deadline = None  # known once the server is back
        if restart is not None:
            if stop is not None and stop["kind"] != "graceful":
                FIG.problem("reconnect", f"{life.name}: a reconnect frame "
                            f"before a kill -9: {restart}")
            elif restart.get("after") != 1 or \
                    restart.get("reason") != "server restarting":
                FIG.problem("reconnect", f"{life.name}: {restart}")
            await asyncio.sleep(restart.get("after", 1) *
                                (1 + 0.5 * rng.random()))
            attempt = 0
        else:
            if stop is not None and stop["kind"] == "graceful":
                FIG.c["lost without reconnect at a graceful stop"] += 1
            await asyncio.sleep(backoff(1, rng))
            attempt = 1
        new = await self.connect(life, resume=True, watch=watch, rng=rng,
                                 since=conn.gen, attempt=attempt,
                                 deadline=deadline)
        if new is None:
            life.kind = "lost"
            life.end_seq = conn.lost_seq
        return new

    async def watch(self, life, conn):
        """Frames a session does not wait for: a drop or an error is a
        finding (nobody here is slow or malformed)."""
        while True:
            frame = await conn.frames.get()
            if frame is None:
                return
            if frame["type"] in ("drop", "error"):
                FIG.problem(f"unexpected {frame['type']}",
                            f"{life.name} {life.sid}: {frame}")

    async def slot(self, index):
        try:
            await self.slot_life(index)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if self.restarting or self.proc.poll() is None:
                FIG.problem("harness", f"session slot {index}: {e!r}")

    async def idle(self, slot, seconds, rng):
        """Waits seconds, then for the load to be on; whenever a restart
        takes the connection, comes back (busy meanwhile). Returns the
        connection to act on, or None when the session was lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            conn = slot["conn"]
            if conn.closed.done():
                slot["busy"] = True
                conn = await self.come_back(slot["life"], conn, rng)
                if conn is None:
                    return None
                slot["conn"] = conn
                slot["busy"] = False
                continue
            left = deadline - loop.time()
            if left > 0:
                try:
                    await asyncio.wait_for(asyncio.shield(conn.closed),
                                           left)
                except asyncio.TimeoutError:
                    pass
                continue
            # Woken by a set() that a clear() has already undone: wait
            # again, or this would act in the middle of a quiesce.
            if not self.load_on.is_set():
                waiter = asyncio.ensure_future(self.load_on.wait())
                await asyncio.wait({waiter, conn.closed},
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                continue
            return conn

    async def slot_life(self, index):
        await asyncio.sleep(random.uniform(0, SESSIONS / 800))
        rng = random.Random(index)
        slot = {"busy": True, "life": None, "conn": None}
        self.slots.append(slot)
        n = 0
        while True:
            n += 1
            life = Life(f"S{index}.{n}")
            self.lives.append(life)
            conn = await self.connect(life, rng=rng)
            if conn is None:
                life.kind = "lost"
                await asyncio.sleep(1)
                continue
            slot["life"], slot["conn"] = life, conn
            while True:
                slot["busy"] = False
                conn = await self.idle(slot, rng.expovariate(1 / MEAN_LIFE),
                                       rng)
                slot["busy"] = True
                if conn is None:
                    FIG.c["lost at a restart"] += 1
                    break
                r = rng.random()
                if r < P_CUT:
                    cut(conn, rng)
                    FIG.c["cuts"] += 1
                    deadline = time.monotonic() + RESUME_TIMEOUT
                    await asyncio.sleep(rng.uniform(0, RESUME_TIMEOUT / 2))
                    conn = await self.connect(life, resume=True, rng=rng,
                                              since=conn.gen,
                                              deadline=deadline)
                    if conn is None:
                        life.kind = "lost"
                        life.end_seq = Clock.tick()
                        break
                    slot["conn"] = conn
                elif r < P_CUT + P_BYE:
                    await self.bye(life, conn)
                    await asyncio.sleep(rng.uniform(0, 1))
                    break
                else:
                    life.end_seq = Clock.tick()
                    life.kind = "abandoned"
                    cut(conn, rng)
                    FIG.c["abandoned"] += 1
                    break
            slot["life"] = slot["conn"] = None

    async def bye(self, life, conn, final=False):
        life.end_seq = Clock.tick()
        life.kind = "bye"
        conn.send({"type": "bye"})
        try:
            await asyncio.wait_for(asyncio.shield(conn.closed), 10)
            stop = self.stops.get(conn.gen)
            if conn.restart is not None or (
                    stop is not None and stop["kind"] == "kill" and
                    conn.lost_seq > stop["seq"]):
                # Closed by a restart, not (or not surely) by the bye:
                # its client would not come back; the session expires.
                life.kind = "bye cut"
                FIG.c["byes cut by a restart"] += 1
            else:
                life.closed_seq = Clock.tick()
                self.ended.append(life)
        except asyncio.TimeoutError:
            FIG.problem("bye not closed", f"{life.name} {life.sid}")
            conn.transport.abort()
        FIG.c["final byes" if final else "byes"] += 1

    # --- the driver ------------------------------------------------------

    def call(self, method, args, kind, record=None):
        self.next_call += 1
        Clock.tick()
        self.calls[self.next_call] = (kind, record, time.monotonic())
        self.driver_conn.send({"type": "call", "id": self.next_call,
                               "method": method, "args": args})

    def send(self, target_life):
        self.callno += 1
        rec = {"callno": self.callno, "life": target_life,
               "call_seq": None, "result_seq": None, "count": None,
               "id": None}
        self.sends.append(rec)
        sid = target_life.sid if target_life is not None else None
        self.call("soak_send", [text_for(self.callno), sid], "send", rec)
        rec["call_seq"] = Clock.n
        if target_life is not None:
            target_life.targeted.append(rec)

    def calls_cut(self, conn):
        """The driver's connection is lost: the calls it has not had a
        result for never will. A send's message may or may not exist."""
        for kind, rec, _ in self.calls.values():
            if kind == "send":
                rec["cut_seq"] = conn.lost_seq
                self.unanswered.append(rec)
            elif kind == "query":
                if not rec.done():
                    rec.set_exception(RuntimeError(
                        "the driver's connection was lost during a query"))
            else:
                FIG.c["calls cut by a restart"] += 1
        self.calls.clear()

    async def results(self):
        """Reads the driver's results (its messages are acked by Conn);
        brings the driver back after a restart."""
        rng = random.Random(-1)
        while True:
            conn = self.driver_conn
            frame = await conn.frames.get()
            if frame is None:
                if self.stopping:
                    return
                self.driver_ready = False
                self.calls_cut(conn)
                conn = await self.come_back(self.driver, conn, rng,
                                            watch=False)
                if conn is None:
                    FIG.problem("driver lost", "its resume was refused")
                    self.driver_gone = True
                    return
                self.driver_conn = conn
                self.driver_ready = True
                continue
            if frame["type"] != "result":
                FIG.problem(f"unexpected {frame['type']}",
                            f"driver: {frame}")
                continue
            seq = Clock.tick()
            kind, rec, when = self.calls.pop(frame["id"])
            if kind != "spin":  # it runs until method_timeout
                self.slowest = max(self.slowest, time.monotonic() - when)
            if kind == "send":
                if not frame["ok"]:
                    FIG.problem("send failed", frame.get("error"))
                    continue
                rec["count"], rec["id"] = frame["value"]
                rec["result_seq"] = seq
                check_id(rec["id"], rec["callno"])
                floor = max((st["floor"] for st in self.stops.values()
                             if st["seq"] < rec["call_seq"]), default=0)
                if rec["id"] <= floor:
                    FIG.problem("id reused after a restart", f"call "
                                f"{rec['callno']} got id {rec['id']}, "
                                f"not above {floor}")
                FIG.c["sent " + ("targeted" if rec["life"] else
                                 "broadcast")] += 1
            elif kind == "fail":
                if frame["ok"] or "failing on purpose" not in frame["error"]:
                    FIG.problem("fail() did not fail", str(frame))
                else:
                    FIG.c["calls failed"] += 1
            elif kind == "spin":
                if not frame["ok"] and "shutting down" in frame["error"] \
                        and self.restarting:
                    FIG.c["calls ended by a stop"] += 1
                elif frame["ok"] or "timed out" not in frame["error"]:
                    FIG.problem("spin() not timed out", str(frame))
                else:
                    FIG.c["calls timed out"] += 1
            elif kind == "snapshot":
                if not frame["ok"]:
                    FIG.problem("snapshot failed", frame.get("error"))
                else:
                    FIG.c["snapshots"] += 1
            elif kind == "query":
                rec.set_result(frame)
            if kind in ("send", "snapshot") and frame["ok"]:
                FIG.c["calls ok"] += 1

    async def query(self, method, args=()):
        fut = asyncio.get_running_loop().create_future()
        self.call(method, list(args), "query", fut)
        frame = await asyncio.wait_for(fut, 30)
        if not frame["ok"]:
            raise RuntimeError(f"{method}: {frame['error']}")
        return frame["value"]

    async def drive(self, until, rng):
        """Sends every TICK while the load is on, until monotonic time
        until."""
        loop = asyncio.get_running_loop()
        tick = 0
        next_t = loop.time()
        self.drive_from = loop.time()

        def room():
            """Never more calls under way than the server runs for one
            session (max_calls_per_session): a stall of either side must
            not turn the next ticks into a burst it refuses."""
            if len(self.calls) < MAX_CALLS:
                return True
            FIG.c["calls held back (max_calls_per_session)"] += 1
            return False

        while loop.time() < until:
            self.check_alive()
            if self.driver_gone:
                raise RuntimeError("the driver is gone")
            if RESTART_EVERY > 0 and self.restart_task is None and \
                    self.drive_clock() >= self.next_restart:
                self.next_restart += RESTART_EVERY
                kind = ("graceful", "kill")[len(self.stops) % 2]
                self.restart_task = asyncio.ensure_future(
                    self.restart(kind))
            if self.restart_task is not None and self.restart_task.done():
                await self.restart_done()
                next_t = max(next_t, loop.time())
            tick += 1
            if not self.driver_ready or \
                    self.driver_conn.transport.is_closing():
                # The driver is away (a restart): it sends nothing.
                FIG.c["ticks without the driver"] += 1
                next_t += TICK
                await asyncio.sleep(max(0, next_t - loop.time()))
                continue
            if room():
                self.send(None)
            for _ in range(TARGETED):
                slot = rng.choice(self.slots)
                life = slot["life"]
                if life is not None and life.sid is not None and room():
                    self.send(life)
            if tick % 7 == 0 and self.ended and room():
                # A session that has logged out and been closed: 0.
                self.send(rng.choice(self.ended))
            if tick % FAIL_EVERY == 0 and room():
                self.call("fail", [], "fail")
            if tick % SPIN_EVERY == 0 and room():
                self.call("spin", [], "spin")
            if tick % SNAPSHOT_EVERY == 0 and room():
                self.call("soak_count", [], "snapshot")
            next_t += TICK
            await asyncio.sleep(max(0, next_t - loop.time()))
        self.drive_base = self.drive_clock()
        self.drive_from = None
        await self.restart_done()

    async def lag_meter(self):
        loop = asyncio.get_running_loop()
        while True:
            t = loop.time()
            await asyncio.sleep(0.05)
            self.lag = max(self.lag, loop.time() - t - 0.05)

    # --- phases ----------------------------------------------------------

    async def quiesce(self, label):
        """Stops the load and waits until every session is connected,
        nothing is postponed and the server has nothing in flight; then
        measures the server's RSS."""
        self.load_on.clear()
        await self.wait_for(lambda: len(self.slots) == SESSIONS and
                            not any(s["busy"] for s in self.slots),
                            60, "every session settled")
        await self.wait_for(lambda: not any(
            k == "send" for k, _, _ in self.calls.values()), 30,
            "every send answered")
        deadline = time.monotonic() + RESUME_TIMEOUT + 30
        while True:
            total, postponed = await self.query("soak_count")
            if total == SESSIONS + 1 and postponed == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label}: {total} sessions "
                                   f"({postponed} postponed), expected "
                                   f"{SESSIONS + 1}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)  # the last acks
        # A full collection first: Lua's garbage, left to its incremental
        # collector, is worth more than the 10 % being measured.
        lua_kb = await self.lua_memory()
        samples = []
        for _ in range(5):
            samples.append(self.rss_kb())
            await asyncio.sleep(0.2)
        self.rss[label] = (self.gen, min(samples))
        self.lua_kb[label] = lua_kb
        print(f"soak: {label}: {SESSIONS + 1} sessions, RSS "
              f"{self.rss[label][1] / 1024:.1f} MiB, Lua heap {lua_kb[0]:.0f} "
              f"KiB ({lua_kb[1]:.0f} KiB after a full collection)",
              flush=True)

    async def lua_memory(self):
        """The server's Lua heap in KiB, before and after a full
        collection (herald run on the admin socket)."""
        path = os.path.join(self.dir, "memory.lua")
        with open(path, "w") as f:
            f.write('local before = collectgarbage("count")\n'
                    'collectgarbage("collect")\n'
                    'print(before, collectgarbage("count"))\n')
        proc = await asyncio.create_subprocess_exec(
            self.herald, "run", "--socket", self.admin_socket, path,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        if proc.returncode != 0:
            raise RuntimeError(f"herald run: {err.decode().strip()}")
        before, after = (float(x) for x in out.split())
        return before, after

    async def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"not within {timeout} s: {what}")
            await asyncio.sleep(0.1)

    async def check_pending(self, ids, label):
        """message_status of ids: nothing pending for anyone (everyone is
        connected and acked, abandoned sessions have expired)."""
        checked = 0
        for i in range(0, len(ids), 50):
            for row in await self.query("soak_status", [ids[i:i + 50]]):
                msg_id, queued, delivered, acked, pending = row
                checked += 1
                if pending:  # an empty table encodes as {}
                    FIG.problem("not acknowledged", f"{label}: id {msg_id} "
                                f"pending for {list(pending)[:3]}")
                if acked > queued or delivered > queued:
                    FIG.problem("status", f"{label}: id {msg_id}: "
                                f"queued {queued}, delivered {delivered}, "
                                f"acknowledged {acked}")
        return checked

    async def final_round(self):
        """Everyone connected and still: a few broadcasts and targeted
        sends, each of which every recipient must acknowledge."""
        first = len(self.sends)
        for _ in range(10):
            self.send(None)
            for slot in random.sample(self.slots, 5):
                self.send(slot["life"])
            await asyncio.sleep(TICK)
        await self.wait_for(lambda: all(r["id"] is not None
                                        for r in self.sends[first:]),
                            30, "the final round answered")
        await asyncio.sleep(2)
        ids = [r["id"] for r in self.sends[first:]]
        rows = []
        for i in range(0, len(ids), 50):
            rows += await self.query("soak_status", [ids[i:i + 50]])
        by_id = {row[0]: row for row in rows}
        for rec in self.sends[first:]:
            row = by_id.get(rec["id"])
            want = SESSIONS + 1 if rec["life"] is None else 1
            if row is None or rec["count"] != want or \
                    row[1:4] != [want, want, want] or row[4]:
                FIG.problem("not acknowledged", f"final round id "
                            f"{rec['id']}: count {rec['count']}, status "
                            f"{row and row[1:4]}, want {want}")
        FIG.c["status checked"] += len(rows)

    async def run(self):
        self.load_on = asyncio.Event()
        self.load_on.set()
        self.started = time.monotonic()
        self.drive_from = None
        helpers = [asyncio.ensure_future(self.lag_meter())]
        self.tasks = []
        try:
            await self.phases(helpers)
        finally:
            self.load_seconds = time.monotonic() - self.started
            for t in self.tasks + helpers + list(self.watchers):
                t.cancel()
            await asyncio.gather(*self.tasks, *helpers, *self.watchers,
                                 return_exceptions=True)

    async def phases(self, helpers):
        loop = asyncio.get_running_loop()
        self.driver = Life("Driver")
        self.lives.append(self.driver)
        self.driver_conn = await self.connect(self.driver, watch=False)
        if self.driver_conn is None:
            raise RuntimeError("the driver was refused")
        self.driver_ready = True
        results = asyncio.ensure_future(self.results())
        helpers.append(results)
        self.tasks = [asyncio.ensure_future(self.slot(i))
                      for i in range(SESSIONS)]
        await self.wait_for(lambda: len(self.slots) == SESSIONS and
                            all(s["life"] for s in self.slots), 120,
                            f"{SESSIONS} sessions greeted")
        self.started = time.monotonic()
        rng = random.Random(1)
        print(f"soak: {SESSIONS} sessions up; {WARMUP:.0f} s of warm-up",
              flush=True)
        await self.drive(loop.time() + WARMUP, rng)
        await self.quiesce("warm-up")
        for k in range(1, PHASES + 1):
            self.load_on.set()
            await self.drive(loop.time() + (SECONDS - WARMUP) / PHASES, rng)
            await self.quiesce("end" if k == PHASES else f"phase {k}")
        # Nothing still pending for anyone in the messages the server
        # remembers (the newest 1024).
        last = [r["id"] for r in self.sends if r["id"] is not None][-1000:]
        FIG.c["status checked"] += await self.check_pending(last, "load")
        # And the 300 messages on either side of each restart that the
        # server (its state file) still knows.
        answered = sorted(r["id"] for r in self.sends if r["id"] is not None)
        around = set()
        for stop in self.restarts:
            i = bisect.bisect_right(answered, stop["floor"])
            around.update(answered[max(0, i - 300):i + 300])
        around.difference_update(last)
        FIG.c["status checked around restarts"] += await self.check_pending(
            sorted(around), "around a restart")
        await self.final_round()
        # Every slot idles (quiesced): end them, then log every one out.
        self.stopping = True
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for slot in self.slots:
            await self.bye(slot["life"], slot["conn"], final=True)
        total, _ = await self.query("soak_count")
        if total != 1:
            FIG.problem("sessions left", f"{total - 1} after every bye")
        await self.bye(self.driver, self.driver_conn, final=True)
        await results

    # --- the verdict -----------------------------------------------------

    def verify(self):
        by_callno = {r["callno"]: r for r in self.sends}
        sends = [r for r in self.sends if r["id"] is not None]
        bcast = sorted((r for r in sends if r["life"] is None),
                       key=lambda r: r["call_seq"])
        calls = [r["call_seq"] for r in bcast]
        for life in self.lives:
            if life.welcome_seq is None:
                continue
            got = life.got
            gotset = set(got)
            verifiable = life.kind in ("open", "bye")
            unverifiable = "unverifiable (abandoned)" if \
                life.kind in ("abandoned", "lost") else \
                "unverifiable (bye cut by a restart)"
            # Broadcasts: from the first whose call follows the welcome.
            i = bisect.bisect_right(calls, life.welcome_seq)
            for r in bcast[i:]:
                if r["call_seq"] > life.end_seq:
                    break
                if r["result_seq"] < life.end_seq:
                    FIG.c["expected"] += 1
                    if r["id"] not in gotset:
                        if verifiable:
                            FIG.problem("lost", f"{life.name} {life.sid} "
                                        f"({life.kind}, {life.resumes} "
                                        f"resumes): broadcast {r['id']}")
                        else:
                            FIG.c[unverifiable] += 1
            # Nothing from before the session existed.
            j = bisect.bisect_left(calls, life.hello_seq)
            early = {r["id"] for r in bcast[:j]
                     if r["result_seq"] < life.hello_seq}
            for msg_id in gotset & early:
                FIG.problem("before its session", f"{life.name}: {msg_id}")
            for r in life.targeted:
                if r["id"] is None:
                    continue
                alive = r["call_seq"] > life.welcome_seq and \
                    r["result_seq"] < life.end_seq
                if r["count"] == 1 and r["result_seq"] < life.end_seq:
                    FIG.c["expected"] += 1
                    if r["id"] not in gotset:
                        if verifiable:
                            FIG.problem("lost", f"{life.name} {life.sid} "
                                        f"({life.kind}, {life.resumes} "
                                        f"resumes): targeted {r['id']}")
                        else:
                            FIG.c[unverifiable] += 1
                elif r["count"] != 1 and alive:
                    FIG.problem("wrong count", f"{life.name}: targeted "
                                f"{r['id']} counted {r['count']} while "
                                f"its session was open")
                elif r["count"] != 0 and life.closed_seq is not None and \
                        r["call_seq"] > life.closed_seq:
                    FIG.problem("wrong count", f"{life.name}: targeted "
                                f"{r['id']} counted {r['count']} after "
                                f"its session closed")
            FIG.c["received first"] += len(got)
            for msg_id in got:
                if msg_id not in ID_CALLNO:
                    FIG.problem("unknown message", f"{life.name}: {msg_id}")
                    continue
                rec = by_callno[ID_CALLNO[msg_id]]
                if rec["life"] is not None and rec["life"] is not life:
                    FIG.problem("wrong recipient", f"{life.name}: id "
                                f"{msg_id}, sent to {rec['life'].name}")
                if rec["id"] is None:  # its result was cut by a restart
                    rec.setdefault("receivers", set()).add(life)
                    rec["seen_id"] = msg_id
            if life.restarts and verifiable:
                FIG.c["verified across restarts"] += 1
        self.verify_unanswered()
        # Broadcast counts: at least every session open at the time.
        opens = sorted(l.welcome_seq for l in self.lives if l.welcome_seq)
        ends = sorted(l.end_seq for l in self.lives if l.welcome_seq and
                      l.end_seq != INF)
        for r in bcast:
            # Open before the call and not ended before the result; the
            # (few) lives wholly inside the window are not subtracted,
            # which only lowers the bound.
            low = bisect.bisect_left(opens, r["call_seq"]) - \
                bisect.bisect_left(ends, r["result_seq"])
            if r["count"] < low:
                FIG.problem("wrong count", f"broadcast {r['id']} counted "
                            f"{r['count']}, at least {low} were open")
        FIG.c["targeted to closed sessions"] = sum(
            1 for r in sends if r["life"] is not None and
            r["life"].closed_seq is not None and
            r["call_seq"] > r["life"].closed_seq)

    def verify_unanswered(self):
        """The sends whose result a restart cut: a message no session got
        may never have been stored; one that some session got must have
        reached every session it was for, like any other, and nothing
        that began after the restart."""
        self.unanswered_seen = []
        for rec in self.unanswered:
            FIG.c["unanswered sends"] += 1
            receivers = rec.get("receivers")
            if not receivers:
                FIG.c["unanswered, never delivered"] += 1
                continue
            msg_id = rec["seen_id"]
            self.unanswered_seen.append((msg_id, rec["callno"],
                                         rec["life"] is None))
            if rec["life"] is not None:
                intended = [rec["life"]]
            else:
                # Open when it was called, and resumed after the restart
                # (or ended later than it).
                intended = [l for l in self.lives
                            if l.welcome_seq is not None and
                            l.welcome_seq < rec["call_seq"] and
                            l.end_seq > rec["cut_seq"] and
                            l.kind in ("open", "bye")]
            missing = [l for l in intended if l not in receivers]
            for l in missing:
                FIG.problem("lost", f"{l.name} {l.sid} ({l.kind}, "
                            f"{l.resumes} resumes): id {msg_id} (call "
                            f"{rec['callno']}, its result cut by a "
                            f"restart) reached {len(receivers)} others")
            if not missing:
                FIG.c["unanswered, delivered to all"] += 1
            for l in receivers:
                if l.hello_seq > rec["cut_seq"]:
                    FIG.problem("before its session", f"{l.name}: id "
                                f"{msg_id}, from before the restart")

    def server_log(self):
        with open(self.log_path, errors="replace") as f:
            log = f.read()
        for pattern, kind in ((r"slow consumer", "slow consumer drops"),
                              (r" error: ", "errors in the log")):
            n = len(re.findall(pattern, log))
            if n:
                FIG.problem(kind, f"{n}: " + re.search(
                    f".*{pattern}.*", log).group(0))
        FIG.c["log warnings"] = len(re.findall(r" warn: ", log))

    def report(self):
        c, p = FIG.c, FIG.problems
        # RSS: compared within one server's lifetime only.
        by_gen = collections.defaultdict(list)
        for label, (gen, kb) in self.rss.items():  # in time order
            by_gen[gen].append((label, kb))
        parts, compared = [], 0
        for gen, points in sorted(by_gen.items()):
            where = f" (lifetime {gen})" if self.restarts else ""
            (l0, a), (l1, b) = points[0], points[-1]
            if len(points) < 2:
                parts.append(f"{l0} {a / 1024:.1f} MiB{where}")
                continue
            growth = (b - a) / a
            compared += 1
            parts.append(f"{l0} {a / 1024:.1f} MiB, {l1} {b / 1024:.1f} "
                         f"MiB ({growth * 100:+.1f} %){where}")
            if growth > LEAK_LIMIT:
                FIG.problem("leak", f"RSS {a} kB -> {b} kB{where}")
        rss = "; ".join(parts) or "not measured"
        if self.restarts and not compared:
            rss += ("\n                       not compared: a restart "
                    "starts RSS again, and no server lifetime had two "
                    "measures (SOAK_PHASES)")
        if self.restarts:
            rss += ("\n                       under load before each "
                    "restart: " + ", ".join(
                        f"{st['rss'] / 1024:.1f}" if st["rss"] else "?"
                        for st in self.restarts) + " MiB")
        graceful = [st for st in self.restarts if st["kind"] == "graceful"]
        kills = [st for st in self.restarts if st["kind"] == "kill"]
        seen = getattr(self, "unanswered_seen", [])
        ids = ", ".join(f"{i} (call {n}, {'broadcast' if b else 'targeted'})"
                        for i, n, b in seen[:10]) + \
            (", ..." if len(seen) > 10 else "")
        restarts = "\n  restarts             off (SOAK_RESTART_SECONDS=0)" \
            if RESTART_EVERY <= 0 else f"""
  restarts             {len(self.restarts)}: {len(graceful)} graceful \
(SIGTERM; exit 0: {sum(1 for st in graceful if st['exit'] == 0)}), \
{len(kills)} kill -9; back in at most \
{max((st['down'] for st in self.restarts), default=0):.2f} s \
(every {RESTART_EVERY:g} s of load)
  across restarts      {c['resumes across a restart']} resumes, \
{c['verified across restarts']} sessions verified across them; \
{c['reconnect frames']} reconnect frames, {c['handshakes cut by a restart']} \
handshakes tried again, {c['byes cut by a restart']} byes cut, \
{c['lost without reconnect at a graceful stop']} connections closed \
without a reconnect at a graceful stop; resumes \
refused: {p['resume refused after a restart']} in time, \
{c['resumes too late after a restart']} too late
  unanswered sends     {c['unanswered sends']} cut by a restart before \
their result: {c['unanswered, delivered to all']} delivered to every \
session they were for{(': ' + ids) if ids else ''}; \
{c['unanswered, never delivered']} never delivered"""
        dups = p["duplicate or reordered on one connection"]
        print(f"""
soak: {SESSIONS} sessions, {self.load_seconds:.0f} s ({WARMUP:.0f} s warm-up)
  sessions opened      {c['opened']}  (resumes {c['resumes']} of \
{c['cuts']} cuts, byes {c['byes']} + {c['final byes']} at the end, \
abandoned {c['abandoned']})
  messages sent        {c['sent broadcast']} broadcasts, \
{c['sent targeted']} targeted ({c['targeted to closed sessions']} to \
closed sessions)
  messages received    {c['received']} frames, {c['received first']} \
first arrivals, {c['redelivered']} again after a resume
  expected             {c['expected']}  (unverifiable, abandoned: \
{c['unverifiable (abandoned)']}, bye cut by a restart: \
{c['unverifiable (bye cut by a restart)']}){restarts}
  losses               {p['lost']}
  duplicates           {dups}
  out of order         {p['out of order']}
  calls                ok {c['calls ok']} ({c['snapshots']} snapshots \
of every session), failed {c['calls failed']}, timed out \
{c['calls timed out']}, ended by a stop {c['calls ended by a stop']}, \
cut by a restart {c['calls cut by a restart']}; slowest answer (but \
spin's) \
{self.slowest:.2f} s, {c['calls held back (max_calls_per_session)']} \
held back (16 under way)
  acks                 {c['status checked']} message_status checked \
(+ {c['status checked around restarts']} around the restarts), \
{p['not acknowledged']} not acknowledged, {p['status']} inconsistent
  RSS                  {rss}
  event loop lag       max {self.lag:.2f} s; server log warnings \
{c['log warnings']}""")
        for kind, n in sorted(p.items()):
            print(f"  PROBLEM {kind}: {n}")
            for ex in FIG.examples[kind]:
                print(f"    {ex}")
        ok = not p
        print("soak: " + ("PASS" if ok else "FAIL") +
              ("" if ok or KEEP else f" (log: {self.log_path})"))
        return ok

    def stop_server(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = "killed"
            if code != 0:
                FIG.problem("server exit", f"status {code}")
        else:
            code = self.proc.returncode
            name = signal.Signals(-code).name if code < 0 else "exit"
            with open(self.log_path, errors="replace") as f:
                tail = f.read().splitlines()[-3:]
            FIG.problem("server died", f"status {code} ({name}); its last "
                        "log lines:")
            FIG.examples["server died"] += tail


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = SESSIONS * 2 + 256
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < want:
            print(f"soak: open-file limit {new}, below the {want} wanted",
                  file=sys.stderr)


def main():
    if not os.access(HERALD, os.X_OK):
        print("soak: build/herald is missing; run make first",
              file=sys.stderr)
        return 2
    raise_fd_limit()
    soak = Soak()
    soak.start_server()
    ok = False
    try:
        try:
            asyncio.run(soak.run())
        except ServerDied:
            pass
        except (RuntimeError, asyncio.TimeoutError) as e:
            FIG.problem("harness", f"{type(e).__name__}: {e}")
        soak.stop_server()
        if "server died" not in FIG.problems and \
                "restart failed" not in FIG.problems:
            # After a crash every session lost the rest: nothing to learn.
            soak.verify()
        soak.server_log()
        ok = soak.report()
    finally:
        if soak.proc.poll() is None:
            soak.proc.kill()
            soak.proc.wait()
        if ok and not KEEP:
            shutil.rmtree(soak.dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
