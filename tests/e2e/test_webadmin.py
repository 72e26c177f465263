"""The administrators' channel (GET /admin/ws) end to end, spoken raw with
wsraw: the login and each of its refusals (unavailable, unauthorized after
the delay, forbidden and audited, login_required, bad_json, timeout, busy
past 8 administrators, broken login fields); that it is not a session; the
pushed `sessions`, `processes` and `status` frames (the first full list,
then what changed: new, lost, ended sessions, pending messages, running
methods, rejection) and their pace; every request op (query, send, drop,
reject, schedule, run_job, messages, audit), audited as admin:<userName>;
the request's id carried back; at most 4 requests at once; and hostile
requests (wrong types, huge frames, binary frames, an administrator who
leaves mid-request), each with a bystander that must go on unharmed.

Users come from one users file made with the real `herald user add`
(setUpModule); jobs and a slow method from a scripts folder of this
module's own."""
import json
import os
import shutil
import tempfile
import time

import wsraw
from harness import SLOW, HeraldTest, add_user

ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
HEX32 = r"^[0-9A-F]{32}$"

# name: (password, groups). Only alice and carol are administrators: eve's
# groups all look like "admin" without being it.
USERS = {
    "alice": ("alice-pw", ["admin"]),
    "carol": ("carol-pw", ["admin", "ops"]),
    "bob": ("bob-pw", []),
    "eve": ("eve-pw", ["admins", "administrator", "Admin", "admin-ro"]),
    "nina": ("123456", ["admin"]),
}
ROW_FIELDS = ["ID", "userName", "machineName", "systemUserName",
              "IPAddress", "hostType", "creationDateTime", "state"]

# A request whose query compiles a 250-pattern IN list 250 times: a few
# tenths of a second of Lua, and a frame of a few KiB (each of them keeps
# a request of the administrator running well after the next arrives).
HEAVY_QUERY = "userName IN :1 or " * 249 + "userName IN :1"
HEAVY_PARAMS = [[f"nobody{i}@" for i in range(250)]]

MODULE = {}


def setUpModule():
    d = tempfile.mkdtemp(prefix="herald-webadmin-")
    MODULE["dir"] = d
    users = os.path.join(d, "herald.users")
    for name, (password, groups) in USERS.items():
        add_user(users, name, password, *groups)
    MODULE["users"] = users
    scripts = os.path.join(d, "scripts")
    os.makedirs(os.path.join(scripts, "methods"))
    os.makedirs(os.path.join(scripts, "maintenance"))
    with open(os.path.join(scripts, "methods", "slow.lua"), "w") as f:
        # slow(n): n rounds of 10 ms of work and 40 ms of delay_process.
        f.write("return function(n)\n"
                "  for i = 1, n do\n"
                "    local t = os.clock()\n"
                "    while os.clock() - t < 0.01 do end\n"
                "    delay_process(0.04)\n"
                "  end\n"
                "  return 'slept'\n"
                "end\n")
    with open(os.path.join(scripts, "maintenance", "report.lua"), "w") as f:
        f.write('print("report job ran")\n')
    MODULE["scripts"] = scripts


def tearDownModule():
    shutil.rmtree(MODULE.get("dir", ""), ignore_errors=True)


def as_list(value):
    """A JSON array that may come as {} when empty (protocol.md), or be
    left out (None)."""
    if value is None or value == {}:
        return []
    assert isinstance(value, list), value
    return value


