"""Sessions as Lua sees them (get_process_activity, session_info,
process_info, query) and as a remote user lives them (messages, acks,
drop, bye, postponement, slow consumers, heartbeats, shutdown)."""
import datetime
import os
import re
import shutil
import signal
import tempfile
import time

from harness import HeraldTest, SCRIPTS, message_status, send, sync

# Prints the objects of a list as "key<TAB>type<TAB>value" lines, nested
# tables as dotted keys, each object ended by "--". No JSON involved.
DUMP = r'''
local function dump(t, prefix)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = t[k]
    if type(v) == "table" then
      dump(v, prefix .. k .. ".")
    else
      print(prefix .. k .. "\t" .. type(v) .. "\t" .. tostring(v))
    end
  end
end
function dump_all(list)
  for _, t in ipairs(list) do dump(t, ""); print("--") end
end
function dump_one(t)
  if t == nil then print("nil") else dump(t, ""); print("--") end
end
'''

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def parse_records(text):
    """The objects printed by dump_all / dump_one, as dicts."""
    records, current = [], {}
    for line in text.splitlines():
        if line == "--":
            records.append(current)
            current = {}
            continue
        if line == "nil":
            records.append(None)
            continue
        key, kind, value = line.split("\t", 2)
        if kind == "number":
            value = int(value) if re.fullmatch(r"-?\d+", value) \
                else float(value)
        elif kind == "boolean":
            value = value == "true"
        current[key] = value
    return records


def records(srv, lua_expr):
    """The list lua_expr (a collection or array) evaluated in a script."""
    return parse_records(srv.lua(DUMP + f"dump_all({lua_expr})"))


def record(srv, lua_expr):
    """The one object lua_expr evaluates to, or None for nil."""
    out = parse_records(srv.lua(DUMP + f"dump_one({lua_expr})"))
    return out[0]


def parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ") \
        .replace(tzinfo=datetime.timezone.utc)


def sessions(srv):
    return records(srv, "get_process_activity(SESSIONS_ONLY).sessions")


def next_is_pong(test, w):
    """Asserts that nothing but the pong to a new ping comes on w: no
    message, no error frame was waiting before it."""
    w.send({"type": "ping"})
    test.assertEqual(w.recv(timeout=3), {"type": "pong"})


