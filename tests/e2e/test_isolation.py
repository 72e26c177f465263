"""Isolation end to end: what one remote user's code (or one `herald run`
script) can do to everyone else. Each attack runs on the real server with
small limits (CONFIG) while a BYSTANDER, a second raw session greeted
before it, keeps asking: its ping must get its pong, and a message sent by
`herald run` must reach it, within max_blocking + 0.5 s, from 0.1 s after
the attack is launched until the attack has ended. Then the attack must be
over for good: its call answered, its processes gone, the server's CPU
idle.

  1. Time: no Lua code holds the loop longer than max_blocking without a
     chance to yield (C boundaries: sort comparators, gsub functions,
     metamethods called from C, nested coroutines, message handlers,
     finalizers, to-be-closed variables, a method file's own body), and
     SIGTERM still stops the server during such code.
  2. Memory: slow consumers are dropped before the server grows;
     session_memory_limit bounds one session's running processes together;
     remote users cannot take the quarter of lua_memory_limit kept for the
     console, `herald run` and jobs.
  3. Processes: max_calls_per_session, the result codes, and the processes
     of a session that leaves, is dropped or expires are ended.
  4. Shared code is read-only: libraries, collections, the environment of
     other methods and scripts.
  5. One process cannot resume or close another's coroutine.
  6. Postponed sessions never lock out new clients.

Each test writes the method files it needs into a scripts folder of its
own (FOLDER/methods/NAME.lua)."""
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import HERALD, SLOW, WRAPPER, HeraldTest, Wire

MAX_BLOCKING = 0.3
METHOD_TIMEOUT = 2
CONFIG = (f"method_timeout = {METHOD_TIMEOUT}\n"
          f"max_blocking = {MAX_BLOCKING}\n")
# How long the bystander may wait for its pong (or a script's message)
# while an attack runs.
PROMPT = (MAX_BLOCKING + 0.5) * SLOW
# A method timeout far longer than any wait of these tests: what ends an
# attack there is max_blocking, or the shutdown.
LONG_CONFIG = f"method_timeout = 30\nmax_blocking = {MAX_BLOCKING}\n"
MIB = 1024 * 1024
# What the server's resident memory may reach in the flood tests. Under
# ASan (its quarantine keeps up to 256 MiB of freed blocks) or valgrind the
# process holds more for the same work.
INSTRUMENTED = bool(WRAPPER) or "asan" in os.environ.get("HERALD_BUILD", "")
RSS_LIMIT = (500 if INSTRUMENTED else 200) * MIB

OK = 'return function() return "fine" end\n'
ECHO = "return function(x) return x end\n"
LOOP = "while true do end"
# Holds N (default 40) strings of 100 kB, about 4 MB for 40, for D seconds,
# then returns how many it holds.
HOLD = """
return function(n, d)
  local t = {}
  for i = 1, n or 40 do t[i] = string.rep("x", 100000) .. i end
  if d and d > 0 then delay_process(d) end
  return #t
end
"""


def method(body):
    """A method file whose function runs body."""
    return f"return function(...)\n{body}\nend\n"


# --- reading frames -------------------------------------------------------

def next_frame(w, timeout):
    """The next frame on w within timeout seconds (not scaled), or None.
    Fails when the server closes the connection."""
    end = time.monotonic() + timeout
    while b"\n" not in w.buf:
        left = end - time.monotonic()
        if left <= 0:
            return None
        w.sock.settimeout(left)
        try:
            chunk = w.sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise AssertionError("the server closed the connection")
        w.buf += chunk
    line, w.buf = w.buf.split(b"\n", 1)
    return json.loads(line)


def stash(w):
    if not hasattr(w, "results"):
        w.results, w.messages = {}, []
    return w


def pump(w, timeout):
    """Reads one frame (within timeout, unscaled) and files it: results by
    id, messages in order; pings are answered. Returns the frame or None."""
    stash(w)
    frame = next_frame(w, timeout)
    if frame is None:
        return None
    kind = frame.get("type")
    if kind == "result":
        w.results[frame.get("id")] = frame
    elif kind == "message":
        w.messages.append(frame)
    elif kind == "ping":
        w.send({"type": "pong"})
    return frame


def take_result(w, call_id, timeout):
    """The result of call call_id within timeout (unscaled), or None."""
    stash(w)
    end = time.monotonic() + timeout
    while call_id not in w.results:
        left = end - time.monotonic()
        if left <= 0:
            return None
        pump(w, left)
    return w.results.pop(call_id)


# --- the server process ---------------------------------------------------

def rss(srv):
    """The server's resident memory in bytes."""
    with open(f"/proc/{srv.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for the server")


