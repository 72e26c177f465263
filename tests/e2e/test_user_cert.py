"""`herald user` and `herald cert`, run as the real build/herald with no
server: the users file they write (mode 0600, argon2id hashes that
libsodium verifies, never the password), the refusals with their exit
statuses and messages, users_file found through the configuration, the
password asked on a terminal; the certificate and key (modes, refusal to
overwrite, names, validity) and a real TLS handshake with Python's ssl
module that trusts the certificate as its own authority."""
import ctypes
import ctypes.util
import hashlib
import os
import pty
import re
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import HERALD, SLOW, check_report

SODIUM = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
SODIUM.sodium_init()


def verifies(hash_, password):
    """Whether libsodium accepts password (str or bytes) for hash_."""
    if isinstance(password, str):
        password = password.encode()
    return SODIUM.crypto_pwhash_str_verify(
        ctypes.c_char_p(hash_.encode()), ctypes.c_char_p(password),
        ctypes.c_ulonglong(len(password))) == 0


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="herald-usercert-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.env = dict(os.environ)
        for name in ("HERALD_SERVER", "HERALD_SOCKET", "HERALD_PASSWORD"):
            self.env.pop(name, None)

    def herald(self, *args, input=None, cwd=None, umask=None, timeout=60):
        """Runs `herald ARGS` with input (text) on stdin, else /dev/null."""
        r = subprocess.run(
            [HERALD, *args], env=self.env, cwd=cwd or self.dir,
            capture_output=True, text=True, input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            preexec_fn=(lambda: os.umask(umask)) if umask is not None
            else None, timeout=timeout * SLOW)
        check_report(r.stdout + r.stderr, f"herald {args[0]}")
        return r

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def mode(self, path):
        return os.stat(path).st_mode & 0o7777