class Snapshot(HeraldTest):
    def test_session_object_fields(self):
        srv = self.server()
        before = datetime.datetime.now(datetime.timezone.utc)
        w = srv.wire("Vanessa", machineName="vanessa-laptop",
                     systemUserName="vanessa", hostType="mac")
        [s] = sessions(srv)
        self.assertEqual(s["type"], "remote")
        self.assertEqual(s["userName"], "Vanessa")
        self.assertEqual(s["machineName"], "vanessa-laptop")
        self.assertEqual(s["systemUserName"], "vanessa")
        self.assertEqual(s["IPAddress"], "127.0.0.1")
        self.assertEqual(s["hostType"], "mac")
        self.assertEqual(s["state"], "active")
        self.assertEqual(s["ID"], w.welcome["sessionID"])
        self.assertRegex(s["persistentID"], r"^[0-9A-F]{32}$")
        self.assertRegex(s["creationDateTime"], ISO_MS)
        created = parse_iso(s["creationDateTime"])
        after = datetime.datetime.now(datetime.timezone.utc)
        slack = datetime.timedelta(seconds=2)
        self.assertGreaterEqual(created, before - slack)
        self.assertLessEqual(created, after + slack)
        # Every value of 4D's fields is a string, as 4D's; herald's own
        # are the groups (an array) and whether the user logged in.
        out = srv.lua("for k, v in pairs(get_process_activity(SESSIONS_ONLY)"
                      ".sessions[1]) do print(k, type(v)) end")
        kinds = dict(line.split("\t") for line in out.splitlines())
        self.assertEqual(kinds.pop("groups"), "table")
        self.assertEqual(kinds.pop("authenticated"), "boolean")
        self.assertEqual(len(kinds), 10)
        self.assertEqual(set(kinds.values()), {"string"})

    def test_option_constants(self):
        srv = self.server()
        out = srv.lua("print(PROCESSES_AND_SESSIONS, PROCESSES_ONLY, "
                      "SESSIONS_ONLY)")
        self.assertEqual(out.split(), ["0", "1", "2"])

    def test_options_leave_the_other_key_out(self):
        srv = self.server()
        srv.wire("A")
        srv.wire("B")
        out = srv.lua("""
local function keys(t) return tostring(t.sessions ~= nil) .. " " ..
  tostring(t.processes ~= nil) end
print(keys(get_process_activity()))
print(keys(get_process_activity(PROCESSES_AND_SESSIONS)))
print(keys(get_process_activity(PROCESSES_ONLY)))
print(keys(get_process_activity(SESSIONS_ONLY)))
print(#get_process_activity().sessions,
      get_process_activity(SESSIONS_ONLY).sessions:length())
""").splitlines()
        self.assertEqual(out, ["true true", "true true", "false true",
                               "true false", "2\t2"])

    def test_bad_option_raises(self):
        srv = self.server()
        r = srv.run_script("get_process_activity(7)")
        self.assertEqual(r.returncode, 1)
        self.assertIn("SESSIONS_ONLY", r.stderr)

    def test_running_script_is_a_process_of_type_3(self):
        srv = self.server()
        procs = records(srv, "get_process_activity(PROCESSES_ONLY).processes")
        mine = [p for p in procs if p["type"] == 3]
        self.assertEqual(len(mine), 1, procs)
        p = mine[0]
        self.assertRegex(p["name"], r"^script\d+\.lua$")
        self.assertIsInstance(p["number"], int)
        self.assertEqual(p["ID"], p["number"])
        self.assertEqual(p["state"], 0)
        self.assertEqual(p["sessionID"], "")
        self.assertIs(p["visible"], True)
        self.assertIs(p["preemptive"], False)
        self.assertRegex(p["creationDateTime"], ISO_MS)
        self.assertNotIn("session.ID", p)  # a server process: no session

    def test_process_info(self):
        srv = self.server()
        out = srv.lua(DUMP + """
for _, p in ipairs(get_process_activity(PROCESSES_ONLY).processes) do
  if p.type == 3 then dump_one(process_info(p.number)) end
end
dump_one(process_info(999999))
""")
        info, missing = parse_records(out)
        self.assertEqual(info["type"], 3)
        self.assertRegex(info["name"], r"^script\d+\.lua$")
        self.assertEqual(info["state"], 0)
        self.assertIsNone(missing)

    def test_session_info(self):
        srv = self.server()
        w = srv.wire("Marc", machineName="marc-pc", systemUserName="marc",
                     hostType="windows")
        sid = w.welcome["sessionID"]
        s = record(srv, f'session_info("{sid}")')
        self.assertEqual((s["ID"], s["userName"], s["machineName"],
                          s["systemUserName"], s["hostType"], s["state"]),
                         (sid, "Marc", "marc-pc", "marc", "windows",
                          "active"))
        self.assertEqual(s, sessions(srv)[0])
        self.assertIsNone(record(srv, 'session_info("' + "0" * 32 + '")'))
        self.assertIsNone(record(srv, 'session_info("nonsense")'))


class ProcessesOfASession(HeraldTest):
    """get_process_activity(id): that session and its processes only."""

    def setUp(self):
        scripts = tempfile.mkdtemp(prefix="herald-scripts-")
        self.addCleanup(shutil.rmtree, scripts, True)
        shutil.copytree(os.path.join(SCRIPTS, "methods"),
                        os.path.join(scripts, "methods"))
        with open(os.path.join(scripts, "methods", "slow.lua"), "w") as f:
            f.write("return function(s) delay_process(s) return 'done' "
                    "end\n")
        self.srv = self.server(scripts=scripts)

    def test_one_session_and_its_processes(self):
        srv = self.srv
        a, b = srv.wire("A"), srv.wire("B")
        sa, sb = a.welcome["sessionID"], b.welcome["sessionID"]
        a.send({"type": "call", "id": 1, "method": "slow", "args": [0.6]})
        b.send({"type": "call", "id": 1, "method": "slow", "args": [0.6]})
        sync(a)
        sync(b)
        out = srv.lua(DUMP + f"""
local pa = get_process_activity("{sa}")
dump_all(pa.sessions)
print("==")
dump_all(pa.processes)
print("==")
print(get_process_activity("{sa}", SESSIONS_ONLY).processes == nil,
      get_process_activity("{sa}", PROCESSES_ONLY).sessions == nil)
print(get_process_activity("{"F" * 32}"), get_process_activity("x"))
""")
        sess_text, proc_text, tail = out.split("==\n")
        [s] = parse_records(sess_text)
        self.assertEqual((s["ID"], s["userName"]), (sa, "A"))
        [p] = parse_records(proc_text)
        self.assertEqual(p["type"], 1)  # a method called by a client
        self.assertEqual(p["sessionID"], sa)
        self.assertEqual(p["state"], 1)  # delayed
        self.assertEqual(p["session.ID"], sa)
        self.assertEqual(p["session.userName"], "A")
        self.assertEqual(tail.split(), ["true", "true", "nil", "nil"])
        # The whole snapshot has both method processes and the script.
        types = sorted(p["type"] for p in records(
            srv, "get_process_activity(PROCESSES_ONLY).processes"))
        self.assertEqual(types, [1, 1, 3])
        for w in (a, b):
            result = w.recv_type("result", timeout=3)
            self.assertEqual((result["ok"], result["value"]), (True, "done"))
        self.assertNotEqual(sa, sb)


