"""herald serve under systemd (contrib/herald.service, Type=notify): it
says READY=1 once it listens, pings the watchdog from its loop at half of
WatchdogSec, and says STOPPING=1 at SIGTERM. systemd's side is played by
a Unix datagram socket named in NOTIFY_SOCKET, as sd_notify(3) uses it;
without NOTIFY_SOCKET nothing is sent."""
import os
import re
import socket
import tempfile
import time

from harness import ROOT, SLOW, HeraldTest


class NotifySocket:
    """The socket systemd listens on for a service's notifications."""

    def __init__(self, test):
        self.dir = tempfile.mkdtemp(prefix="herald-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        test.addCleanup(self.sock.close)

    def messages(self, until, timeout=5):
        """Datagrams received until one contains `until`; each as text."""
        got = []
        deadline = time.monotonic() + timeout * SLOW
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            got.append(data)
            if until in data:
                return got
        raise AssertionError(f"no {until!r} from herald; got {got}")


class SystemdNotify(HeraldTest):
    def test_ready_once_listening_then_stopping_at_sigterm(self):
        ns = NotifySocket(self)
        srv = self.server(env={"NOTIFY_SOCKET": ns.path})
        got = ns.messages("READY=1")
        self.assertIn("STATUS=serving", got[-1])
        # ready means ready: a client is served at once
        self.assertEqual(srv.wire("Vanessa").welcome["type"], "welcome")
        self.assertEqual(srv.stop(), 0)
        ns.messages("STOPPING=1")

    def test_the_watchdog_is_fed_from_the_loop(self):
        ns = NotifySocket(self)
        # WatchdogSec=0.4: a ping every 200 ms
        srv = self.server(env={"NOTIFY_SOCKET": ns.path,
                               "WATCHDOG_USEC": "400000"})
        ns.messages("READY=1")
        srv.wait_log("systemd watchdog: a ping every 200 ms")
        start = time.monotonic()
        pings = 0
        while pings < 5:
            ns.messages("WATCHDOG=1", timeout=2)
            pings += 1
        # five pings at 200 ms apart, not a burst
        self.assertGreater(time.monotonic() - start, 0.6)

    def test_nothing_without_a_watchdog(self):
        ns = NotifySocket(self)
        srv = self.server(env={"NOTIFY_SOCKET": ns.path})
        ns.messages("READY=1")
        self.assertNotIn("systemd watchdog", srv.log.text())
        with self.assertRaises(AssertionError):
            ns.messages("WATCHDOG=1", timeout=0.6)


class ServiceUnit(HeraldTest):
    """contrib/herald.service names what herald really accepts."""

    def test_the_unit_starts_herald_with_options_it_knows(self):
        with open(os.path.join(ROOT, "contrib", "herald.service")) as f:
            unit = f.read().replace("\\\n", " ")
        self.assertRegex(unit, r"(?m)^Type=notify$")
        self.assertRegex(unit, r"(?m)^WatchdogSec=\d+$")
        for option in ("NoNewPrivileges=yes", "ProtectSystem=strict"):
            self.assertIn(option, unit)
        start = re.search(r"(?m)^ExecStart=(\S+) serve (.*)$", unit)
        options = re.findall(r"--[a-z-]+", start.group(2))
        srv = self.server()
        usage = srv.cli("serve", "--help").stdout
        for option in options:
            self.assertIn(option, usage)