class Admin:
    """A logged-in administrator on /admin/ws. request() sends a request
    and returns its reply; the pushes that come on the way are kept in
    pushes (with their arrival times) and folded into rows (the session
    list as the pushes built it), status and processes."""

    def __init__(self, test, srv, user="alice", password=None):
        self.ws = wsraw.connect(srv.http_port, path="/admin/ws")
        test.addCleanup(self.ws.close)
        self.ws.send_json({"type": "login", "userName": user,
                           "password": password if password is not None
                           else USERS[user][0]})
        self.ready = self.ws.recv_json(timeout=10)
        assert self.ready.get("type") == "ready", self.ready
        self.pushes = []   # (arrival time, frame)
        self.replies = {}  # json of the id: frame
        self.rows = {}
        self.status = None
        self.processes = None
        self.seq = 0

    def read(self, timeout=5):
        """The next frame, recorded."""
        frame = self.ws.recv_json(timeout)
        assert isinstance(frame, dict), frame
        if frame.get("type") == "reply":
            self.replies[json.dumps(frame.get("id"), sort_keys=True)] = frame
        else:
            self.pushes.append((time.monotonic(), frame))
            self.apply(frame)
        return frame

    def apply(self, frame):
        kind = frame.get("type")
        if kind == "sessions":
            if frame.get("reset"):
                self.rows.clear()
            for row in as_list(frame.get("rows")):
                self.rows[row["ID"]] = row
            for sid in as_list(frame.get("removed")):
                self.rows.pop(sid, None)
        elif kind == "status":
            self.status = frame
        elif kind == "processes":
            self.processes = as_list(frame.get("rows"))

    def mark(self):
        """Where the next push will be in pushes (for wait_push)."""
        return len(self.pushes)

    def send(self, op, rid=None, **fields):
        """Sends a request without waiting: its id."""
        if rid is None:
            self.seq += 1
            rid = self.seq
        frame = {"type": "request", "id": rid}
        if op is not None:
            frame["op"] = op
        frame.update(fields)
        self.ws.send_json(frame)
        return rid

    def reply(self, rid, timeout=10):
        key = json.dumps(rid, sort_keys=True)
        deadline = time.monotonic() + timeout * SLOW
        while key not in self.replies:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply to request {rid!r} within "
                                     f"{timeout} s")
            self.read(left / SLOW)
        return self.replies.pop(key)

    def request(self, op, timeout=10, **fields):
        return self.reply(self.send(op, **fields), timeout)

    def ok(self, op, **fields):
        """The result of a request that must succeed."""
        r = self.request(op, **fields)
        assert r.get("ok") is True, r
        return r.get("result")

    def wait_push(self, type_, predicate=lambda f: True, since=None,
                  timeout=2.5, what=None):
        """The first push of type_ from index since (default: from now on)
        that satisfies predicate; fails after timeout (times SLOW)."""
        i = len(self.pushes) if since is None else since
        deadline = time.monotonic() + timeout * SLOW
        while True:
            while i < len(self.pushes):
                frame = self.pushes[i][1]
                i += 1
                if frame.get("type") == type_ and predicate(frame):
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {what or type_} push within {timeout} s; got "
                    f"{[f for _, f in self.pushes[-10:]]}")
            try:
                self.read(left / SLOW)
            except TimeoutError:
                pass

    def wait_row(self, sid, predicate=lambda r: True, since=None,
                 timeout=2.5, what="row"):
        """The first later (reset false) sessions push whose row for sid
        satisfies predicate: that row."""
        def has(frame):
            if frame.get("reset"):
                return False
            for row in as_list(frame.get("rows")):
                if row["ID"] == sid and predicate(row):
                    return True
            return False
        self.wait_push("sessions", has, since, timeout, what)
        return self.rows[sid]

    def wait_removed(self, sid, since=None, timeout=2.5):
        self.wait_push("sessions",
                       lambda f: sid in as_list(f.get("removed")), since,
                       timeout, f"removal of {sid}")
        assert sid not in self.rows, self.rows

    def drain(self, seconds):
        """Reads whatever comes for seconds."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self.read(left / SLOW)
            except TimeoutError:
                return

    def messages_seen(self):
        return [f for _, f in self.pushes if f.get("type") == "message"]


def attempt(srv, first, timeout=5):
    """Opens /admin/ws and sends first (a dict as JSON, a str or bytes as
    a text frame as it is, None: nothing): (the frames the server sent,
    the close code, seconds until the close). Fails when the server does
    not close within timeout; returns at once, with code None, when it
    lets the login in (`ready`)."""
    ws = wsraw.connect(srv.http_port, path="/admin/ws")
    t0 = time.monotonic()
    frames = []
    try:
        if isinstance(first, dict):
            ws.send_json(first)
        elif first is not None:
            ws.send_text(first)
        deadline = t0 + timeout * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"not closed within {timeout} s after "
                                     f"{first!r:.200}; got {frames}")
            try:
                frames.append(ws.recv_json(left / SLOW))
                if frames[-1].get("type") == "ready":
                    return frames, None, time.monotonic() - t0  # let in
            except wsraw.WsClosed as e:
                return frames, e.code, time.monotonic() - t0
            except TimeoutError:
                continue
    finally:
        ws.close()


def login(user, password=None):
    return {"type": "login", "userName": user,
            "password": USERS[user][0] if password is None else password}


class WebAdminTest(HeraldTest):
    def srv(self, config="", users=True, **kw):
        """A server with the browser side; with users (the module's users
        file) and auth_delay 0.05 unless told otherwise."""
        text = ""
        if users:
            text += f'users_file = "{MODULE["users"]}"\nauth_delay = 0.05\n'
        kw.setdefault("scripts", MODULE["scripts"])
        return self.server(config=text + config, http=True, **kw)

    def session(self, srv, user="bob", **fields):
        """A TCP session of user, logged in."""
        fields.setdefault("password", USERS[user][0])
        return srv.wire(user, **fields)

    def ws_session(self, srv, user="bob", **fields):
        """A WebSocket session (/ws) of user, logged in: (conn, welcome)."""
        ws = wsraw.connect(srv.http_port, path="/ws")
        self.addCleanup(ws.close)
        hello = {"type": "hello", "userName": user, "protocol": 1,
                 "hostType": "browser", "password": USERS[user][0]}
        hello.update(fields)
        ws.send_json(hello)
        welcome = ws.recv_json(timeout=10)
        self.assertEqual(welcome.get("type"), "welcome", welcome)
        return ws, welcome

    def admin(self, srv, user="alice", password=None):
        return Admin(self, srv, user, password)

    def audit(self, srv, query=None, *params):
        """audit_log()'s rows through `herald run`, newest first."""
        args = ""
        if query is not None:
            args = ", ".join(json.dumps(x) for x in (query, *params))
        out = srv.lua(f"for _, e in ipairs(audit_log({args})) do "
                      "print(cjson.encode(e)) end")
        return [json.loads(line) for line in out.splitlines() if line]

    def assertStillServes(self, srv, wire):
        """wire's session still answers ping, and a new hello is
        welcome."""
        wire.send({"type": "ping"})
        self.assertEqual(wire.recv_type("pong")["type"], "pong")
        fresh = self.session(srv, "bob")
        fresh.send({"type": "bye"})
        self.assertIsNone(srv.proc.poll(), "the server died")

    def first_message(self, wire, timeout=5):
        """The text of the next message wire receives (acknowledged)."""
        frame = wire.recv_type("message", timeout)
        wire.send({"type": "ack", "id": frame["id"]})
        return frame["text"]

    def nothing_was_done(self, srv, bystander):
        """Nothing a refused administrator asked for was done: bystander
        (a session older than the attempts) gets as its first message a
        marker sent now, a new hello is welcome (not rejected), and the
        audit log has no action by an administrator."""
        srv.lua('send_message_to_remote_user("marker")')
        self.assertEqual(self.first_message(bystander), "marker")
        self.session(srv, "carol").send({"type": "bye"})
        acts = [e for e in self.audit(srv) if e["actor"].startswith("admin:")
                and e["action"] != "admin_login"]
        self.assertEqual(acts, [])


