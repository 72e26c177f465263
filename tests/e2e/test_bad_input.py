"""Bad input, end to end: what a buggy, slow or hostile remote client can
send or fail to do, and what a wrong script can ask. For each case the
server says what happened (an error frame, a result, a log line), keeps
what it promised, and goes on serving a bystander session greeted before
the case began. test_handshake.py and test_sessions.py cover the simple
refusals; this module adds nesting, huge and invalid lines, the rest of
the hello fields, wrong acks and calls, oversized sends, a flood of
half-open connections, the session limit with real clients, slow
consumers, and clients that vanish while the server writes to them.
Keep it under about 30 s."""
import json
import os
import random
import re
import selectors
import socket
import struct
import time

from harness import HeraldTest, message_status, wait_until
from test_sessions import next_is_pong, send, sync

# A short handshake timeout keeps the flood cases fast; the heartbeat
# stays long so that no ping comes between the frames the tests read.
CONFIG = "handshake_timeout = 1\nheartbeat = 30\n"

LOG_RECORD = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \w+: "


def nested(depth, inner="1"):
    """A JSON value of depth nested arrays around inner."""
    return "[" * depth + inner + "]" * depth


def fd_count(srv):
    return len(os.listdir(f"/proc/{srv.proc.pid}/fd"))


def session_count(srv):
    return int(srv.lua(
        "print(#get_process_activity(SESSIONS_ONLY).sessions)").strip())


def abort(sock):
    """Closes sock with a reset: no FIN, unread data is thrown away."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def read_to_end(sock, timeout):
    """Every frame sock receives until the server closes it, as dicts
    (bytes after the last newline dropped); None when the server kept
    the connection open past timeout."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        return None
    return [json.loads(line) for line in buf.split(b"\n")[:-1]]


def assert_alive(test, srv, w):
    """The greeted session w still gets a message sent from a script, in
    one piece and next on its line, and still answers ping."""
    sid = w.welcome["sessionID"]
    count, msg_id = send(srv, "still there", sid)
    test.assertEqual(count, 1, "message not queued for " + sid)
    frame = w.recv_type("message", timeout=3)
    test.assertEqual((frame["id"], frame["text"]), (msg_id, "still there"))
    w.send({"type": "ack", "id": msg_id})
    next_is_pong(test, w)


class BadInputTest(HeraldTest):
    """A server with CONFIG and a bystander greeted before anything else:
    after each case, assertAlive checks that it is still served."""

    config = CONFIG

    def setUp(self):
        self.srv = self.server(config=self.config)
        self.bystander = self.srv.wire("Bystander")

    def assertAlive(self, w=None):
        assert_alive(self, self.srv, w or self.bystander)

    def assertRefused(self, w, code, names=None, timeout=3):
        """w gets an error frame with code (its message naming `names`
        when given), then the server closes the connection."""
        frame = w.recv(timeout=timeout)
        self.assertIsNotNone(frame, f"closed without an error {code}")
        self.assertEqual(frame.get("type"), "error", frame)
        self.assertEqual(frame.get("code"), code, frame)
        self.assertIsInstance(frame.get("message"), str)
        if names is not None:
            self.assertIn(names, frame["message"], frame)
        self.assertTrue(w.closed(3), f"connection left open after {code}")
        return frame

    def assertBadFrame(self, w, names=None):
        """w gets an error bad_frame and its connection stays open."""
        frame = w.recv(timeout=3)
        self.assertIsNotNone(frame, "closed instead of a bad_frame error")
        self.assertEqual((frame.get("type"), frame.get("code")),
                         ("error", "bad_frame"), frame)
        if names is not None:
            self.assertIn(names, frame["message"], frame)
        next_is_pong(self, w)

    def raw_hello(self, body):
        """A new connection that sends the hello line body (bytes)."""
        w = self.srv.wire()
        w.send_raw(body + b"\n")
        return w


