"""Identity end to end: users and passwords, the growing delay of failed
logins, the users file reloaded while the server runs, groups that gate
methods, the TLS listener and protected mode.

Users files are made with the real `herald user add`; TLS clients are
Python's ssl module (herald's own client has its tests in
test_client_auth_tls.py); certificates come from the real `herald cert`,
or from Python's cryptography package where one must be expired."""
import datetime
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

from harness import HERALD, SLOW, HeraldTest, Server, Wire, add_user

REFUSAL = {"type": "error", "code": "unauthorized",
           "message": "wrong user name or password"}
FAST = "auth_delay = 0.2\n"


def del_user(path, name):
    r = subprocess.run([HERALD, "user", "del", name, "--file", path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


class IdentityTest(HeraldTest):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="herald-identity-")
        self.users = os.path.join(self.tmp, "herald.users")

    def with_users(self, config="", **kw):
        """A server with vanessa (admin, "secret1") and marc (no group,
        "secret2")."""
        if not os.path.exists(self.users):
            add_user(self.users, "vanessa", "secret1", "admin")
            add_user(self.users, "marc", "secret2")
        return self.server(config=f'users_file = "{self.users}"\n' + FAST +
                           config, **kw)

    def login(self, srv, user, password=None, **fields):
        """(first frame, seconds it took) of a hello."""
        w = srv.wire()
        if password is not None:
            fields["password"] = password
        t0 = time.monotonic()
        frame = w.hello(user, **fields)
        w.welcome = frame
        return w, frame, time.monotonic() - t0

    def call(self, w, method, *args, call_id=1):
        w.send({"type": "call", "id": call_id, "method": method,
                "args": list(args)})
        return w.recv_type("result")


class Logins(IdentityTest):
    def test_right_password_gets_a_session_with_its_groups(self):
        srv = self.with_users()
        _, frame, _ = self.login(srv, "vanessa", "secret1")
        self.assertEqual(frame["type"], "welcome")
        self.assertEqual(frame["groups"], ["admin"])
        w, frame, _ = self.login(srv, "marc", "secret2")
        self.assertEqual(frame["groups"], [])
        me = self.call(w, "whoami")["value"]
        self.assertIs(me["authenticated"], True)
        self.assertEqual(me["userName"], "marc")
        out = srv.lua('for _, s in ipairs(get_process_activity('
                      'SESSIONS_ONLY).sessions) do print(s.userName, '
                      's.authenticated, table.concat(s.groups, ",")) end')
        self.assertIn("vanessa\ttrue\tadmin", out)
        self.assertIn("marc\ttrue\t", out)
        srv.wait_log(r"login of marc from 127\.0\.0\.1")

    def test_every_refusal_says_the_same_and_costs_the_same(self):
        srv = self.with_users("auth_delay = 0\n")
        timings = {"wrong password": [], "unknown user": []}
        self.login(srv, "marc", "warm-up")  # the pool's first threads
        for _ in range(3):
            for case, user, pw in (("wrong password", "marc", "nope"),
                                   ("unknown user", "nobody", "nope"),
                                   ("no password", "marc", None)):
                w, frame, took = self.login(srv, user, pw)
                self.assertEqual(frame, REFUSAL, case)
                self.assertTrue(w.closed(), case)
                timings.setdefault(case, []).append(took)
        # An unknown name is checked against a hash of the same cost: its
        # answer never comes much sooner than a wrong password's.
        median = {k: sorted(v)[1] for k, v in timings.items()}
        self.assertGreater(median["unknown user"],
                           median["wrong password"] * 0.3, timings)
        srv.wait_log(r"login failed: nobody from 127\.0\.0\.1 \(no such "
                     r"user")
        srv.wait_log(r"login failed: marc from 127\.0\.0\.1 \(wrong "
                     r"password")

    def test_the_delay_doubles_per_failure_and_a_success_resets_it(self):
        srv = self.with_users()
        for expected in (0.2, 0.4, 0.8):
            _, frame, took = self.login(srv, "marc", "nope")
            self.assertEqual(frame, REFUSAL)
            self.assertGreaterEqual(took, expected * 0.95)
            self.assertLess(took, expected + 1.0 * SLOW)
        _, frame, took = self.login(srv, "marc", "secret2")
        self.assertEqual(frame["type"], "welcome")
        _, frame, took = self.login(srv, "marc", "nope")
        self.assertEqual(frame, REFUSAL)
        self.assertLess(took, 0.2 + 1.0 * SLOW)

    def test_a_login_storm_delays_no_ones_ping(self):
        srv = self.with_users("auth_delay = 1\n")
        bystander, frame, _ = self.login(srv, "vanessa", "secret1")
        self.assertEqual(frame["type"], "welcome")
        stop = threading.Event()
        answered = []

        def storm():
            # Each attempt gives up after a second: the delays grow to 30 s.
            while not stop.is_set():
                try:
                    w = Wire(srv.port, timeout=1)
                    answered.append(w.hello("marc", password="wrong"))
                    w.close()
                except OSError:
                    pass

        threads = [threading.Thread(target=storm) for _ in range(24)]
        for t in threads:
            t.start()
        try:
            worst = 0
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                t0 = time.monotonic()
                bystander.send({"type": "ping"})
                bystander.recv_type("pong", timeout=2)
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=40)
        self.assertLess(worst, 0.25 * SLOW)
        self.assertTrue(all(f == REFUSAL for f in answered if f), answered)

    def test_a_resume_needs_only_its_token(self):
        srv = self.with_users()
        w, frame, _ = self.login(srv, "marc", "secret2")
        sid, token = frame["sessionID"], frame["resumeToken"]
        w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          b"\x01\x00\x00\x00\x00\x00\x00\x00")
        w.close()
        srv.wait_log(r"\(marc\) postponed")
        back = srv.wire()
        frame = back.hello("marc", resume={"sessionID": sid, "token": token})
        self.assertEqual((frame["type"], frame["sessionID"]),
                         ("welcome", sid))
        self.assertEqual(frame["groups"], [])
        # Someone else's session with a token that only looks right.
        _, other, _ = self.login(srv, "vanessa", "secret1")
        thief = srv.wire()
        frame = thief.hello("marc", resume={
            "sessionID": other["sessionID"], "token": "0" * 32})
        self.assertEqual(frame["code"], "unauthorized")