class Login(WebAdminTest):
    def test_a_server_without_users_is_unavailable(self):
        srv = self.srv(users=False)
        frames, code, _ = attempt(srv, login("alice"))
        self.assertEqual(len(frames), 1, frames)
        self.assertEqual(frames[0]["type"], "error")
        self.assertEqual(frames[0]["code"], "unavailable")
        self.assertIsInstance(frames[0]["message"], str)
        self.assertEqual(code, 1000)
        # With no user at all, no name and no password can get in.
        for frame in ({"type": "login", "userName": "x", "password": ""},
                      {"type": "login", "userName": "alice"}):
            frames, code, _ = attempt(srv, frame)
            self.assertNotIn("ready", [f.get("type") for f in frames])
            self.assertEqual(frames[0]["type"], "error", frames)

    def test_a_wrong_password_is_unauthorized_after_the_delay(self):
        srv = self.srv(users=False, config=f'users_file = '
                       f'"{MODULE["users"]}"\nauth_delay = 0.2\n')
        want = {"type": "error", "code": "unauthorized",
                "message": "wrong user name or password"}
        frames, code, took = attempt(srv, login("alice", "not-it"))
        self.assertEqual(frames, [want])
        self.assertEqual(code, 1000)
        self.assertGreaterEqual(took, 0.2 * 0.95)
        # An unknown name and a name in the wrong case answer the same
        # (the delay doubles with each failure from this address).
        for name, delay in (("mallory", 0.4), ("Alice", 0.8)):
            frames, code, took = attempt(srv, login("alice") | {
                "userName": name}, timeout=10)
            self.assertEqual(frames, [want], name)
            self.assertGreaterEqual(took, delay * 0.95)
        failed = [e for e in self.audit(srv)
                  if e["action"] == "login_failed"]
        self.assertIn("alice", [e["target"] for e in failed])
        self.assertIn("mallory", [e["target"] for e in failed])
        for e in failed:
            self.assertEqual(e["actor"], "remote:127.0.0.1")
            self.assertNotEqual(e["outcome"], "ok")
        # The right password still gets in.
        a = self.admin(srv)
        self.assertEqual(a.ready["userName"], "alice")

    def test_a_user_outside_group_admin_is_forbidden_and_audited(self):
        srv = self.srv()
        for name in ("bob", "eve"):
            frames, code, _ = attempt(srv, login(name))
            self.assertEqual(len(frames), 1, frames)
            self.assertEqual(frames[0]["type"], "error")
            self.assertEqual(frames[0]["code"], "forbidden", frames)
            self.assertEqual(code, 1000)
        rows = self.audit(srv)
        for name in ("bob", "eve"):
            refused = [e for e in rows if e["target"] == name]
            self.assertEqual(len(refused), 1, rows)
            self.assertEqual(refused[0]["action"], "login_failed")
            self.assertEqual(refused[0]["actor"], "remote:127.0.0.1")
            self.assertNotEqual(refused[0]["outcome"], "ok")
        self.assertEqual([e for e in rows if e["action"] == "admin_login"],
                         [])
        # An administrator's login is audited as admin_login.
        self.admin(srv, "carol")
        rows = self.audit(srv, "action = 'admin_login'")
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0]["actor"], "admin:carol")
        self.assertEqual(rows[0]["target"], "carol")
        self.assertEqual(rows[0]["outcome"], "ok")

    def test_the_first_frame_must_be_login(self):
        srv = self.srv()
        bystander = self.session(srv, "bob")
        for first in ({"type": "request", "id": 1, "op": "reject",
                       "flag": True},
                      {"type": "Login", "userName": "alice",
                       "password": USERS["alice"][0]},
                      {"userName": "alice", "password": USERS["alice"][0]},
                      {"type": "hello", "userName": "alice", "protocol": 1,
                       "password": USERS["alice"][0]},
                      {"type": 7}):
            frames, code, _ = attempt(srv, first)
            self.assertEqual(len(frames), 1, (first, frames))
            self.assertEqual(frames[0]["type"], "error")
            self.assertEqual(frames[0]["code"], "login_required", first)
            self.assertEqual(code, 1000)
        self.nothing_was_done(srv, bystander)

    def test_a_frame_that_is_not_json_is_bad_json(self):
        srv = self.srv()
        for first in ("nope", "[1, 2]", '"login"', "42", "",
                      '{"type": "login", "userName": "alice"',
                      '{"type": "login"} {"type": "login"}'):
            frames, code, _ = attempt(srv, first)
            self.assertEqual(len(frames), 1, (first, frames))
            self.assertEqual(frames[0]["type"], "error")
            self.assertEqual(frames[0]["code"], "bad_json", first)
            self.assertEqual(code, 1000)

    def test_no_login_within_handshake_timeout_is_timeout(self):
        srv = self.srv("handshake_timeout = 0.5\n")
        frames, code, took = attempt(srv, None, timeout=10)
        self.assertEqual(len(frames), 1, frames)
        self.assertEqual(frames[0]["type"], "error")
        self.assertEqual(frames[0]["code"], "timeout")
        self.assertEqual(code, 1000)
        self.assertGreaterEqual(took, 0.5 * 0.9)
        self.assertLess(took, 0.5 + 2.5 * SLOW)
        # Half a login is no login.
        ws = wsraw.connect(srv.http_port, path="/admin/ws")
        self.addCleanup(ws.close)
        ws.send_raw(wsraw.encode_frame(wsraw.OP_TEXT,
                                       json.dumps(login("alice")))[:12])
        self.assertEqual(ws.recv_json(5)["code"], "timeout")

    def test_a_ninth_administrator_is_busy(self):
        srv = self.srv()
        admins = [self.admin(srv, "alice" if i % 2 else "carol")
                  for i in range(8)]
        frames, code, _ = attempt(srv, login("alice"))
        self.assertEqual(len(frames), 1, frames)
        self.assertEqual(frames[0]["type"], "error")
        self.assertEqual(frames[0]["code"], "busy")
        self.assertEqual(code, 1000)
        # Sessions are another matter: a user still gets in.
        w = self.session(srv, "bob")
        # Once one administrator leaves, another may come.
        admins[0].ws.send_close(1000)
        admins[0].ws.recv_close()
        deadline = time.monotonic() + 5 * SLOW
        while True:
            frames, code, _ = attempt(srv, login("alice") | {
                "password": "wrong"}, timeout=10)
            if frames and frames[0]["code"] != "busy":
                break
            self.assertLess(time.monotonic(), deadline, frames)
            time.sleep(0.1)
        self.assertEqual(frames[0]["code"], "unauthorized")
        a = self.admin(srv)
        a.wait_push("sessions", since=0)
        self.assertIn(w.welcome["sessionID"], a.rows)
        # The others were not disturbed.
        self.assertEqual(admins[1].ok("query")["ids"],
                         [w.welcome["sessionID"]])

    def test_broken_login_fields_are_refused_cleanly(self):
        srv = self.srv()
        bystander = self.session(srv, "bob")
        pw = USERS["alice"][0]
        for frame in ({"type": "login", "password": pw},
                      {"type": "login", "userName": "alice"},
                      {"type": "login", "userName": "", "password": pw},
                      {"type": "login", "userName": "a" * 129,
                       "password": pw},
                      {"type": "login", "userName": "a" * 60000,
                       "password": pw},
                      {"type": "login", "userName": "alice",
                       "password": pw + "x" * 1025},
                      {"type": "login", "userName": None, "password": pw},
                      {"type": "login", "userName": "alice",
                       "password": None},
                      {"type": "login", "userName": ["alice"],
                       "password": pw},
                      {"type": "login", "userName": "alice",
                       "password": {"p": pw}},
                      {"type": "login", "userName": {"alice": 1},
                       "password": pw}):
            frames, code, took = attempt(srv, frame)
            self.assertEqual(len(frames), 1, (frame, frames))
            self.assertEqual(frames[0]["type"], "error", frame)
            self.assertNotIn(frames[0]["code"], ("", None))
            self.assertIsInstance(frames[0]["message"], str)
            self.assertEqual(code, 1000)
        self.assertEqual(self.audit(srv, "action = 'admin_login'"), [])
        self.nothing_was_done(srv, bystander)
        a = self.admin(srv)
        self.assertEqual(a.ready["userName"], "alice")

    def test_login_fields_of_the_wrong_type_or_with_nul_are_refused(self):
        # nina's password is "123456": a number is not that string, and
        # "nina\0x" is not nina (a hello refuses a NUL in its names).
        srv = self.srv()
        for frame in ({"type": "login", "userName": "nina",
                       "password": 123456},
                      {"type": "login", "userName": "nina\u0000x",
                       "password": "123456"},
                      {"type": "login", "userName": "nina",
                       "password": "123456\u0000tail"},
                      {"type": "login", "userName": "nina",
                       "password": 123456.0}):
            with self.subTest(frame=frame):
                frames, code, _ = attempt(srv, frame)
                self.assertNotIn("ready", [f.get("type") for f in frames],
                                 frames)
                self.assertEqual(frames[0]["type"], "error")
                self.assertEqual(code, 1000)
        self.assertEqual(self.audit(srv, "action = 'admin_login'"), [])

    def test_the_channel_is_not_a_session(self):
        srv = self.srv("max_sessions = 1\n")
        a = self.admin(srv)
        self.assertEqual(a.ready["rejecting"], False)
        a.wait_push("status", since=0)
        self.assertEqual(a.status["sessions"], 0)
        self.assertEqual(srv.lua("print(#get_process_activity("
                                 "SESSIONS_ONLY).sessions)").strip(), "0")
        # The administrator takes none of the one session allowed.
        w = self.session(srv, "bob")
        extra = srv.wire()
        refused = extra.hello("carol", password=USERS["carol"][0])
        self.assertEqual(refused["code"], "busy")
        out = srv.lua("for _, s in ipairs(get_process_activity("
                      "SESSIONS_ONLY).sessions) do print(s.ID) end")
        self.assertEqual(out.split(), [w.welcome["sessionID"]])
        # Nor does it receive messages: a send to everyone reaches bob
        # alone, and nothing comes to the administrator before the reply.
        result = a.ok("send", message="to everyone")
        self.assertEqual(result["queued"], 1)
        self.assertEqual(a.messages_seen(), [])
        self.assertEqual(self.first_message(w), "to everyone")
        self.assertEqual(a.ok("query")["ids"], [w.welcome["sessionID"]])

    def test_another_sites_page_may_not_open_the_channel(self):
        srv = self.srv()
        with self.assertRaises(wsraw.UpgradeRefused) as cm:
            wsraw.connect(srv.http_port, path="/admin/ws",
                          origin="http://evil.example")
        self.assertEqual(cm.exception.status, 403)
        ws = wsraw.connect(srv.http_port, path="/admin/ws",
                           origin=f"http://127.0.0.1:{srv.http_port}")
        self.addCleanup(ws.close)
        ws.send_json(login("alice"))
        self.assertEqual(ws.recv_json(10)["type"], "ready")

    def test_the_sessions_socket_takes_no_login(self):
        srv = self.srv()
        ws = wsraw.connect(srv.http_port, path="/ws")
        self.addCleanup(ws.close)
        ws.send_json(login("alice"))
        frame = ws.recv_json(5)
        self.assertEqual(frame["type"], "error")
        self.assertEqual(frame["code"], "hello_required")

    def test_nothing_before_ready_is_carried_out(self):
        # Requests sent right behind a login that fails are never run.
        srv = self.srv()
        bystander = self.session(srv, "bob")
        for first in (login("alice", "wrong"), login("bob"),
                      login("eve"), {"type": "login", "userName": "alice"}):
            ws = wsraw.connect(srv.http_port, path="/admin/ws")
            self.addCleanup(ws.close)
            frames = [first,
                      {"type": "request", "id": 1, "op": "reject",
                       "flag": True},
                      {"type": "request", "id": 2, "op": "send",
                       "message": "pwned"}]
            ws.send_raw(b"".join(wsraw.encode_frame(wsraw.OP_TEXT,
                                                    json.dumps(f))
                                 for f in frames))
            got = []
            try:
                while True:
                    got.append(ws.recv_json(5))
            except wsraw.WsClosed:
                pass
            self.assertEqual([f["type"] for f in got], ["error"],
                             (first, got))
        self.nothing_was_done(srv, bystander)