class Nesting(BadInputTest):
    """cjson decodes at most 32 levels (PROTO_MAX_DEPTH): deeper is not
    a frame this server reads, so it is bad_json, before or after the
    handshake."""

    def test_100_nested_arrays_in_hello_are_bad_json(self):
        w = self.raw_hello(b'{"type":"hello","userName":"x","f":' +
                           nested(100).encode() + b"}")
        frame = self.assertRefused(w, "bad_json", names="nested")
        self.assertIn("33", frame["message"])  # where it stopped
        self.assertEqual(session_count(self.srv), 1)
        self.assertAlive()

    def test_100_nested_objects_in_hello_are_bad_json(self):
        deep = '{"a":' * 100 + "1" + "}" * 100
        w = self.raw_hello(b'{"type":"hello","userName":"x","f":' +
                           deep.encode() + b"}")
        self.assertRefused(w, "bad_json", names="nested")
        self.assertAlive()

    def test_32_levels_are_accepted_33_are_not(self):
        # The frame object itself is the first level.
        w = self.raw_hello(b'{"type":"hello","userName":"x","f":' +
                           nested(31).encode() + b"}")
        self.assertEqual(w.recv(timeout=3)["type"], "welcome")
        w = self.raw_hello(b'{"type":"hello","userName":"x","f":' +
                           nested(32).encode() + b"}")
        self.assertRefused(w, "bad_json", names="nested")
        self.assertAlive()

    def test_deep_call_args_end_the_session(self):
        w = self.srv.wire("Deep")
        sid = w.welcome["sessionID"]
        w.send_raw(b'{"type":"call","id":1,"method":"noop","args":' +
                   nested(100).encode() + b"}\n")
        self.assertRefused(w, "bad_json", names="nested")
        self.srv.wait_log(rf"session {sid} \(Deep\): .*nested.*; closing")
        # A protocol error ends the session: it is not postponed.
        self.srv.wait_log(rf"session {sid} \(Deep\) closed")
        self.assertEqual(self.srv.lua(f'print(session_info("{sid}"))')
                         .strip(), "nil")
        self.assertAlive()

    def test_call_args_within_the_limit_are_served(self):
        w = self.srv.wire("Nested")
        # 1 (frame) + 1 (args) + 30 = 32 levels.
        w.send_raw(b'{"type":"call","id":5,"method":"noop","args":[' +
                   nested(30).encode() + b"]}\n")
        result = w.recv_type("result", timeout=3)
        self.assertEqual((result["id"], result["ok"]), (5, True))
        self.assertAlive(w)
        self.assertAlive()


class HugeAndInvalidLines(BadInputTest):
    """max_frame is the default 65536 here."""

    def send_huge(self, w, size):
        """size bytes of 'x' without a newline; the server may stop
        reading once it has refused them."""
        try:
            w.sock.settimeout(5)
            w.sock.sendall(b"x" * size)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def test_200_kb_without_newline_before_hello(self):
        w = self.srv.wire()
        started = time.monotonic()
        self.send_huge(w, 200 * 1024)
        # Refused for its size as soon as it passes max_frame, not left
        # to grow until the handshake timeout.
        self.assertRefused(w, "too_large", names="65536")
        self.assertLess(time.monotonic() - started, 1.0)
        self.assertAlive()

    def test_200_kb_without_newline_after_hello(self):
        w = self.srv.wire("Huge")
        sid = w.welcome["sessionID"]
        self.send_huge(w, 200 * 1024)
        self.assertRefused(w, "too_large", names="65536")
        self.srv.wait_log(rf"session {sid} \(Huge\): frame longer than "
                          r"65536 bytes; closing")
        self.srv.wait_log(rf"session {sid} \(Huge\) closed")
        self.assertAlive()

    def test_invalid_json_numbers_are_bad_json(self):
        # cjson reads these by default (decode_invalid_numbers); JSON
        # (RFC 8259) has no NaN, Infinity or hexadecimal numbers.
        for number in (b"NaN", b"Infinity", b"-Infinity", b"0x1", b"0X01"):
            with self.subTest(number=number):
                w = self.raw_hello(b'{"type":"hello","userName":"x",'
                                   b'"protocol":' + number + b"}")
                self.assertRefused(w, "bad_json")
        self.assertEqual(session_count(self.srv), 1)
        self.assertAlive()

    def test_invalid_json_number_after_hello_is_bad_json(self):
        w = self.srv.wire("Hex")
        w.send_raw(b'{"type":"ack","id":0x10}\n{"type":"ping"}\n')
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_more_invalid_utf8(self):
        cases = (
            b'{"type":"hello","userName":"\xed\xa0\x80"}',  # a surrogate
            b'{"type":"hello","userName":"\xf5\x80\x80\x80"}',  # > U+10FFFF
            b'{"type":"hello","userName":"\xe2\x82"}',  # cut short
            b'{"type":"hello","userName":"x"}\xc3',  # cut at the end
            b'{"type":"hello","userName":"\xc1\xbf"}',  # overlong
        )
        for raw in cases:
            with self.subTest(raw=raw):
                self.assertRefused(self.raw_hello(raw), "bad_json",
                                   names="UTF-8")
        self.assertAlive()

    def test_escaped_lone_surrogate_is_bad_json(self):
        w = self.raw_hello(b'{"type":"hello","userName":"\\ud800"}')
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_raw_nul_byte_is_bad_json(self):
        w = self.raw_hello(b'{"type":"hello","userName":"x"}\x00garbage')
        self.assertRefused(w, "bad_json", names="NUL")
        w = self.srv.wire("Nul")
        w.send_raw(b'{"type":"ping"}\x00\n')
        self.assertRefused(w, "bad_json", names="NUL")
        self.assertAlive()