class Query(HeraldTest):
    def setUp(self):
        self.srv = self.server()
        for user, system in (("Vanessa", "Vanessa"), ("Vanna", "vanna"),
                             ("Marc", "marc")):
            self.srv.wire(user, systemUserName=system)

    def names(self, query, *args):
        quoted = "".join(f', "{a}"' for a in args)
        out = self.srv.lua(
            "local r = get_process_activity(SESSIONS_ONLY).sessions:query("
            f'"{query}"{quoted})\n'
            "local n = {} for _, s in ipairs(r) do n[#n + 1] = s.userName "
            'end table.sort(n) print(table.concat(n, ","))')
        return out.strip()

    def test_placeholder(self):
        self.assertEqual(self.names("systemUserName = :1", "Vanessa"),
                         "Vanessa")

    def test_equality_is_case_insensitive(self):
        self.assertEqual(self.names("systemUserName = :1", "VANNA"), "Vanna")

    def test_wildcard(self):
        self.assertEqual(self.names("userName = :1", "Van@"), "Vanessa,Vanna")
        self.assertEqual(self.names("userName = 'Van@'"), "Vanessa,Vanna")

    def test_and_or(self):
        self.assertEqual(self.names("userName = :1 and systemUserName = :2",
                                    "Van@", "vanna"), "Vanna")
        self.assertEqual(self.names("userName = :1 or userName = :2",
                                    "Marc", "Vanna"), "Marc,Vanna")
        self.assertEqual(self.names("userName = :1 & systemUserName = :2",
                                    "Van@", "marc"), "")

    def test_sessions_found_by_query_can_be_messaged(self):
        # 4D's example: a greeting for Vanessa only.
        out = self.srv.lua("""
local n = 0
for _, s in ipairs(get_process_activity(SESSIONS_ONLY).sessions:query(
    "systemUserName = :1", "Vanessa")) do
  n = n + send_message_to_remote_user("Hello Vanessa", s.ID)
end
print(n)""")
        self.assertEqual(out.strip(), "1")