class Pushes(WebAdminTest):
    def row_of(self, srv, sid):
        """get_process_activity's view of session sid."""
        out = srv.lua(f'print(cjson.encode(get_process_activity('
                      f'"{sid}", SESSIONS_ONLY).sessions[1]))')
        return json.loads(out)

    def test_the_first_pushes_list_every_session_and_the_status(self):
        srv = self.srv()
        tcp = self.session(srv, "bob", machineName="bob-pc",
                           systemUserName="Bob B.", hostType="linux")
        _, web = self.ws_session(srv, "carol", machineName="Linux x86_64",
                                 systemUserName="carol")
        lost = self.session(srv, "nina", hostType="mac")
        lost_id = lost.welcome["sessionID"]
        lost.close()
        # bob owes an ack for one message.
        srv.lua(f'send_message_to_remote_user("unread", '
                f'"{tcp.welcome["sessionID"]}")')
        deadline = time.monotonic() + 5 * SLOW
        while srv.lua(f'print(session_info("{lost_id}").state)').strip() \
                != "postponed":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)

        a = self.admin(srv)
        self.assertEqual(a.ready["userName"], "alice")
        self.assertTrue(a.ready["server"].startswith("herald/"), a.ready)
        self.assertIs(a.ready["rejecting"], False)
        for kind in ("sessions", "status", "processes"):
            a.wait_push(kind, since=0, timeout=2)
        first = [f for _, f in a.pushes if f["type"] == "sessions"][0]
        self.assertIs(first["reset"], True)
        rows = {r["ID"]: r for r in as_list(first.get("rows"))}
        ids = {tcp.welcome["sessionID"], web["sessionID"], lost_id}
        self.assertEqual(set(rows), ids)
        for sid, row in rows.items():
            want = self.row_of(srv, sid)
            for field in ROW_FIELDS:
                self.assertEqual(row[field], want[field], (field, row))
            self.assertRegex(row["ID"], HEX32)
            self.assertRegex(row["creationDateTime"], ISO)
            self.assertEqual(row["processes"], 0)
        bob = rows[tcp.welcome["sessionID"]]
        self.assertEqual((bob["userName"], bob["machineName"],
                          bob["systemUserName"], bob["hostType"],
                          bob["IPAddress"], bob["state"], bob["pending"]),
                         ("bob", "bob-pc", "Bob B.", "linux", "127.0.0.1",
                          "active", 1))
        carol = rows[web["sessionID"]]
        self.assertEqual((carol["hostType"], carol["machineName"],
                          carol["state"], carol["pending"]),
                         ("browser", "Linux x86_64", "active", 0))
        self.assertEqual(rows[lost_id]["state"], "postponed")
        self.assertEqual(a.status, {"type": "status", "rejecting": False,
                                    "sessions": 3})
        self.assertIsNotNone(a.processes)

    def test_sessions_that_come_get_lost_and_go_are_pushed(self):
        srv = self.srv()
        a = self.admin(srv)
        a.wait_push("status", since=0)
        self.assertEqual(a.status["sessions"], 0)

        since = a.mark()
        t0 = time.monotonic()
        w = self.session(srv, "bob", machineName="late-pc")
        sid = w.welcome["sessionID"]
        row = a.wait_row(sid, since=since, timeout=2.0)
        self.assertLess(time.monotonic() - t0, 2.0 * SLOW)
        self.assertEqual((row["userName"], row["machineName"], row["state"]),
                         ("bob", "late-pc", "active"))
        a.wait_push("status", lambda f: f["sessions"] == 1, since)

        # A WebSocket session is listed like a TCP one.
        since = a.mark()
        ws, welcome = self.ws_session(srv, "carol")
        row = a.wait_row(welcome["sessionID"], since=since, timeout=2.0)
        self.assertEqual((row["userName"], row["hostType"]),
                         ("carol", "browser"))
        a.wait_push("status", lambda f: f["sessions"] == 2, since)

        # Connections lost without bye: postponed, still listed.
        since = a.mark()
        w.close()
        ws.close()
        a.wait_row(sid, lambda r: r["state"] == "postponed", since)
        a.wait_row(welcome["sessionID"], lambda r: r["state"] == "postponed",
                   since)

        # A resume makes it active again; bye removes it.
        back = srv.wire()
        again = back.hello("bob", resume={"sessionID": sid,
                                          "token": w.welcome["resumeToken"]})
        self.assertEqual(again["type"], "welcome")
        since = a.mark()
        a.wait_row(sid, lambda r: r["state"] == "active", since=since)
        since = a.mark()
        back.send({"type": "bye"})
        a.wait_removed(sid, since)
        a.wait_push("status", lambda f: f["sessions"] == 1, since)
        self.assertEqual(set(a.rows), {welcome["sessionID"]})

        # A dropped one too.
        since = a.mark()
        srv.lua(f'drop_remote_user("{welcome["sessionID"]}")')
        a.wait_removed(welcome["sessionID"], since)
        a.wait_push("status", lambda f: f["sessions"] == 0, since)
        self.assertEqual(a.rows, {})

    def test_pending_follows_messages_and_acks(self):
        srv = self.srv()
        w = self.session(srv, "bob")
        sid = w.welcome["sessionID"]
        a = self.admin(srv)
        since = a.mark()
        self.assertEqual(a.ok("send", message="one", sessions=[sid])
                         ["queued"], 1)
        a.wait_row(sid, lambda r: r["pending"] == 1, since)
        since = a.mark()
        a.ok("send", message="two")
        a.wait_row(sid, lambda r: r["pending"] == 2, since)
        ids = [w.recv_type("message")["id"] for _ in range(2)]
        since = a.mark()
        for i in ids:
            w.send({"type": "ack", "id": i})
        a.wait_row(sid, lambda r: r["pending"] == 0, since)

    def test_a_running_method_is_pushed_with_its_cpu_time(self):
        srv = self.srv()
        w = self.session(srv, "bob")
        sid = w.welcome["sessionID"]
        a = self.admin(srv)
        since = a.mark()
        w.send({"type": "call", "id": 1, "method": "slow", "args": [200]})
        frame = a.wait_push("processes", lambda f: any(
            r["name"] == "slow" for r in as_list(f.get("rows"))), since,
            timeout=3)
        proc = [r for r in frame["rows"] if r["name"] == "slow"][0]
        self.assertEqual(proc["type"], 1)
        self.assertEqual(proc["sessionID"], sid)
        self.assertEqual(proc["userName"], "bob")
        self.assertIn(proc["state"], (0, 1))
        self.assertIsInstance(proc["number"], int)
        self.assertRegex(proc["creationDateTime"], ISO)
        self.assertGreater(proc["cpuTime"], 0)
        a.wait_row(sid, lambda r: r["processes"] == 1, since)
        # It keeps being pushed while it runs, its time growing.
        later = a.wait_push("processes", lambda f: any(
            r["number"] == proc["number"] and r["cpuTime"] > proc["cpuTime"]
            for r in as_list(f.get("rows"))), timeout=3)
        self.assertTrue(later)
        # Once it ends (bye ends the session's calls), it leaves the list.
        since = a.mark()
        w.send({"type": "bye"})
        a.wait_push("processes", lambda f: not any(
            r["number"] == proc["number"] for r in as_list(f.get("rows"))),
            since, timeout=3)
        a.wait_removed(sid, since)

    def test_status_follows_reject(self):
        srv = self.srv()
        a = self.admin(srv)
        a.wait_push("status", since=0)
        self.assertIs(a.status["rejecting"], False)
        since = a.mark()
        self.assertEqual(a.ok("reject", flag=True), {"rejecting": True})
        a.wait_push("status", lambda f: f["rejecting"] is True, since)
        b = self.admin(srv, "carol")
        self.assertIs(b.ready["rejecting"], True)
        b.wait_push("status", since=0)
        self.assertIs(b.status["rejecting"], True)
        since = a.mark()
        self.assertEqual(a.ok("reject", flag=False), {"rejecting": False})
        a.wait_push("status", lambda f: f["rejecting"] is False, since)
        b.wait_push("status", lambda f: f["rejecting"] is False)
        # reject_new_remote_connections from elsewhere shows too.
        since = a.mark()
        srv.lua("reject_new_remote_connections(true)")
        a.wait_push("status", lambda f: f["rejecting"] is True, since)

    def test_sessions_are_pushed_at_most_twice_a_second(self):
        # protocol.md: "within a second of a change (the server looks
        # twice a second)". A script changes bob's pending count every
        # 0.1 s for about 4 s; the pushes that carry it are counted: ten
        # changes a second make two pushes, not ten.
        srv = self.srv()
        w = self.session(srv, "bob")
        sid = w.welcome["sessionID"]
        a = self.admin(srv)
        a.drain(0.6)
        path = os.path.join(MODULE["dir"], f"churn{os.getpid()}.lua")
        with open(path, "w") as f:
            f.write(f'for i = 1, 40 do send_message_to_remote_user("n" .. i,'
                    f' "{sid}") delay_process(0.1) end\n')
        proc, _ = srv.spawn("run", "--socket", srv.socket, path)
        times = []
        deadline = time.monotonic() + 15 * SLOW
        while proc.poll() is None and time.monotonic() < deadline:
            since = a.mark()
            a.drain(0.2)
            for t, f in a.pushes[since:]:
                if f["type"] == "sessions" and any(
                        r["ID"] == sid for r in as_list(f.get("rows"))):
                    times.append(t)
        self.assertEqual(proc.wait(5), 0)
        self.assertGreaterEqual(len(times), 3, times)
        span = times[-1] - times[0]
        self.assertLessEqual(len(times) - 1, 2 * span + 1.5,
                             f"{len(times)} sessions pushes in {span:.2f} s")