class HelloFields(BadInputTest):
    """The hello fields of PROTOCOL.md, each with the wrong types and
    lengths test_handshake.py does not try, and the edges that must be
    accepted."""

    config = "handshake_timeout = 1\n"

    def test_bad_hello(self):
        cases = [
            ({"userName": "x", "machineName": []}, "machineName"),
            ({"userName": "x", "machineName": {}}, "machineName"),
            ({"userName": "x", "machineName": True}, "machineName"),
            ({"userName": "x", "machineName": 1.5}, "machineName"),
            ({"userName": "x", "systemUserName": "s" * 257},
             "systemUserName"),
            ({"userName": "x", "systemUserName": "\u00e9" * 128 + "s"},
             "systemUserName"),  # 257 bytes in 129 characters
            ({"userName": "x", "systemUserName": 5}, "systemUserName"),
            ({"userName": "x", "systemUserName": None}, "systemUserName"),
            ({"userName": "x", "systemUserName": {}}, "systemUserName"),
            ({"userName": "x", "hostType": None}, "hostType"),
            ({"userName": "x", "hostType": ["linux"]}, "hostType"),
            ({"userName": "x", "hostType": "linux "}, "hostType"),
            ({"userName": "x", "hostType": "l" * 1000}, "hostType"),
            ({"userName": "x", "protocol": None}, "protocol"),
            ({"userName": "x", "protocol": True}, "protocol"),
            ({"userName": "x", "protocol": [1]}, "protocol"),
            ({"userName": "x", "protocol": {"v": 1}}, "protocol"),
            ({"userName": "x", "protocol": 2 ** 64}, "protocol"),
            ({"userName": "x", "password": 5}, "password"),
            ({"userName": "x", "password": None}, "password"),
            ({"userName": "x", "resume": None}, "resume"),
            ({"userName": "x", "resume": 5}, "resume"),
            ({"userName": "x", "resume": {"sessionID": "S", "token": 5}},
             "resume"),
            ({"userName": "x", "resume": {"sessionID": "S", "token": ""}},
             "resume"),
            ({"userName": "x", "resume": {"sessionID": "", "token": "t"}},
             "resume"),
            ({"userName": "x", "resume": {"sessionID": "S" * 65,
                                          "token": "t"}}, "resume"),
            ({"userName": "x", "resume": {"sessionID": "S",
                                          "token": "t" * 65}}, "resume"),
        ]
        for fields, name in cases:
            with self.subTest(fields=fields):
                w = self.srv.wire()
                w.send(dict({"type": "hello"}, **fields))
                self.assertRefused(w, "bad_hello", names=name)
        self.assertEqual(session_count(self.srv), 1)
        self.assertAlive()

    def test_negative_protocol_is_version(self):
        w = self.srv.wire()
        w.send({"type": "hello", "userName": "x", "protocol": -1})
        self.assertRefused(w, "version", names="-1")
        self.assertAlive()

    def test_hello_type_is_case_sensitive(self):
        for t in ("HELLO", "Hello", " hello"):
            with self.subTest(type=t):
                w = self.srv.wire()
                w.send({"type": t, "userName": "x"})
                self.assertRefused(w, "hello_required")
        self.assertAlive()

    def test_more_frames_before_hello(self):
        for first in ({"type": "call", "id": 1, "method": "noop"},
                      {"type": "pong"}, {"type": "message", "id": 1},
                      {"type": 5}, {"type": None}, {}):
            with self.subTest(first=first):
                w = self.srv.wire()
                w.send(first)
                self.assertRefused(w, "hello_required")
        self.assertAlive()

    def test_accepted_edges(self):
        cases = [
            {"machineName": "", "systemUserName": ""},
            {"machineName": "m" * 256, "systemUserName": "s" * 256},
            {"machineName": "\u00e9" * 128},  # 256 bytes
            {"hostType": "linux"}, {"hostType": "mac"},
            {"hostType": "windows"}, {"hostType": "browser"},
            {"protocol": 1},
            # Unknown fields are left alone (forward compatibility).
            {"future": {"nested": [1, 2, 3]}, "flag": True},
        ]
        for fields in cases:
            with self.subTest(fields=fields):
                w = self.srv.wire()
                welcome = w.hello("Edge", **fields)
                self.assertEqual(welcome["type"], "welcome", welcome)
                w.send({"type": "bye"})
                self.assertTrue(w.closed(3))
        self.assertAlive()

    def test_user_name_with_a_nul_character(self):
        # "\u0000" is valid JSON; kept in a C string it would cut the name
        # short ("x\0y" shown as "x", "\0" as an empty name, which the
        # 1..128 rule forbids). The server must refuse it, not store
        # another name than the client sent.
        for name in ("x\u0000y", "\u0000"):
            with self.subTest(name=name):
                w = self.srv.wire()
                w.send({"type": "hello", "userName": name})
                self.assertRefused(w, "bad_hello", names="userName")
        self.assertEqual(session_count(self.srv), 1)
        self.assertAlive()

    def test_control_characters_cannot_forge_log_lines(self):
        # A user name is any string; the log must still show one record
        # per line, so a client cannot write lines of its own into it.
        start = len(self.srv.log.lines)
        w = self.srv.wire()
        welcome = w.hello("evil\nFORGED error: disk full\r\x1b[2J",
                          machineName="m\nFORGED info: hi")
        self.assertEqual(welcome["type"], "welcome")
        sid = welcome["sessionID"]
        self.srv.wait_log(f"session {sid} opened")
        w.send({"type": "bye"})
        self.assertTrue(w.closed(3))
        wait_until(lambda: session_count(self.srv) == 1, 3, what="session gone")
        self.assertIn("logged out", self.srv.log.text())
        for line in self.srv.log.lines[start:]:
            if line is not None:
                self.assertRegex(line, LOG_RECORD,
                                 "a log line not made by the server")
        self.assertAlive()