class Messages(HeraldTest):
    def test_send_to_all_one_and_unknown(self):
        srv = self.server()
        a, b = srv.wire("A"), srv.wire("B")
        count, id1 = send(srv, "to everyone")
        self.assertEqual(count, 2)
        for w in (a, b):
            frame = w.recv_type("message")
            self.assertEqual((frame["id"], frame["text"]),
                             (id1, "to everyone"))
            self.assertRegex(frame["sentAt"], ISO_MS)
            self.assertLess(abs((parse_iso(frame["sentAt"]) -
                                 datetime.datetime.now(
                                     datetime.timezone.utc)).total_seconds()),
                            5)
        count, id2 = send(srv, "to A", a.welcome["sessionID"])
        self.assertEqual(count, 1)
        self.assertGreater(id2, id1)
        self.assertEqual(a.recv_type("message")["text"], "to A")
        count, id3 = send(srv, "to nobody", "0" * 32)
        self.assertEqual(count, 0)
        self.assertGreater(id3, id2)
        count, id4 = send(srv, "to nobody", "not an id")
        self.assertEqual(count, 0)
        self.assertGreater(id4, id3)
        # B got only the broadcast: next on its line is our pong.
        next_is_pong(self, b)

    def test_one_send_to_many_uses_one_id(self):
        srv = self.server()
        ws = [srv.wire(f"U{i}") for i in range(3)]
        count, msg_id = send(srv, "shared")
        self.assertEqual(count, 3)
        self.assertEqual({w.recv_type("message")["id"] for w in ws}, {msg_id})

    def test_message_must_be_a_string(self):
        srv = self.server()
        for value in ("{}", "nil", "true"):
            with self.subTest(value=value):
                r = srv.run_script(f"send_message_to_remote_user({value})")
                self.assertEqual(r.returncode, 1)
                self.assertIn("string expected", r.stderr)

    def test_message_must_be_a_string_not_a_number(self):
        # API.md: "raises an error for a message that is not a string".
        srv = self.server()
        w = srv.wire("A")
        r = srv.run_script("send_message_to_remote_user(12)")
        self.assertEqual(r.returncode, 1,
                         "a number was accepted as a message: " + r.stdout)
        self.assertIn("string", r.stderr)
        next_is_pong(self, w)

    def test_max_message(self):
        srv = self.server(config="max_message = 10\n")
        w = srv.wire("A")
        r = srv.run_script('send_message_to_remote_user("12345678901")')
        self.assertEqual(r.returncode, 1)
        self.assertIn("max_message", r.stderr)
        self.assertEqual(send(srv, "1234567890")[0], 1)
        self.assertEqual(w.recv_type("message")["text"], "1234567890")

    def test_message_status_before_and_after_ack(self):
        srv = self.server()
        a = srv.wire("A")
        sid = a.welcome["sessionID"]
        count, msg_id = send(srv, "please ack", sid)
        self.assertEqual(count, 1)
        frame = a.recv_type("message")
        self.assertEqual(message_status(srv, msg_id),
                         {"queued": 1, "delivered": 1, "acknowledged": 0,
                          "pending": [sid]})
        a.send({"type": "ack", "id": frame["id"]})
        sync(a)
        self.assertEqual(message_status(srv, msg_id),
                         {"queued": 1, "delivered": 1, "acknowledged": 1,
                          "pending": []})
        # A second ack of the same message counts once.
        a.send({"type": "ack", "id": frame["id"]})
        sync(a)
        self.assertEqual(message_status(srv, msg_id)["acknowledged"], 1)
        self.assertIsNone(message_status(srv, 424242))

    def test_message_status_of_a_postponed_session(self):
        srv = self.server()
        b = srv.wire("B")
        sid = b.welcome["sessionID"]
        b.close()
        srv.wait_log(r"\(B\) postponed")
        count, msg_id = send(srv, "kept for later", sid)
        self.assertEqual(count, 1)
        self.assertEqual(message_status(srv, msg_id),
                         {"queued": 1, "delivered": 0, "acknowledged": 0,
                          "pending": [sid]})

    def test_message_ids_increase(self):
        srv = self.server()
        ids = [send(srv, f"m{i}")[1] for i in range(4)]
        self.assertEqual(ids, sorted(set(ids)))

    def test_ack_of_unknown_or_foreign_ids_is_ignored(self):
        srv = self.server()
        a, b = srv.wire("A"), srv.wire("B")
        _, for_b = send(srv, "for B", b.welcome["sessionID"])
        b.recv_type("message")
        for bogus in (for_b, 999999, -1, 0):
            a.send({"type": "ack", "id": bogus})
        # Still open, still answering, and no error frame came.
        next_is_pong(self, a)
        self.assertEqual(message_status(srv, for_b),
                         {"queued": 1, "delivered": 1, "acknowledged": 0,
                          "pending": [b.welcome["sessionID"]]})
        self.assertEqual(send(srv, "A is fine", a.welcome["sessionID"])[0], 1)
        self.assertEqual(a.recv_type("message")["text"], "A is fine")