class Ops(WebAdminTest):
    def test_query_returns_the_matching_sessions(self):
        srv = self.srv()
        pc1 = self.session(srv, "bob", machineName="pc-1")
        pc2 = self.session(srv, "bob", machineName="pc-2",
                           systemUserName="Robert")
        mac = self.session(srv, "carol", machineName="mac-1",
                           hostType="mac")
        s1, s2, s3 = (w.welcome["sessionID"] for w in (pc1, pc2, mac))
        a = self.admin(srv)

        def ids(**fields):
            return sorted(as_list(a.ok("query", **fields)["ids"]))
        self.assertEqual(ids(), sorted([s1, s2, s3]))
        self.assertEqual(ids(query="machineName = :1", params=["PC@"]),
                         sorted([s1, s2]))
        self.assertEqual(ids(query="hostType = 'mac'"), [s3])
        self.assertEqual(ids(query="userName = :1 and machineName = :2",
                             params=["bob", "pc-2"]), [s2])
        self.assertEqual(ids(query="systemUserName = 'Rob@' | "
                             "userName = 'carol'"), sorted([s2, s3]))
        self.assertEqual(ids(query="machineName IN :1",
                             params=[["pc-1", "mac-@"]]), sorted([s1, s3]))
        self.assertEqual(ids(query="ID = :1", params=[s2]), [s2])
        self.assertEqual(ids(query="userName = 'nobody'"), [])
        # Postponed sessions are still there to find.
        pc1.close()
        deadline = time.monotonic() + 5 * SLOW
        while ids(query="state = 'postponed'") != [s1]:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)

        for query, params, word in (("userName = ", [], "position"),
                                    ("(userName = 'bob'", [], "'('"),
                                    ("a = :2", ["x"], "placeholder"),
                                    ("userName ~ 'x'", [], "query")):
            r = a.request("query", query=query, params=params)
            self.assertIs(r["ok"], False, r)
            self.assertIn("query", r["error"])
            self.assertIn(word, r["error"])
            self.assertNotIn("\n", r["error"])
            self.assertNotIn("result", r)

    def test_send_to_a_selection_reaches_it_and_no_one_else(self):
        srv = self.srv()
        w1, w2, w3 = (self.session(srv, u) for u in ("bob", "carol", "bob"))
        s1, s2, s3 = (w.welcome["sessionID"] for w in (w1, w2, w3))
        a = self.admin(srv)
        result = a.ok("send", message="to two", sessions=[s1, s2])
        self.assertEqual(result["queued"], 2)
        ids = as_list(result["messageIDs"])
        self.assertGreaterEqual(len(ids), 1)
        for i in ids:
            self.assertIsInstance(i, int)
        m1 = w1.recv_type("message")
        m2 = w2.recv_type("message")
        self.assertEqual((m1["text"], m2["text"]), ("to two", "to two"))
        self.assertIn(m1["id"], ids)
        self.assertIn(m2["id"], ids)
        for w, m in ((w1, m1), (w2, m2)):
            w.send({"type": "ack", "id": m["id"]})
        # An empty selection is no one (not everyone), an unknown ID
        # reaches no one.
        self.assertEqual(a.ok("send", message="to none", sessions=[])
                         ["queued"], 0)
        self.assertEqual(a.ok("send", message="to a ghost",
                              sessions=["0" * 32])["queued"], 0)
        result = a.ok("send", message="to all")
        self.assertEqual(result["queued"], 3)
        self.assertEqual(len(as_list(result["messageIDs"])), 1)
        # w3 was not in the selection: the broadcast is its first message.
        for w in (w1, w2, w3):
            self.assertEqual(self.first_message(w), "to all")
        self.assertEqual(a.messages_seen(), [])
        sends = [e for e in self.audit(srv) if e["action"] == "send"]
        self.assertTrue(sends)
        for e in sends:
            self.assertEqual(e["actor"], "admin:alice")
        self.assertEqual(sends[0]["target"], "all")
        self.assertEqual(sends[0]["detail"], "to all")
        self.assertIn(s1, [e["target"] for e in sends])

    def test_drop_with_a_reason(self):
        srv = self.srv()
        victim = self.session(srv, "bob")
        bystander = self.session(srv, "carol")
        sid = victim.welcome["sessionID"]
        a = self.admin(srv)
        since = a.mark()
        self.assertEqual(a.ok("drop", sessions=[sid],
                              reason="maintenance at noon"), {"dropped": 1})
        frame = victim.recv_type("drop")
        self.assertEqual(frame["reason"], "maintenance at noon")
        self.assertTrue(victim.closed())
        a.wait_removed(sid, since)
        self.assertEqual(a.ok("drop", sessions=[sid, "F" * 32],
                              reason="again"), {"dropped": 0})
        drops = [e for e in self.audit(srv) if e["action"] == "drop"]
        mine = [e for e in drops if e["target"] == sid]
        self.assertTrue(mine, drops)
        self.assertEqual(mine[-1]["actor"], "admin:alice")
        self.assertEqual(mine[-1]["detail"], "maintenance at noon")
        self.assertIn(sid, [e["target"] for e in self.audit(
            srv, "actor = 'admin:alice' and action = 'drop' and "
                 "detail = 'maintenance at noon'")])
        # A drop without a selection drops no one.
        r = a.request("drop", reason="everyone?")
        self.assertIs(r["ok"], False, r)
        self.assertIn("sessions", r["error"])
        self.assertStillServes(srv, bystander)
        self.assertIn(bystander.welcome["sessionID"], a.ok("query")["ids"])

    def test_reject_refuses_new_hellos_until_turned_off(self):
        srv = self.srv()
        old = self.session(srv, "bob")
        a = self.admin(srv)
        self.assertEqual(a.ok("reject", flag=True), {"rejecting": True})
        frame = srv.wire().hello("carol", password=USERS["carol"][0])
        self.assertEqual(frame["type"], "error")
        self.assertEqual(frame["code"], "rejected")
        ws = wsraw.connect(srv.http_port, path="/ws")
        self.addCleanup(ws.close)
        ws.send_json({"type": "hello", "userName": "carol", "protocol": 1,
                      "password": USERS["carol"][0]})
        self.assertEqual(ws.recv_json(10)["code"], "rejected")
        old.send({"type": "ping"})
        self.assertEqual(old.recv_type("pong")["type"], "pong")
        # Administrators are not sessions: one still gets in.
        self.admin(srv, "carol")
        self.assertEqual(a.ok("reject", flag=False), {"rejecting": False})
        frame = srv.wire().hello("carol", password=USERS["carol"][0])
        self.assertEqual(frame["type"], "welcome")
        rows = self.audit(srv, "action = 'reject'")
        self.assertEqual([(e["actor"], e["detail"]) for e in rows],
                         [("admin:alice", "off"), ("admin:alice", "on")])

    def test_schedule_lists_the_jobs_and_run_job_starts_one(self):
        srv = self.srv('schedule = { { every = 3600, script = '
                       '"maintenance/report.lua", name = "hourly report" '
                       '} }\n')
        a = self.admin(srv)
        jobs = as_list(a.ok("schedule")["jobs"])
        self.assertEqual(len(jobs), 1, jobs)
        job = jobs[0]
        self.assertEqual((job["ID"], job["name"], job["spec"], job["script"],
                          job["running"]),
                         (1, "hourly report", "every 3600 s",
                          "maintenance/report.lua", False))
        self.assertRegex(job["nextRun"], ISO)
        self.assertNotIn("lastRun", job)

        self.assertEqual(a.ok("run_job", job=1), {"started": True})
        srv.wait_log(r"report job ran")
        deadline = time.monotonic() + 5 * SLOW
        while True:
            job = as_list(a.ok("schedule")["jobs"])[0]
            if job.get("lastResult") == "ok" and not job["running"]:
                break
            self.assertLess(time.monotonic(), deadline, job)
            time.sleep(0.05)
        self.assertRegex(job["lastRun"], ISO)
        self.assertEqual(a.ok("run_job", job=99), {"started": False})
        rows = self.audit(srv, "action = 'run_job'")
        self.assertTrue(rows)
        self.assertEqual(rows[-1]["actor"], "admin:alice")
        self.assertEqual(rows[-1]["target"], "1")

    def test_messages_lists_recent_ones_newest_first(self):
        srv = self.srv()
        reader = self.session(srv, "bob")
        silent = self.session(srv, "carol")
        a = self.admin(srv)
        first = a.ok("send", message="first")
        self.assertEqual(first["queued"], 2)
        reader.send({"type": "ack",
                     "id": reader.recv_type("message")["id"]})
        second = a.ok("send", message="second",
                      sessions=[silent.welcome["sessionID"]])
        id1 = as_list(first["messageIDs"])[0]
        id2 = as_list(second["messageIDs"])[0]
        self.assertGreater(id2, id1)
        self.assertEqual(silent.recv_type("message")["id"], id1)

        deadline = time.monotonic() + 5 * SLOW
        while True:
            listed = as_list(a.ok("messages").get("messages"))
            by_id = {m["id"]: m for m in listed}
            if id1 in by_id and by_id[id1]["acknowledged"] == 1 and \
                    by_id[id1]["delivered"] == 2:
                break
            self.assertLess(time.monotonic(), deadline, listed)
            time.sleep(0.05)
        self.assertEqual([m["id"] for m in listed][:2], [id2, id1])
        ids = [m["id"] for m in listed]
        self.assertEqual(ids, sorted(ids, reverse=True))
        m1, m2 = by_id[id1], by_id[id2]
        self.assertEqual((m1["text"], m1["queued"], m1["delivered"],
                          m1["acknowledged"]), ("first", 2, 2, 1))
        self.assertEqual((m2["text"], m2["queued"], m2["acknowledged"]),
                         ("second", 1, 0))
        for m in (m1, m2):
            self.assertRegex(m["sentAt"], ISO)
            self.assertNotIn("type", m)
        limited = as_list(a.ok("messages", limit=1).get("messages"))
        self.assertEqual([m["id"] for m in limited], [id2])
        # 100 by default, more when asked.
        srv.lua('for i = 1, 120 do send_message_to_remote_user("bulk " .. i,'
                ' "' + "0" * 32 + '") end')
        listed = as_list(a.ok("messages").get("messages"))
        self.assertEqual(len(listed), 100)
        self.assertEqual(listed[0]["text"], "bulk 120")
        self.assertEqual(listed[0]["queued"], 0)
        listed = as_list(a.ok("messages", limit=1000).get("messages"))
        self.assertEqual([m["id"] for m in listed][120:122], [id2, id1])

    def test_messages_with_none_sent_is_an_empty_list(self):
        # protocol.md: the result is {"messages": [...]}; an empty array
        # may come as {}, but it comes.
        srv = self.srv()
        a = self.admin(srv)
        result = a.ok("messages")
        self.assertIn("messages", result)
        self.assertEqual(as_list(result["messages"]), [])

    def test_audit_newest_first_with_query_and_limit(self):
        srv = self.srv()
        w = self.session(srv, "bob")
        a = self.admin(srv)
        a.ok("send", message="audit one")
        a.ok("reject", flag=True)
        a.ok("reject", flag=False)
        a.ok("send", message="audit two",
             sessions=[w.welcome["sessionID"]])
        rows = as_list(a.ok("audit")["rows"])
        self.assertEqual([(e["action"], e["detail"]) for e in rows[:4]],
                         [("send", "audit two"), ("reject", "off"),
                          ("reject", "on"), ("send", "audit one")])
        times = [e["time"] for e in rows]
        self.assertEqual(times, sorted(times, reverse=True))
        for e in rows:
            self.assertEqual(set(e) >= {"time", "actor", "action", "target",
                                        "count", "detail", "outcome"}, True)
        self.assertEqual(rows[0]["actor"], "admin:alice")
        self.assertEqual(rows[0]["target"], w.welcome["sessionID"])
        self.assertEqual(rows[0]["count"], 1)
        self.assertEqual(rows[0]["outcome"], "ok")
        self.assertEqual(rows, self.audit(srv)[:len(rows)])

        rejects = as_list(a.ok("audit", query="action = :1",
                               params=["reject"])["rows"])
        self.assertEqual([e["detail"] for e in rejects], ["off", "on"])
        self.assertEqual(len(as_list(a.ok("audit", limit=2)["rows"])), 2)
        one = as_list(a.ok("audit", query="action = 'send'",
                           limit=1)["rows"])
        self.assertEqual([e["detail"] for e in one], ["audit two"])
        logins = as_list(a.ok("audit", query="action = 'admin_login' and "
                              "actor = :1", params=["admin:alice"])["rows"])
        self.assertEqual(len(logins), 1)
        r = a.request("audit", query="action = ")
        self.assertIs(r["ok"], False)
        self.assertIn("query", r["error"])
        # 200 by default, more when asked.
        srv.lua('for i = 1, 250 do send_message_to_remote_user("bulk " .. i,'
                ' "' + "0" * 32 + '") end')
        rows = as_list(a.ok("audit")["rows"])
        self.assertEqual(len(rows), 200)
        self.assertEqual(rows[0]["detail"], "bulk 250")
        rows = as_list(a.ok("audit", limit=1000)["rows"])
        self.assertEqual(len(rows), 255)  # the login, 4 above, 250 sends
        self.assertEqual(rows, self.audit(srv))

    def test_an_unknown_op_is_refused(self):
        srv = self.srv()
        w = self.session(srv, "bob")
        a = self.admin(srv)
        for op in ("nope", "Send", "handle", "__index", "", 5, None,
                   ["send"]):
            fields = {"message": "x"}
            r = a.reply(a.send(op, **fields))
            self.assertIs(r["ok"], False, (op, r))
            self.assertIsInstance(r["error"], str)
            self.assertNotIn("result", r)
        r = a.request("nope")
        self.assertIn("nope", r["error"])
        # The channel stays open, and nothing was sent.
        self.assertEqual(a.ok("query")["ids"], [w.welcome["sessionID"]])
        srv.lua('send_message_to_remote_user("marker")')
        self.assertEqual(self.first_message(w), "marker")

    def test_the_reply_carries_the_id_back(self):
        srv = self.srv()
        a = self.admin(srv)
        for rid in (7, 0, -3, 1.5, 12345678901234, "abc", "",
                    "\u00e9\u4e2d", {"k": [1, "x"]}, [1, 2], True, False):
            a.send("query", rid)
            r = a.reply(rid)
            self.assertEqual(r["id"], rid)
            self.assertIs(r["ok"], True)
        # Failures carry it too.
        a.send("nope", "failing")
        self.assertEqual(a.reply("failing")["id"], "failing")
        # Without an id, the reply has none.
        a.ws.send_json({"type": "request", "op": "reject", "flag": False})
        deadline = time.monotonic() + 5 * SLOW
        while "null" not in a.replies:
            self.assertLess(time.monotonic(), deadline)
            a.read()
        self.assertIs(a.replies["null"]["ok"], True)

    def test_a_large_whole_id_comes_back_exactly(self):
        # protocol.md: whole numbers up to 2^53 are read exactly and ids
        # written exactly; a request's id comes back as it was.
        srv = self.srv()
        a = self.admin(srv)
        for rid in (2 ** 53, 10 ** 15 + 1, -(2 ** 53)):
            a.send("query", rid)
            deadline = time.monotonic() + 5 * SLOW
            while not any(f.get("id") == rid or (
                    isinstance(f.get("id"), float) and
                    abs(f["id"] - rid) < 1e3)
                    for f in a.replies.values()):
                self.assertLess(time.monotonic(), deadline)
                a.read()
            got = [f["id"] for f in a.replies.values()]
            a.replies.clear()
            self.assertEqual(got, [rid])
            self.assertIsInstance(got[0], int)

    def test_replies_go_to_the_administrator_who_asked(self):
        srv = self.srv()
        a = self.admin(srv)
        b = self.admin(srv, "carol")
        a.send("query", "for-a")
        a.reply("for-a")
        b.send("query", "for-b")
        b.reply("for-b")
        self.assertEqual(b.replies, {})
        # carol's actions are hers in the audit log.
        b.ok("reject", flag=False)
        self.assertEqual(self.audit(srv, "action = 'reject'")[0]["actor"],
                         "admin:carol")

    def test_a_fifth_request_at_once_is_busy(self):
        srv = self.srv()
        a = self.admin(srv)
        frames = [{"type": "request", "id": i, "op": "query",
                   "query": HEAVY_QUERY, "params": HEAVY_PARAMS}
                  for i in range(7)]
        a.ws.send_raw(b"".join(wsraw.encode_frame(wsraw.OP_TEXT,
                                                  json.dumps(f))
                               for f in frames))
        # Another administrator is not held up by alice's limit.
        b = self.admin(srv, "carol")
        self.assertIs(b.request("query", timeout=30)["ok"], True)
        replies = [a.reply(i, timeout=30) for i in range(7)]
        busy = [r for r in replies if r["ok"] is False]
        done = [r for r in replies if r["ok"] is True]
        self.assertGreaterEqual(len(busy), 1, replies)
        self.assertLessEqual(len(done), 6)
        for r in busy:
            self.assertIn("busy", r["error"])
        for r in done:
            self.assertEqual(as_list(r["result"]["ids"]), [])
        # The first four ran.
        self.assertEqual(sorted(r["id"] for r in done)[:4], [0, 1, 2, 3])
        # Once they are done, requests are taken again.
        self.assertIs(a.request("query")["ok"], True)


