"""No message lost across a dropped connection: postponed sessions, resume,
the client's reconnection with backoff, delivery receipts and sleeping
sessions, with real processes.

A connection is cut without killing either process by a small TCP relay
(Proxy) between `herald client` and the server: closing the relay's sockets
is a lost connection for both ends, while both processes live on."""
import json
import re
import signal
import socket
import threading
import time

from harness import (HeraldTest, detached_client, free_port, json_frames,
                     message_status, send, states, sync, wait_until)

# The client abbreviates a session ID to 8 characters and an ellipsis
# ("…" in a UTF-8 locale, "..." otherwise).
ELLIPSIS = r"(?:\u2026|\.\.\.)"


# --- helpers --------------------------------------------------------------

def state_of(srv, sid):
    """The state of session sid in the snapshot, None when it is gone."""
    entry = states(srv).get(sid)
    return entry[1] if entry else None


def idle(w, seconds):
    """Stays silent for `seconds` but answers the server's pings; returns
    (the other frames received meanwhile, the number of pings)."""
    deadline = time.monotonic() + seconds
    others, pings = [], 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return others, pings
        try:
            frame = w.recv(timeout=left)
        except socket.timeout:
            return others, pings
        if frame is None:
            raise AssertionError("the server closed a connection that "
                                 "answered its pings")
        if frame["type"] == "ping":
            pings += 1
            w.send({"type": "pong"})
        else:
            others.append(frame)


def recv_messages(w, n, timeout=5):
    """The next n message frames on w (answering pings)."""
    return [w.recv_type("message", timeout=timeout) for _ in range(n)]


def resume_frame(sid, token):
    return {"sessionID": sid, "token": token}


def log_time(line):
    """The monotonic-comparable time (s) of a server log line."""
    m = re.match(r"^\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d{3})Z", line)
    assert m, line
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


# --- a TCP relay whose connections the test can cut -----------------------

class Pair:
    """One relayed connection: the client's socket and the server's."""

    def __init__(self, client):
        self.client = client
        self.upstream = None
        self.drop_up = False    # client -> server bytes are swallowed
        self.drop_down = False  # server -> client bytes are swallowed
        self.cut = False


