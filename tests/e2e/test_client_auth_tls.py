"""`herald client` and `herald call` against a server that requires TLS
and passwords: --tls and --ca, certificate verification (wrong CA, another
name, expired), TLS on one side only, and the password from
HERALD_PASSWORD, --password-stdin or the terminal, refused without a loop.

Everything is real: certificates made with the openssl command line (the
expired one with python's cryptography module, skipped without it), a
users file made with `herald user add`, the real server, real clients."""
import datetime
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import HERALD, SLOW, HeraldTest, Lines, check_report

PASSWORD = "correct horse \"battery\" staple \u00e9"
USER = "vanessa"
CERTS = None  # the module's folder of certificates, keys and users file


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True,
                   cwd=CERTS, timeout=60)


def make_leaf(name, san, ca="ca"):
    """name.crt and name.key: a certificate for san signed by ca."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}")
    with open(os.path.join(CERTS, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt",
            "-CAkey", f"{ca}.key", "-CAcreateserial", "-days", "30",
            "-out", f"{name}.crt", "-extfile", f"{name}.ext")


def make_expired():
    """expired.crt and expired.key, signed by ca, valid for 127.0.0.1 until
    yesterday; False when python's cryptography module is missing (the
    openssl command of Debian 12, 3.0, cannot date a certificate in the
    past)."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return False
    import ipaddress
    with open(os.path.join(CERTS, "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    with open(os.path.join(CERTS, "ca.crt"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(os.path.join(CERTS, "expired.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(CERTS, "expired.key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return True


def setUpModule():
    global CERTS, HAVE_EXPIRED
    CERTS = tempfile.mkdtemp(prefix="herald-tls-")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
            "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=test CA")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
            "other-ca.key", "-out", "other-ca.crt", "-days", "30", "-subj",
            "/CN=another CA")
    make_leaf("server", "IP:127.0.0.1,DNS:localhost")
    make_leaf("elsewhere", "DNS:elsewhere.example,IP:192.0.2.1")
    HAVE_EXPIRED = make_expired()
    r = subprocess.run([HERALD, "user", "add", USER, "--group", "admins",
                        "--file", path("users")], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def tearDownModule():
    shutil.rmtree(CERTS, ignore_errors=True)


def path(name):
    return os.path.join(CERTS, name)


def config(cert="server", users=True):
    text = (f'tls = {{ cert = "{path(cert + ".crt")}", '
            f'key = "{path(cert + ".key")}" }}\n')
    if users:
        text += f'users_file = "{path("users")}"\n'
    return text


def finish(proc, out, timeout=10):
    status = proc.wait(timeout=timeout * SLOW)
    out.thread.join(timeout=5)
    return status


class Relay:
    """Relays 127.0.0.1:self.port to the server's port, bytes as they are
    (TLS passes through); cut() closes the relayed connections at both
    ends, a lost connection for the client and the server alike."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.socks = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.listener.accept()
                up = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.socks += [down, up]
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()
        self.cut()


class AuthTLSTest(HeraldTest):
    """Runs the commands with an environment of their own: HERALD_SERVER
    set, HERALD_PASSWORD only where a test gives it."""

    def start(self, cert="server", users=True, **kw):
        self.srv = self.server(config=config(cert, users), **kw)
        self.srv.env.pop("HERALD_PASSWORD", None)
        self.addr = f"127.0.0.1:{self.srv.port}"
        return self.srv

    def env(self, password=None):
        env = dict(self.srv.env)
        if password is not None:
            env["HERALD_PASSWORD"] = password
        return env

    def herald(self, *args, password=None, input=None, timeout=30):
        r = subprocess.run([HERALD, *args], env=self.env(password),
                           cwd=self.srv.dir, capture_output=True, text=True,
                           input=input, timeout=timeout * SLOW,
                           stdin=None if input is not None
                           else subprocess.DEVNULL)
        check_report(r.stdout + r.stderr, f"herald {args[0]}")
        return r

    def spawn(self, *args, password=None, stdin=subprocess.DEVNULL):
        proc = subprocess.Popen([HERALD, *args], env=self.env(password),
                                cwd=self.srv.dir, stdin=stdin,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        self.srv.children.append(proc)
        out = Lines(proc.stdout)
        self.srv.outputs.append((f"herald {args[0]}", out))
        return proc, out

    def failed_logins(self):
        return len(re.findall(r"warn: login failed: ", self.srv.log.text()))

    def logins(self):
        return len(re.findall(rf"info: login of {USER} from ",
                              self.srv.log.text()))

    def assert_one_line(self, r, line, status):
        self.assertEqual(r.returncode, status, r.stderr)
        self.assertEqual(r.stderr, line + "\n")


class TLSAndPasswords(AuthTLSTest):
    def setUp(self):
        self.start()

    def test_call_with_ca_and_password_from_the_environment(self):
        r = self.herald("call", "--ca", path("ca.crt"), "--user", USER,
                        "whoami", password=PASSWORD)
        self.assertEqual(r.returncode, 0, r.stderr)
        me = json.loads(r.stdout)
        self.assertEqual(me["userName"], USER)
        self.assertEqual(me["groups"], ["admins"])
        self.assertEqual(r.stderr, "")
        self.assertEqual(self.logins(), 1)

    def test_call_by_name_sends_sni_and_checks_the_name(self):
        # localhost: SSL_set1_host's name check, not the address's
        r = self.herald("call", "--server", f"localhost:{self.srv.port}",
                        "--ca", path("ca.crt"), "--user", USER, "whoami",
                        password=PASSWORD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["userName"], USER)

    def test_call_with_password_stdin(self):
        r = self.herald("call", "--tls", "--ca", path("ca.crt"), "--user",
                        USER, "--password-stdin", "whoami",
                        input=PASSWORD + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["userName"], USER)

    def test_client_gets_a_message_over_tls(self):
        proc, out = self.spawn("client", "--tls", "--ca", path("ca.crt"),
                               "--user", USER, "--json", "--once",
                               password=PASSWORD)
        welcome = json.loads(out.wait('"type":"welcome"', timeout=10))
        self.assertEqual(welcome["groups"], ["admins"])
        self.srv.lua('send_message_to_remote_user("over TLS")')
        self.assertEqual(finish(proc, out), 0, out.text())
        msgs = [json.loads(l) for l in out.text().splitlines()
                if l.startswith('{"') and '"message"' in l]
        self.assertEqual([m["text"] for m in msgs], ["over TLS"])

    def test_client_password_stdin_and_wiped_from_its_environment(self):
        # --password-stdin: one line, and stdin is not read further
        rd, wr = os.pipe()
        os.write(wr, (PASSWORD + "\nnot a password\n").encode())
        proc, out = self.spawn("client", "--ca", path("ca.crt"), "--user",
                               USER, "--password-stdin", stdin=rd)
        os.close(rd)
        out.wait("^connected to ", timeout=10)
        os.close(wr)
        # HERALD_PASSWORD: wiped from the client's environment once read
        proc2, out2 = self.spawn("client", "--ca", path("ca.crt"), "--user",
                                 USER, password=PASSWORD)
        out2.wait("^connected to ", timeout=10)
        with open(f"/proc/{proc2.pid}/environ", "rb") as f:
            environ = f.read()
        self.assertNotIn(PASSWORD.encode(), environ)
        self.assertEqual(self.logins(), 2)
        self.assertNotIn(PASSWORD, out.text() + out2.text())

    def test_client_reconnects_over_tls_and_resumes_without_password(self):
        relay = Relay(self.srv.port)
        self.addCleanup(relay.close)
        proc, out = self.spawn("client", "--server",
                               f"127.0.0.1:{relay.port}", "--ca",
                               path("ca.crt"), "--user", USER, "--json",
                               password=PASSWORD)
        sid = json.loads(out.wait('"type":"welcome"', timeout=10))[
            "sessionID"]
        relay.cut()
        self.srv.wait_log(rf"session {sid} \({USER}\) postponed")
        self.srv.lua(f'send_message_to_remote_user("while away", "{sid}")')
        out.wait(r"^resumed session ", timeout=10)
        out.wait('"while away"', timeout=5)
        self.assertIsNone(proc.poll())
        # the session was resumed with its token: one login, not two
        self.assertEqual(self.logins(), 1)

    def test_wrong_password_is_one_line_exit_1_and_one_attempt(self):
        for cmd in (["call", "whoami"], ["client", "--retry"]):
            with self.subTest(cmd=cmd[0]):
                before = self.failed_logins()
                started = time.monotonic()
                r = self.herald(cmd[0], "--ca", path("ca.crt"), "--user",
                                USER, *cmd[1:], password="not it",
                                timeout=60)
                self.assert_one_line(r, f"herald: {cmd[0]}: wrong user name "
                                     "or password", 1)
                self.assertEqual(r.stdout, "")
                # the server's delay, about 1 s the first time
                self.assertGreater(time.monotonic() - started, 0.8)
                time.sleep(1.5 * SLOW)  # a loop would try again by now
                self.assertEqual(self.failed_logins(), before + 1,
                                 self.srv.log.text())
        self.assertEqual(self.logins(), 0)

    def test_no_password_and_no_terminal_says_how_to_give_one(self):
        r = self.herald("call", "--ca", path("ca.crt"), "--user", USER,
                        "whoami")
        self.assert_one_line(
            r, "herald: call: wrong user name or password (none was given: "
            "set HERALD_PASSWORD or use --password-stdin)", 1)

    def test_password_longer_than_1024_bytes_is_refused_locally(self):
        for how in ("env", "stdin"):
            with self.subTest(how=how):
                extra = ["--password-stdin"] if how == "stdin" else []
                r = self.herald(
                    "call", "--ca", path("ca.crt"), "--user", USER, *extra,
                    "whoami", password="x" * 1025 if how == "env" else None,
                    input="x" * 1025 + "\n" if how == "stdin" else None)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr, r"^herald: call: .*longer than "
                                 r"1024 bytes\n$")
        # 1024 bytes go out (the server refuses them as any wrong one)
        r = self.herald("call", "--ca", path("ca.crt"), "--user", USER,
                        "whoami", password="x" * 1024)
        self.assert_one_line(r, "herald: call: wrong user name or password",
                             1)
        self.assertEqual(self.failed_logins(), 1)

    def test_password_asked_once_on_a_terminal_without_echo(self):
        # --password-stdin on a terminal: asked the same way
        for typed, status, extra in ((PASSWORD, 0, []),
                                     (PASSWORD, 0, ["--password-stdin"]),
                                     ("not it", 1, [])):
            with self.subTest(status=status, extra=extra):
                text, code = self.on_terminal(
                    ["call", "--ca", path("ca.crt"), "--user", USER,
                     *extra, "whoami"], typed)
                self.assertEqual(code, status, text)
                self.assertEqual(text.count(f"Password for {USER}: "), 1,
                                 text)
                self.assertNotIn(typed, text)  # no echo
                if status == 0:
                    self.assertIn(f'"userName":"{USER}"', text)
                else:
                    self.assertIn("herald: call: wrong user name or "
                                  "password", text)
        # each run: the hello without a password, then one with it
        self.assertEqual(self.failed_logins(), 4)
        self.assertEqual(self.logins(), 2)

    def on_terminal(self, args, typed):
        """Runs herald ARGS on a pseudo-terminal and types `typed` after
        the prompt; returns (all the terminal showed, exit status)."""
        env = self.env()
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(self.srv.dir)
            os.execve(HERALD, [HERALD, *args], env)
        shown = b""
        prompted = False
        deadline = time.monotonic() + 30 * SLOW
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([fd], [], [], 0.1)
                if ready:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:  # EIO: the child is gone
                        break
                    if not chunk:
                        break
                    shown += chunk
                if not prompted and b"Password for " in shown:
                    prompted = True
                    os.write(fd, typed.encode() + b"\n")
            _, status = os.waitpid(pid, 0)
        finally:
            os.close(fd)
        return shown.decode(errors="replace"), os.waitstatus_to_exitcode(
            status)


class TLSFailures(AuthTLSTest):
    """Each failure is one line on stderr, exit 2, and never a loop."""

    def check_both(self, args, line_re, password=PASSWORD):
        """call and client (with --retry: still no second attempt) each
        fail at once with the one line line_re (the command filled in)."""
        for cmd in ("call", "client"):
            with self.subTest(cmd=cmd):
                extra = ["whoami"] if cmd == "call" else ["--retry"]
                started = time.monotonic()
                r = self.herald(cmd, "--user", USER, *args, *extra,
                                password=password)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertRegex(r.stderr.rstrip("\n"),
                                 "^" + line_re.replace("CMD", cmd) + "$")
                self.assertLess(time.monotonic() - started, 5 * SLOW)
        self.assertEqual(self.logins() + self.failed_logins(), 0)

    def verify_failed(self, why, addr=None):
        return (rf"herald: CMD: TLS with {re.escape(addr or self.addr)} "
                rf"failed: certificate verify failed \({why}\)")

    def test_wrong_ca(self):
        self.start()
        self.check_both(["--ca", path("other-ca.crt")],
                        self.verify_failed("unable to get local issuer "
                                           "certificate"))

    def test_system_store_does_not_know_a_private_ca(self):
        self.start()
        self.check_both(["--tls"], self.verify_failed(
            "unable to get local issuer certificate"))

    def test_certificate_for_another_name(self):
        self.start(cert="elsewhere")
        self.check_both(["--ca", path("ca.crt")],
                        self.verify_failed("IP address mismatch"))
        addr = f"localhost:{self.srv.port}"
        self.check_both(["--server", addr, "--ca", path("ca.crt")],
                        self.verify_failed("hostname mismatch", addr))

    def test_expired_certificate(self):
        if not HAVE_EXPIRED:
            self.skipTest("python's cryptography module is missing, and "
                          "openssl 3.0 cannot date a certificate in the past")
        self.start(cert="expired")
        self.check_both(["--ca", path("ca.crt")],
                        self.verify_failed("certificate has expired"))

    def test_plaintext_client_against_a_tls_server(self):
        self.start()
        for cmd in ("call", "client"):
            with self.subTest(cmd=cmd):
                extra = ["whoami"] if cmd == "call" else []
                r = self.herald(cmd, "--user", USER, *extra,
                                password=PASSWORD)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
                self.assertIn("try --tls", r.stderr)
        self.assertEqual(self.logins() + self.failed_logins(), 0)

    def test_tls_client_against_a_plaintext_server(self):
        self.srv = self.server()
        self.addr = f"127.0.0.1:{self.srv.port}"
        self.check_both(["--ca", path("ca.crt")],
                        rf"herald: CMD: TLS with {re.escape(self.addr)} "
                        r"failed: the server does not speak TLS \(.+\)")

    def test_unreadable_ca_file_is_a_usage_error(self):
        self.start()
        r = self.herald("call", "--ca", path("missing.crt"), "whoami")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"^herald: call: --ca: cannot read "
                         r".*missing\.crt: No such file or directory\n$")


class LargeResult(AuthTLSTest):
    def test_a_result_of_megabytes_comes_whole_over_tls(self):
        # hundreds of TLS records, read as they come and as TLS buffers them
        scripts = tempfile.mkdtemp(prefix="herald-tls-scripts-")
        self.addCleanup(shutil.rmtree, scripts, True)
        os.mkdir(os.path.join(scripts, "methods"))
        with open(os.path.join(scripts, "methods", "big.lua"), "w") as f:
            f.write("return function(n) return ('0123456789'):rep(n // 10) "
                    "end\n")
        self.start(scripts=scripts)
        r = self.herald("call", "--ca", path("ca.crt"), "--user", USER,
                        "big", "3000000", password=PASSWORD)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), "0123456789" * 300000)


class Help(unittest.TestCase):
    def test_help_lists_tls_and_password_options(self):
        for cmd in ("client", "call"):
            with self.subTest(cmd=cmd):
                r = subprocess.run([HERALD, cmd, "--help"],
                                   capture_output=True, text=True,
                                   timeout=10)
                self.assertEqual(r.returncode, 0)
                for word in ("--tls", "--ca FILE", "--password-stdin",
                             "HERALD_PASSWORD"):
                    self.assertIn(word, r.stdout)


if __name__ == "__main__":
    unittest.main()