def cpu_seconds(srv):
    """User and system CPU time the server has used."""
    with open(f"/proc/{srv.proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout, what):
    """Polls predicate until it is true; fails with what after timeout
    seconds (unscaled)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.2f} s")
        time.sleep(0.05)


def lua(srv, source, timeout=10):
    """srv.lua with a bounded wait: a frozen server fails the test instead
    of holding it for minutes."""
    r = srv.run_script(source, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"script failed ({r.returncode}): {r.stderr}")
    return r.stdout


def processes_of(srv, sid):
    """How many processes of session sid get_process_activity lists."""
    return int(lua(srv, f"""
local n = 0
for _, p in ipairs(get_process_activity(PROCESSES_ONLY).processes) do
  if p.sessionID == "{sid}" then n = n + 1 end
end
print(n)""").strip())


def method_processes(srv, state=None):
    """How many method processes (type 1), in state when given, exist."""
    cond = "p.type == 1" + ("" if state is None else f" and p.state == {state}")
    return int(lua(srv, f"""
local n = 0
for _, p in ipairs(get_process_activity(PROCESSES_ONLY).processes) do
  if {cond} then n = n + 1 end
end
print(n)""").strip())


class IsolationTest(HeraldTest):
    """Base: a scripts folder of the test's own, calls, and the bystander."""

    def start(self, config=CONFIG, **methods):
        d = tempfile.mkdtemp(prefix="herald-isolation-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        os.mkdir(os.path.join(d, "methods"))
        for name, source in methods.items():
            with open(os.path.join(d, "methods", name + ".lua"), "w") as f:
                f.write(source)
        return self.server(config=config, scripts=d)

    # calls

    def send_call(self, w, call_id, name, *args):
        w.send({"type": "call", "id": call_id, "method": name,
                "args": list(args)})
        return time.monotonic()

    def result(self, w, call_id, timeout=5):
        frame = take_result(w, call_id, timeout * SLOW)
        self.assertIsNotNone(frame, f"no result for call {call_id} within "
                                    f"{timeout * SLOW:.1f} s")
        return frame

    def call(self, w, name, *args, call_id=1, timeout=5):
        self.send_call(w, call_id, name, *args)
        return self.result(w, call_id, timeout)

    def ok(self, frame):
        self.assertIs(frame.get("ok"), True, frame)
        self.assertIn("value", frame)
        return frame["value"]

    def refused(self, frame, code, names=None):
        """frame is ok:false with code; its error names `names` if given."""
        self.assertIs(frame.get("ok"), False, frame)
        self.assertEqual(frame.get("code"), code, frame)
        self.assertIsInstance(frame.get("error"), str, frame)
        self.assertNotIn("value", frame)
        if names is not None:
            self.assertIn(names, frame["error"], frame)
        return frame["error"]

    # the bystander

    def pong_time(self, w, deadline, what):
        """Sends a ping on w; returns the seconds until its pong. Fails if
        none comes before deadline (monotonic)."""
        stash(w)
        sent = time.monotonic()
        w.send({"type": "ping"})
        while True:
            frame = pump(w, max(0.0, deadline - time.monotonic()))
            if frame is None:
                self.fail(f"{what}: the bystander got no pong within "
                          f"{time.monotonic() - sent:.2f} s")
            if frame.get("type") == "pong":
                return time.monotonic() - sent

    def assertPrompt(self, w, what, limit=None):
        """w's ping gets its pong within PROMPT."""
        limit = PROMPT if limit is None else limit
        rtt = self.pong_time(w, time.monotonic() + limit + 5 * SLOW, what)
        self.assertLess(rtt, limit, f"{what}: the bystander's pong took "
                                    f"{rtt:.2f} s")

    def message_reaches(self, srv, w, what):
        """A message that `herald run` sends to w's session reaches it
        within PROMPT of starting the command."""
        stash(w)
        sid = w.welcome["sessionID"]
        path = os.path.join(srv.dir, f"msg{len(srv.children)}.lua")
        with open(path, "w") as f:
            f.write(f'send_message_to_remote_user("while {what} ran", '
                    f'"{sid}")\n')
        started = time.monotonic()
        proc, out = srv.spawn("run", "--socket", srv.socket, path)
        deadline = started + PROMPT + 5 * SLOW
        while not any(m["text"] == f"while {what} ran" for m in w.messages):
            if pump(w, max(0.0, deadline - time.monotonic())) is None:
                self.fail(f"{what}: the message of herald run did not reach "
                          f"the bystander within "
                          f"{time.monotonic() - started:.2f} s")
        took = time.monotonic() - started
        for m in w.messages:
            w.send({"type": "ack", "id": m["id"]})
        w.messages.clear()
        self.assertLess(took, PROMPT, f"{what}: the message of herald run "
                                      f"took {took:.2f} s")
        self.assertEqual(proc.wait(timeout=5 * SLOW), 0, out.text())

    def survive(self, srv, attacker, call_id, launched, bystander, what,
                limit=None):
        """While call call_id of attacker (sent at launched) runs: from
        0.1 s after launch, the bystander's pings, one every 0.1 s, get
        their pongs within PROMPT, and a message from `herald run` reaches
        it within PROMPT. Returns the attack's result (which must come
        within limit seconds, default method_timeout + 2)."""
        limit = (METHOD_TIMEOUT + 2 if limit is None else limit) * SLOW
        deadline = launched + limit
        pause = launched + 0.1 - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the bystander starts while the attack runs
        messaged = False
        while True:
            rtt = self.pong_time(bystander, deadline + PROMPT, what)
            self.assertLess(rtt, PROMPT, f"{what}: the bystander's pong "
                                         f"took {rtt:.2f} s")
            if not messaged:
                messaged = True
                self.message_reaches(srv, bystander, what)
            frame = take_result(attacker, call_id, 0.1)
            if frame is not None:
                return frame
            if time.monotonic() > deadline:
                self.fail(f"{what}: the attacking call got no result within "
                          f"{limit:.1f} s")

    def assertEnded(self, srv, attacker, bystander, what):
        """The attack is over for good: no process of the attacker's
        session is left, the server's CPU is idle, and the bystander and
        the attacker are served."""
        sid = attacker.welcome["sessionID"]
        wait_until(lambda: processes_of(srv, sid) == 0, 1.0 * SLOW,
                   f"{what}: the attacker's processes gone")
        before = cpu_seconds(srv)
        time.sleep(0.5)  # a window to measure, not a wait for something
        used = cpu_seconds(srv) - before
        self.assertLess(used, 0.2, f"{what}: the server used {used:.2f} s "
                                   "of CPU in 0.5 s after the attack ended")
        self.assertPrompt(bystander, what + " (after)")
        self.assertEqual(self.ok(self.call(attacker, "ok", call_id=999)),
                         "fine")

    def time_attack(self, name, body, source=None):
        """Calls method name (whose function runs body, or whose file is
        source) from an attacker session: it must end with code timeout
        naming the method, the bystander served throughout."""
        srv = self.start(CONFIG, ok=OK,
                         **{name: source if source is not None
                            else method(body)})
        bystander = srv.wire("Bystander")
        attacker = srv.wire("Attacker")
        launched = self.send_call(attacker, 1, name)
        frame = self.survive(srv, attacker, 1, launched, bystander, name)
        self.refused(frame, "timeout", names=name)
        self.assertEnded(srv, attacker, bystander, name)
        return srv


# Metamethods that loop, on objects that C functions handle.
META = """
local function loop() while true do end end
local function obj(mt) return setmetatable({}, mt) end
"""


class Time(IsolationTest):
    """1. No Lua code holds the loop longer than max_blocking."""

    def test_plain_loop_times_out_at_method_timeout(self):
        # The control: a loop the hook can yield at every slice.
        srv = self.start(CONFIG, ok=OK, spin=method(LOOP))
        bystander = srv.wire("Bystander")
        attacker = srv.wire("Attacker")
        launched = self.send_call(attacker, 1, "spin")
        frame = self.survive(srv, attacker, 1, launched, bystander, "spin")
        self.refused(frame, "timeout", names="spin")
        self.assertEnded(srv, attacker, bystander, "spin")
        # Timed on its own: a CPU timeout, not an early kill.
        launched = self.send_call(attacker, 2, "spin")
        frame = self.result(attacker, 2, timeout=METHOD_TIMEOUT + 2)
        elapsed = time.monotonic() - launched
        self.refused(frame, "timeout", names="spin")
        self.assertGreater(elapsed, METHOD_TIMEOUT - 0.1)
        self.assertLess(elapsed, METHOD_TIMEOUT + 1.0 * SLOW)

    def test_sort_comparator_loop_is_ended(self):
        self.time_attack("sortloop", """
local t = {}
for i = 1, 100 do t[i] = i end
table.sort(t, function(a, b) while true do end end)""")

    def test_gsub_replacement_loop_is_ended(self):
        self.time_attack("gsubloop", """
string.gsub("aaaa", "a", function() while true do end end)""")

    def test_tostring_metamethod_loop_is_ended(self):
        self.time_attack("tostringloop", META + """
return tostring(obj({ __tostring = loop }))""")

    def test_index_metamethod_loop_called_from_c_is_ended(self):
        # table.concat reads t[1] with lua_geti: __index runs under C.
        self.time_attack("indexloop", META + """
return table.concat(obj({ __index = loop, __len = function() return 2 end }))""")

    def test_len_metamethod_loop_called_from_c_is_ended(self):
        # table.insert takes #t with luaL_len: __len runs under C.
        self.time_attack("lenloop", META + """
table.insert(obj({ __len = loop }), 1)""")

    def test_lt_metamethod_loop_called_from_sort_is_ended(self):
        # Sort without comparator compares with lua_lessthan: __lt.
        self.time_attack("ltloop", META + """
local mt = { __lt = loop }
table.sort({ obj(mt), obj(mt), obj(mt) })""")

    def test_eq_metamethod_loop_under_c_is_ended(self):
        # The stock libraries compare with __eq only from Lua code: here a
        # gsub replacement function, which runs under C.
        self.time_attack("eqloop", META + """
local mt = { __eq = loop }
local a, b = obj(mt), obj(mt)
string.gsub("ab", "%w", function() return a == b and "" or "" end)""")

    def test_concat_metamethod_loop_under_c_is_ended(self):
        # __tostring (called by tostring, a C function) concatenates an
        # object whose __concat loops.
        self.time_attack("concatloop", META + """
local o = obj({ __concat = loop })
return tostring(obj({ __tostring = function() return o .. "x" end }))""")

    def test_nested_coroutine_loop_is_ended(self):
        self.time_attack("coloop", """
coroutine.wrap(function() while true do end end)()""")

    def test_pcall_retry_loop_in_nested_coroutine_is_ended(self):
        self.time_attack("copcall", """
coroutine.wrap(function()
  while true do pcall(function() while true do end end) end
end)()""")

    def test_pcall_retry_loop_in_sort_comparator_is_ended(self):
        self.time_attack("sortpcall", """
local t = {}
for i = 1, 100 do t[i] = i end
table.sort(t, function(a, b)
  while true do pcall(function() while true do end end) end
end)""")

    def test_xpcall_looping_message_handler_is_ended(self):
        self.time_attack("xpcallloop", """
while true do
  xpcall(function() error("x") end, function() while true do end end)
end""")

    def test_endless_coroutine_iterator_is_ended(self):
        self.time_attack("iterloop", """
for _ in coroutine.wrap(function()
  while true do coroutine.yield(1) end
end) do end""")

    def test_string_rep_loop_in_index_metamethod_is_ended(self):
        self.time_attack("reploop", META + """
return table.concat(obj({
  __index = function()
    while true do local s = string.rep("x", 100000) end
  end,
  __len = function() return 1 end }))""")

    def test_top_level_loop_in_a_method_file_is_ended(self):
        self.time_attack("toploop", None,
                         source="while true do end\n"
                                "return function() return 1 end\n")

    def test_close_handler_loop_is_ended(self):
        # The method loops until method_timeout ends it; ending it runs its
        # to-be-closed variable's __close, which loops too.
        self.time_attack("closeloop", """
local x <close> = setmetatable({}, { __close = function()
  while true do end
end })
while true do end""")

    def test_close_handler_loop_of_a_session_that_leaves(self):
        # The process is delayed when its session says bye: ending it runs
        # the looping __close.
        srv = self.start(CONFIG, closewait=method("""
local x <close> = setmetatable({}, { __close = function()
  while true do end
end })
delay_process(30)"""))
        bystander = srv.wire("Bystander")
        leaver = srv.wire("Leaver")
        sid = leaver.welcome["sessionID"]
        self.send_call(leaver, 1, "closewait")
        wait_until(lambda: processes_of(srv, sid) == 1, 3 * SLOW,
                   "the delayed process listed")
        leaver.send({"type": "bye"})
        left = time.monotonic()
        for _ in range(2):
            self.assertPrompt(bystander, "a looping __close at bye")
        self.message_reaches(srv, bystander, "a looping __close at bye")
        wait_until(lambda: processes_of(srv, sid) == 0,
                   max(0.0, left + 1.0 * SLOW - time.monotonic()),
                   "the leaver's process gone within 1 s of its bye")
        self.assertPrompt(bystander, "a looping __close at bye (after)")

    def assertNeverFreezes(self, srv, attacker, bystander, what,
                           strict=True):
        """After the attack: another method; a method of another session
        that churns memory (the collector runs); full collections forced
        from `herald run`. The bystander is served at each step. strict:
        no finalizer can exist, so the churn and the collections succeed
        (else they need only end)."""
        self.assertEqual(self.ok(self.call(attacker, "ok", call_id=10)),
                         "fine")
        self.assertPrompt(bystander, what)
        churner = srv.wire("Churner")
        launched = self.send_call(churner, 11, "churn")
        frame = self.survive(srv, churner, 11, launched, bystander,
                             what + " (churn)")
        if strict:
            self.assertEqual(self.ok(frame), "churned")
        started = time.monotonic()
        r = srv.run_script('collectgarbage() collectgarbage() '
                           'print("collected")', timeout=10)
        took = time.monotonic() - started
        if strict:
            self.assertEqual((r.returncode, r.stdout.strip()),
                             (0, "collected"), r.stderr)
        self.assertLess(took, PROMPT + 1.0 * SLOW,
                        f"{what}: a full collection took {took:.2f} s")
        self.assertPrompt(bystander, what + " (after a full collection)")
        self.assertEqual(self.ok(self.call(attacker, "ok", call_id=12)),
                         "fine")

    CHURN = method("""
for i = 1, 300 do local s = string.rep("x", 100000) .. i end
return "churned" """)

    def test_gc_metamethod_is_refused_and_never_runs(self):
        srv = self.start(CONFIG, ok=OK, churn=self.CHURN, gcloop=method("""
for i = 1, 10 do
  setmetatable({}, { __gc = function() while true do end end })
end
return "set" """))
        bystander = srv.wire("Bystander")
        attacker = srv.wire("Attacker")
        frame = self.call(attacker, "gcloop", timeout=METHOD_TIMEOUT + 2)
        self.refused(frame, "failed", names="__gc")
        self.assertNeverFreezes(srv, attacker, bystander, "a looping __gc")

    def test_gc_metamethod_added_after_setmetatable_never_freezes(self):
        # Lua marks an object for finalization when its metatable has a
        # __gc field of any value, and calls whatever __gc holds when the
        # object is collected: a placeholder, replaced later.
        srv = self.start(CONFIG, ok=OK, churn=self.CHURN, gclate=method("""
local function loop() while true do end end
local set = 0
for i = 1, 10 do
  for _, late in ipairs({
      function(mt) mt.__gc = loop end,
      function(mt) rawset(mt, "__gc", loop) end }) do
    for _, placeholder in ipairs({ true, false, 0, "x", {} }) do
      local mt = { __gc = placeholder }
      if pcall(setmetatable, {}, mt) and pcall(late, mt) then
        set = set + 1
      end
    end
  end
end
return set"""))
        bystander = srv.wire("Bystander")
        attacker = srv.wire("Attacker")
        frame = self.call(attacker, "gclate", timeout=METHOD_TIMEOUT + 2)
        self.assertEqual(frame.get("type"), "result", frame)
        self.assertNeverFreezes(srv, attacker, bystander,
                                "a __gc put in place late", strict=False)

    # SIGTERM while such code runs: the server still stops.

    def sigterm_during(self, name, body):
        srv = self.start(LONG_CONFIG, **{name: method(body)})
        attacker = srv.wire("Attacker")
        sid = attacker.welcome["sessionID"]
        launched = self.send_call(attacker, 1, name)
        if "<close>" in body:
            # A yieldable loop: the process can be seen running.
            wait_until(lambda: processes_of(srv, sid) == 1, 3 * SLOW,
                       "the attacking process listed")
        else:
            pause = launched + 0.1 - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the signal comes while it runs
        srv.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        try:
            status = srv.proc.wait(timeout=5 * SLOW)
        except subprocess.TimeoutExpired:
            self.fail(f"{name}: the server still runs 5 s after SIGTERM")
        self.assertLess(time.monotonic() - sent, 5 * SLOW)
        self.assertEqual(status, 0, srv.log.text()[-2000:])

    def test_sigterm_during_sort_comparator_loop(self):
        self.sigterm_during("sortloop", """
local t = {}
for i = 1, 100 do t[i] = i end
table.sort(t, function(a, b) while true do end end)""")

    def test_sigterm_during_gsub_loop(self):
        self.sigterm_during("gsubloop", """
string.gsub("aaaa", "a", function()
  while true do pcall(function() while true do end end) end
end)""")

    def test_sigterm_during_close_handler_loop(self):
        self.sigterm_during("closeloop", """
local x <close> = setmetatable({}, { __close = function()
  while true do end
end })
while true do end""")


class Memory(IsolationTest):
    """2. Memory: slow consumers, session_memory_limit, the reserve."""

    def small_window_wire(self, srv, user):
        """A greeted raw connection with a small receive buffer, so that
        what it does not read piles up in the server quickly."""
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5 * SLOW)
        s.connect(("127.0.0.1", srv.port))
        w = Wire.__new__(Wire)
        w.sock, w.buf = s, b""
        srv.wires.append(w)
        welcome = w.hello(user)
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        w.welcome = welcome
        return w

    def flood(self, srv, w, chunks, bystander, what, seconds=15):
        """Sends the byte strings of the iterator chunks on w, never
        reading, until the server drops it (its log says slow consumer, or
        the connection is reset). Meanwhile the server's RSS stays under
        RSS_LIMIT and the bystander's pings are answered within PROMPT.
        Returns the largest RSS seen."""
        sid = w.welcome["sessionID"]
        dropped = re.compile(rf"{sid}.*slow consumer")
        w.sock.setblocking(False)
        peak, pending, next_ping, seen = 0, b"", 0.0, 0
        deadline = time.monotonic() + seconds * SLOW
        while True:
            peak = max(peak, rss(srv))
            self.assertLess(peak, RSS_LIMIT, f"{what}: the server's RSS "
                                             f"grew to {peak >> 20} MiB")
            with srv.log.cond:
                fresh, seen = srv.log.lines[seen:], len(srv.log.lines)
            if any(line and dropped.search(line) for line in fresh):
                break
            now = time.monotonic()
            self.assertLess(now, deadline, f"{what}: not dropped as a slow "
                                           f"consumer within {seconds} s")
            if now >= next_ping:
                self.assertPrompt(bystander, what)
                next_ping = time.monotonic() + 0.2
            if not pending:
                pending = next(chunks)
            try:
                n = w.sock.send(pending)
                pending = pending[n:]
            except BlockingIOError:
                select.select([], [w.sock], [], 0.05)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server closed it: its log says why
        srv.wait_log(rf"{sid}.*slow consumer")
        peak = max(peak, rss(srv))
        self.assertLess(peak, RSS_LIMIT)
        return peak

    def test_ping_flood_that_never_reads_is_dropped(self):
        srv = self.start(CONFIG + "max_outbound_bytes = 65536\n")
        bystander = srv.wire("Bystander")
        flooder = self.small_window_wire(srv, "Flooder")
        chunk = b'{"type":"ping"}\n' * 1000

        def chunks():
            while True:
                yield chunk

        self.flood(srv, flooder, chunks(), bystander, "a ping flood")
        self.assertPrompt(bystander, "after a ping flood")
        self.message_reaches(srv, bystander, "after a ping flood")
        fresh = srv.wire("Fresh")
        self.assertPrompt(fresh, "a new session after a ping flood")

    def test_large_results_never_read_are_dropped(self):
        srv = self.start(CONFIG + "max_outbound_bytes = 65536\n",
                         big=method('return string.rep("x", 60 * 1024)'))
        bystander = srv.wire("Bystander")
        caller = self.small_window_wire(srv, "Hoarder")

        def chunks():
            call_id = 0
            while True:
                lines = []
                for _ in range(20):
                    call_id += 1
                    lines.append(b'{"type":"call","id":%d,"method":"big",'
                                 b'"args":[]}\n' % call_id)
                yield b"".join(lines)

        self.flood(srv, caller, chunks(), bystander, "unread results")
        self.assertPrompt(bystander, "after unread results")
        self.message_reaches(srv, bystander, "after unread results")

    def test_session_memory_limit_ends_a_greedy_method(self):
        srv = self.start(CONFIG + f"session_memory_limit = 8 * {MIB}\n"
                         "method_timeout = 10\n", hold=HOLD, greedy=method("""
local t = {}
for i = 1, 200 do t[i] = string.rep("x", 100000) .. i end
return #t"""))
        greedy = srv.wire("Greedy")
        other = srv.wire("Other")
        # The other session holds 4 MB while the greedy one runs.
        started = self.send_call(other, 1, "hold", 40, 1.5)
        frame = self.call(greedy, "greedy", call_id=2, timeout=10)
        self.refused(frame, "out_of_memory")
        self.assertLess(time.monotonic() - started, 1.5,
                        "the greedy call ended after the other one's delay")
        self.assertEqual(self.ok(self.result(other, 1)), 40)
        # What the greedy call held is given back to its session.
        self.assertEqual(self.ok(self.call(greedy, "hold", 40, 0,
                                           call_id=3)), 40)
        self.assertEqual(self.ok(self.call(other, "hold", 40, 0,
                                           call_id=4)), 40)

    def test_concurrent_calls_of_one_session_share_its_memory_limit(self):
        srv = self.start(CONFIG + f"session_memory_limit = 8 * {MIB}\n"
                         "method_timeout = 10\n", hold=HOLD)
        greedy = srv.wire("Greedy")
        other = srv.wire("Other")
        # Three calls of 3.5 MB each, held together for a second: 10.5 MB.
        for call_id in (1, 2, 3):
            self.send_call(greedy, call_id, "hold", 35, 1)
        self.assertEqual(self.ok(self.call(other, "hold", 40, 0,
                                           call_id=9)), 40)
        frames = [self.result(greedy, call_id) for call_id in (1, 2, 3)]
        codes = sorted(f.get("code", "ok") if f.get("ok") is False else "ok"
                       for f in frames)
        self.assertIn("out_of_memory", codes, frames)
        self.assertIn("ok", codes, frames)
        for f in frames:
            if f.get("ok"):
                self.assertEqual(f["value"], 35)
            else:
                self.refused(f, "out_of_memory")

    def hoard(self, name, source):
        srv = self.start(CONFIG + f"lua_memory_limit = 64 * {MIB}\n"
                         f"session_memory_limit = 8 * {MIB}\n"
                         "method_timeout = 10\n", hold=HOLD,
                         **{name: source})
        hoarder = srv.wire("Hoarder")
        other = srv.wire("Other")
        frames = []
        for call_id in range(1, 13):
            frame = self.call(hoarder, name, call_id=call_id, timeout=10)
            frames.append(frame)
            if frame.get("ok") is not True:
                break
        self.refused(frames[-1], "out_of_memory")
        for n, frame in enumerate(frames[:-1], start=1):
            self.assertEqual(self.ok(frame), n)
        self.assertEqual(self.ok(self.call(other, "hold", 40, 0,
                                           call_id=20)), 40)

    def test_hoarding_in_a_method_global_runs_out(self):
        self.hoard("hoardglobal", method("""
hoard = hoard or {}
local t = {}
for i = 1, 60 do t[i] = string.rep("x", 100000) .. i end
hoard[#hoard + 1] = t
return #hoard"""))

    def test_hoarding_in_an_upvalue_runs_out(self):
        self.hoard("hoardupvalue", """
local hoard = {}
return function()
  local t = {}
  for i = 1, 60 do t[i] = string.rep("x", 100000) .. i end
  hoard[#hoard + 1] = t
  return #hoard
end
""")

    def test_remote_methods_leave_a_reserve_for_herald_run(self):
        srv = self.start(CONFIG + f"lua_memory_limit = 64 * {MIB}\n"
                         f"session_memory_limit = 16 * {MIB}\n"
                         "method_timeout = 10\n", hold=HOLD)
        wires = [srv.wire(f"Holder{i}") for i in range(6)]
        for w in wires:
            self.send_call(w, 1, "hold", 120, 3)  # 12 MB each for 3 s
        settled = {}

        def all_settled():
            for i, w in enumerate(wires):
                if i not in settled:
                    frame = take_result(w, 1, 0.01)
                    if frame is not None:
                        settled[i] = frame
            early = [f for f in settled.values() if f.get("ok")]
            self.assertEqual(early, [], "a call ended before its delay")
            return len(settled) + method_processes(srv, state=1) == 6

        wait_until(all_settled, 2.5 * SLOW,
                   "each holding call delayed or out of memory")
        r = srv.run_script('local t = {}\nfor i = 1, 80 do '
                           't[i] = string.rep("x", 100000) .. i end\n'
                           'print("ok")\n', timeout=10)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, "ok"),
                         r.stderr)
        self.assertGreater(method_processes(srv, state=1), 0,
                           "the holders were gone before herald run ran")
        for i, w in enumerate(wires):
            if i not in settled:
                settled[i] = self.result(w, 1, timeout=6)
        frames = list(settled.values())
        oom = [f for f in frames if f.get("ok") is not True]
        held = [f for f in frames if f.get("ok") is True]
        self.assertTrue(oom, "every session held its 12 MB")
        self.assertTrue(held, "no session could hold 12 MB")
        for f in oom:
            self.refused(f, "out_of_memory")
        for f in held:
            self.assertEqual(f["value"], 120)


