"""The client side trusts only an admin socket of its own. `herald run` and
`herald console` send the user's script or lines through the admin socket
and print what comes back; where XDG_RUNTIME_DIR is unset (cron), another
local user could make /tmp/herald-$UID/ first and listen there. So before
sending anything both check the socket's folder (owned by the user or
root, not writable by others unless sticky), the socket (owned by the user
or root) and the process listening on it (running as the user or root),
and refuse with exit status 2 otherwise.

The tests run as root, as in CI: "another user" is uid 12345, made owner
of a folder or a socket with os.chown, or of a listening socket with
os.seteuid around listen() (the kernel keeps the listener's credentials
from that moment for SO_PEERCRED). The fake server answers like a real
one, so without the checks herald would print its output and exit 0.

Also here: the log turns C1 control characters in a remote user's name
into '?' (tests/unit/test_log.c has the byte-level cases).
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

from harness import HERALD, SLOW, HeraldTest, check_report

OTHER = 12345  # another local user
ME = os.getuid()
ADVICE = "remove it, or give --socket a path in a folder of your own"
AS_ROOT = unittest.skipUnless(os.geteuid() == 0,
                              "needs root to act as another user")


class FakeServer:
    """A Unix socket at path that answers each connection as a herald
    server would (one print frame, "FAKE", then the end of the run or
    console), and records what reached it. listen_as: the uid listening."""

    def __init__(self, path, listen_as=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        if listen_as is None:
            self.sock.listen()
        else:
            os.seteuid(listen_as)
            try:
                self.sock.listen()
            finally:
                os.seteuid(0)
        self.sock.settimeout(0.05)
        self.connections = 0
        self.handled = 0
        self.received = b""
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cond:
                self.connections += 1
            self._answer(conn)
            with self.cond:
                self.handled += 1
                self.cond.notify_all()

    def _answer(self, conn):
        data = b""
        conn.settimeout(5 * SLOW)
        try:
            while b"\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            if b"\n" in data:
                for frame in ({"type": "print", "text": "FAKE"},
                              {"type": "exit", "status": 0},
                              {"type": "done", "more": False}):
                    conn.sendall(json.dumps(frame).encode() + b"\n")
        except OSError:
            pass
        finally:
            with self.cond:
                self.received += data
            conn.close()

    def wait_handled(self, n, timeout=5):
        """Waits until n connections have been answered or closed."""
        with self.cond:
            self.cond.wait_for(lambda: self.handled >= n, timeout * SLOW)
            return self.handled

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


class FakeServerTest(unittest.TestCase):
    """A folder of the test's own (0700) with a fake server's socket."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="herald-trust-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.folder = os.path.join(self.dir, "run")
        os.mkdir(self.folder, 0o700)
        self.path = os.path.join(self.folder, "herald.sock")
        self.script = os.path.join(self.dir, "secret.lua")
        with open(self.script, "w") as f:
            f.write('print("the secret script")\n')
        # No server of ours anywhere the defaults could lead.
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("HERALD_SOCKET", "XDG_RUNTIME_DIR")}
        self.env["HERALD_SOCKET"] = self.path

    def fake(self, **kw):
        fake = FakeServer(self.path, **kw)
        self.addCleanup(fake.close)
        return fake

    def herald(self, *args, env=None, input=None):
        r = subprocess.run([HERALD, *args], env=env or self.env,
                           cwd=self.dir, capture_output=True, text=True,
                           input=input, timeout=20 * SLOW)
        check_report(r.stdout + r.stderr, f"herald {args[0]}")
        return r

    def run_script(self, *socket_args, env=None):
        return self.herald("run", *socket_args, self.script, env=env)

    def console(self, *socket_args, env=None):
        return self.herald("console", *socket_args, env=env,
                           input='print("a console line")\n')

    def assertRefused(self, r, command, path, why):
        """One line on stderr naming the socket and why, nothing on
        stdout, exit status 2."""
        self.assertEqual(
            (r.returncode, r.stdout, r.stderr),
            (2, "", f"herald: {command}: refusing the admin socket {path}: "
                    f"{why}; {ADVICE}\n"))

    @AS_ROOT
    def test_run_refuses_a_folder_owned_by_another_user(self):
        fake = self.fake()
        os.chown(self.folder, OTHER, OTHER)
        owned = f"owned by uid {OTHER}, not you ({ME})"
        self.assertRefused(self.run_script("--socket", self.path), "run",
                           self.path, f"its folder {self.folder} is {owned}")
        # The same through HERALD_SOCKET, and through a link to the folder
        # (a link of the user's own is followed: its target is checked).
        self.assertRefused(self.run_script(), "run", self.path,
                           f"its folder {self.folder} is {owned}")
        link = os.path.join(self.dir, "link")
        os.symlink(self.folder, link)
        linked = os.path.join(link, "herald.sock")
        self.assertRefused(self.run_script("--socket", linked), "run",
                           linked, f"its folder {link} is {owned}")
        self.assertEqual(fake.connections, 0)
        self.assertEqual(fake.received, b"")

    def test_run_refuses_a_folder_writable_by_others(self):
        fake = self.fake()
        for mode in (0o777, 0o770, 0o702):
            with self.subTest(mode=oct(mode)):
                os.chmod(self.folder, mode)
                self.assertRefused(
                    self.run_script(), "run", self.path,
                    f"its folder {self.folder} is writable by others "
                    f"(mode {mode:04o})")
        self.assertEqual(fake.connections, 0)
        # Its own again, the folder is trusted (the fake answers).
        os.chmod(self.folder, 0o700)
        r = self.run_script()
        self.assertEqual((r.returncode, r.stdout), (0, "FAKE\n"), r.stderr)

    @AS_ROOT
    def test_console_refuses_a_folder_owned_by_another_user(self):
        fake = self.fake()
        os.chown(self.folder, OTHER, OTHER)
        why = (f"its folder {self.folder} is owned by uid {OTHER}, not you "
               f"({ME})")
        self.assertRefused(self.console("--socket", self.path), "console",
                           self.path, why)
        self.assertRefused(self.console(), "console", self.path, why)
        os.chown(self.folder, 0, 0)
        os.chmod(self.folder, 0o777)
        self.assertRefused(self.console(), "console", self.path,
                           f"its folder {self.folder} is writable by others "
                           f"(mode 0777)")
        self.assertEqual(fake.connections, 0)
        self.assertEqual(fake.received, b"")

    @AS_ROOT
    def test_default_path_in_a_folder_of_another_user(self):
        # As under cron: no --socket, no HERALD_SOCKET; the default path is
        # in a folder someone else made first ($XDG_RUNTIME_DIR stands in
        # for /tmp/herald-$UID, which the machine's own server may use).
        fake = self.fake()
        os.chown(self.folder, OTHER, OTHER)
        env = {k: v for k, v in self.env.items() if k != "HERALD_SOCKET"}
        env["XDG_RUNTIME_DIR"] = self.folder
        why = (f"its folder {self.folder} is owned by uid {OTHER}, not you "
               f"({ME})")
        self.assertRefused(self.run_script(env=env), "run", self.path, why)
        self.assertRefused(self.console(env=env), "console", self.path, why)
        self.assertEqual(fake.connections, 0)

    @AS_ROOT
    def test_sticky_folder_trusts_only_a_socket_of_the_user(self):
        # A folder such as /tmp (root's, 1777): others may add files but
        # not remove the user's, so the socket's owner decides.
        # No socket yet: the same error as before the checks.
        os.chmod(self.folder, 0o1777)
        for command in (self.run_script, self.console):
            r = command()
            self.assertEqual((r.returncode, r.stdout), (2, ""))
            self.assertIn(f"cannot reach the server at {self.path}: No such "
                          "file", r.stderr)
        fake = self.fake()
        r = self.run_script()
        self.assertEqual((r.returncode, r.stdout), (0, "FAKE\n"), r.stderr)
        self.assertIn(b"the secret script", fake.received)
        os.chown(self.path, OTHER, OTHER)
        why = f"it is owned by uid {OTHER}, not you ({ME})"
        self.assertRefused(self.run_script(), "run", self.path, why)
        self.assertRefused(self.console(), "console", self.path, why)
        self.assertEqual(fake.connections, 1)

    @AS_ROOT
    def test_a_server_of_another_user_gets_nothing(self):
        # The folder and the socket file are the user's (made before the
        # other user listened, or swapped in after the check): the
        # listener's credentials are what is left to catch it.
        fake = self.fake(listen_as=OTHER)
        why = f"the server on it runs as uid {OTHER}, not you ({ME})"
        self.assertRefused(self.run_script(), "run", self.path, why)
        self.assertRefused(self.console(), "console", self.path, why)
        # Both connected (their refusal names the listener's uid), and
        # neither sent a byte. How fast the fake sees each close is not
        # the point (a sanitizer build may take seconds to exit).
        self.assertGreaterEqual(fake.wait_handled(2), 1)
        self.assertEqual(fake.received, b"")