class UserCommand(Base):
    def users(self, path=None):
        """{name: (hash, [groups])} of the users file, in its order."""
        out = {}
        with open(path or self.path("herald.users")) as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                name, hash_, groups = line.split(":")
                out[name] = (hash_, groups.split(",") if groups else [])
        return out

    def add(self, name, password, *args, **kw):
        r = self.herald("user", "add", name, *args, input=password + "\n",
                        **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_add_list_passwd_del(self):
        r = self.add("vanessa", "s3cret pw", "--group", "admin")
        self.assertEqual(r.stdout, "added user vanessa (groups: admin)\n")
        self.assertEqual(r.stderr, "")
        r = self.add("marc", "other")
        self.assertEqual(r.stdout, "added user marc (no groups)\n")
        r = self.add("al", "third", "--group", "ops,dev", "--group", "web")
        self.assertEqual(r.stdout, "added user al (groups: ops,dev,web)\n")

        users = self.users()
        self.assertEqual(list(users), ["vanessa", "marc", "al"])
        self.assertEqual(users["vanessa"][1], ["admin"])
        self.assertEqual(users["al"][1], ["ops", "dev", "web"])
        # The stored hash is libsodium's argon2id of the password, the
        # newline that ended it on stdin left out.
        self.assertTrue(users["vanessa"][0].startswith("$argon2id$"))
        self.assertTrue(verifies(users["vanessa"][0], "s3cret pw"))
        self.assertFalse(verifies(users["vanessa"][0], "s3cret pw\n"))
        self.assertFalse(verifies(users["vanessa"][0], "other"))
        self.assertTrue(verifies(users["marc"][0], "other"))

        # list: one user a line, names aligned, never a hash.
        r = self.herald("user", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "vanessa  admin\nmarc\n"
                                   "al       ops,dev,web\n")
        self.assertEqual(r.stderr, "")

        r = self.herald("user", "passwd", "marc", input="changed\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "changed the password of marc\n")
        after = self.users()
        self.assertTrue(verifies(after["marc"][0], "changed"))
        self.assertFalse(verifies(after["marc"][0], "other"))
        self.assertEqual(after["vanessa"], users["vanessa"])
        self.assertEqual(after["marc"][1], [])

        r = self.herald("user", "del", "marc")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "deleted user marc\n")
        self.assertEqual(list(self.users()), ["vanessa", "al"])
        r = self.herald("user", "list")
        self.assertEqual(r.stdout, "vanessa  admin\nal       ops,dev,web\n")

    def test_file_is_0600_without_clear_password(self):
        # Whatever the umask, and whatever the old file's mode.
        self.add("vanessa", "pa55-in-clear", umask=0)
        self.assertEqual(self.mode(self.path("herald.users")), 0o600)
        os.chmod(self.path("herald.users"), 0o644)
        self.add("marc", "another-clear-one", umask=0)
        self.assertEqual(self.mode(self.path("herald.users")), 0o600)
        with open(self.path("herald.users"), "rb") as f:
            data = f.read()
        self.assertNotIn(b"pa55-in-clear", data)
        self.assertNotIn(b"another-clear-one", data)
        self.assertRegex(data.decode(),
                         r"(?m)^vanessa:\$argon2id\$v=19\$[^:\s]+:$")
        # Nothing else was left in the folder (no temporary file).
        self.assertEqual(sorted(os.listdir(self.dir)), ["herald.users"])

    def test_refusals(self):
        self.add("vanessa", "pw", "--group", "admin")
        with open(self.path("herald.users"), "rb") as f:
            before = f.read()
        cases = [
            (["add", "vanessa"], "x\n", 1,
             "herald: user: user vanessa already exists; use 'herald user "
             "passwd vanessa'\n"),
            (["del", "nobody"], None, 1,
             "herald: user: no user nobody in herald.users\n"),
            (["passwd", "nobody"], "x\n", 1,
             "herald: user: no user nobody in herald.users\n"),
            (["add", "bad name"], "x\n", 2,
             "herald: user: bad user name 'bad name': "),
            (["add", "x" * 65], "x\n", 2, "herald: user: bad user name"),
            (["add", "marc", "--group", "not ok"], "x\n", 2,
             "herald: user: bad group 'not ok'"),
            (["add", "marc", "--group", "a.b"], "x\n", 2,
             "herald: user: bad group 'a.b'"),
            (["passwd", "vanessa", "--group", "x"], "x\n", 2,
             "herald: user: --group goes with 'add' only"),
            (["add", "marc"], "\n", 1, "herald: user: empty password\n"),
            (["add", "marc"], None, 1, "herald: user: empty password\n"),
            (["add", "marc"], "p" * 1025 + "\n", 1,
             "herald: user: the password is longer than 1024 bytes\n"),
            (["add", "marc"], "a\0b\n", 1,
             "herald: user: the password holds a NUL byte\n"),
            (["passwd", "vanessa"], "", 1, "herald: user: empty password\n"),
            # The password is never an argument.
            (["add", "marc", "--password", "pw"], None, 2,
             "herald: user: unknown or incomplete option '--password'"),
            ([], None, 2, "herald: user: no subcommand given"),
            (["frob"], None, 2, "herald: user: unknown subcommand 'frob'"),
            (["add"], None, 2, "herald: user: add: no user name given"),
            (["del", "a", "b"], None, 2,
             "herald: user: unexpected argument 'b'"),
            (["list", "x"], None, 2, "herald: user: unexpected argument"),
        ]
        for args, stdin, status, message in cases:
            with self.subTest(args=args, stdin=stdin and stdin[:20]):
                r = self.herald("user", *args, input=stdin)
                self.assertEqual(r.returncode, status, r.stderr)
                self.assertTrue(r.stderr.startswith(message), r.stderr)
                self.assertEqual(r.stdout, "")
                with open(self.path("herald.users"), "rb") as f:
                    self.assertEqual(f.read(), before)

        # The longest password is fine, and only the first line counts.
        self.add("marc", "p" * 1024)
        self.assertTrue(verifies(self.users()["marc"][0], "p" * 1024))
        self.add("luc", "first\nsecond")
        self.assertTrue(verifies(self.users()["luc"][0], "first"))

    def test_help(self):
        r = self.herald("user", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("usage: herald user add NAME"))
        for word in ("del", "passwd", "list", "--group", "--file",
                     "--config"):
            self.assertIn(word, r.stdout)
        self.assertEqual(r.stderr, "")
        r = self.herald("--help")
        self.assertRegex(r.stdout, r"(?m)^  user ")
        self.assertRegex(r.stdout, r"(?m)^  cert ")

    def test_bad_file_line_is_reported_with_its_number(self):
        with open(self.path("herald.users"), "w") as f:
            f.write("# users\nvanessa:not-a-hash:admin\n")
        for args, stdin in ((["list"], None), (["add", "marc"], "pw\n"),
                            (["del", "vanessa"], None)):
            with self.subTest(args=args):
                r = self.herald("user", *args, input=stdin)
                self.assertEqual(r.returncode, 1)
                self.assertTrue(r.stderr.startswith(
                    "herald: user: herald.users:2: user vanessa: bad "
                    "password hash"), r.stderr)
                self.assertEqual(r.stdout, "")

    def test_file_from_the_configuration(self):
        # --config: users_file is beside the configuration, not in the
        # current folder.
        os.mkdir(self.path("etc"))
        os.mkdir(self.path("work"))
        with open(self.path("etc", "herald.conf.lua"), "w") as f:
            f.write('users_file = "accounts.users"\n')
        self.add("vanessa", "pw", "--config", self.path("etc",
                                                        "herald.conf.lua"),
                 cwd=self.path("work"))
        self.assertTrue(os.path.exists(self.path("etc", "accounts.users")))
        self.assertEqual(os.listdir(self.path("work")), [])
        self.assertEqual(self.mode(self.path("etc", "accounts.users")),
                         0o600)
        r = self.herald("user", "list", "--config", "../etc/herald.conf.lua",
                        cwd=self.path("work"))
        self.assertEqual(r.stdout, "vanessa\n")

        # ./herald.conf.lua is read when there is one.
        with open(self.path("work", "herald.conf.lua"), "w") as f:
            f.write('users_file = "sub/local.users"\n')
        os.mkdir(self.path("work", "sub"))
        self.add("marc", "pw", cwd=self.path("work"))
        self.assertEqual(list(self.users(self.path("work", "sub",
                                                   "local.users"))),
                         ["marc"])
        # --file wins over both.
        self.add("luc", "pw", "--file", self.path("mine.users"),
                 cwd=self.path("work"))
        self.assertEqual(list(self.users(self.path("mine.users"))), ["luc"])
        # No configuration: herald.users in the current folder.
        self.add("ana", "pw")
        self.assertEqual(list(self.users()), ["ana"])

        # A bad configuration is a usage error naming it.
        with open(self.path("bad.conf.lua"), "w") as f:
            f.write("users_file = 42\n")
        r = self.herald("user", "list", "--config", "bad.conf.lua")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith(
            "herald: configuration: bad.conf.lua"), r.stderr)
        r = self.herald("user", "list", "--config", "missing.conf.lua")
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.conf.lua", r.stderr)

    def test_concurrent_adds_lose_nothing(self):
        # Each one loads, hashes (tens of milliseconds) and saves: without
        # a lock, the last to save would drop the others' users.
        procs = [subprocess.Popen(
            [HERALD, "user", "add", f"user{i}"], cwd=self.dir, env=self.env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True) for i in range(4)]
        for p in procs:  # the passwords go to all of them at once
            p.stdin.write("pw\n")
            p.stdin.close()
        for p in procs:
            self.assertEqual(p.wait(timeout=60 * SLOW), 0, p.stderr.read())
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(sorted(self.users()),
                         [f"user{i}" for i in range(4)])

    def terminal(self, *args, answers):
        """Runs `herald ARGS` on a pseudo-terminal, typing each answer
        after its prompt; returns (status, what the terminal showed)."""
        master, slave = pty.openpty()
        proc = subprocess.Popen([HERALD, *args], cwd=self.dir, env=self.env,
                                stdin=slave, stdout=slave, stderr=slave,
                                start_new_session=True)
        os.close(slave)
        shown = b""
        deadline = time.monotonic() + 60 * SLOW
        pending = list(answers)
        while True:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, shown)
            ready, _, _ = select.select([master], [], [], left)
            try:
                chunk = os.read(master, 4096) if ready else b""
            except OSError:  # the terminal closed: herald ended
                break
            if not chunk and proc.poll() is not None:
                break
            shown += chunk
            if pending and shown.rstrip().endswith(pending[0][0].encode()):
                os.write(master, pending.pop(0)[1].encode() + b"\n")
        status = proc.wait(timeout=10 * SLOW)
        os.close(master)
        return status, shown.decode(errors="replace")

    def test_password_asked_twice_without_echo(self):
        status, shown = self.terminal(
            "user", "add", "vanessa", answers=[
                ("Password for vanessa:", "typed-secret"),
                ("Again:", "typed-secret")])
        self.assertEqual(status, 0, shown)
        self.assertIn("Password for vanessa: ", shown)
        self.assertIn("Again: ", shown)
        self.assertNotIn("typed-secret", shown)
        self.assertIn("added user vanessa (no groups)", shown)
        self.assertTrue(verifies(self.users()["vanessa"][0],
                                 "typed-secret"))

        status, shown = self.terminal(
            "user", "passwd", "vanessa", answers=[
                ("Password for vanessa:", "one"), ("Again:", "two")])
        self.assertEqual(status, 1, shown)
        self.assertIn("herald: user: the two passwords differ", shown)
        self.assertTrue(verifies(self.users()["vanessa"][0],
                                 "typed-secret"))