WAIT30 = method('delay_process(30) return "late"')


class Processes(IsolationTest):
    """3. Calls per session, result codes, and processes that must end."""

    def test_calls_past_max_calls_per_session_are_busy(self):
        srv = self.start(CONFIG + "max_calls_per_session = 4\n",
                         slow=method('delay_process(2) return "slow"'),
                         echo=ECHO)
        w = srv.wire("Busy")
        other = srv.wire("Other")
        started = time.monotonic()
        for call_id in range(1, 5):
            self.send_call(w, call_id, "slow")
        fifth = self.send_call(w, 5, "slow")
        frame = self.result(w, 5, timeout=1)
        self.assertLess(time.monotonic() - fifth, 0.5 * SLOW,
                        "the fifth call was not refused at once")
        self.refused(frame, "busy")
        # Another session is not limited by this one's calls.
        self.send_call(other, 1, "slow")
        self.assertEqual(self.ok(self.call(other, "echo", "x", call_id=2)),
                         "x")
        for call_id in range(1, 5):
            self.assertEqual(self.ok(self.result(w, call_id, timeout=4)),
                             "slow")
        self.assertGreater(time.monotonic() - started, 1.9)
        self.assertEqual(self.ok(self.result(other, 1, timeout=4)), "slow")
        # Their places are free again.
        self.assertEqual(self.ok(self.call(w, "echo", "again", call_id=6)),
                         "again")

    def test_args_that_are_not_an_array_are_bad_args(self):
        srv = self.start(CONFIG, count=method('return select("#", ...)'))
        w = srv.wire("Caller")
        for call_id, args in enumerate(({"a": 1}, "x", 5, True,
                                        {"1": "one"}), start=1):
            with self.subTest(args=args):
                w.send({"type": "call", "id": call_id, "method": "count",
                        "args": args})
                self.refused(self.result(w, call_id), "bad_args")
        w.send({"type": "call", "id": 10, "method": "count", "args": []})
        self.assertEqual(self.ok(self.result(w, 10)), 0)
        w.send({"type": "call", "id": 11, "method": "count"})
        self.assertEqual(self.ok(self.result(w, 11)), 0)
        w.send({"type": "call", "id": 12, "method": "count",
                "args": [1, None, 3]})
        self.assertEqual(self.ok(self.result(w, 12)), 3)

    def test_unknown_method_and_failing_method_codes(self):
        srv = self.start(CONFIG, boom=method('error("boom")'))
        w = srv.wire("Caller")
        self.refused(self.call(w, "nosuch", call_id=1), "unknown_method",
                     names="nosuch")
        self.refused(self.call(w, "boom", call_id=2), "failed",
                     names="boom")

    def test_a_method_cannot_change_the_schedule(self):
        # A job it scheduled would escape its session's limits and end.
        srv = self.start(CONFIG, sched=method(
            'return schedule(1, function() while true do end end)'),
                         unsched=method('return unschedule(1)'),
                         runjob=method('return run_job(1)'),
                         peek=method('return #get_schedule()'))
        w = srv.wire("Caller")
        for call_id, name in enumerate(("sched", "unsched", "runjob"), 1):
            with self.subTest(method=name):
                err = self.refused(self.call(w, name, call_id=call_id),
                                   "failed")
                self.assertIn("not available to methods called by remote "
                              "users", err)
        self.assertEqual(self.ok(self.call(w, "peek", call_id=4)), 0)
        # The console and herald run still can.
        self.assertEqual(srv.lua("print(type(schedule(3600, "
                                 "function() end)))").strip(), "number")

    def test_a_method_that_drops_its_own_session_then_allocates(self):
        # The session's memory account must outlive the session while its
        # process still runs (under make asan a use after free shows).
        srv = self.start(CONFIG, selfdrop=method("""
local id = ...
drop_remote_user(id)
local t = {}
for i = 1, 1000 do t[i] = ("x"):rep(100) .. i end
return #t"""))
        for i in range(3):
            w = srv.wire(f"Self{i}")
            sid = w.welcome["sessionID"]
            self.send_call(w, 1, "selfdrop", sid)
            self.assertEqual(w.recv_type("drop")["reason"],
                             "dropped by an administrator")
        after = srv.wire("After")
        after.send({"type": "ping"})
        self.assertEqual(after.recv_type("pong")["type"], "pong")
        self.assertEqual(srv.lua("collectgarbage() print('alive')").strip(),
                         "alive")

    def test_a_drop_tells_the_client_its_reason(self):
        srv = self.start(CONFIG)
        w = srv.wire("Dropped")
        sid = w.welcome["sessionID"]
        srv.lua(f'print(drop_remote_user("{sid}", "maintenance at 10pm"))')
        frame = w.recv_type("drop")
        self.assertEqual(frame["reason"], "maintenance at 10pm")
        out = srv.run_script(f'drop_remote_user("{sid}", ("x"):rep(2000))')
        self.assertEqual(out.returncode, 1)
        self.assertIn("bad argument #2 to 'drop_remote_user'", out.stderr)

    def start_waiting(self, config=CONFIG):
        """A server, and a session with three calls delayed for 30 s."""
        srv = self.start(config, wait30=WAIT30)
        w = srv.wire("Waiter")
        sid = w.welcome["sessionID"]
        for call_id in (1, 2, 3):
            self.send_call(w, call_id, "wait30")
        wait_until(lambda: processes_of(srv, sid) == 3, 3 * SLOW,
                   "three delayed processes listed")
        return srv, w, sid

    def assertGoneWithin(self, srv, sid, since, seconds, what):
        left = since + seconds * SLOW - time.monotonic()
        wait_until(lambda: processes_of(srv, sid) == 0, max(0.0, left),
                   f"the processes of {what} gone within {seconds} s")

    def test_processes_of_a_session_that_says_bye_are_ended(self):
        srv, w, sid = self.start_waiting()
        w.send({"type": "bye"})
        self.assertTrue(w.closed(3))
        self.assertGoneWithin(srv, sid, time.monotonic(), 1,
                              "a session that said bye")
        self.assertEqual(method_processes(srv), 0)

    def test_processes_of_a_dropped_session_are_ended(self):
        srv, w, sid = self.start_waiting()
        self.assertEqual(lua(srv, f'print(drop_remote_user("{sid}"))')
                         .strip(), "true")
        self.assertGoneWithin(srv, sid, time.monotonic(), 1,
                              "a dropped session")
        self.assertEqual(method_processes(srv), 0)

    def test_processes_of_an_expired_session_are_ended(self):
        srv, w, sid = self.start_waiting(CONFIG + "resume_timeout = 1\n")
        w.close()
        srv.wait_log(rf"session {sid} \(Waiter\) postponed")
        srv.wait_log(rf"session {sid} .*expired", timeout=3)
        self.assertGoneWithin(srv, sid, time.monotonic(), 1,
                              "an expired session")
        self.assertEqual(method_processes(srv), 0)