class UsersFile(IdentityTest):
    def test_changes_are_picked_up_without_a_restart(self):
        srv = self.with_users()
        kept, frame, _ = self.login(srv, "vanessa", "secret1")
        add_user(self.users, "ada", "secret3", "ops")
        srv.wait_log(r"users file .* reloaded: 3 users", timeout=2)
        _, frame, _ = self.login(srv, "ada", "secret3")
        self.assertEqual(frame["groups"], ["ops"])
        del_user(self.users, "ada")
        srv.wait_log(r"users file .* reloaded: 2 users", timeout=2)
        _, frame, _ = self.login(srv, "ada", "secret3")
        self.assertEqual(frame, REFUSAL)
        # Nobody was dropped meanwhile.
        kept.send({"type": "ping"})
        self.assertEqual(kept.recv_type("pong")["type"], "pong")

    def test_a_broken_file_leaves_the_previous_users(self):
        srv = self.with_users()
        with open(self.users, "a") as f:
            f.write("not a user line\n")
        srv.wait_log(r"users file not reloaded, the previous users stay: "
                     r".*herald\.users:\d+: ", timeout=2)
        _, frame, _ = self.login(srv, "marc", "secret2")
        self.assertEqual(frame["type"], "welcome")

    def test_a_missing_file_means_no_authentication(self):
        srv = self.server(config=f'users_file = "{self.users}"\n')
        _, frame, _ = self.login(srv, "anyone")
        self.assertEqual(frame["type"], "welcome")
        self.assertNotIn("groups", frame)
        _, frame, _ = self.login(srv, "anyone", "a password")
        self.assertEqual(frame["code"], "unauthorized")
        self.assertEqual(frame["message"],
                         "this server does not use passwords")


class Groups(IdentityTest):
    def test_the_shipped_admin_methods_are_for_group_admin(self):
        srv = self.with_users()
        admin, _, _ = self.login(srv, "vanessa", "secret1")
        user, _, _ = self.login(srv, "marc", "secret2")
        listing = self.call(admin, "list_sessions")
        self.assertIs(listing["ok"], True)
        self.assertEqual(len(listing["value"]), 2)
        for i, method in enumerate(("list_sessions", "broadcast"), 1):
            r = self.call(user, method, "pwned", call_id=i)
            self.assertEqual((r["ok"], r["code"]), (False, "forbidden"))
            self.assertIn("group admin", r["error"])
            srv.wait_log(rf"\(marc\): method {method}: forbidden")
        self.assertEqual(self.call(user, "whoami", call_id=3)["ok"], True)
        # The refused broadcast sent nothing.
        self.assertEqual(srv.lua("print(message_status(1))").strip(), "nil")

    def test_a_refused_method_does_not_run(self):
        folder = tempfile.mkdtemp(prefix="herald-identity-scripts-")
        os.makedirs(os.path.join(folder, "methods"))
        with open(os.path.join(folder, "methods", "ops.lua"), "w") as f:
            f.write('return { allow = { "ops", "admin" }, run = function() '
                    'send_message_to_remote_user("ran") return "ran" end }\n')
        with open(os.path.join(folder, "methods", "bad.lua"), "w") as f:
            f.write('return { allow = "admin", run = function() end }\n')
        srv = self.with_users(scripts=folder)
        user, _, _ = self.login(srv, "marc", "secret2")
        # The first call loads the file; the second finds it cached.
        for i in (1, 2):
            r = self.call(user, "ops", call_id=i)
            self.assertEqual(r["code"], "forbidden", r)
        self.assertEqual(srv.lua("print(message_status(1))").strip(), "nil")
        admin, _, _ = self.login(srv, "vanessa", "secret1")
        self.assertEqual(self.call(admin, "ops", call_id=3)["value"], "ran")
        r = self.call(admin, "bad", call_id=4)
        self.assertEqual(r["code"], "failed")
        self.assertIn("'allow' must be an array of group names", r["error"])

    def test_without_users_every_method_is_open(self):
        srv = self.server()
        w = srv.wire("anyone")
        self.assertIs(self.call(w, "list_sessions")["ok"], True)


