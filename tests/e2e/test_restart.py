"""Restarts: the state database keeps sessions, pending messages and message
ids across a graceful stop (SIGTERM) and a kill -9; `herald client` comes
back by itself after a `reconnect` and shows nothing twice; `herald call`
says the server restarted; a state file that cannot be used stops the
start; drop_remote_user's reason reaches the client.

Every server of a test shares one folder: its state file (an absolute
`state` in the configuration), its admin socket and, after the first, its
port, so that a restart is a new `herald serve` process on the same
port, socket and state."""
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time

from harness import (HERALD, SLOW, HeraldTest, Server, Wire, check_report,
                     detached_client, json_frames, message_status, send,
                     states, wait_until)

ELLIPSIS = r"(?:\u2026|\.\.\.)"
RESTARTING = (r"^herald: the server is restarting; reconnecting in "
              r"(?P<delay>\d+\.\d) s$")


# --- helpers --------------------------------------------------------------

def collect(w, seconds):
    """Every frame but pings (answered) that w receives in `seconds`."""
    deadline = time.monotonic() + seconds * SLOW
    frames = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return frames
        try:
            frame = w.recv(timeout=left / SLOW)
        except socket.timeout:
            return frames
        if frame is None:
            raise AssertionError("the server closed the connection")
        if frame.get("type") == "ping":
            w.send({"type": "pong"})
        else:
            frames.append(frame)