VICTIM = method("""
return { ("abc"):upper(), string.upper("abc"), string.rep("ab", 2),
         type(table.insert), math.pi, os.time() > 0,
         type(send_message_to_remote_user), type(string.x) }""")
VICTIM_OK = ["ABC", "ABC", "abab", "function", 3.141592653589793, True,
             "function", "nil"]


class SharedCode(IsolationTest):
    """4. What every method and script shares is read-only."""

    def assertIntact(self, srv, w, call_id):
        """Another method and another `herald run` see the libraries as
        they were."""
        got = self.ok(self.call(w, "victim", call_id=call_id))
        self.assertEqual(got[:4], VICTIM_OK[:4])
        self.assertAlmostEqual(got[4], VICTIM_OK[4], places=10)
        self.assertEqual(got[5:], VICTIM_OK[5:])
        out = lua(srv, 'print(("abc"):upper(), string.upper("abc"), '
                       'string.rep("ab", 2), type(table.insert), math.pi, '
                       'type(send_message_to_remote_user), type(string.x))')
        self.assertEqual(out.split(), ["ABC", "ABC", "abab", "function",
                                       "3.1415926535898", "function", "nil"])

    def test_library_functions_cannot_be_replaced(self):
        srv = self.start(CONFIG, victim=VICTIM, upper=method(
            'string.upper = function() return "pwned" end return "changed"'),
            rep=method('string.rep = nil return "changed"'))
        attacker = srv.wire("Attacker")
        other = srv.wire("Other")
        for call_id, name in enumerate(("upper", "rep"), start=1):
            with self.subTest(method=name):
                self.refused(self.call(attacker, name, call_id=call_id),
                             "failed")
        self.assertIntact(srv, other, 10)
        self.assertIntact(srv, attacker, 11)

    def test_rawset_on_shared_tables_fails(self):
        srv = self.start(CONFIG, victim=VICTIM, writes=method("""
local function loop() return "pwned" end
local r = {}
local cases = {
  rawset_string = function() rawset(string, "x", 1) end,
  rawset_string_upper = function() rawset(string, "upper", loop) end,
  rawset_table = function() rawset(table, "insert", nil) end,
  table_insert = function() table.insert = nil end,
  math_pi = function() math.pi = 3 end,
  rawset_math = function() rawset(math, "pi", 3) end,
  rawset_os = function() rawset(os, "time", loop) end,
  rawset_coroutine = function() rawset(coroutine, "resume", loop) end,
  rawset_utf8 = function() rawset(utf8, "char", loop) end,
}
for name, f in pairs(cases) do r[name] = pcall(f) end
return r"""))
        attacker = srv.wire("Attacker")
        other = srv.wire("Other")
        got = self.ok(self.call(attacker, "writes"))
        for name, succeeded in sorted(got.items()):
            with self.subTest(write=name):
                self.assertIs(succeeded, False, f"{name} succeeded")
        self.assertEqual(len(got), 9)
        self.assertIntact(srv, other, 10)

    WRITE_G = method("""
local fake = setmetatable({}, { __index = function() return function()
  return "pwned" end end })
return {
  (pcall(rawset, _G, "string", fake)),
  (pcall(rawset, _G, "send_message_to_remote_user", nil)),
  (pcall(rawset, _G, "print", nil)),
}""")

    def test_rawset_on_global_table_does_not_reach_others(self):
        srv = self.start(CONFIG, victim=VICTIM, writeg=self.WRITE_G)
        attacker = srv.wire("Attacker")
        other = srv.wire("Other")
        self.assertEqual(self.call(attacker, "writeg").get("type"), "result")
        self.assertIntact(srv, other, 10)
        self.assertIntact(srv, attacker, 11)

    def test_collection_methods_cannot_be_replaced(self):
        srv = self.start(CONFIG, victim=VICTIM, evilquery=method("""
local c = get_process_activity(SESSIONS_ONLY).sessions
local fake = function() return { 1, 2, 3 } end
local mt = getmetatable(c)
local r = { mt = type(mt) }
r.index_write = pcall(function() getmetatable(c).__index.query = fake end)
r.rawset_index = pcall(function()
  rawset(getmetatable(c).__index, "query", fake) end)
r.rawset_mt = pcall(function()
  rawset(getmetatable(c), "__index", { query = fake }) end)
r.mt_write = pcall(function() getmetatable(c).__index = { query = fake } end)
local s = get_process_activity(PROCESSES_AND_SESSIONS)
r.other_mt = type(getmetatable(s.processes))
c.query = fake
r.own = #c:query("x")
r.fresh = #get_process_activity(SESSIONS_ONLY).sessions:query(
  "userName = :1", "nobody")
return r"""), query=method("""
return #get_process_activity(SESSIONS_ONLY).sessions:query(
  "userName = :1", "nobody")"""))
        attacker = srv.wire("Attacker")
        other = srv.wire("Other")
        got = self.ok(self.call(attacker, "evilquery"))
        self.assertIn(got["mt"], ("nil", "boolean"), got)
        self.assertIn(got["other_mt"], ("nil", "boolean"), got)
        for key in ("index_write", "rawset_index", "rawset_mt", "mt_write"):
            with self.subTest(attempt=key):
                self.assertIs(got[key], False, got)
        self.assertEqual(got["own"], 3)  # its own object, its own field
        self.assertEqual(got["fresh"], 0)
        out = lua(srv, 'print(#get_process_activity(SESSIONS_ONLY).sessions'
                       ':query("userName = :1", "nobody"))')
        self.assertEqual(out.strip(), "0")
        self.assertEqual(self.ok(self.call(other, "query", call_id=2)), 0)
        self.assertEqual(self.ok(self.call(attacker, "query", call_id=3)), 0)

    def test_run_script_cannot_change_what_others_see(self):
        srv = self.start(CONFIG, victim=VICTIM)
        w = srv.wire("Other")
        r = srv.run_script("""
pcall(function() send_message_to_remote_user = nil end)
pcall(function() string.upper = nil end)
pcall(function() rawset(string, "rep", nil) end)
pcall(function() table.insert = nil end)
pcall(function() math.pi = 3 end)
pcall(function() string.x = 1 end)
print("tried")
""", timeout=10)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        self.assertIntact(srv, w, 1)

    def test_load_with_a_custom_environment(self):
        srv = self.start(CONFIG, victim=VICTIM, loader=method("""
local env = {}
local f, err = load("x = 1 return string, print, getmetatable, rawset, _G",
  "c", "t", env)
if not f then return { error = err } end
local a, b, c, d, e = f()
local r = { type(a), type(b), type(c), type(d), type(e) }
r[6] = env.x
r[7] = type(x)
-- An environment that reads the method's own: still read-only libraries.
local through = setmetatable({}, { __index = _ENV })
local g = load("string.upper = nil", "c", "t", through)
r[8] = (pcall(g))
local h = load("rawset(string, 'upper', nil)", "c", "t", through)
r[9] = (pcall(h))
r[10] = load("return ('abc'):upper()", "c", "t", {})()
return r"""))
        attacker = srv.wire("Attacker")
        other = srv.wire("Other")
        got = self.ok(self.call(attacker, "loader"))
        self.assertEqual(got, ["nil", "nil", "nil", "nil", "nil", 1, "nil",
                               False, False, "ABC"])
        self.assertIntact(srv, other, 2)


