"""The handshake of PROTOCOL.md, end to end on raw sockets: the welcome,
every refusal (its error code, then close) and the framing rules after it.
After each refusal, a session greeted earlier must still work."""
import json
import re
import time

from harness import HeraldTest

# Short timeouts keep the suite fast; the heartbeat stays long so that no
# ping comes between the frames these tests read.
CONFIG = "handshake_timeout = 0.5\nheartbeat = 7\nmax_frame = 256\n"


class Handshake(HeraldTest):
    def setUp(self):
        self.srv = self.server(config=CONFIG)
        # Greeted before anything else happens: it must survive every
        # refusal the test provokes on other connections.
        self.bystander = self.srv.wire("Bystander")

    def assertAlive(self, w=None):
        """The greeted session w (default: the bystander) still receives
        a message sent from a script, and still answers ping."""
        w = w or self.bystander
        sid = w.welcome["sessionID"]
        out = self.srv.lua(
            f'print(send_message_to_remote_user("still there", "{sid}"))')
        self.assertEqual(out.split()[0], "1", "message not queued for " + sid)
        frame = w.recv_type("message", timeout=3)
        self.assertEqual(frame["text"], "still there")
        w.send({"type": "ack", "id": frame["id"]})
        w.send({"type": "ping"})
        self.assertEqual(w.recv_type("pong", timeout=3)["type"], "pong")

    def assertRefused(self, w, code, names=None):
        """w gets an error frame with code (its message naming `names`
        when given), then the server closes the connection."""
        frame = w.recv(timeout=3)
        self.assertIsNotNone(frame, f"closed without an error {code}")
        self.assertEqual(frame.get("type"), "error", frame)
        self.assertEqual(frame.get("code"), code, frame)
        self.assertIsInstance(frame.get("message"), str)
        if names is not None:
            self.assertIn(names, frame["message"], frame)
        self.assertTrue(w.closed(3), f"connection left open after {code}")
        return frame

    def hello(self, **fields):
        frame = {"type": "hello"}
        frame.update(fields)
        return frame

    # --- welcome ----------------------------------------------------------

    def test_welcome_fields(self):
        w = self.srv.wire()
        welcome = w.hello("Vanessa", machineName="vanessa-laptop",
                          systemUserName="Vanessa", hostType="linux")
        self.assertEqual(welcome["type"], "welcome")
        self.assertRegex(welcome["sessionID"], r"^[0-9A-F]{32}$")
        self.assertIsInstance(welcome["resumeToken"], str)
        self.assertGreater(len(welcome["resumeToken"]), 0)
        self.assertEqual(welcome["heartbeat"], 7)
        self.assertRegex(welcome["server"], r"^herald/\S+$")
        # Every session has its own ID and token.
        other = self.bystander.welcome
        self.assertNotEqual(welcome["sessionID"], other["sessionID"])
        self.assertNotEqual(welcome["resumeToken"], other["resumeToken"])
        w.welcome = welcome
        self.assertAlive(w)

    def test_minimal_hello_without_protocol_is_welcome(self):
        w = self.srv.wire()
        w.send({"type": "hello", "userName": "x"})
        self.assertEqual(w.recv(timeout=3)["type"], "welcome")

    def test_user_name_of_128_bytes_is_welcome(self):
        w = self.srv.wire()
        # 64 two-byte characters, sent as UTF-8: the limit counts bytes,
        # not characters.
        frame = {"type": "hello", "userName": "\u00e9" * 64}
        w.send_raw(json.dumps(frame, ensure_ascii=False).encode() + b"\n")
        self.assertEqual(w.recv(timeout=3)["type"], "welcome")
        w2 = self.srv.wire()
        self.assertEqual(w2.hello("u" * 128)["type"], "welcome")

    def test_crlf_line_endings_are_accepted(self):
        w = self.srv.wire()
        w.send_raw(b'{"type":"hello","userName":"Crlf","protocol":1}\r\n')
        welcome = w.recv(timeout=3)
        self.assertEqual(welcome["type"], "welcome")
        w.send_raw(b'{"type":"ping"}\r\n')
        self.assertEqual(w.recv(timeout=3), {"type": "pong"})
        out = self.srv.lua(
            f'print(session_info("{welcome["sessionID"]}").userName)')
        self.assertEqual(out.strip(), "Crlf")  # no stray \r in the name

    def test_ping_answered_with_pong(self):
        self.bystander.send({"type": "ping"})
        self.assertEqual(self.bystander.recv(timeout=3), {"type": "pong"})

    # --- refusals ---------------------------------------------------------

    def test_hello_required_first(self):
        for first in ({"type": "ack", "id": 1}, {"type": "ping"},
                      {"type": "bye"}, {"type": "whatever"}):
            w = self.srv.wire()
            w.send(first)
            self.assertRefused(w, "hello_required")
        self.assertAlive()

    def test_bad_json_not_json(self):
        w = self.srv.wire()
        w.send_raw(b"this is not json\n")
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_bad_json_not_utf8(self):
        w = self.srv.wire()
        w.send_raw(b'{"type":"hello","userName":"Van\xff\xfessa"}\n')
        self.assertRefused(w, "bad_json")
        w = self.srv.wire()
        # An overlong encoding of '/' is not valid UTF-8 either.
        w.send_raw(b'{"type":"hello","userName":"a\xc0\xafb"}\n')
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_bad_json_array(self):
        w = self.srv.wire()
        w.send_raw(b'[{"type":"hello","userName":"x"}]\n')
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_bad_json_string(self):
        w = self.srv.wire()
        w.send_raw(b'"hello"\n')
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_bad_json_null_and_number(self):
        for raw in (b"null\n", b"42\n", b"true\n"):
            w = self.srv.wire()
            w.send_raw(raw)
            self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_bad_json_after_handshake_closes(self):
        w = self.srv.wire("Garbler")
        w.send_raw(b"{not json\n")
        self.assertRefused(w, "bad_json")
        self.assertAlive()

    def test_too_large_line(self):
        w = self.srv.wire()
        frame = json.dumps(self.hello(userName="x", machineName="m" * 300))
        self.assertGreater(len(frame), 256)
        w.send_raw(frame.encode() + b"\n")
        self.assertRefused(w, "too_large")
        self.assertAlive()

    def test_too_large_split_without_newline(self):
        w = self.srv.wire()
        for _ in range(3):
            w.send_raw(b"x" * 100)  # 300 bytes and still no newline
            time.sleep(0.05)
        self.assertRefused(w, "too_large")
        self.assertAlive()

    def test_frame_of_exactly_max_frame_bytes_is_accepted(self):
        w = self.srv.wire()
        frame = json.dumps(self.hello(userName="x", machineName=""))
        pad = 256 - len(frame)
        frame = json.dumps(self.hello(userName="x", machineName="m" * pad))
        self.assertEqual(len(frame), 256)
        w.send_raw(frame.encode() + b"\n")
        self.assertEqual(w.recv(timeout=3)["type"], "welcome")

    def test_too_large_after_handshake(self):
        w = self.srv.wire("Big")
        w.send_raw(b'{"type":"ping","pad":"' + b"p" * 300 + b'"}\n')
        self.assertRefused(w, "too_large")
        self.srv.wait_log(r"session .* \(Big\): .*256 bytes")
        self.assertAlive()

    def test_timeout_when_silent(self):
        w = self.srv.wire()
        started = time.monotonic()
        self.assertRefused(w, "timeout")
        elapsed = time.monotonic() - started
        self.assertGreater(elapsed, 0.4)
        self.assertLess(elapsed, 2.0)
        self.srv.wait_log("handshake timed out")
        # The bystander, silent as long, is greeted: no timeout for it.
        self.assertAlive()

    def test_timeout_with_an_unfinished_line(self):
        w = self.srv.wire()
        w.send_raw(b'{"type":"hello","userName":')  # never ended
        self.assertRefused(w, "timeout")
        self.assertAlive()

    def test_bad_hello(self):
        cases = [
            ({}, "userName"),
            ({"userName": ""}, "userName"),
            ({"userName": "u" * 129}, "userName"),
            ({"userName": "\u00e9" * 64 + "u"}, "userName"),  # 129 bytes
            ({"userName": 5}, "userName"),
            ({"userName": None}, "userName"),
            ({"userName": ["Vanessa"]}, "userName"),
            ({"userName": {"first": "Vanessa"}}, "userName"),
            ({"userName": True}, "userName"),
            ({"userName": "x", "machineName": 5}, "machineName"),
            ({"userName": "x", "machineName": "m" * 257}, "machineName"),
            ({"userName": "x", "machineName": None}, "machineName"),
            ({"userName": "x", "systemUserName": []}, "systemUserName"),
            ({"userName": "x", "systemUserName": False}, "systemUserName"),
            ({"userName": "x", "hostType": "amiga"}, "hostType"),
            ({"userName": "x", "hostType": "Linux"}, "hostType"),
            ({"userName": "x", "hostType": ""}, "hostType"),
            ({"userName": "x", "hostType": 1}, "hostType"),
            ({"userName": "x", "protocol": "1"}, "protocol"),
            ({"userName": "x", "protocol": 1.5}, "protocol"),
            ({"userName": "x", "resume": "ABC"}, "resume"),
            ({"userName": "x", "resume": []}, "resume"),
            ({"userName": "x", "resume": {}}, "resume"),
            ({"userName": "x", "resume": {"sessionID": 5, "token": "t"}},
             "resume"),
            ({"userName": "x", "resume": {"sessionID": "S"}}, "resume"),
        ]
        # Run at larger frames than the class default: the long cases
        # must be refused for their field, not for their size.
        srv = self.server(config="handshake_timeout = 0.5\n")
        keeper = srv.wire("Keeper")
        for fields, name in cases:
            with self.subTest(fields=fields):
                w = srv.wire()
                w.send(self.hello(**fields))
                self.assertRefused(w, "bad_hello", names=name)
        # Refused hellos open no session.
        out = srv.lua("print(#get_process_activity(SESSIONS_ONLY).sessions)")
        self.assertEqual(out.strip(), "1")
        self.srv, self.bystander = srv, keeper
        self.assertAlive()

    def test_version(self):
        for protocol in (2, 0, 99):
            with self.subTest(protocol=protocol):
                w = self.srv.wire()
                w.send(self.hello(userName="x", protocol=protocol))
                frame = self.assertRefused(w, "version")
                self.assertIn(str(protocol), frame["message"])
        self.assertAlive()

    def test_rejected(self):
        self.assertEqual(self.srv.lua(
            "print(reject_new_remote_connections(true))").strip(), "true")
        w = self.srv.wire()
        w.send(self.hello(userName="Late"))
        self.assertRefused(w, "rejected")
        # The sessions already open stay.
        self.assertAlive()
        self.srv.lua("reject_new_remote_connections(false)")
        w = self.srv.wire()
        self.assertEqual(w.hello("Late")["type"], "welcome")
        out = self.srv.lua(
            "print(#get_process_activity(SESSIONS_ONLY).sessions)")
        self.assertEqual(out.strip(), "2")

    def test_busy(self):
        srv = self.server(config="max_sessions = 2\n")
        first = srv.wire("First")
        second = srv.wire("Second")
        third = srv.wire()
        third.send(self.hello(userName="Third"))
        self.assertRefused(third, "busy")
        self.srv = srv
        self.assertAlive(first)
        self.assertAlive(second)
        # A bye frees the place at once.
        second.send({"type": "bye"})
        self.assertTrue(second.closed(3))
        again = srv.wire()
        self.assertEqual(again.hello("Third")["type"], "welcome")

    def test_unauthorized_resume_with_wrong_token(self):
        sid = self.bystander.welcome["sessionID"]
        w = self.srv.wire()
        w.send(self.hello(userName="Thief",
                          resume={"sessionID": sid, "token": "0" * 32}))
        self.assertRefused(w, "unauthorized")
        self.srv.wait_log("resume of session .* refused: wrong token")
        # The session is not taken over: it stays with its owner.
        self.assertAlive()

    def test_unauthorized_resume_of_unknown_session(self):
        w = self.srv.wire()
        w.send(self.hello(userName="Ghost",
                          resume={"sessionID": "0" * 32, "token": "0" * 32}))
        self.assertRefused(w, "unauthorized")
        self.assertAlive()

    def test_resume_with_the_right_token_is_welcome(self):
        # The control for the two tests above: the right token works.
        old = self.srv.wire("Mover")
        sid, token = old.welcome["sessionID"], old.welcome["resumeToken"]
        old.close()
        self.srv.wait_log(r"\(Mover\) postponed")
        w = self.srv.wire()
        welcome = w.hello("Mover", resume={"sessionID": sid, "token": token})
        self.assertEqual(welcome["type"], "welcome")
        self.assertEqual(welcome["sessionID"], sid)

    def test_unauthorized_password(self):
        w = self.srv.wire()
        w.send(self.hello(userName="x", password="secret"))
        self.assertRefused(w, "unauthorized")
        self.assertAlive()

    # --- frames after the handshake ---------------------------------------

    def test_unknown_frame_type_is_bad_frame_and_stays_open(self):
        w = self.srv.wire("Future")
        w.send({"type": "telepathy", "id": 3})
        frame = w.recv(timeout=3)
        self.assertEqual(frame["type"], "error")
        self.assertEqual(frame["code"], "bad_frame")
        self.assertIn("telepathy", frame["message"])
        w.send({"type": "ping"})
        self.assertEqual(w.recv(timeout=3), {"type": "pong"})
        self.assertAlive(w)

    def test_frame_without_type_is_bad_frame(self):
        w = self.srv.wire("Typeless")
        w.send({"id": 3})
        frame = w.recv(timeout=3)
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "bad_frame"))
        self.assertAlive(w)

    def test_second_hello_is_bad_frame(self):
        w = self.srv.wire("Twice")
        sid = w.welcome["sessionID"]
        w.send(self.hello(userName="Again", protocol=1))
        frame = w.recv(timeout=3)
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "bad_frame"))
        w.send({"type": "ping"})
        self.assertEqual(w.recv(timeout=3), {"type": "pong"})
        # Still the first session, under its first name.
        out = self.srv.lua(f'print(session_info("{sid}").userName)')
        self.assertEqual(out.strip(), "Twice")
        self.assertAlive(w)

    def test_refusals_are_logged_without_opening_sessions(self):
        w = self.srv.wire()
        w.send(self.hello(userName=""))
        self.assertRefused(w, "bad_hello")
        self.srv.wait_log(r"handshake refused: .*userName")
        out = self.srv.lua(
            "print(#get_process_activity(SESSIONS_ONLY).sessions)")
        self.assertEqual(out.strip(), "1")
        self.assertNotRegex(self.srv.log.text(), re.compile(r"opened: @"))