class Relay:
    """Relays 127.0.0.1:self.port to target_port, each connection as it
    comes (a restarted server behind the same port gets the new ones).
    drop_up() swallows what the clients send on the connections open now,
    so that their acks never reach the server. `accepts` holds when each
    connection came."""

    def __init__(self, target_port):
        self.target = target_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []  # [client socket, server socket, drop_up]
        self.accepts = []
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepts.append(time.monotonic())
            try:
                upstream = socket.create_connection(
                    ("127.0.0.1", self.target), timeout=5)
                upstream.settimeout(None)
            except OSError:
                self._close(client)
                continue
            pair = [client, upstream, False]
            with self.lock:
                self.pairs.append(pair)
            for up in (True, False):
                threading.Thread(target=self._pump, args=(pair, up),
                                 daemon=True).start()

    def _pump(self, pair, up):
        src, dst = (pair[0], pair[1]) if up else (pair[1], pair[0])
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if up and pair[2]:
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        self._close(pair[0])
        self._close(pair[1])

    @staticmethod
    def _close(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def drop_up(self):
        with self.lock:
            for pair in self.pairs:
                pair[2] = True

    def close(self):
        self.listener.close()
        with self.lock:
            for pair in self.pairs:
                self._close(pair[0])
                self._close(pair[1])


class RestartTest(HeraldTest):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="herald-restart-")
        self.db = os.path.join(self.dir, "herald.db")
        self.sock = os.path.join(self.dir, "admin", "herald.sock")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.dir]))

    def start(self, port=0, config="", args=(), scripts=None):
        """`herald serve` on 127.0.0.1:port (0: a free one) with this
        test's state file and admin socket; stopped after the test."""
        conf = f'state = "{self.db}"\n' + config
        kw = {} if scripts is None else {"scripts": scripts}
        srv = Server(config=conf, args=["--listen", f"127.0.0.1:{port}",
                                        "--admin-socket", self.sock,
                                        *args], **kw)
        srv.socket = self.sock
        srv.env["HERALD_SOCKET"] = self.sock
        self.addCleanup(srv.stop)
        if port:
            self.assertEqual(srv.port, port)
        return srv

    def serve_fails(self, config, args=()):
        """Runs `herald serve` that must not start: (status, output)."""
        path = os.path.join(self.dir, "other.conf.lua")
        with open(path, "w") as f:
            f.write(config)
        proc = subprocess.Popen(
            [HERALD, "serve", "--listen", "127.0.0.1:0", "--config", path,
             "--admin-socket", os.path.join(self.dir, "other", "h.sock"),
             "--no-console", *args], cwd=self.dir, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=10 * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            self.fail("herald serve started (it should have refused):\n"
                      + out)
        check_report(out, "herald serve")
        return proc.returncode, out

    def client(self, port, *args):
        return detached_client(self, port, *args)

    def relay(self, port):
        r = Relay(port)
        self.addCleanup(r.close)
        return r


# --- a graceful restart under a live herald client ------------------------

class GracefulRestart(RestartTest):
    def run_scenario(self, json_mode):
        srv1 = self.start(config="resume_timeout = 30\n")
        port = srv1.port
        relay = self.relay(port)
        args = ["--user", "Vanessa"] + (["--json"] if json_mode else [])
        proc, out = self.client(relay.port, *args)
        out.wait(rf"^connected to 127\.0\.0\.1:{relay.port} as Vanessa")
        [(sid, (user, state))] = states(srv1).items()
        self.assertEqual((user, state), ("Vanessa", "active"))

        # m0: shown and acknowledged before the stop.
        _, m0 = send(srv1, "m0 acked before the stop", sid)
        out.wait("m0 acked before the stop")
        wait_until(lambda: message_status(srv1, m0)["acknowledged"] == 1,
                   what="ack of m0")
        # m1: shown, but its ack never reaches the server, which keeps it
        # pending in the state file and sends it again after the restart.
        relay.drop_up()
        _, m1 = send(srv1, "m1 ack lost", sid)
        out.wait("m1 ack lost")
        time.sleep(0.3)
        self.assertEqual(message_status(srv1, m1)["pending"], [sid])

        self.assertEqual(srv1.stop(), 0)
        line = out.wait(RESTARTING)
        told = out.time_of(RESTARTING)
        delay = float(re.match(RESTARTING, line).group("delay"))
        # after = 1 s, plus up to 50% of jitter (printed to 0.1 s)
        self.assertGreaterEqual(delay, 0.95)
        self.assertLessEqual(delay, 1.55)
        # The server is still down: the first attempt fails, and the client
        # tries again with its backoff, without exiting.
        out.wait(rf"^herald: cannot reconnect to 127\.0\.0\.1:{relay.port}: "
                 r".*; retrying in \d+\.\d s \(attempt 1\)$", timeout=4)
        with relay.lock:
            later = [t for t in relay.accepts if t > told]
        self.assertGreater(later[0] - told, delay - 0.15,
                           "the client came back before the delay it "
                           "announced")
        self.assertIsNone(proc.poll(), "the client exited")
        self.assertNotIn("connection lost", out.text())
        self.assertNotIn("dropped", out.text())

        srv2 = self.start(port=port, config="resume_timeout = 30\n")
        out.wait(rf"^herald: reconnected to 127\.0\.0\.1:{relay.port} "
                 r"\(session resumed\)$", timeout=10)
        srv2.wait_log(rf"session {sid} \(Vanessa\) resumed")
        self.assertEqual(states(srv2), {sid: ("Vanessa", "active")})
        # m1 came again and the client acknowledged it (a new connection
        # through the relay carries acks).
        wait_until(lambda: message_status(srv2, m1)["pending"] == [],
                   what="m1 re-sent and acknowledged after the restart")

        count, m2 = send(srv2, "m2 after the restart", sid)
        self.assertEqual(count, 1)
        self.assertGreater(m2, m1)
        out.wait("m2 after the restart")
        wait_until(lambda: message_status(srv2, m2)["acknowledged"] == 1,
                   what="ack of m2")
        time.sleep(0.2)
        self.assertIsNone(proc.poll(), "the client exited")
        text = out.text()
        for t in ("m0 acked before the stop", "m1 ack lost",
                  "m2 after the restart"):
            self.assertEqual(text.count(t), 1, f"{t!r} in:\n{text}")
        self.assertEqual(len(re.findall(r"(?m)^herald: reconnected", text)),
                         1, text)
        self.assertEqual(len(re.findall(r"(?m)^connected to", text)), 1,
                         text)
        return out, sid, [m0, m1, m2]

    def test_alert_client_comes_back_and_shows_each_message_once(self):
        out, sid, ids = self.run_scenario(json_mode=False)
        text = out.text()
        order = [text.index(t) for t in ("m0 acked", "m1 ack", "m2 after")]
        self.assertEqual(order, sorted(order))

    def test_json_client_prints_the_reconnect_frame_and_each_message_once(
            self):
        out, sid, ids = self.run_scenario(json_mode=True)
        self.assertEqual(json_frames(out, "reconnect"),
                         [{"type": "reconnect", "after": 1,
                           "reason": "server restarting"}])
        self.assertEqual([f["id"] for f in json_frames(out, "message")], ids)
        self.assertEqual([w["sessionID"] for w in json_frames(out,
                                                              "welcome")],
                         [sid, sid])
        # stdout carries only JSON: every other line is a status line on
        # stderr, which this test reads merged.
        for line in out.text().splitlines():
            if not line.startswith("{"):
                self.assertRegex(line, r"^(herald: |connected to )")

    def test_clients_come_back_spread_over_the_jitter(self):
        # Six clients, told to come back after 1 s: each waits 1 to 1.5 s,
        # not all the same (all six equal to 0.1 s by chance: < 0.03%).
        srv = self.start()
        port = srv.port
        clients = [self.client(port, "--user", f"Many{i}") for i in range(6)]
        for _, out in clients:
            out.wait("^connected to")
        sids = sorted(states(srv))
        self.assertEqual(srv.stop(), 0)
        srv = self.start(port=port)
        delays = []
        for proc, out in clients:
            line = out.wait(RESTARTING)
            delays.append(float(re.match(RESTARTING, line).group("delay")))
            out.wait(rf"^herald: reconnected to 127\.0\.0\.1:{port} "
                     r"\(session resumed\)$", timeout=10)
            self.assertIsNone(proc.poll())
        for d in delays:
            self.assertGreaterEqual(d, 0.95, delays)
            self.assertLessEqual(d, 1.55, delays)
        self.assertGreater(len(set(delays)), 1, delays)
        self.assertEqual(sorted(states(srv)), sids)

    def test_a_restart_that_lost_the_session_gives_a_new_one(self):
        # The server comes back with --fresh-state: the resume is refused,
        # the client starts a new session and says so, and the new
        # server's ids, which start at 1 again, are not taken for
        # duplicates of the old session's.
        srv = self.start()
        port = srv.port
        proc, out = self.client(port, "--json", "--user", "Phoenix")
        old = json.loads(out.wait('"welcome"'))["sessionID"]
        _, first = send(srv, "before the restart", old)
        out.wait('"before the restart"')
        self.assertEqual(srv.stop(), 0)
        out.wait(RESTARTING)
        srv = self.start(port=port, args=["--fresh-state"])
        line = out.wait(rf"^herald: reconnected to 127\.0\.0\.1:{port} "
                        rf"\(new session ([0-9A-F]{{8}}){ELLIPSIS}: the "
                        rf"server no longer had session {old[:8]}{ELLIPSIS}"
                        r"\)$", timeout=10)
        [new] = states(srv)
        self.assertNotEqual(new, old)
        self.assertIn(new[:8], line)
        _, again = send(srv, "after the restart", new)
        self.assertEqual(again, first)
        out.wait('"after the restart"')
        self.assertEqual([f["id"] for f in json_frames(out, "message")],
                         [first, again])
        self.assertIsNone(proc.poll())

    def test_give_up_bounds_the_wait_for_a_server_that_does_not_return(self):
        srv = self.start()
        port = srv.port
        proc, out = self.client(port, "--user", "Patient", "--give-up", "2")
        out.wait("^connected to")
        self.assertEqual(srv.stop(), 0)
        out.wait(RESTARTING)
        out.wait(rf"^herald: cannot reconnect to 127\.0\.0\.1:{port}: "
                 r"Connection refused; retrying in", timeout=4)
        self.assertEqual(proc.wait(timeout=6 * SLOW), 1)
        lines = out.text().splitlines()
        self.assertRegex(lines[-1], rf"^herald: gave up reconnecting to "
                         rf"127\.0\.0\.1:{port} after 2 s: ")

    def test_call_interrupted_by_a_restart_exits_2(self):
        scripts = os.path.join(self.dir, "scripts")
        os.makedirs(os.path.join(scripts, "methods"))
        with open(os.path.join(scripts, "methods", "slow.lua"), "w") as f:
            f.write("return function() delay_process(30) return 'late' "
                    "end\n")
        srv = self.start(scripts=scripts)
        env = dict(srv.env)
        proc = subprocess.Popen([HERALD, "call", "slow"], env=env,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        wait_until(lambda: "slow" in srv.lua(
            "for _, p in ipairs(get_process_activity(PROCESSES_ONLY)"
            ".processes) do print(p.name) end"), what="the call running")
        self.assertEqual(srv.stop(), 0)
        out, err = proc.communicate(timeout=10 * SLOW)
        check_report(out + err, "herald call")
        self.assertEqual(proc.returncode, 2, err)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(len(lines), 1, err)
        self.assertRegex(lines[0], r"^herald: call slow: the server is "
                         r"restarting.*may or may not have run")


# --- kill -9 --------------------------------------------------------------

class KillNine(RestartTest):
    def test_pending_messages_survive_kill_9_once_each_and_in_order(self):
        srv1 = self.start(config="resume_timeout = 30\n")
        port = srv1.port
        # A live herald client...
        proc, out = self.client(port, "--json", "--user", "Live")
        welcome = json.loads(out.wait('"welcome"'))
        live = welcome["sessionID"]
        # ...and a raw session, postponed, with three messages pending.
        w = Wire(port)
        first = w.hello("Away")
        sid, token = first["sessionID"], first["resumeToken"]
        w.close()
        srv1.wait_log(rf"session {sid} \(Away\) postponed")
        ids = []
        for i in range(3):
            count, msg_id = send(srv1, f"pending {i}", sid)
            self.assertEqual(count, 1)
            ids.append(msg_id)
        self.assertEqual(ids, sorted(ids))
        # The live client's last message: shown, its ack maybe not yet in
        # the state file when the server dies.
        _, live_id = send(srv1, "to the live one", live)
        out.wait('"to the live one"')

        srv1.proc.send_signal(signal.SIGKILL)
        srv1.proc.wait()
        out.wait(r"^herald: connection lost: .*; reconnecting in")
        self.assertIsNone(proc.poll())

        srv2 = self.start(port=port, config="resume_timeout = 30\n")
        srv2.wait_log(r"2 sessions restored from .*herald\.db")
        now = states(srv2)
        self.assertEqual(sorted(now), sorted([live, sid]))
        self.assertEqual(now[sid], ("Away", "postponed"))
        w2 = Wire(port)
        again = w2.hello("Away", resume={"sessionID": sid, "token": token})
        self.assertEqual((again["type"], again["sessionID"]),
                         ("welcome", sid), again)
        frames = collect(w2, 1.0)
        self.assertEqual([(f["type"], f["id"], f["text"]) for f in frames],
                         [("message", i, f"pending {n}")
                          for n, i in enumerate(ids)])
        for i in ids:
            w2.send({"type": "ack", "id": i})
        count, newer = send(srv2, "after the crash", sid)
        self.assertEqual(count, 1)
        self.assertGreater(newer, max(ids + [live_id]))
        self.assertEqual(w2.recv_type("message")["id"], newer)
        w2.send({"type": "ack", "id": newer})
        for i in ids + [newer]:
            wait_until(lambda: message_status(srv2, i)["pending"] == [],
                       what=f"ack of {i}")

        # The herald client came back by itself, to its own session, and
        # showed its message once, re-sent or not.
        out.wait(rf"^resumed session {live[:8]}{ELLIPSIS}$", timeout=12)
        wait_until(lambda: message_status(srv2, live_id)["pending"] == [],
                   what="the live client's message acknowledged")
        _, last = send(srv2, "to the live one again", live)
        out.wait('"to the live one again"')
        self.assertEqual([f["id"] for f in json_frames(out, "message")],
                         [live_id, last])
        self.assertIsNone(proc.poll())
        w2.close()

    def test_message_ids_keep_increasing_across_restarts(self):
        srv = self.start()
        port = srv.port
        _, a = send(srv, "before")
        self.assertEqual(srv.stop(), 0)          # graceful
        srv = self.start(port=port)
        _, b = send(srv, "after a graceful restart")
        self.assertGreater(b, a)
        srv.proc.send_signal(signal.SIGKILL)     # and a crash
        srv.proc.wait()
        srv = self.start(port=port)
        _, c = send(srv, "after kill -9")
        self.assertGreater(c, b)


    def test_a_message_to_an_id_in_lower_case_survives_kill_9(self):
        # Session IDs are taken in any case; the state database must keep
        # the message for the session all the same.
        srv = self.start()
        port = srv.port
        w = srv.wire("Lower")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        w.close()
        srv.wait_log(r"\(Lower\) postponed")
        count, mid = send(srv, "for you", sid.lower())
        self.assertEqual(count, 1)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        srv = self.start(port=port)
        back = srv.wire()
        frame = back.hello("Lower", resume={"sessionID": sid,
                                            "token": token})
        self.assertEqual(frame["type"], "welcome")
        got = back.recv_type("message")
        self.assertEqual((got["id"], got["text"]), (mid, "for you"))

    def test_a_resend_after_a_restart_is_not_delivered_twice(self):
        srv = self.start()
        port = srv.port
        w = srv.wire("Slow")
        sid, token = w.welcome["sessionID"], w.welcome["resumeToken"]
        _, mid = send(srv, "not acknowledged yet", sid)
        self.assertEqual(w.recv_type("message")["id"], mid)
        wait_until(lambda: message_status(srv, mid)["delivered"] == 1,
                   what="delivered once")
        for how in ("graceful", "kill -9"):
            if how == "graceful":
                self.assertEqual(srv.stop(), 0)
            else:
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait()
            srv = self.start(port=port)
            back = srv.wire()
            frame = back.hello("Slow", resume={"sessionID": sid,
                                               "token": token})
            self.assertEqual(frame["type"], "welcome")
            self.assertEqual(back.recv_type("message")["id"], mid)
            st = message_status(srv, mid)
            self.assertEqual((st["queued"], st["delivered"],
                              st["acknowledged"]), (1, 1, 0), how)
            w = back

    def test_a_postponed_session_keeps_only_the_rest_of_its_wait(self):
        # Restarts must not keep alive, forever, a session no client will
        # resume: its resume_timeout runs from when it lost its client.
        conf = "resume_timeout = 3\n"
        srv = self.start(config=conf)
        port = srv.port
        gone = srv.wire("Gone")
        sid = gone.welcome["sessionID"]
        gone.close()
        srv.wait_log(r"\(Gone\) postponed")
        time.sleep(2)  # two of its three seconds, before the restart
        self.assertEqual(srv.stop(), 0)
        srv = self.start(port=port, config=conf)
        self.assertIn(sid, states(srv))
        srv.wait_log(rf"session {sid} \(Gone\) expired", timeout=2.5)
        self.assertNotIn(sid, states(srv))
        # One told to reconnect at the stop waits its whole timeout.
        live = srv.wire("Live")
        lid = live.welcome["sessionID"]
        self.assertEqual(srv.stop(), 0)
        srv = self.start(port=port, config=conf)
        time.sleep(1.5)
        self.assertIn(lid, states(srv))


# --- state files that cannot be used --------------------------------------

class StateFile(RestartTest):
    def test_second_server_on_the_same_state_file_exits_2_naming_the_pid(
            self):
        srv = self.start()
        status, out = self.serve_fails(f'state = "{self.db}"\n')
        self.assertEqual(status, 2, out)
        self.assertIn(self.db, out)
        self.assertRegex(out, rf"\bpid {srv.proc.pid}\b")
        # The first server is untouched.
        w = srv.wire("Still")
        self.assertEqual(w.welcome["type"], "welcome")

    def test_corrupt_state_file_stops_the_start_and_fresh_state_moves_it(
            self):
        junk = b"this is no database\n" + os.urandom(8192)
        with open(self.db, "wb") as f:
            f.write(junk)
        status, out = self.serve_fails(f'state = "{self.db}"\n')
        self.assertEqual(status, 2, out)
        self.assertIn(self.db, out)
        self.assertIn("--fresh-state", out)
        with open(self.db, "rb") as f:
            self.assertEqual(f.read(), junk, "the refused file was changed")

        srv = self.start(args=["--fresh-state"])
        old = [n for n in os.listdir(self.dir)
               if n.startswith("herald.db.old-")]
        self.assertEqual(len(old), 1, os.listdir(self.dir))
        with open(os.path.join(self.dir, old[0]), "rb") as f:
            self.assertEqual(f.read(), junk)
        w = srv.wire("Fresh")
        self.assertEqual(w.welcome["type"], "welcome")
        _, msg_id = send(srv, "on a fresh state")
        self.assertGreaterEqual(msg_id, 1)

    def test_state_file_from_a_newer_herald_stops_the_start(self):
        con = sqlite3.connect(self.db)
        con.execute("CREATE TABLE future (x)")
        con.execute("PRAGMA user_version = 99")
        con.commit()
        con.close()
        status, out = self.serve_fails(f'state = "{self.db}"\n')
        self.assertEqual(status, 2, out)
        self.assertIn(self.db, out)
        self.assertIn("newer", out)
        con = sqlite3.connect(self.db)
        self.assertEqual(con.execute("PRAGMA user_version").fetchone(), (99,))
        con.close()


# --- without a state database; drop_remote_user's reason -------------------

class Drops(HeraldTest):
    def test_without_state_sigterm_drops_the_client(self):
        srv = self.server(config="state = false\n")
        proc, out = srv.spawn("client", "--user", "Bye")
        out.wait("^connected to")
        srv.proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(timeout=5 * SLOW), 1)
        out.wait(r"^herald: dropped by the server: server shutting down$")
        out.thread.join(5)
        self.assertEqual(out.text().splitlines()[-1],
                         "herald: dropped by the server: server shutting "
                         "down")
        self.assertNotIn("restarting", out.text())
        self.assertNotIn("reconnect", out.text())
        self.assertEqual(srv.proc.wait(timeout=10 * SLOW), 0)
        self.assertFalse([n for n in os.listdir(srv.dir)
                          if n.startswith("herald.db")], os.listdir(srv.dir))

    def drop_client(self, reason_lua, *args):
        srv = self.server()
        proc, out = srv.spawn("client", "--user", "Marc", *args)
        out.wait("connected to")
        [sid] = states(srv)
        self.assertEqual(
            srv.lua(f'print(drop_remote_user("{sid}", {reason_lua}))'),
            "true\n")
        self.assertEqual(proc.wait(timeout=5 * SLOW), 1)
        out.thread.join(5)
        return out.text().splitlines()[-1]

    def test_drop_remote_user_reason_is_the_clients_last_line(self):
        self.assertEqual(self.drop_client('"maintenance at 10pm"'),
                         "herald: dropped by the server: maintenance at 10pm")

    def test_drop_reason_in_json_mode_too(self):
        self.assertEqual(self.drop_client('"maintenance"', "--json"),
                         "herald: dropped by the server: maintenance")

    def test_drop_reason_cannot_break_the_line_or_drive_the_terminal(self):
        last = self.drop_client(r'"maintenance\nat 10pm\27[2J\194\155"')
        self.assertEqual(last, "herald: dropped by the server: "
                         "maintenance?at 10pm?[2J?")