class SeparateProcesses(IsolationTest):
    """5. A process cannot reach another's coroutine."""

    def test_saved_coroutine_cannot_touch_another_process(self):
        srv = self.start(CONFIG, keeper=method("""
local mode = ...
if mode == "save" then
  saved = coroutine.running()
  return "saved"
end
local function strings(...)
  local t = { n = select("#", ...) }
  for i = 1, t.n do t[i] = tostring((select(i, ...))) end
  return table.concat(t, " | ", 1, t.n)
end
return {
  status = strings(pcall(coroutine.status, saved)),
  resume = strings(pcall(coroutine.resume, saved, "injected")),
  close = strings(pcall(coroutine.close, saved)),
  again = strings(pcall(coroutine.resume, saved)),
}"""), secret=method('delay_process(2) return "secret"'))
        a = srv.wire("A")
        b = srv.wire("B")
        self.assertEqual(self.ok(self.call(a, "keeper", "save")), "saved")
        launched = self.send_call(b, 1, "secret")
        sid_b = b.welcome["sessionID"]
        wait_until(lambda: processes_of(srv, sid_b) == 1, 1.5,
                   "B's delayed process listed")
        got = self.ok(self.call(a, "keeper", "use", call_id=2))
        self.assertNotIn("secret", json.dumps(got), got)
        frame = self.result(b, 1, timeout=4)
        elapsed = time.monotonic() - launched
        self.assertEqual(self.ok(frame), "secret")
        self.assertGreater(elapsed, 1.9, "B's delay was cut short")
        self.assertLess(elapsed, 2 + 1.0 * SLOW)
        self.assertNotIn("secret", json.dumps(getattr(a, "results", {})))