class AfterHandshake(BadInputTest):
    def test_unknown_frame_types_keep_the_connection(self):
        w = self.srv.wire("Odd")
        for frame in ({"type": 5}, {"type": None}, {"type": ""},
                      {"type": ["ack"]}, {"type": "message", "id": 1},
                      {"type": "welcome"}, {"type": "result", "id": 1},
                      {"type": "error", "code": "x"},
                      {"type": "drop", "reason": "bored"}):
            with self.subTest(frame=frame):
                w.send(frame)
                self.assertBadFrame(w)
        self.assertAlive(w)
        self.assertAlive()

    def test_ack_with_a_wrong_id_is_bad_frame(self):
        for frame in ({"type": "ack"}, {"type": "ack", "id": "12"},
                      {"type": "ack", "id": 1.5}, {"type": "ack", "id": None},
                      {"type": "ack", "id": [12]},
                      {"type": "ack", "id": 2 ** 64}):
            with self.subTest(frame=frame):
                w = self.srv.wire("Acker")
                w.send(frame)
                self.assertBadFrame(w, names="id")
                self.assertAlive(w)
        self.assertAlive()

    def test_acks_of_unknown_and_foreign_ids(self):
        srv = self.srv
        a, b = srv.wire("A"), srv.wire("B")
        sa, sb = a.welcome["sessionID"], b.welcome["sessionID"]
        count, for_b = send(srv, "for B", sb)
        self.assertEqual(count, 1)
        # A acks B's message, ids never used, ids of the distant future
        # and one of the next ids, before that message exists.
        for bogus in (for_b, for_b + 1, 2 ** 62, -(2 ** 62), 0):
            a.send({"type": "ack", "id": bogus})
            # The same, spelled as herald's clients write acks (taken
            # without cjson): no more power over another's messages.
            a.send_raw(b'{"type":"ack","id":%d}\n' % bogus)
            a.send_raw(b'{"id":%d,"type":"ack"}\n' % bogus)
        next_is_pong(self, a)  # no error frame, still open
        self.assertEqual(message_status(srv, for_b),
                         {"queued": 1, "delivered": 1, "acknowledged": 0,
                          "pending": [sb]})
        # The early ack of for_b + 1 does not count for that message.
        count, next_id = send(srv, "for A", sa)
        self.assertEqual((count, next_id), (1, for_b + 1))
        self.assertEqual(a.recv_type("message")["id"], next_id)
        self.assertEqual(message_status(srv, next_id)["pending"], [sa])
        # B's own ack is what counts, once.
        frame = b.recv_type("message")
        b.send({"type": "ack", "id": frame["id"]})
        sync(b)
        a.send({"type": "ack", "id": for_b})
        b.send_raw(b'{"type":"ack","id":%d}\n' % frame["id"])
        sync(a)
        sync(b)
        self.assertEqual(message_status(srv, for_b),
                         {"queued": 1, "delivered": 1, "acknowledged": 1,
                          "pending": []})
        self.assertAlive(a)
        self.assertAlive(b)
        self.assertAlive()

    def test_bad_calls_get_a_result_or_bad_frame(self):
        w = self.srv.wire("Caller")
        failing = [
            {"id": 1, "method": 5},
            {"id": 2},
            {"id": 3, "method": "../methods/noop"},
            {"id": 4, "method": "no_such_method"},
            {"id": 5, "method": "m" * 1000},
            {"id": 6, "method": "noop", "args": "x"},
            {"id": 7, "method": "noop", "args": 5},
            {"id": 8, "method": "noop", "args": list(range(65))},
            {"id": 9, "method": "broadcast", "args": [5]},
        ]
        for call in failing:
            with self.subTest(call=call):
                w.send(dict({"type": "call"}, **call))
                result = w.recv_type("result", timeout=3)
                self.assertEqual((result["id"], result["ok"]),
                                 (call["id"], False), result)
                self.assertIsInstance(result["error"], str)
                self.assertTrue(result["error"])
        for call in ({"method": "noop"}, {"id": "7", "method": "noop"},
                     {"id": 1.5, "method": "noop"}):
            with self.subTest(call=call):
                w.send(dict({"type": "call"}, **call))
                self.assertBadFrame(w, names="id")
        # Nothing was sent to anyone by the failed broadcast.
        next_is_pong(self, self.bystander)
        self.assertAlive(w)
        self.assertAlive()


    def test_calls_with_the_most_args_allowed(self):
        # MAX_ARGS is 64: a call with 64 arguments is served, and served
        # again, without harm to the server.
        w = self.srv.wire("Many")
        for call_id in range(1, 4):
            w.send({"type": "call", "id": call_id, "method": "noop",
                    "args": list(range(64))})
            result = w.recv_type("result", timeout=3)
            self.assertEqual((result["id"], result["ok"]), (call_id, True))
        self.assertEqual(self.srv.lua("print(1 + 1)").strip(), "2")
        self.assertIsNone(self.srv.proc.poll(), "the server died")
        self.assertAlive(w)
        self.assertAlive()