class EndOfSessions(HeraldTest):
    def test_drop_remote_user(self):
        srv = self.server()
        a, b = srv.wire("A"), srv.wire("B")
        sid = a.welcome["sessionID"]
        out = srv.lua(f'print(drop_remote_user("{sid}"))')
        self.assertEqual(out.strip(), "true")
        frame = a.recv(timeout=3)
        self.assertEqual(frame["type"], "drop")
        self.assertIsInstance(frame["reason"], str)
        self.assertTrue(frame["reason"])
        self.assertTrue(a.closed(3))
        srv.wait_log(rf"session {sid} \(A\) dropped")
        srv.wait_log(rf"session {sid} \(A\) closed")
        self.assertEqual([s["userName"] for s in sessions(srv)], ["B"])
        out = srv.lua(f'print(drop_remote_user("{sid}"), '
                      f'drop_remote_user("{"0" * 32}"), '
                      'drop_remote_user("x"))')
        self.assertEqual(out.split(), ["false", "false", "false"])
        next_is_pong(self, b)  # the other session got nothing

    def test_bye_ends_the_session_at_once(self):
        srv = self.server()
        a, b = srv.wire("A"), srv.wire("B")
        a.send({"type": "bye"})
        srv.wait_log(r"\(A\) logged out")
        # The client has not closed its side yet: the session is gone all
        # the same, not postponed.
        self.assertEqual([s["userName"] for s in sessions(srv)], ["B"])
        self.assertTrue(a.closed(3))
        self.assertEqual([s["userName"] for s in sessions(srv)], ["B"])
        self.assertNotRegex(srv.log.text(), r"\(A\) postponed")

    def test_close_without_bye_is_postponed(self):
        srv = self.server()
        a = srv.wire("A")
        a.close()
        srv.wait_log(r"\(A\): connection lost")
        srv.wait_log(r"\(A\) postponed")
        [s] = sessions(srv)
        self.assertEqual((s["userName"], s["state"]), ("A", "postponed"))

    def test_slow_consumer_is_dropped(self):
        srv = self.server(config="max_pending = 3\n")
        lazy, other = srv.wire("Lazy"), srv.wire("Other")
        sid = lazy.welcome["sessionID"]
        for i in range(3):
            self.assertEqual(send(srv, f"m{i}", sid)[0], 1)
        self.assertEqual(sessions(srv)[0]["state"], "active")
        send(srv, "one too many", sid)
        got = [lazy.recv(timeout=3) for _ in range(4)]
        self.assertEqual([f["type"] for f in got],
                         ["message", "message", "message", "drop"])
        self.assertEqual(got[3]["reason"], "slow consumer")
        self.assertTrue(lazy.closed(3))
        srv.wait_log(rf"session {sid} \(Lazy\) dropped: slow consumer")
        self.assertEqual([s["userName"] for s in sessions(srv)], ["Other"])
        self.assertEqual(send(srv, "hi", other.welcome["sessionID"])[0], 1)

    def test_acks_keep_a_session_under_max_pending(self):
        srv = self.server(config="max_pending = 3\n")
        w = srv.wire("Diligent")
        sid = w.welcome["sessionID"]
        for i in range(8):
            self.assertEqual(send(srv, f"m{i}", sid)[0], 1)
            frame = w.recv_type("message")
            w.send({"type": "ack", "id": frame["id"]})
            sync(w)
        self.assertEqual(sessions(srv)[0]["userName"], "Diligent")


class Heartbeat(HeraldTest):
    def test_silent_client_gets_ping(self):
        srv = self.server(config="heartbeat = 0.3\n")
        w = srv.wire("Quiet")
        started = time.monotonic()
        self.assertEqual(w.recv(timeout=2), {"type": "ping"})
        self.assertGreater(time.monotonic() - started, 0.2)

    def test_client_answering_pings_stays(self):
        srv = self.server(config="heartbeat = 0.3\n")
        w = srv.wire("Alive")
        pings = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            try:
                frame = w.recv(timeout=deadline - time.monotonic())
            except OSError:
                break  # the socket timeout: the time is up
            self.assertIsNotNone(frame, "closed although it answered pings")
            if frame["type"] == "ping":
                pings += 1
                w.send({"type": "pong"})
        self.assertGreaterEqual(pings, 2)
        self.assertEqual(sessions(srv)[0]["state"], "active")
        self.assertNotRegex(srv.log.text(), "connection lost")

    def test_client_never_answering_is_lost(self):
        srv = self.server(config="heartbeat = 0.3\n")
        w = srv.wire("Mute")
        started = time.monotonic()
        srv.wait_log(r"\(Mute\).*connection lost", timeout=3)
        elapsed = time.monotonic() - started
        self.assertGreater(elapsed, 0.7)
        self.assertLess(elapsed, 1.6)
        self.assertTrue(w.closed(2))
        srv.wait_log(r"\(Mute\) postponed")
        self.assertEqual(sessions(srv)[0]["state"], "postponed")


class Shutdown(HeraldTest):
    def test_sigterm_drops_everyone_and_exits_0(self):
        # Without a state database, a stop ends every session.
        srv = self.server(config="state = false\n")
        ws = [srv.wire(u) for u in ("A", "B", "C")]
        self.assertTrue(os.path.exists(srv.socket))
        srv.proc.send_signal(signal.SIGTERM)
        for w in ws:
            frame = w.recv(timeout=5)
            self.assertEqual(frame, {"type": "drop",
                                     "reason": "server shutting down"})
            self.assertTrue(w.closed(5))
        self.assertEqual(srv.proc.wait(timeout=5), 0)
        self.assertFalse(os.path.exists(srv.socket),
                         "admin socket left behind")
        self.assertEqual(srv.stop(), 0)