class Hostile(IdentityTest):
    def test_a_password_longer_than_1024_bytes_is_refused(self):
        srv = self.with_users()
        _, frame, _ = self.login(srv, "marc", "x" * 5000)
        self.assertEqual(frame["code"], "bad_hello")
        self.assertIn("password", frame["message"])

    def test_a_password_that_is_not_utf8_is_bad_json(self):
        srv = self.with_users()
        w = srv.wire()
        w.send_raw(b'{"type":"hello","userName":"marc","password":"\xff\xfe"}'
                   b'\n')
        self.assertEqual(w.recv()["code"], "bad_json")

    def test_a_password_that_is_not_a_string(self):
        srv = self.with_users()
        _, frame, _ = self.login(srv, "marc", ["secret2"])
        self.assertEqual(frame["code"], "bad_hello")

    def test_frames_before_the_answer_are_not_run(self):
        srv = self.with_users("auth_delay = 0.5\n")
        w = srv.wire()
        w.send_raw(json.dumps({"type": "hello", "userName": "marc",
                               "password": "wrong"}).encode() + b"\n" +
                   json.dumps({"type": "call", "id": 1, "method":
                               "whoami"}).encode() + b"\n")
        self.assertEqual(w.recv(), REFUSAL)
        self.assertTrue(w.closed())

    def test_closing_during_the_check_leaves_nothing_behind(self):
        srv = self.with_users()
        # More than one address may check at once: some wait their turn.
        for _ in range(20):
            w = Wire(srv.port)
            w.send({"type": "hello", "userName": "marc",
                    "password": "secret2"})
            w.close()
        w, frame, _ = self.login(srv, "vanessa", "secret1")
        self.assertEqual(frame["type"], "welcome")
        out = srv.lua("print(#get_process_activity(SESSIONS_ONLY)"
                      ".sessions)")
        self.assertLessEqual(int(out), 21)
        # Twenty logins at once from one address wait their turn; none
        # fails for it.
        walls = [Wire(srv.port) for _ in range(20)]
        for w in walls:
            w.send({"type": "hello", "userName": "marc",
                    "password": "secret2"})
        for w in walls:
            self.assertEqual(w.recv(timeout=20)["type"], "welcome")


def make_cert(folder, hosts=("127.0.0.1",)):
    r = subprocess.run([HERALD, "cert", "--out", folder, *hosts],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return os.path.join(folder, "server.crt"), os.path.join(folder,
                                                            "server.key")


def tls_wire(port, cafile, host="127.0.0.1"):
    ctx = ssl.create_default_context(cafile=cafile)
    raw = socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW)
    w = Wire.__new__(Wire)
    w.sock = ctx.wrap_socket(raw, server_hostname=host)
    w.buf = b""
    return w