class NoLockout(IsolationTest):
    """6. Postponed sessions never keep new clients out."""

    def test_postponed_sessions_do_not_lock_out_new_clients(self):
        srv = self.start("max_sessions = 3\nresume_timeout = 60\n"
                         "heartbeat = 30\n")
        gone = []
        for i in range(3):
            w = srv.wire(f"U{i}")
            sid = w.welcome["sessionID"]
            gone.append(sid)
            w.close()
            srv.wait_log(rf"session {sid} \(U{i}\) postponed")
        mark = len(srv.log.lines)
        fourth = srv.wire()
        welcome = fourth.hello("Fourth")
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        fourth.welcome = welcome
        srv.log.wait(rf"{gone[0]}.*postponed|postponed.*{gone[0]}",
                     timeout=3, start=mark)
        out = lua(srv, "\n".join(f'print(session_info("{sid}") ~= nil)'
                                 for sid in gone))
        self.assertEqual(out.split(), ["false", "true", "true"])
        # Two more newcomers take the places of the two other postponed
        # sessions; with three live sessions, the next one is busy.
        live = [fourth]
        for name in ("Fifth", "Sixth"):
            w = srv.wire()
            welcome = w.hello(name)
            self.assertEqual(welcome.get("type"), "welcome", welcome)
            w.welcome = welcome
            live.append(w)
        w = srv.wire()
        frame = w.hello("Seventh")
        self.assertEqual((frame.get("type"), frame.get("code")),
                         ("error", "busy"), frame)
        self.assertTrue(w.closed(3))
        for w in live:
            self.assertPrompt(w, "a live session at the limit")