class RealServer(HeraldTest):
    """The harness's server: its folder is the user's, so both commands
    work; given to someone else, the same socket is refused."""

    @AS_ROOT
    def test_real_server_is_trusted_until_its_folder_changes_hands(self):
        srv = self.server()
        folder = os.path.dirname(srv.socket)
        self.assertEqual(srv.lua('print("real run")'), "real run\n")
        r = srv.cli("console", input='print("real console")\n')
        self.assertEqual((r.returncode, r.stdout), (0, "real console\n"),
                         r.stderr)

        os.chown(folder, OTHER, OTHER)
        path = os.path.join(srv.dir, "refused.lua")
        with open(path, "w") as f:
            f.write('print("never")\n')
        r = srv.cli("run", "--socket", srv.socket, path)
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertIn(f"its folder {folder} is owned by uid {OTHER}",
                      r.stderr)
        r = srv.cli("console", input='print("never")\n')
        self.assertEqual((r.returncode, r.stdout), (2, ""))
        self.assertIn(f"its folder {folder} is owned by uid {OTHER}",
                      r.stderr)

        os.chown(folder, ME, os.getgid())
        self.assertEqual(srv.lua('print("again")'), "again\n")
        self.assertNotIn("refused.lua", srv.log.text())


class LogDefusesC1(HeraldTest):
    def test_c1_controls_in_a_name_become_question_marks(self):
        srv = self.server()
        w = srv.wire()
        # U+009B is CSI: "\u009b31m" would turn a terminal's text red.
        welcome = w.hello("a\u009b31mred\u0085 caf\u00e9",
                          machineName="m\u009dx")
        self.assertEqual(welcome["type"], "welcome")
        line = srv.wait_log(f"session {welcome['sessionID']} opened")
        self.assertIn("opened: a?31mred? caf\u00e9@m?x", line)
        for c1 in ("\u009b", "\u0085", "\u009d", "\u00c2"):
            self.assertNotIn(c1, srv.log.text())


if __name__ == "__main__":
    unittest.main()
