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

Prints its figures; exits 1 on any loss, duplicate, order error, wrong
count, refused resume, unexpected drop or error frame, crash or leak, 0
otherwise. The sessions are asyncio protocols rather than streams: one
Python process must keep up with 20,000 messages a second.

Environment: SOAK_SECONDS (300), SOAK_SESSIONS (2000), SOAK_WARMUP
(SOAK_SECONDS / 5, within 20..60, at most half), SOAK_PHASES (1: more measures RSS at
as many points), SOAK_KEEP=1 keeps the server's folder (log, scripts),
SOAK_HERALD another herald binary to soak (default build/herald).
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

RESUME_TIMEOUT = 5
MEAN_LIFE = 20.0        # seconds between two actions of one session
P_CUT, P_BYE = 0.6, 0.3  # the rest: cut and never come back
TICK = 0.1              # the driver's period
TARGETED = 5            # targeted sends per tick
FAIL_EVERY, SPIN_EVERY = 10, 50  # ticks
SNAPSHOT_EVERY = 20     # ticks: an administrator's look at the sessions
LEAK_LIMIT = 0.10

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
                 "targeted", "conns", "resumes")

    def __init__(self, name):
        self.name = name
        self.sid = self.token = None
        self.hello_seq = self.welcome_seq = None
        self.end_seq = INF      # bye written, or the abandoning reset
        self.closed_seq = None  # the server closed after bye
        self.kind = "open"      # open, bye, abandoned, lost
        self.got = array("q")   # first arrivals, increasing
        self.max_got = 0
        self.targeted = []      # Send records aimed at it
        self.conns = 0
        self.resumes = 0

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
    pings, and hands other frames to its waiter."""

    def __init__(self, life):
        self.life = life
        self.buf = b""
        self.transport = None
        self.last_id = 0
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
            else:
                self.frames.put_nowait(frame)
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def connection_lost(self, exc):
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
        self.calls = {}          # call id -> (kind, record)
        self.next_call = 0
        self.driver = None
        self.driver_conn = None
        self.callno = 0
        self.lag = 0.0
        self.rss = {}
        self.lua_kb = {}
        self.watchers = set()
        self.load_seconds = 0

    # --- the server ------------------------------------------------------

    def start_server(self):
        scripts = os.path.join(self.dir, "scripts")
        os.makedirs(os.path.join(scripts, "methods"))
        for name, source in METHODS.items():
            with open(os.path.join(scripts, "methods", name + ".lua"),
                      "w") as f:
                f.write(source.lstrip())
        self.admin_socket = os.path.join(self.dir, "admin", "herald.sock")
        conf = os.path.join(self.dir, "herald.conf.lua")
        with open(conf, "w") as f:
            f.write(CONFIG)
        self.log_path = os.path.join(self.dir, "herald.log")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [HERALD, "serve", "--listen", f"{HOST}:0", "--admin-socket",
             self.admin_socket, "--no-console",
             "--scripts", scripts, "--config", conf, "--log-level", "info"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(self.log_path) as f:
                m = re.search(r"listening on [^:\s]+:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("soak: the server did not start:\n" +
                         open(self.log_path).read())

    def check_alive(self):
        code = self.proc.poll()
        if code is not None:
            name = signal.Signals(-code).name if code < 0 else "exit"
            raise ServerDied(f"status {code} ({name})")

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    # --- sessions --------------------------------------------------------

    async def connect(self, life, resume=False, watch=True):
        """A new connection for life, greeted (or resumed). Returns the
        Conn, or None when the server refused (recorded). watch: hand the
        frames that follow to watch()."""
        loop = asyncio.get_running_loop()
        for attempt in range(50):
            try:
                _, conn = await loop.create_connection(
                    lambda: Conn(life), HOST, self.port)
                break
            except OSError:
                await asyncio.sleep(0.1 + 0.1 * attempt)
        else:
            raise RuntimeError("cannot connect to the server")
        hello = {"type": "hello", "userName": life.name, "protocol": 1,
                 "machineName": "soak", "hostType": "linux"}
        if resume:
            hello["resume"] = {"sessionID": life.sid, "token": life.token}
        else:
            life.hello_seq = Clock.tick()
        conn.send(hello)
        try:
            frame = await conn.frame()
        except asyncio.TimeoutError:
            frame = "no answer to hello"
        if not isinstance(frame, dict) or frame["type"] != "welcome":
            FIG.problem("refused" if not resume else "resume refused",
                        f"{life.name} {life.sid}: {frame}")
            conn.transport.abort()
            return None
        life.conns += 1
        if resume:
            if frame["sessionID"] != life.sid:
                FIG.problem("resume refused", f"{life.sid} came back as "
                            f"{frame['sessionID']}")
            life.resumes += 1
            FIG.c["resumes"] += 1
        else:
            life.welcome_seq = Clock.tick()
            life.sid, life.token = frame["sessionID"], frame["resumeToken"]
            FIG.c["opened"] += 1
        if watch:
            task = asyncio.ensure_future(self.watch(life, conn))
            self.watchers.add(task)
            task.add_done_callback(self.watchers.discard)
        return conn

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
            if self.proc.poll() is None:
                FIG.problem("harness", f"session slot {index}: {e!r}")

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
            conn = await self.connect(life)
            if conn is None:
                life.kind = "lost"
                await asyncio.sleep(1)
                continue
            slot["life"], slot["conn"] = life, conn
            while True:
                slot["busy"] = False
                await asyncio.sleep(rng.expovariate(1 / MEAN_LIFE))
                # Woken by a set() that a clear() has already undone: wait
                # again, or this would act in the middle of a quiesce.
                while not self.load_on.is_set():
                    await self.load_on.wait()
                slot["busy"] = True
                r = rng.random()
                if r < P_CUT:
                    cut(conn, rng)
                    FIG.c["cuts"] += 1
                    await asyncio.sleep(rng.uniform(0, RESUME_TIMEOUT / 2))
                    conn = await self.connect(life, resume=True)
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
            life.closed_seq = Clock.tick()
            self.ended.append(life)
        except asyncio.TimeoutError:
            FIG.problem("bye not closed", f"{life.name} {life.sid}")
            conn.transport.abort()
        FIG.c["final byes" if final else "byes"] += 1

    # --- the driver ------------------------------------------------------

    def call(self, method, args, kind, record=None):
        self.next_call += 1
        self.calls[self.next_call] = (kind, record, Clock.tick())
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

    async def results(self):
        """Reads the driver's results (its messages are acked by Conn)."""
        while True:
            frame = await self.driver_conn.frames.get()
            if frame is None:
                if not self.stopping:
                    FIG.problem("driver lost", "its connection closed")
                return
            if frame["type"] != "result":
                FIG.problem(f"unexpected {frame['type']}",
                            f"driver: {frame}")
                continue
            seq = Clock.tick()
            kind, rec, _ = self.calls.pop(frame["id"])
            if kind == "send":
                if not frame["ok"]:
                    FIG.problem("send failed", frame.get("error"))
                    continue
                rec["count"], rec["id"] = frame["value"]
                rec["result_seq"] = seq
                check_id(rec["id"], rec["callno"])
                FIG.c["sent " + ("targeted" if rec["life"] else
                                 "broadcast")] += 1
            elif kind == "fail":
                if frame["ok"] or "failing on purpose" not in frame["error"]:
                    FIG.problem("fail() did not fail", str(frame))
                else:
                    FIG.c["calls failed"] += 1
            elif kind == "spin":
                if frame["ok"] or "timed out" not in frame["error"]:
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
        while loop.time() < until:
            self.check_alive()
            tick += 1
            self.send(None)
            for _ in range(TARGETED):
                slot = rng.choice(self.slots)
                life = slot["life"]
                if life is not None and life.sid is not None:
                    self.send(life)
            if tick % 7 == 0 and self.ended:
                # A session that has logged out and been closed: 0.
                self.send(rng.choice(self.ended))
            if tick % FAIL_EVERY == 0:
                self.call("fail", [], "fail")
            if tick % SPIN_EVERY == 0:
                self.call("spin", [], "spin")
            if tick % SNAPSHOT_EVERY == 0:
                self.call("soak_count", [], "snapshot")
            next_t += TICK
            await asyncio.sleep(max(0, next_t - loop.time()))

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
        self.rss[label] = min(samples)
        self.lua_kb[label] = lua_kb
        print(f"soak: {label}: {SESSIONS + 1} sessions, RSS "
              f"{self.rss[label] / 1024:.1f} MiB, Lua heap {lua_kb[0]:.0f} "
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
            HERALD, "run", "--socket", self.admin_socket, path,
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
                    FIG.problem("status", f"id {msg_id}: {row[:4]}")
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
                            FIG.c["unverifiable (abandoned)"] += 1
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
                            FIG.c["unverifiable (abandoned)"] += 1
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
        warm, end = self.rss.get("warm-up"), self.rss.get("end")
        if warm and end:
            growth = (end - warm) / warm
            rss = (f"warm-up {warm / 1024:.1f} MiB, end {end / 1024:.1f} "
                   f"MiB ({growth * 100:+.1f} %)")
            if growth > LEAK_LIMIT:
                FIG.problem("leak", f"RSS {warm} kB -> {end} kB")
        else:
            rss = "not measured"
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
{c['unverifiable (abandoned)']})
  losses               {p['lost']}
  duplicates           {dups}
  out of order         {p['out of order']}
  calls                ok {c['calls ok']} ({c['snapshots']} snapshots \
of every session), failed {c['calls failed']}, timed out \
{c['calls timed out']}
  acks                 {c['status checked']} message_status checked, \
{p['not acknowledged']} not acknowledged
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
        if "server died" not in FIG.problems:
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