class Oversized(BadInputTest):
    """send_message_to_remote_user with a text over max_message (16384
    bytes by default): an error in the script, nothing sent."""

    def test_oversized_text_raises_and_sends_nothing(self):
        srv = self.srv
        sid = self.bystander.welcome["sessionID"]
        for expr in ('string.rep("x", 16385)',
                     f'string.rep("x", 16385), "{sid}"',
                     'string.rep("\u00e9", 8193)',  # 16386 bytes
                     'string.rep("x", 10 * 1024 * 1024)'):
            with self.subTest(expr=expr[:40]):
                r = srv.run_script(f"send_message_to_remote_user({expr})\n"
                                   'print("not reached")')
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("max_message", r.stderr)
                self.assertNotIn("not reached", r.stdout)
        # Nothing came to the bystander; its next message is the next one.
        next_is_pong(self, self.bystander)
        out = srv.lua('local ok, err = pcall(send_message_to_remote_user, '
                      'string.rep("x", 16385))\nprint(ok)\n'
                      f'print(send_message_to_remote_user('
                      f'string.rep("y", 16384), "{sid}"))')
        lines = out.splitlines()
        self.assertEqual(lines[0], "false")
        self.assertEqual(lines[1].split()[0], "1")
        frame = self.bystander.recv_type("message")
        self.assertEqual(frame["text"], "y" * 16384)
        self.bystander.send({"type": "ack", "id": frame["id"]})
        self.assertAlive()

    def test_oversized_text_from_a_method(self):
        w = self.srv.wire("Caller")
        w.send({"type": "call", "id": 1, "method": "broadcast",
                "args": ["z" * 16385]})
        result = w.recv_type("result", timeout=3)
        self.assertEqual((result["id"], result["ok"]), (1, False))
        self.assertIn("max_message", result["error"])
        next_is_pong(self, w)
        next_is_pong(self, self.bystander)
        self.assertAlive(w)
        self.assertAlive()


class HalfOpen(BadInputTest):
    def test_500_half_open_connections(self):
        srv = self.srv
        self.assertAlive()  # the admin side has been used once
        baseline = fd_count(srv)
        socks = []
        for i in range(500):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            if i % 2 == 0:
                s.sendall(b'{"type":"hel')  # a few bytes, then nothing
            socks.append(s)
        # While they hang there, the bystander is served promptly.
        worst = 0.0
        for _ in range(5):
            t = time.monotonic()
            self.bystander.send({"type": "ping"})
            self.assertEqual(self.bystander.recv(timeout=3),
                             {"type": "pong"})
            worst = max(worst, time.monotonic() - t)
            time.sleep(0.05)
        self.assertLess(worst, 0.25, "pong was slow during the flood")
        self.assertAlive()
        # Each one gets the timeout error, then the server's close.
        sel = selectors.DefaultSelector()
        bufs = {}
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
        open_ = set(socks)
        deadline = time.monotonic() + 6
        while open_ and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                s = key.fileobj
                try:
                    chunk = s.recv(4096)
                except ConnectionResetError:
                    chunk = b""
                bufs[s] += chunk
                if not chunk:
                    sel.unregister(s)
                    open_.discard(s)
        self.assertEqual(len(open_), 0, f"{len(open_)} of 500 still open")
        codes = {}
        for s in socks:
            frame = json.loads(bufs[s].split(b"\n")[0])
            codes[frame.get("code")] = codes.get(frame.get("code"), 0) + 1
            s.close()
        self.assertEqual(codes, {"timeout": 500})
        # Their descriptors are given back, and no session was opened.
        wait_until(lambda: fd_count(srv) == baseline, 5,
                   what=f"server fd count back to {baseline}")
        self.assertEqual(session_count(srv), 1)
        self.assertAlive()