class Proxy:
    """Relays 127.0.0.1:self.port to the server's port. hold() keeps new
    connections waiting (accepted, nothing relayed) until release();
    cut() closes every relayed connection at both ends."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        self.pairs = []
        self.accepted = 0
        self.closed = False
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            pair = Pair(client)
            with self.lock:
                self.accepted += 1
                self.pairs.append(pair)
            threading.Thread(target=self._relay, args=(pair,),
                             daemon=True).start()

    def _relay(self, pair):
        self.gate.wait()
        if pair.cut or self.closed:
            return
        try:
            pair.upstream = socket.create_connection(
                ("127.0.0.1", self.target), timeout=5)
            pair.upstream.settimeout(None)
        except OSError:
            self._cut(pair)
            return
        threading.Thread(target=self._pump, args=(pair, True),
                         daemon=True).start()
        self._pump(pair, False)

    def _pump(self, pair, up):
        src, dst = ((pair.client, pair.upstream) if up
                    else (pair.upstream, pair.client))
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if pair.drop_up if up else pair.drop_down:
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        self._cut(pair)

    @staticmethod
    def _close(sock):
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _cut(self, pair):
        pair.cut = True
        with self.lock:
            if pair in self.pairs:
                self.pairs.remove(pair)
        self._close(pair.client)
        self._close(pair.upstream)

    def live(self):
        with self.lock:
            return [p for p in self.pairs if p.upstream is not None]

    def set_drop(self, up=None, down=None):
        """Swallows traffic on the connections relayed now (new ones are
        clean): up = client to server, down = server to client."""
        for pair in self.live():
            if up is not None:
                pair.drop_up = up
            if down is not None:
                pair.drop_down = down

    def hold(self):
        self.gate.clear()

    def release(self):
        self.gate.set()

    def cut(self):
        with self.lock:
            pairs = list(self.pairs)
        for pair in pairs:
            self._cut(pair)

    def close(self):
        self.closed = True
        self.gate.set()
        self.listener.close()
        self.cut()


class ResumeTest(HeraldTest):
    def proxy(self, srv):
        p = Proxy(srv.port)
        self.addCleanup(p.close)
        return p

    def spawn_client(self, srv, *args, proxy=None):
        server = f"127.0.0.1:{proxy.port if proxy else srv.port}"
        return srv.spawn("client", "--server", server, *args)

    def postpone(self, srv, w, user):
        """Closes wire w without bye; returns once its session is
        postponed."""
        w.close()
        srv.wait_log(rf"session {w.welcome['sessionID']} \({user}\) "
                     r"postponed")


# --- 1-3: the real client across a cut connection -------------------------

class ClientAcrossACutConnection(ResumeTest):
    """`herald client` keeps running while its TCP connection is cut with
    messages in flight both ways; three more are sent while the session is
    postponed; the client reconnects by itself and resumes."""

    def run_scenario(self, json_mode):
        srv = self.server(config="resume_timeout = 30\n")
        proxy = self.proxy(srv)
        args = ["--user", "Vanessa"] + (["--json"] if json_mode else [])
        proc, out = self.spawn_client(srv, *args, proxy=proxy)
        line = out.wait(r"^connected to 127\.0\.0\.1:%d as Vanessa "
                        r"\(session [0-9A-F]{8}" % proxy.port)
        [(sid, (user, state))] = states(srv).items()
        self.assertEqual((user, state), ("Vanessa", "active"))
        self.assertIn(sid[:8], line)
        texts = {}

        def send_one(i):
            text = f"msg-{i}-of-8"
            count, msg_id = send(srv, text, sid)
            self.assertEqual(count, 1, f"send of {text}")
            texts[msg_id] = text
            return msg_id

        # 1, 2: shown and acknowledged.
        m1, m2 = send_one(1), send_one(2)
        wait_until(lambda: message_status(srv, m2)["acknowledged"] == 1,
                   what="ack of message 2")
        # 3, 4: shown, but their acks never reach the server.
        proxy.set_drop(up=True)
        send_one(3)
        m4 = send_one(4)
        out.wait("msg-4-of-8")
        # 5: the server writes it to its socket; it never reaches the
        # client.
        proxy.set_drop(down=True)
        m5 = send_one(5)
        wait_until(lambda: message_status(srv, m5)["delivered"] == 1,
                   what="message 5 written to the socket")
        self.assertNotIn("msg-5-of-8", out.text())
        self.assertEqual(message_status(srv, m4)["acknowledged"], 0)

        # Cut the connection; both processes live.
        proxy.hold()
        proxy.cut()
        srv.wait_log(rf"session {sid} \(Vanessa\): connection lost")
        srv.wait_log(rf"session {sid} \(Vanessa\) postponed")
        self.assertEqual(state_of(srv, sid), "postponed")
        out.wait(r"^herald: connection lost: .*; reconnecting in "
                 r"\d+\.\d s \(attempt 1\)$")
        self.assertIsNone(proc.poll(), "the client exited")

        # 6, 7, 8: sent while the session is postponed.
        later = [send_one(i) for i in (6, 7, 8)]
        for msg_id in later:
            self.assertEqual(message_status(srv, msg_id),
                             {"queued": 1, "delivered": 0,
                              "acknowledged": 0, "pending": [sid]})
        self.assertEqual(state_of(srv, sid), "postponed")
        # The client is already trying again (held by the relay).
        wait_until(lambda: proxy.accepted >= 2, what="a reconnection")
        proxy.release()

        out.wait(rf"^resumed session {sid[:8]}{ELLIPSIS}$")
        srv.wait_log(rf"session {sid} \(Vanessa\) resumed")
        self.assertEqual(list(states(srv).items()),
                         [(sid, ("Vanessa", "active"))])
        ids = sorted(texts)
        wait_until(lambda: all(message_status(srv, i)["acknowledged"] == 1
                               for i in ids), what="every message acked")
        for msg_id in ids:
            st = message_status(srv, msg_id)
            self.assertEqual((st["queued"], st["acknowledged"],
                              st["pending"]), (1, 1, []), msg_id)
        self.assertIsNone(proc.poll(), "the client exited")
        return srv, out, sid, texts

    def test_json_client_shows_each_message_once_in_order(self):
        srv, out, sid, texts = self.run_scenario(json_mode=True)
        welcomes = json_frames(out, "welcome")
        self.assertEqual([w["sessionID"] for w in welcomes], [sid, sid])
        # What the user saw: each message exactly once, in order. (The
        # server's re-send order itself is checked on a raw connection in
        # PostponedSessions.)
        ids = sorted(texts)
        shown = [f["id"] for f in json_frames(out, "message")]
        self.assertEqual(shown, ids,
                         "herald client --json printed these message ids "
                         "(3 and 4 were re-sent after the resume because "
                         "their acks were lost)")

    def test_alert_client_shows_each_message_once_in_order(self):
        srv, out, sid, texts = self.run_scenario(json_mode=False)
        text = out.text()
        for msg_id, t in texts.items():
            self.assertEqual(text.count(t), 1, f"{t} (id {msg_id})")
        order = [text.index(texts[i]) for i in sorted(texts)]
        self.assertEqual(order, sorted(order))

    def test_silent_connection_is_detected_and_resumed(self):
        # No FIN, no RST: the relay swallows everything both ways. The
        # client (or the server, which closes) notices after 3 heartbeats;
        # the client reconnects and resumes, taking the session over if
        # the server has not noticed yet.
        srv = self.server(config="heartbeat = 1\nresume_timeout = 30\n")
        proxy = self.proxy(srv)
        proc, out = self.spawn_client(srv, "--json", "--user", "Marc",
                                      proxy=proxy)
        welcome = json.loads(out.wait('"welcome"'))
        sid = welcome["sessionID"]
        self.assertEqual(welcome["heartbeat"], 1)
        proxy.set_drop(up=True, down=True)
        _, m1 = send(srv, "into the void", sid)
        # Both ends give up after 3 heartbeats of silence: whichever comes
        # first, the client reconnects.
        out.wait(r"^herald: connection lost: (nothing heard from the server "
                 r"for 3 s|the server closed the connection); reconnecting in",
                 timeout=6)
        out.wait(rf"^resumed session {sid[:8]}{ELLIPSIS}$", timeout=5)
        line = out.wait('"into the void"')
        self.assertEqual(json.loads(line)["id"], m1)
        wait_until(lambda: message_status(srv, m1)["acknowledged"] == 1,
                   what="ack of the re-sent message")
        _, m2 = send(srv, "after the resume", sid)
        out.wait('"after the resume"')
        self.assertEqual([f["id"] for f in json_frames(out, "message")],
                         [m1, m2])
        self.assertEqual(list(states(srv).items()),
                         [(sid, ("Marc", "active"))])
        self.assertIsNone(proc.poll())


# --- 1-2: the protocol, on raw connections --------------------------------

class PostponedSessions(ResumeTest):
    def test_lost_connection_is_postponed_and_kept_in_the_snapshot(self):
        srv = self.server()
        w = srv.wire("A")
        sid = w.welcome["sessionID"]
        self.postpone(srv, w, "A")
        self.assertEqual(states(srv), {sid: ("A", "postponed")})
        out = srv.lua(f'print(session_info("{sid}").state)')
        self.assertEqual(out.strip(), "postponed")

    def test_heartbeat_timeout_postpones_and_resume_gets_the_messages(self):
        srv = self.server(config="heartbeat = 0.2\nresume_timeout = 5\n")
        w = srv.wire("Mute")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        srv.wait_log(rf"session {sid} \(Mute\): no answer to ping .* "
                     "connection lost", timeout=3)
        srv.wait_log(rf"session {sid} \(Mute\) postponed")
        self.assertTrue(w.closed(2))
        self.assertEqual(state_of(srv, sid), "postponed")
        count, msg_id = send(srv, "while you were away", sid)
        self.assertEqual(count, 1)
        w2 = srv.wire()
        welcome = w2.hello("Mute", resume=resume_frame(sid, token))
        self.assertEqual(welcome["type"], "welcome", welcome)
        self.assertEqual(welcome["sessionID"], sid)
        frame = w2.recv_type("message")
        self.assertEqual((frame["id"], frame["text"]),
                         (msg_id, "while you were away"))

    def test_pending_resent_in_id_order_before_any_new_message(self):
        srv = self.server()
        w = srv.wire("B")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        # One acknowledged before the loss, one not.
        _, acked = send(srv, "acked", sid)
        _, unacked = send(srv, "not acked", sid)
        first, second = recv_messages(w, 2)
        self.assertEqual([first["id"], second["id"]], [acked, unacked])
        w.send({"type": "ack", "id": acked})
        sync(w)
        self.postpone(srv, w, "B")
        later = []
        for i in range(3):
            count, msg_id = send(srv, f"later {i}", sid)
            self.assertEqual(count, 1)  # a postponed session counts
            later.append(msg_id)
        w2 = srv.wire()
        welcome = w2.hello("B", resume=resume_frame(sid, token))
        self.assertEqual((welcome["type"], welcome["sessionID"]),
                         ("welcome", sid))
        self.assertEqual(welcome["resumeToken"], token)
        _, newest = send(srv, "newest", sid)
        got = recv_messages(w2, 5)
        self.assertEqual([f["id"] for f in got],
                         [unacked] + later + [newest])
        self.assertEqual([f["text"] for f in got],
                         ["not acked", "later 0", "later 1", "later 2",
                          "newest"])
        self.assertEqual(states(srv), {sid: ("B", "active")})
        srv.wait_log(rf"session {sid} \(B\) resumed")

    def test_wrong_token_is_refused_and_the_session_untouched(self):
        srv = self.server()
        w = srv.wire("C")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        self.postpone(srv, w, "C")
        count, msg_id = send(srv, "still here", sid)
        self.assertEqual(count, 1)
        flipped = ("0" if token[0] != "0" else "1") + token[1:]
        for bad in (flipped, token[:-1], token + "0", "x"):
            w2 = srv.wire()
            frame = w2.hello("C", resume=resume_frame(sid, bad))
            self.assertEqual((frame["type"], frame["code"]),
                             ("error", "unauthorized"), bad)
            self.assertTrue(w2.closed(3), bad)
            self.assertEqual(states(srv), {sid: ("C", "postponed")}, bad)
        srv.wait_log(rf"resume of session {sid} refused: wrong token")
        self.assertEqual(message_status(srv, msg_id)["pending"], [sid])
        # The right token still works, and the message is still there.
        w3 = srv.wire()
        welcome = w3.hello("C", resume=resume_frame(sid, token))
        self.assertEqual((welcome["type"], welcome["sessionID"]),
                         ("welcome", sid))
        self.assertEqual(w3.recv_type("message")["id"], msg_id)
        self.assertEqual(states(srv), {sid: ("C", "active")})

    def test_wrong_token_cannot_take_over_a_live_session(self):
        srv = self.server()
        w = srv.wire("D")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        flipped = ("0" if token[0] != "0" else "1") + token[1:]
        w2 = srv.wire()
        frame = w2.hello("D", resume=resume_frame(sid, flipped))
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "unauthorized"))
        self.assertTrue(w2.closed(3))
        sync(w)  # the live connection is untouched
        _, msg_id = send(srv, "for D", sid)
        self.assertEqual(w.recv_type("message")["id"], msg_id)
        self.assertEqual(states(srv), {sid: ("D", "active")})

    def test_unknown_session_and_malformed_resume_are_refused(self):
        srv = self.server()
        w = srv.wire()
        frame = w.hello("E", resume=resume_frame("0" * 32, "0" * 32))
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "unauthorized"))
        self.assertTrue(w.closed(3))
        srv.wait_log(r"resume of session 0{32} refused: no such session")
        w = srv.wire()
        frame = w.hello("E", resume={"sessionID": "0" * 32})
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "bad_hello"))
        self.assertIn("resume", frame["message"])
        self.assertTrue(w.closed(3))
        self.assertEqual(states(srv), {})

    def test_resume_after_resume_timeout_is_refused(self):
        srv = self.server(config="resume_timeout = 0.5\nheartbeat = 0.2\n")
        w = srv.wire("Late")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        self.postpone(srv, w, "Late")
        count, msg_id = send(srv, "never read", sid)
        self.assertEqual(count, 1)
        srv.wait_log(rf"session {sid} \(Late\) expired: not resumed within "
                     r"0\.5 s", timeout=3)
        self.assertEqual(states(srv), {})
        # Nobody holds the message any more; nothing claims it was read.
        self.assertEqual(message_status(srv, msg_id),
                         {"queued": 1, "delivered": 0, "acknowledged": 0,
                          "pending": []})
        w2 = srv.wire()
        frame = w2.hello("Late", resume=resume_frame(sid, token))
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "unauthorized"))
        self.assertTrue(w2.closed(3))
        srv.wait_log(rf"resume of session {sid} refused: no such session")
        self.assertEqual(states(srv), {})

    def test_postponed_sessions_expire_on_time(self):
        # The server's timer must be fine enough for resume_timeout too,
        # not only for the heartbeat and the handshake (defaults here: 30 s
        # and 5 s). Three sessions postponed a third of a second apart: at
        # least one would fall just after a coarse tick.
        srv = self.server(config="resume_timeout = 0.5\n")
        sids = []
        for user in ("P1", "P2", "P3"):
            w = srv.wire(user)
            sids.append(w.welcome["sessionID"])
            self.postpone(srv, w, user)
            time.sleep(0.33)
        for sid in sids:
            start = log_time(srv.wait_log(rf"session {sid} .* postponed"))
            end = log_time(srv.wait_log(rf"session {sid} .* expired",
                                        timeout=4))
            self.assertGreaterEqual(end - start, 0.5 - 0.005, sid)
            self.assertLess(end - start, 0.5 + 0.3,
                            f"session {sid} removed {end - start:.3f} s "
                            "after it was postponed, resume_timeout = 0.5")

    def test_takeover_of_a_live_session(self):
        srv = self.server()
        old = srv.wire("F")
        sid, token = old.welcome["sessionID"], old.welcome["resumeToken"]
        _, m1 = send(srv, "unacked on the old connection", sid)
        self.assertEqual(old.recv_type("message")["id"], m1)
        new = srv.wire()
        welcome = new.hello("F", resume=resume_frame(sid, token))
        self.assertEqual((welcome["type"], welcome["sessionID"]),
                         ("welcome", sid))
        self.assertEqual(new.recv_type("message")["id"], m1)
        frame = old.recv(timeout=3)
        self.assertEqual(frame["type"], "drop", frame)
        self.assertIsInstance(frame["reason"], str)
        self.assertTrue(frame["reason"])
        self.assertTrue(old.closed(3))
        srv.wait_log(rf"session {sid} \(F\) taken over by a new connection")
        # The old connection's end neither postpones nor ends the session.
        _, m2 = send(srv, "on the new one", sid)
        self.assertEqual(new.recv_type("message")["id"], m2)
        new.send({"type": "ack", "id": m1})
        new.send({"type": "ack", "id": m2})
        sync(new)
        self.assertEqual(states(srv), {sid: ("F", "active")})
        self.assertNotRegex(srv.log.text(), rf"{sid} \(F\) postponed")
        self.assertNotRegex(srv.log.text(), rf"{sid} \(F\) closed")
        self.assertEqual(message_status(srv, m2)["pending"], [])

    def test_takeover_drops_the_real_client(self):
        srv = self.server()
        proc, out = srv.spawn("client", "--json", "--user", "G")
        welcome = json.loads(out.wait('"welcome"'))
        sid, token = welcome["sessionID"], welcome["resumeToken"]
        w = srv.wire()
        frame = w.hello("G", resume=resume_frame(sid, token))
        self.assertEqual((frame["type"], frame["sessionID"]),
                         ("welcome", sid))
        out.wait(r"^herald: dropped by the server: ")
        self.assertEqual(proc.wait(timeout=5), 1)  # a drop ends the client
        self.assertEqual(states(srv), {sid: ("G", "active")})

    def test_max_pending_binds_a_postponed_session(self):
        srv = self.server(config="max_pending = 3\n")
        w = srv.wire("Away")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        self.postpone(srv, w, "Away")
        for i in range(3):
            self.assertEqual(send(srv, f"m{i}", sid)[0], 1)
        self.assertEqual(state_of(srv, sid), "postponed")
        count, _ = send(srv, "one too many", sid)
        self.assertEqual(count, 0)
        srv.wait_log(rf"session {sid} \(Away\) dropped: slow consumer")
        self.assertEqual(states(srv), {})
        w2 = srv.wire()
        frame = w2.hello("Away", resume=resume_frame(sid, token))
        self.assertEqual((frame["type"], frame["code"]),
                         ("error", "unauthorized"))

    def test_max_outbound_bytes_binds_a_postponed_session(self):
        srv = self.server(config="max_outbound_bytes = 4096\n")
        w = srv.wire("Away")
        sid = w.welcome["sessionID"]
        self.postpone(srv, w, "Away")
        self.assertEqual(send(srv, "x" * 3000, sid)[0], 1)
        self.assertEqual(state_of(srv, sid), "postponed")
        self.assertEqual(send(srv, "y" * 3000, sid)[0], 0)
        srv.wait_log(rf"session {sid} \(Away\) dropped: slow consumer")
        self.assertEqual(states(srv), {})


# --- 4: delivery receipts -------------------------------------------------

class DeliveryReceipts(ResumeTest):
    def test_counts_before_and_after_acks(self):
        srv = self.server()
        a, b, c = srv.wire("A"), srv.wire("B"), srv.wire("C")
        sa, sb, sc = (x.welcome["sessionID"] for x in (a, b, c))
        self.postpone(srv, c, "C")
        count, msg_id = send(srv, "to everyone")
        self.assertEqual(count, 3)  # the postponed session counts
        for w in (a, b):
            self.assertEqual(w.recv_type("message")["id"], msg_id)
        st = message_status(srv, msg_id)
        self.assertEqual((st["queued"], st["delivered"], st["acknowledged"]),
                         (3, 2, 0))
        self.assertEqual(sorted(st["pending"]), sorted([sa, sb, sc]))
        a.send({"type": "ack", "id": msg_id})
        sync(a)
        st = message_status(srv, msg_id)
        self.assertEqual((st["queued"], st["delivered"], st["acknowledged"]),
                         (3, 2, 1))
        self.assertEqual(sorted(st["pending"]), sorted([sb, sc]))
        # C comes back: the message is written to its new socket.
        c2 = srv.wire()
        c2.hello("C", resume=resume_frame(sc, c.welcome["resumeToken"]))
        self.assertEqual(c2.recv_type("message")["id"], msg_id)
        sync(c2)
        st = message_status(srv, msg_id)
        self.assertEqual((st["queued"], st["delivered"], st["acknowledged"]),
                         (3, 3, 1))
        self.assertEqual(sorted(st["pending"]), sorted([sb, sc]))
        for w in (b, c2):
            w.send({"type": "ack", "id": msg_id})
            sync(w)
        self.assertEqual(message_status(srv, msg_id),
                         {"queued": 3, "delivered": 3, "acknowledged": 3,
                          "pending": []})
        self.assertIsNone(message_status(srv, msg_id + 1000))
        self.assertIsNone(message_status(srv, 0))

    def test_the_id_is_the_second_result_of_the_send(self):
        srv = self.server()
        w = srv.wire("H")
        sid = w.welcome["sessionID"]
        out = srv.lua(f'local n, id = send_message_to_remote_user("x", '
                      f'"{sid}") print(n, id, math.type(id))')
        count, msg_id, kind = out.split()
        self.assertEqual((count, kind), ("1", "integer"))
        self.assertEqual(w.recv_type("message")["id"], int(msg_id))
        # A send to nobody still has an id, queued nowhere.
        out = srv.lua(f'print(send_message_to_remote_user("y", "{"0" * 32}"))')
        count, none_id = out.split()
        self.assertEqual(count, "0")
        self.assertGreater(int(none_id), int(msg_id))
        self.assertEqual(message_status(srv, int(none_id)),
                         {"queued": 0, "delivered": 0, "acknowledged": 0,
                          "pending": []})

    def test_resend_after_resume_counts_one_delivery_per_session(self):
        # delivered counts the sessions a message was written to, as queued
        # and acknowledged count sessions: a re-send to the same session
        # after a resume does not make it 2 (delivered <= queued).
        srv = self.server()
        w = srv.wire("I")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        _, msg_id = send(srv, "written twice", sid)
        self.assertEqual(w.recv_type("message")["id"], msg_id)
        self.postpone(srv, w, "I")
        w2 = srv.wire()
        w2.hello("I", resume=resume_frame(sid, token))
        self.assertEqual(w2.recv_type("message")["id"], msg_id)
        sync(w2)
        w2.send({"type": "ack", "id": msg_id})
        sync(w2)
        self.assertEqual(message_status(srv, msg_id),
                         {"queued": 1, "delivered": 1, "acknowledged": 1,
                          "pending": []})

    def test_console_prints_a_status_readably(self):
        srv = self.server()
        w = srv.wire("J")
        sid = w.welcome["sessionID"]
        _, msg_id = send(srv, "for the console", sid)
        w.recv_type("message")
        sync(w)
        r = srv.cli("console", "--socket", srv.socket,
                    input=f"message_status({msg_id})\n"
                          f"message_status({msg_id + 999})\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[-1], "nil", r.stdout)
        # One line or one key a line: the same text, keys in the order a
        # message moves through them.
        self.assertEqual(" ".join(l.strip() for l in lines[:-1]),
                         f'{{ queued = 1, delivered = 1, acknowledged = 0, '
                         f'pending = {{ "{sid}" }} }}', r.stdout)


# --- 5: sleeping sessions -------------------------------------------------

class Sleeping(ResumeTest):
    def test_silence_makes_a_session_sleep_and_a_frame_wakes_it(self):
        srv = self.server(config="sleep_after = 0.5\n")
        w = srv.wire("Dozy")
        sid = w.welcome["sessionID"]
        self.assertEqual(state_of(srv, sid), "active")
        _, msg_id = send(srv, "wake up", sid)
        frame = w.recv_type("message")
        idle(w, 0.7)
        self.assertEqual(state_of(srv, sid), "sleeping")
        w.send({"type": "ack", "id": frame["id"]})
        sync(w)
        self.assertEqual(state_of(srv, sid), "active")
        self.assertEqual(message_status(srv, msg_id)["acknowledged"], 1)
        idle(w, 0.7)
        self.assertEqual(state_of(srv, sid), "sleeping")
        w.send({"type": "call", "id": 1, "method": "noop", "args": []})
        w.recv_type("result")
        self.assertEqual(state_of(srv, sid), "active")

    def test_pings_and_pongs_do_not_count_as_the_user(self):
        # The heartbeat is shorter than sleep_after: the server pings, the
        # connection answers, and it pings the server too; the session
        # sleeps all the same.
        srv = self.server(config="sleep_after = 0.5\nheartbeat = 0.2\n")
        w = srv.wire("Robot")
        sid = w.welcome["sessionID"]
        others, pings = idle(w, 0.4)
        self.assertEqual(others, [])
        sync(w)  # a ping from the client
        more_others, more_pings = idle(w, 0.35)
        self.assertEqual(more_others, [])
        self.assertGreaterEqual(pings + more_pings, 1)
        self.assertEqual(state_of(srv, sid), "sleeping")
        self.assertNotRegex(srv.log.text(), "connection lost")
        w.send({"type": "call", "id": 2, "method": "noop", "args": []})
        w.recv_type("result")
        self.assertEqual(state_of(srv, sid), "active")

    def test_a_sleeping_session_that_loses_its_connection_is_postponed(self):
        srv = self.server(config="sleep_after = 0.5\n")
        w = srv.wire("Gone")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        idle(w, 0.7)
        self.assertEqual(state_of(srv, sid), "sleeping")
        self.postpone(srv, w, "Gone")
        self.assertEqual(state_of(srv, sid), "postponed")
        w2 = srv.wire()
        w2.hello("Gone", resume=resume_frame(sid, token))
        self.assertEqual(state_of(srv, sid), "active")


# --- 3: the client's reconnection, against a server that goes away --------

class ClientBackoff(ResumeTest):
    def start_client(self, port, *args):
        return detached_client(self, port, *args)

    def check_attempts(self, out, pattern, count):
        """The first `count` attempt lines: numbered 1, 2, … and each delay
        0.5 s doubling (capped at 10 s) with at most ±25% jitter, and the
        next line comes after that delay. Returns the delays."""
        found = out.matching(pattern)[:count]
        self.assertEqual(len(found), count, out.text())
        delays = []
        for n, (t, m) in enumerate(found, 1):
            self.assertEqual(int(m.group("attempt")), n, out.text())
            delay = float(m.group("delay"))
            nominal = min(0.5 * 2 ** (n - 1), 10)
            self.assertGreaterEqual(delay, 0.75 * nominal - 0.05, n)
            self.assertLessEqual(delay, 1.25 * nominal + 0.05, n)
            delays.append(delay)
        for (t1, _), (t2, _), d in zip(found, found[1:], delays):
            self.assertGreater(t2 - t1, d - 0.1)
        return delays

    def test_without_retry_an_unreachable_server_exits_2(self):
        port = free_port()
        proc, out = self.start_client(port, "--user", "Once")
        self.assertEqual(proc.wait(timeout=5), 2)
        out.wait(rf"^herald: cannot connect to 127\.0\.0\.1:{port}: ")
        self.assertNotIn("retrying", out.text())

    def test_retry_until_the_server_comes_up(self):
        port = free_port()
        attempt = (rf"^herald: cannot connect to 127\.0\.0\.1:{port}: "
                   r"Connection refused; retrying in (?P<delay>\d+\.\d) s "
                   r"\(attempt (?P<attempt>\d+)\)$")
        clients = [self.start_client(port, "--retry", "--user", f"Early{i}")
                   for i in range(3)]
        for _, out in clients:
            out.wait(r"\(attempt 3\)$", timeout=5)
        srv = self.server(args=["--listen", f"127.0.0.1:{port}"])
        self.assertEqual(srv.port, port)
        up = time.monotonic()
        all_delays = []
        for i, (proc, out) in enumerate(clients):
            line = out.wait(rf"^connected to 127\.0\.0\.1:{port} as Early{i} "
                            rf"\(session [0-9A-F]{{8}}{ELLIPSIS}\)$",
                            timeout=12)
            self.assertIsNone(proc.poll())
            lines = out.text().splitlines()
            # Nothing but one line per attempt before the connection.
            before = lines[:lines.index(line)]
            self.assertTrue(before)
            for other in before:
                self.assertRegex(other, attempt)
            all_delays.append(tuple(self.check_attempts(out, attempt,
                                                        len(before))))
            # It connected within its last announced delay of the server
            # coming up.
            self.assertLess(out.matching("^connected to")[0][0] - up,
                            all_delays[-1][-1] + 1.0)
        users = sorted(u for u, _ in states(srv).values())
        self.assertEqual(users, ["Early0", "Early1", "Early2"])
        # Jitter: the three clients do not retry in step.
        self.assertGreater(len(set(d[:3] for d in all_delays)), 1,
                           all_delays)

    def test_sigterm_drops_the_client_which_exits_1(self):
        # Without a state database, a stop ends every session.
        srv = self.server(config="state = false\n")
        proc, out = srv.spawn("client", "--user", "Bye")
        out.wait("^connected to")
        srv.proc.send_signal(signal.SIGTERM)
        out.wait(r"^herald: dropped by the server: server shutting down$")
        self.assertEqual(proc.wait(timeout=5), 1)
        self.assertNotIn("reconnect", out.text())

    def test_server_killed_and_restarted_gives_a_new_session(self):
        srv1 = self.server()
        port = srv1.port
        proc, out = srv1.spawn("client", "--user", "Phoenix")
        line = out.wait(rf"^connected to 127\.0\.0\.1:{port} as Phoenix")
        [old] = states(srv1)
        self.assertIn(f"(session {old[:8]}", line)
        count, first = send(srv1, "before the crash", old)
        self.assertEqual(count, 1)
        out.wait("before the crash")
        wait_until(lambda: message_status(srv1, first)["acknowledged"] == 1,
                   what="ack from the client")
        srv1.proc.kill()  # no drop: the connection is just lost
        srv1.proc.wait()
        out.wait(r"^herald: connection lost: .*; reconnecting in \d+\.\d s "
                 r"\(attempt 1\)$")
        out.wait(rf"^herald: cannot reconnect to 127\.0\.0\.1:{port}: "
                 r"Connection refused; retrying in \d+\.\d s "
                 r"\(attempt 2\)$", timeout=3)
        self.assertIsNone(proc.poll())
        srv2 = self.server(args=["--listen", f"127.0.0.1:{port}"])
        self.assertEqual(srv2.port, port)
        line = out.wait(rf"^the server no longer had session "
                        rf"{old[:8]}{ELLIPSIS}; new session "
                        rf"([0-9A-F]{{8}}){ELLIPSIS}$", timeout=12)
        [new] = states(srv2)
        self.assertNotEqual(new, old)
        self.assertIn(new[:8], line)
        srv2.wait_log(rf"resume of session {old} refused: no such session")
        self.assertEqual(states(srv2), {new: ("Phoenix", "active")})
        # The new server numbers its messages from 1 again: the client
        # must not take them for duplicates of the old session's.
        count, again = send(srv2, "after the restart", new)
        self.assertEqual((count, again), (1, first))
        out.wait("after the restart")
        wait_until(lambda: message_status(srv2, again)["acknowledged"] == 1,
                   what="ack from the client")
        self.assertEqual(out.text().count("before the crash"), 1)
        self.assertIsNone(proc.poll())