class Configuration(IsolationTest):
    """The new keys: out-of-range values stop herald serve at start."""

    def serve(self, config):
        d = tempfile.mkdtemp(prefix="herald-isolation-conf-")
        self.addCleanup(shutil.rmtree, d, ignore_errors=True)
        path = os.path.join(d, "herald.conf.lua")
        with open(path, "w") as f:
            f.write(config)
        proc = subprocess.Popen(
            [HERALD, "serve", "--listen", "127.0.0.1:0", "--admin-socket",
             os.path.join(d, "admin.sock"), "--no-console", "--config",
             path], cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=5 * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail(f"herald serve started with {config!r}")
        return proc.returncode, out + err

    def test_out_of_range_isolation_keys_stop_the_server(self):
        for key, value in (("max_blocking", "-1"), ("max_blocking", "0"),
                           ("max_blocking", '"fast"'),
                           ("session_memory_limit", "-1"),
                           ("session_memory_limit", '"lots"'),
                           ("max_calls_per_session", "0"),
                           ("max_calls_per_session", "-3")):
            with self.subTest(key=key, value=value):
                status, out = self.serve(f"{key} = {value}\n")
                self.assertEqual(status, 2, out)
                self.assertIn(key, out)

    def test_isolation_keys_in_range_are_accepted(self):
        srv = self.start(f"max_blocking = 0.2\nsession_memory_limit = "
                         f"4 * {MIB}\nmax_calls_per_session = 1\n", ok=OK)
        w = srv.wire("Caller")
        self.assertEqual(self.ok(self.call(w, "ok")), "fine")