class Tls(IdentityTest):
    def tls_server(self, cert, key):
        return self.with_users(f'tls = {{ cert = "{cert}", key = "{key}" }}\n')

    def test_tls_serves_the_right_password(self):
        cert, key = make_cert(self.tmp)
        srv = self.tls_server(cert, key)
        srv.wait_log(r"listening on 127\.0\.0\.1:\d+ \(TLS\)")
        w = tls_wire(srv.port, cert)
        self.assertIn(w.sock.version(), ("TLSv1.2", "TLSv1.3"))
        frame = w.hello("vanessa", password="secret1")
        self.assertEqual(frame["type"], "welcome")
        w.send({"type": "call", "id": 1, "method": "broadcast",
                "args": ["over TLS"]})
        frames = {f["type"]: f for f in (w.recv(), w.recv())}
        self.assertEqual(frames["message"]["text"], "over TLS")
        self.assertEqual(frames["result"]["value"], 1)
        w2 = tls_wire(srv.port, cert)
        self.assertEqual(w2.hello("marc", password="bad"), REFUSAL)

    def test_a_client_with_another_ca_refuses_the_server(self):
        cert, key = make_cert(self.tmp)
        other = tempfile.mkdtemp(prefix="herald-identity-ca-")
        other_cert, _ = make_cert(other)
        srv = self.tls_server(cert, key)
        with self.assertRaises(ssl.SSLCertVerificationError):
            tls_wire(srv.port, other_cert)
        # A certificate for another name.
        with self.assertRaises(ssl.SSLCertVerificationError):
            tls_wire(srv.port, cert, host="example.org")

    def test_an_expired_certificate_is_refused_by_clients(self):
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.x509.oid import NameOID
        except ImportError:
            self.skipTest("python3-cryptography is not installed")
        import ipaddress
        k = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             "127.0.0.1")])
        now = datetime.datetime.now(datetime.timezone.utc)
        c = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(k.public_key()).serial_number(7)
             .not_valid_before(now - datetime.timedelta(days=10))
             .not_valid_after(now - datetime.timedelta(days=1))
             .add_extension(x509.SubjectAlternativeName(
                 [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                 critical=False)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                            critical=True)
             .sign(k, hashes.SHA256()))
        cert = os.path.join(self.tmp, "old.crt")
        key = os.path.join(self.tmp, "old.key")
        with open(cert, "wb") as f:
            f.write(c.public_bytes(serialization.Encoding.PEM))
        with open(key, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        srv = self.tls_server(cert, key)
        with self.assertRaisesRegex(ssl.SSLCertVerificationError, "expired"):
            tls_wire(srv.port, cert)

    def test_a_plaintext_client_gets_no_welcome(self):
        cert, key = make_cert(self.tmp)
        srv = self.tls_server(cert, key)
        w = srv.wire()
        w.send({"type": "hello", "userName": "vanessa",
                "password": "secret1"})
        self.assertIsNone(w.recv())
        srv.wait_log(r"connection from 127\.0\.0\.1 closed: TLS handshake "
                     r"failed")
        # The server goes on serving TLS clients.
        self.assertEqual(tls_wire(srv.port, cert).hello(
            "vanessa", password="secret1")["type"], "welcome")

    def test_a_certificate_that_cannot_be_loaded_stops_the_start(self):
        missing = os.path.join(self.tmp, "nowhere.crt")
        r = serve(f'tls = {{ cert = "{missing}", key = "{missing}" }}\n')
        self.assertEqual(r.returncode, 2)
        self.assertIn(f"cannot load the certificate {missing}", r.stderr)


def serve(config, *args):
    """herald serve that is expected to refuse to start."""
    folder = tempfile.mkdtemp(prefix="herald-identity-serve-")
    path = os.path.join(folder, "herald.conf.lua")
    with open(path, "w") as f:
        f.write(config)
    return subprocess.run([HERALD, "serve", "--config", path, "--no-console",
                           "--admin-socket", os.path.join(folder, "a.sock"),
                           *args], capture_output=True, text=True,
                          timeout=20 * SLOW, stdin=subprocess.DEVNULL)


class ProtectedMode(IdentityTest):
    def test_beyond_loopback_without_users_or_tls_is_refused(self):
        add_user(self.users, "vanessa", "secret1", "admin")
        for config in ("", f'users_file = "{self.users}"\n'):
            with self.subTest(config=config):
                r = serve(config, "--listen", "0.0.0.0:0")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("refusing to listen on 0.0.0.0:0 (listen) without",
                              r.stderr)
                self.assertIn("herald user add", r.stderr)
                self.assertIn("insecure = true", r.stderr)
                self.assertNotIn("listening on", r.stderr)

    def test_users_and_tls_or_insecure_may_listen_beyond_loopback(self):
        add_user(self.users, "vanessa", "secret1", "admin")
        cert, key = make_cert(self.tmp)
        for config, warned in (
                (f'users_file = "{self.users}"\ntls = {{ cert = "{cert}", '
                 f'key = "{key}" }}\n', False),
                ("insecure = true\n", True)):
            with self.subTest(warned=warned):
                srv = Server(config=config, args=("--listen", "0.0.0.0:0"))
                try:
                    text = srv.log.text()
                    self.assertEqual("without users and TLS (insecure = "
                                     "true)" in text, warned, text)
                finally:
                    srv.stop()

    def test_loopback_needs_neither(self):
        srv = self.server()
        self.assertEqual(srv.wire().hello("anyone")["type"], "welcome")

    def test_localhost_is_loopback(self):
        srv = self.server(args=("--listen", "localhost:0"))
        srv.wait_log(r"listening on localhost:\d+")
        self.assertEqual(srv.wire().hello("anyone")["type"], "welcome")