class Hostile(WebAdminTest):
    def test_requests_with_wrong_field_types_are_refused(self):
        srv = self.srv("max_message = 100\n")
        bystander = self.session(srv, "bob")
        sid = bystander.welcome["sessionID"]
        a = self.admin(srv)
        cases = [
            ("send", {"message": "x", "sessions": sid}, "sessions"),
            ("send", {"message": "x", "sessions": {"a": sid}}, None),
            ("send", {"message": "x", "sessions": [1]}, "sessions"),
            ("send", {"message": "x", "sessions": [[sid]]}, "sessions"),
            ("send", {"message": "x", "sessions": None}, "sessions"),
            ("send", {"message": "x", "sessions": 5}, "sessions"),
            ("send", {"message": 5, "sessions": [sid]}, "message"),
            ("send", {"message": ["x"]}, "message"),
            ("send", {"message": ""}, "message"),
            ("send", {}, "message"),
            ("send", {"message": "x" * 101}, "max_message"),
            ("drop", {"sessions": [sid]}, "reason"),
            ("drop", {"sessions": [sid], "reason": 7}, "reason"),
            ("drop", {"sessions": [sid], "reason": "r" * 1025}, "reason"),
            ("drop", {"sessions": sid, "reason": "r"}, "sessions"),
            ("drop", {"sessions": [7], "reason": "r"}, "sessions"),
            ("drop", {"reason": "r"}, "sessions"),
            ("reject", {"flag": "yes"}, "flag"),
            ("reject", {"flag": 1}, "flag"),
            ("reject", {}, "flag"),
            ("run_job", {"job": "1"}, "job"),
            ("run_job", {"job": 1.5}, "job"),
            ("run_job", {"job": [1]}, "job"),
            ("run_job", {}, "job"),
            ("audit", {"limit": -1}, "limit"),
            ("audit", {"limit": 0}, "limit"),
            ("audit", {"limit": "5"}, "limit"),
            ("audit", {"limit": 2.5}, "limit"),
            ("audit", {"query": 5}, "query"),
            ("audit", {"query": "action = :1", "params": "send"},
             "params"),
            ("query", {"query": ["userName = 'bob'"]}, "query"),
            ("query", {"query": "userName = :1", "params": 5}, "params"),
        ]
        for op, fields, word in cases:
            r = a.request(op, **fields)
            if word is None:
                # An object is no list of IDs: no one, or a refusal.
                self.assertTrue(r["ok"] is False or
                                r["result"]["queued"] == 0, r)
                continue
            self.assertIs(r["ok"], False, (op, fields, r))
            self.assertIsInstance(r["error"], str)
            self.assertIn(word, r["error"], (op, fields))
            self.assertNotIn("\n", r["error"])
            self.assertNotIn("result", r)
        # Nothing happened: no message, no drop, not rejecting.
        srv.lua('send_message_to_remote_user("marker")')
        self.assertEqual(self.first_message(bystander), "marker")
        self.assertStillServes(srv, bystander)
        self.assertEqual(a.ok("query")["ids"], [sid])
        acts = [e for e in self.audit(srv)
                if e["actor"] == "admin:alice" and e["outcome"] == "ok"
                and e["action"] != "admin_login"]
        self.assertEqual(acts, [])

    def test_a_frame_over_max_frame_closes_the_connection(self):
        srv = self.srv("max_frame = 4096\n")
        bystander = self.session(srv, "bob")
        other = self.admin(srv, "carol")
        a = self.admin(srv)
        a.ws.send_json({"type": "request", "id": 1, "op": "send",
                        "message": "x" * 5000})
        with self.assertRaises(wsraw.WsClosed) as cm:
            while True:
                a.read()
        self.assertEqual(cm.exception.code, 1009)
        # The same in fragments, and before the login.
        b = self.admin(srv)
        b.ws.send_fragments([b'{"type":"request","id":1,"op":"query",',
                             b'"pad":"' + b"y" * 3000, b"z" * 3000 + b'"}'])
        with self.assertRaises(wsraw.WsClosed) as cm:
            while True:
                b.read()
        self.assertEqual(cm.exception.code, 1009)
        frames, code, _ = attempt(srv, json.dumps(
            login("alice") | {"pad": "p" * 5000}))
        self.assertEqual(code, 1009)
        self.assertNotIn("ready", [f.get("type") for f in frames])
        # Nothing was sent; everyone else goes on.
        self.assertEqual(other.ok("query")["ids"],
                         [bystander.welcome["sessionID"]])
        self.assertStillServes(srv, bystander)
        srv.lua('send_message_to_remote_user("marker")')
        self.assertEqual(self.first_message(bystander), "marker")

    def test_binary_and_broken_text_close_the_connection(self):
        srv = self.srv()
        bystander = self.session(srv, "bob")
        for data, code in ((wsraw.encode_frame(wsraw.OP_BINARY,
                                               json.dumps(login("alice"))),
                            1002),
                           (wsraw.encode_frame(wsraw.OP_TEXT,
                                               b'{"type":"\xff"}'), 1007),
                           (wsraw.encode_frame(wsraw.OP_TEXT, b"{}",
                                               mask=False), 1002)):
            for logged_in in (False, True):
                if logged_in:
                    a = self.admin(srv)
                    ws = a.ws
                else:
                    ws = wsraw.connect(srv.http_port, path="/admin/ws")
                    self.addCleanup(ws.close)
                ws.send_raw(data)
                self.assertEqual(ws.recv_close(5)[0], code,
                                 (data[:20], logged_in))
        self.assertStillServes(srv, bystander)

    def test_a_second_login_after_ready_changes_nobody(self):
        srv = self.srv()
        a = self.admin(srv)
        a.ws.send_json(login("carol"))
        try:
            a.drain(1.5)
        except wsraw.WsClosed:
            pass
        got = [f for _, f in a.pushes]
        self.assertNotIn("ready", [f.get("type") for f in got])
        self.assertEqual(self.audit(srv, "actor = 'admin:carol'"), [])

    def test_an_administrator_who_leaves_mid_request(self):
        srv = self.srv()
        bystander = self.session(srv, "bob")
        for _ in range(3):
            a = self.admin(srv)
            frames = [{"type": "request", "id": i, "op": "query",
                       "query": HEAVY_QUERY, "params": HEAVY_PARAMS}
                      for i in range(3)]
            frames.append({"type": "request", "id": 9, "op": "send",
                           "message": "sent by a leaver"})
            a.ws.send_raw(b"".join(wsraw.encode_frame(wsraw.OP_TEXT,
                                                      json.dumps(f))
                                   for f in frames))
            time.sleep(0.05)  # read by the server: not lost to a reset
            a.ws.close()
        # Their requests finish unheard; the server goes on.
        b = self.admin(srv, "carol")
        self.assertEqual(b.ok("query", timeout=30)["ids"],
                         [bystander.welcome["sessionID"]])
        srv.wait_log(r"administration page: alice left")
        self.assertStillServes(srv, bystander)
        texts = []
        deadline = time.monotonic() + 10 * SLOW
        srv.lua('send_message_to_remote_user("marker")')
        while "marker" not in texts:
            self.assertLess(time.monotonic(), deadline, texts)
            texts.append(self.first_message(bystander))
        self.assertIsNone(srv.proc.poll())


if __name__ == "__main__":
    import unittest
    unittest.main()