class SessionLimit(BadInputTest):
    config = "max_sessions = 8\n"

    def test_max_sessions_plus_one_real_clients(self):
        srv = self.srv
        clients = [srv.spawn("client", "--json", "--user", f"C{i}")
                   for i in range(7)]  # 7 + the bystander = max_sessions
        for proc, lines in clients:
            lines.wait(r'"welcome"')
        r = srv.cli("client", "--json", "--user", "Ninth", timeout=10)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("busy", r.stdout + r.stderr)
        w = srv.wire()
        w.send({"type": "hello", "userName": "Raw"})
        self.assertRefused(w, "busy")
        srv.wait_log(r"handshake refused: 8 sessions already")
        # The eight sessions are all served.
        count, msg_id = send(srv, "to the eight")
        self.assertEqual(count, 8)
        for proc, lines in clients:
            line = lines.wait(r'"to the eight"')
            self.assertEqual(json.loads(line)["id"], msg_id)
        self.assertEqual(self.bystander.recv_type("message")["id"], msg_id)
        self.bystander.send({"type": "ack", "id": msg_id})
        # A client that logs out (SIGTERM: bye) frees its place at once.
        clients[0][0].terminate()
        self.assertEqual(clients[0][0].wait(timeout=5), 0)
        srv.wait_log(r"\(C0\) logged out")
        w = srv.wire()
        self.assertEqual(w.hello("Ninth")["type"], "welcome")
        self.assertAlive()

    def test_a_postponed_session_can_resume_at_the_limit(self):
        srv = self.srv
        ws = [srv.wire(f"U{i}") for i in range(7)]
        lost = ws[0]
        sid, token = lost.welcome["sessionID"], lost.welcome["resumeToken"]
        abort(lost.sock)
        srv.wait_log(r"\(U0\) postponed")
        count, msg_id = send(srv, "while away", sid)
        self.assertEqual(count, 1)
        # No newcomer took its place: it comes back, even at the limit.
        back = srv.wire()
        welcome = back.hello("U0", resume={"sessionID": sid, "token": token})
        self.assertEqual((welcome["type"], welcome["sessionID"]),
                         ("welcome", sid))
        back.welcome = welcome
        frame = back.recv_type("message")
        self.assertEqual((frame["id"], frame["text"]), (msg_id, "while away"))
        back.send({"type": "ack", "id": msg_id})
        self.assertAlive(back)
        self.assertAlive()

    def test_postponed_sessions_never_lock_a_newcomer_out(self):
        srv = self.srv
        ws = [srv.wire(f"U{i}") for i in range(7)]
        for i in (0, 1):
            abort(ws[i].sock)
            srv.wait_log(rf"\(U{i}\) postponed")
        old = ws[0].welcome
        # At the limit, the session postponed longest makes room ...
        w = srv.wire()
        self.assertEqual(w.hello("Newcomer")["type"], "welcome")
        srv.wait_log(r"\(U0\) ended to make room for a new one: it was "
                     r"postponed longest")
        gone = srv.wire()
        gone.send({"type": "hello", "userName": "U0",
                   "resume": {"sessionID": old["sessionID"],
                              "token": old["resumeToken"]}})
        self.assertRefused(gone, "unauthorized")
        # ... then the next one, and with every session live: busy.
        self.assertEqual(srv.wire().hello("Second")["type"], "welcome")
        srv.wait_log(r"\(U1\) ended to make room")
        w = srv.wire()
        w.send({"type": "hello", "userName": "Third"})
        self.assertRefused(w, "busy")
        self.assertAlive()


class SlowConsumers(BadInputTest):
    config = "max_outbound_bytes = 65536\nheartbeat = 30\n"

    def test_client_that_never_reads(self):
        srv = self.srv
        lazy = srv.wire("Lazy")
        other = srv.wire("Other")
        sl, so = lazy.welcome["sessionID"], other.welcome["sessionID"]
        out = srv.lua(f'''
local big = string.rep("x", 16 * 1024)
local queued = 0
for i = 1, 200 do
  queued = queued + send_message_to_remote_user(big, "{sl}")
  send_message_to_remote_user("m" .. i, "{so}")
end
print(queued)
''')
        queued = int(out.strip())
        # 64 KiB of pending 16 KiB messages: the fourth one is over.
        self.assertLess(queued, 5)
        srv.wait_log(rf"session {sl} \(Lazy\) dropped: slow consumer")
        self.assertEqual(srv.lua(f'print(session_info("{sl}"))').strip(),
                         "nil")
        # What it had (those messages, then the drop) waited in the
        # socket; then the server closed it.
        frames = read_to_end(lazy.sock, 5)
        self.assertIsNotNone(frames, "the slow consumer was left open")
        self.assertEqual(frames[-1], {"type": "drop",
                                      "reason": "slow consumer"})
        self.assertTrue(all(f["type"] == "message" for f in frames[:-1]))
        # The other session got everything, in order.
        texts = []
        for _ in range(200):
            frame = other.recv_type("message", timeout=3)
            texts.append(frame["text"])
            other.send({"type": "ack", "id": frame["id"]})
        self.assertEqual(texts, [f"m{i}" for i in range(1, 201)])
        next_is_pong(self, other)
        self.assertAlive()

    def test_client_that_acks_but_never_reads(self):
        # Acks (it can guess the ids) keep its pending list short, so
        # only the bytes waiting in its connection grow: megabytes, until
        # they pass max_outbound_bytes beyond what the kernel holds.
        srv = self.srv
        lazy = srv.wire("Blind")
        sl = lazy.welcome["sessionID"]
        other = srv.wire("Other")
        so = other.welcome["sessionID"]
        path = os.path.join(srv.dir, "flood.lua")
        with open(path, "w") as f:
            f.write(f'''
local big = string.rep("y", 8000)
for i = 1, 2000 do
  local n, id = send_message_to_remote_user(big, "{sl}")
  print(n, id)
  if n == 0 then break end
  if i % 10 == 0 then send_message_to_remote_user("m" .. i, "{so}") end
  delay_process(0.01)
end
''')
        proc, lines = srv.spawn("run", "--socket", srv.socket, path)
        i, sent_to_lazy, lazy_ids = 0, 0, []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with lines.cond:
                while i >= len(lines.lines):
                    lines.cond.wait(0.5)
                    if time.monotonic() > deadline:
                        break
                batch = lines.lines[i:]
                i = len(lines.lines)
            if batch and batch[-1] is None:
                break
            acks = b""
            for line in batch:
                n, msg_id = line.split()
                if n == "0":
                    continue
                lazy_ids.append(int(msg_id))
                sent_to_lazy += 1
                acks += b'{"type":"ack","id":%d}\n' % int(msg_id)
            if acks:
                try:
                    lazy.sock.sendall(acks)
                except OSError:
                    pass
        self.assertEqual(proc.wait(timeout=10), 0)
        # 16 MB offered; what the kernel holds (its socket buffers: up to
        # tcp_wmem's maximum on the sending side) plus max_outbound_bytes
        # taken, then the drop.
        with open("/proc/sys/net/ipv4/tcp_wmem") as f:
            kernel = int(f.read().split()[2]) + (1 << 20)
        self.assertGreater(sent_to_lazy, 8, "dropped by its pending list")
        self.assertLess(sent_to_lazy * 8000, kernel + 65536,
                        "more queued than max_outbound_bytes")
        srv.wait_log(rf"session {sl} \(Blind\) dropped: slow consumer")
        # Its acks came through: its pending list stayed short, so the
        # bytes waiting in its connection were what passed the limit.
        out = srv.lua(f'''
local n = 0
for _, id in ipairs({{{",".join(map(str, lazy_ids))}}}) do
  if message_status(id).acknowledged == 0 then n = n + 1 end
end
print(n)''')
        self.assertLess(int(out), 8)
        # The other session got every one of its messages, in order.
        want = [f"m{k}" for k in range(10, sent_to_lazy + 1, 10)]
        texts = []
        for _ in want:
            frame = other.recv_type("message", timeout=3)
            texts.append(frame["text"])
            other.send({"type": "ack", "id": frame["id"]})
        self.assertEqual(texts, want)
        next_is_pong(self, other)
        # The never-reading connection is closed within the end grace.
        abort(lazy.sock)
        self.assertAlive()