def decode_cert(path):
    return ssl._ssl._test_decode_cert(path)


def not_after(path):
    """The certificate's notAfter in seconds since the epoch: from the
    openssl command when there is one, else from Python's decoder."""
    if shutil.which("openssl"):
        out = subprocess.run(["openssl", "x509", "-enddate", "-noout", "-in",
                              path], capture_output=True, text=True,
                             check=True).stdout
        return ssl.cert_time_to_seconds(out.strip().split("=", 1)[1])
    return ssl.cert_time_to_seconds(decode_cert(path)["notAfter"])


class TLSEcho:
    """A TLS echo server on 127.0.0.1 with the given pair, in a thread."""

    def __init__(self, crt, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(crt, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    data = tls.recv(1024)
                    tls.sendall(b"echo:" + data)
            except (ssl.SSLError, OSError):
                pass  # a client that refused the certificate

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def talk(self, ca, hostname):
        """Handshake as a client trusting ca only, checking hostname."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(ca)
        self.client_settings = ctx.check_hostname, ctx.verify_mode
        with socket.create_connection(("127.0.0.1", self.port),
                                      timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                tls.sendall(b"hi")
                return tls.recv(1024)


class CertCommand(Base):
    def cert(self, *args, **kw):
        r = self.herald("cert", *args, **kw)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r

    def test_files_modes_and_output(self):
        out = self.path("tls", "certs")
        r = self.cert("--out", out, "localhost", "127.0.0.1", umask=0)
        crt, key = os.path.join(out, "server.crt"), os.path.join(
            out, "server.key")
        self.assertEqual(self.mode(crt), 0o644)
        self.assertEqual(self.mode(key), 0o600)
        self.assertEqual(self.mode(out), 0o700)
        self.assertEqual(sorted(os.listdir(out)), ["server.crt",
                                                   "server.key"])
        with open(crt) as f:
            pem = f.read()
        self.assertTrue(pem.startswith("-----BEGIN CERTIFICATE-----"))
        with open(key) as f:
            self.assertIn("PRIVATE KEY-----", f.read())
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
        fingerprint = ":".join(digest[i:i + 2]
                               for i in range(0, 64, 2)).upper()
        self.assertEqual(r.stdout, f"certificate: {crt}\nkey: {key}\n"
                                   f"SHA-256 fingerprint: {fingerprint}\n")
        self.assertEqual(r.stderr, "")
        # A strict umask does not make the certificate unreadable.
        self.cert("--out", self.path("strict"), "localhost", umask=0o077)
        self.assertEqual(self.mode(self.path("strict", "server.crt")), 0o644)
        # The current folder by default.
        self.cert("localhost")
        self.assertTrue(os.path.exists(self.path("server.key")))

    def test_names_and_validity(self):
        self.cert("--out", self.dir, "herald.example.com", "localhost",
                  "127.0.0.1", "::1")
        crt = self.path("server.crt")
        info = decode_cert(crt)
        self.assertEqual(info["subject"],
                         ((("commonName", "herald.example.com"),),))
        self.assertEqual(info["issuer"], info["subject"])
        self.assertEqual(info["subjectAltName"],
                         (("DNS", "herald.example.com"), ("DNS", "localhost"),
                          ("IP Address", "127.0.0.1"),
                          ("IP Address", "0:0:0:0:0:0:0:1")))
        now = time.time()
        self.assertLess(abs(ssl.cert_time_to_seconds(info["notBefore"])
                            - now), 300)
        self.assertLess(abs(not_after(crt) - (now + 365 * 86400)), 300)
        # Two certificates never share a serial.
        self.cert("--out", self.path("again"), "localhost")
        self.assertNotEqual(
            info["serialNumber"],
            decode_cert(self.path("again", "server.crt"))["serialNumber"])

        self.cert("--out", self.path("short"), "--days", "1", "localhost")
        self.assertLess(abs(not_after(self.path("short", "server.crt"))
                            - (time.time() + 86400)), 300)
        if shutil.which("openssl"):
            text = subprocess.run(
                ["openssl", "x509", "-noout", "-text", "-in", crt],
                capture_output=True, text=True, check=True).stdout
            self.assertIn("ecdsa-with-SHA256", text)
            self.assertIn("P-256", text)
            self.assertRegex(text, r"Basic Constraints: critical\s+CA:TRUE")
            self.assertIn("TLS Web Server Authentication", text)

    def test_tls_handshake_with_python(self):
        self.cert("--out", self.path("a"), "localhost", "127.0.0.1")
        self.cert("--out", self.path("b"), "localhost", "127.0.0.1")
        crt, key = self.path("a", "server.crt"), self.path("a", "server.key")
        srv = TLSEcho(crt, key)
        self.addCleanup(srv.close)
        for hostname in ("127.0.0.1", "localhost"):
            with self.subTest(hostname=hostname):
                self.assertEqual(srv.talk(crt, hostname), b"echo:hi")
                self.assertEqual(srv.client_settings,
                                 (True, ssl.CERT_REQUIRED))
        # A name the certificate does not hold.
        with self.assertRaises(ssl.SSLCertVerificationError) as e:
            srv.talk(crt, "other.example.com")
        self.assertIn("match", str(e.exception))
        # A client that trusts another certificate refuses this one.
        with self.assertRaises(ssl.SSLCertVerificationError):
            srv.talk(self.path("b", "server.crt"), "localhost")

    def test_refuses_to_overwrite(self):
        out = self.path("certs")
        self.cert("--out", out, "localhost")
        files = {n: open(os.path.join(out, n), "rb").read()
                 for n in ("server.crt", "server.key")}
        r = self.herald("cert", "--out", out, "localhost")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, f"herald: cert: {out}/server.crt already "
                                   "exists; give --force to replace it\n")
        self.assertEqual(r.stdout, "")
        for n, data in files.items():
            with open(os.path.join(out, n), "rb") as f:
                self.assertEqual(f.read(), data)
        # The key alone is enough to refuse, and nothing is written.
        os.unlink(os.path.join(out, "server.crt"))
        r = self.herald("cert", "--out", out, "localhost")
        self.assertEqual(r.returncode, 1)
        self.assertIn("server.key already exists", r.stderr)
        self.assertEqual(os.listdir(out), ["server.key"])
        # --force replaces both.
        self.cert("--out", out, "--force", "localhost")
        self.assertNotEqual(open(os.path.join(out, "server.key"),
                                 "rb").read(), files["server.key"])
        self.assertEqual(self.mode(os.path.join(out, "server.key")), 0o600)
        self.assertEqual(sorted(os.listdir(out)), ["server.crt",
                                                   "server.key"])

    def test_usage_errors(self):
        cases = [
            ([], "herald: cert: no HOST given"),
            (["--days", "0", "localhost"], "herald: cert: --days must be"),
            (["--days", "36501", "localhost"], "herald: cert: --days must"),
            (["--days", "7x", "localhost"], "herald: cert: --days must be"),
            (["--days"], "herald: cert: unknown or incomplete option"),
            (["--bogus", "localhost"], "herald: cert: unknown or incomplete"),
            (["bad host"], "herald: cert: 'bad host' is neither"),
            (["a,DNS:evil.com"], "herald: cert: 'a,DNS:evil.com' is"),
            (["localhost", "-x."], "herald: cert: unknown or incomplete"),
            (["--", "-bad"], "herald: cert: '-bad' is neither"),
            (["a" * 40 + "." + "b" * 40 + ".example"],
             "herald: cert: the first HOST"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.herald("cert", "--out", self.path("o"), *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr.startswith(message), r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertFalse(os.path.exists(self.path("o")))
        r = self.herald("cert", "--days", "36500", "--out", self.path("o"),
                        "localhost")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.herald("cert", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("usage: herald cert"))


if __name__ == "__main__":
    unittest.main()