class VanishingClient(BadInputTest):
    """A client that closes its side (FIN) while the server, busy, has not
    read that yet: the server's next write draws a reset from the
    client's kernel, the one after fails with EPIPE. That must not raise
    a SIGPIPE that kills the server, nor lose what was accepted."""

    def test_client_closes_between_two_writes(self):
        srv = self.srv
        w = srv.wire("Leaving")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        # One C call (a backtracking pattern match) holds the loop for
        # tens of milliseconds: no hook, no turn of the loop inside it.
        script = f'''
local function busy()
  return string.find(("a"):rep(40), ("a-"):rep(5) .. "b")
end
local _, one = send_message_to_remote_user("one", "{sid}")
busy()
local _, two = send_message_to_remote_user("two", "{sid}")
busy()
local _, three = send_message_to_remote_user("three", "{sid}")
print(one, two, three)
'''
        path = os.path.join(srv.dir, "vanish.lua")
        with open(path, "w") as f:
            f.write(script)
        proc, lines = srv.spawn("run", "--socket", srv.socket, path)
        self.assertEqual(w.recv_type("message")["text"], "one")
        w.sock.close()  # nothing unread: a FIN, not a reset
        proc.wait(timeout=10)
        self.assertIsNone(srv.proc.poll(),
                          f"the server died (status {srv.proc.returncode})")
        self.assertEqual(proc.returncode, 0, lines.text())
        one, two, three = (int(x) for x in lines.wait(r"^\d+\s").split())
        srv.wait_log(rf"session {sid} \(Leaving\) postponed")
        # Two and three were accepted: they wait for the resume.
        for msg_id in (two, three):
            self.assertEqual(message_status(srv, msg_id)["pending"], [sid])
        back = srv.wire()
        welcome = back.hello("Leaving", resume={"sessionID": sid,
                                                "token": token})
        self.assertEqual(welcome["sessionID"], sid)
        back.welcome = welcome
        # All three: "one" was read but never acked.
        got = [back.recv_type("message")["text"] for _ in range(3)]
        self.assertEqual(got, ["one", "two", "three"])
        self.assertAlive()
        # The log says why the session was postponed.
        self.assertRegex(srv.log.text(),
                         rf"session {sid} \(Leaving\): connection lost")


class Crowd:
    """n greeted raw sessions read together with one selector; each one
    acks every message it receives and answers pings."""

    def __init__(self, srv, n, prefix):
        self.wires = [srv.wire(f"{prefix}{i}") for i in range(n)]
        self.sel = selectors.DefaultSelector()
        for w in self.wires:
            w.got, w.other, w.eof = [], [], False
            w.sock.setblocking(False)
            self.sel.register(w.sock, selectors.EVENT_READ, w)

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout):
            w = key.data
            try:
                data = w.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if not data:
                self.sel.unregister(w.sock)
                w.eof = True
                continue
            w.buf += data
            *lines, w.buf = w.buf.split(b"\n")
            out = []
            for line in lines:
                frame = json.loads(line)
                if frame["type"] == "message":
                    w.got.append((frame["id"], frame["text"]))
                    out.append(b'{"type":"ack","id":%d}\n' % frame["id"])
                elif frame["type"] == "ping":
                    out.append(b'{"type":"pong"}\n')
                else:
                    w.other.append(frame)
            if out:
                w.sock.setblocking(True)
                w.sock.sendall(b"".join(out))
                w.sock.setblocking(False)

    def cut(self, w):
        """Drops w's connection abruptly (a reset)."""
        self.sel.unregister(w.sock)
        abort(w.sock)


class MidBroadcast(HeraldTest):
    """101 clients, a script that sends 300 messages to everyone, and 50
    of the clients that vanish (reset) while it runs. The first client
    is the bystander: never cut."""

    SCRIPT = '''
local first, last
for i = 1, 300 do
  local count, id = send_message_to_remote_user("b" .. i)
  first = first or id
  last = id
  if i % 10 == 0 then delay_process(0.02) end
end
print(first, last)
'''

    def run_case(self, config, postponed):
        srv = self.server(config=config)
        crowd = Crowd(srv, 101, "C")
        bystander = crowd.wires[0]
        victims = random.Random(7).sample(crowd.wires[1:], 50)
        survivors = [w for w in crowd.wires if w not in victims]
        path = os.path.join(srv.dir, "fanout.lua")
        with open(path, "w") as f:
            f.write(self.SCRIPT)
        proc, lines = srv.spawn("run", "--socket", srv.socket, path)
        to_cut = list(victims)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            crowd.pump(0.01)
            if to_cut and bystander.got:
                crowd.cut(to_cut.pop())
            if proc.poll() is not None and not to_cut and \
                    all(len(w.got) >= 300 for w in survivors):
                break
        self.assertEqual(proc.wait(timeout=5), 0)
        first, last = (int(x) for x in lines.wait(r"^\d+\s+\d+$").split())
        self.assertEqual(last - first, 299)
        expected = [(first + k, f"b{k + 1}") for k in range(300)]
        cut_early = 0
        for w in survivors:
            self.assertEqual(w.got, expected, w.welcome["sessionID"])
            self.assertEqual(w.other, [])
            self.assertFalse(w.eof)
        for w in victims:
            # What a victim got before it vanished: a prefix, in order.
            self.assertEqual(w.got, expected[:len(w.got)])
            cut_early += len(w.got) < 300
        self.assertGreater(cut_early, 10, "the cuts came too late")
        live = {w.welcome["sessionID"] for w in survivors}
        gone = {w.welcome["sessionID"] for w in victims}

        def statuses():
            out = srv.lua(f'''
for id = {first}, {last} do
  local st = message_status(id)
  print(st.queued, st.delivered, st.acknowledged,
        table.concat(st.pending, " "))
end''')
            return [line.split() for line in out.splitlines()]

        def settled():
            rows = statuses()
            return rows if all(not set(r[3:]) & live for r in rows) \
                else None

        rows = wait_until(settled, 5, what="every survivor's acks counted")
        self.assertEqual(len(rows), 300)
        for row in rows:
            queued, delivered, acked = (int(x) for x in row[:3])
            pending = set(row[3:])
            self.assertLessEqual(pending, gone)
            self.assertGreaterEqual(acked, len(survivors))
            self.assertLessEqual(acked, queued)
            self.assertLessEqual(delivered, queued)
            if postponed:
                # Nobody left for good: every copy is acked or pending.
                self.assertEqual(queued, 101)
                self.assertEqual(acked + len(pending), 101)
            else:
                self.assertEqual(pending, set())
        # The server noticed every cut, and lives on.
        end = "postponed" if postponed else "closed"
        wait_until(lambda: all(re.search(f"session {sid} .*{end}",
                                         srv.log.text()) for sid in gone),
                   5, what=f"50 sessions {end} in the log")
        want = 101 if postponed else 51
        wait_until(lambda: session_count(srv) == want, 5,
                   what=f"{want} sessions left")
        self.assertIsNone(srv.proc.poll())
        for w in survivors[:3]:
            crowd.sel.unregister(w.sock)
            w.sock.setblocking(True)
            assert_alive(self, srv, w)
        # Each session the log ends says why: its connection was lost
        # (and how), also when the server found out by a failed write.
        log = srv.log.text()
        silent = [sid for sid in gone
                  if not re.search(f"session {sid} .*: connection lost", log)]
        self.assertFalse(silent, f"{len(silent)} of 50 sessions {end} "
                         "without a reason in the log, e.g.: " + " | ".join(
                             re.findall(f".*{silent[0]}.*", log)
                             if silent else []))

    def test_half_the_clients_vanish_postponed(self):
        self.run_case("heartbeat = 30\n", postponed=True)

    def test_half_the_clients_vanish_without_resume(self):
        self.run_case("heartbeat = 30\nresume_timeout = 0\n",
                      postponed=False)
