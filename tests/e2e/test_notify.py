"""`herald client --notify` against a real notification daemon: a session
D-Bus of its own (dbus-daemon, with no service folder, so nothing is
started behind the test's back), an X server (Xvfb, on a display number it
picks itself) and dunst on them. Each message the server sends shows in
the client's alert and reaches dunst as a notification with summary
"herald" and the message as its body: dunst prints it as it receives it
(-print) and lists it in its history.

And without a bus (DBUS_SESSION_BUS_ADDRESS pointing to nothing),
notify-send fails: the client still shows every alert, and says so once
on stderr.

The programs come from Debian packages (xvfb, dunst, libnotify-bin,
dbus-daemon, dbus-bin), which `make deps` installs; a missing one fails
the test and says so. Every process started here is ended after the test,
failed or not."""
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

from harness import (HERALD, SLOW, HeraldTest, Lines, check_report,
                     message_status, send, wait_until)

NEEDED = {  # program: the Debian package that has it
    "dbus-daemon": "dbus-daemon",
    "dbus-send": "dbus-bin",
    "Xvfb": "xvfb",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "notify-send": "libnotify-bin",
}

# A session bus that starts nothing by itself (no <servicedir>): the only
# notification daemon on it is the one the test starts.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC
 "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

DUNSTRC = """[global]
    timeout = 60
"""

NOTIFY_FAILED = "herald: notify-send failed; messages are still shown here"


def require_programs(test):
    missing = sorted(f"{prog} ({pkg})" for prog, pkg in NEEDED.items()
                     if shutil.which(prog) is None)
    if missing:
        test.fail("missing for the --notify tests: " + ", ".join(missing) +
                  "; run `make deps` (tools/deps.sh test installs them)")


def tail(path, n=2000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def dbus_reply(text):
    """The value of a `dbus-send --print-reply` answer, as Python values:
    arrays as lists, dict entries as (key, value), variants unwrapped,
    strings and numbers as they are."""
    body = text.split("\n", 1)[1] if "\n" in text else ""
    tokens = re.findall(r'array \[|\]|dict entry\(|\)|variant|string "[^"]*"|'
                        r'(?:u?int(?:16|32|64)|double|byte|boolean) \S+',
                        body)

    def value(i):
        tok = tokens[i]
        if tok == "array [":
            items, i = [], i + 1
            while tokens[i] != "]":
                item, i = value(i)
                items.append(item)
            return items, i + 1
        if tok == "dict entry(":
            key, i = value(i + 1)
            val, i = value(i)
            if tokens[i] != ")":
                raise ValueError(f"dict entry not closed: {tokens[i]!r}")
            return (key, val), i + 1
        if tok == "variant":
            return value(i + 1)
        if tok.startswith('string "'):
            return tok[len('string "'):-1], i + 1
        kind, num = tok.split(" ", 1)
        if kind == "boolean":
            return num == "true", i + 1
        return (float(num) if kind == "double" else int(num)), i + 1

    if not tokens:
        return None
    result, _ = value(0)
    return result


class Desktop:
    """A session bus, Xvfb and dunst, each ended by the test's cleanup."""

    def __init__(self, test):
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="herald-desktop-")
        test.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.bus = self.start_bus()
        self.display = self.start_x()
        # UTF-8 whatever the caller's locale: the client, notify-send and
        # dunst pass the text on as it is.
        self.env = dict(os.environ, DISPLAY=self.display,
                        DBUS_SESSION_BUS_ADDRESS=self.bus,
                        XDG_CONFIG_HOME=self.dir, HOME=self.dir,
                        LC_ALL="C.UTF-8")
        self.env.pop("WAYLAND_DISPLAY", None)
        self.dunst, self.dunst_out = self.start_dunst()

    def path(self, name):
        return os.path.join(self.dir, name)

    def popen(self, cmd, lines=False, **kw):
        """Starts cmd; the cleanup ends it (SIGTERM, then SIGKILL). With
        lines, its stdout is read as Lines: (Popen, Lines)."""
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
        out = Lines(proc.stdout) if lines else None

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5 * SLOW)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if out is not None:
                out.thread.join(5 * SLOW)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.test.addCleanup(stop)
        return (proc, out) if lines else proc

    def read_line(self, proc, fd, what, log):
        """The first line a starting program writes on fd, within 10 s."""
        deadline = time.monotonic() + 10 * SLOW
        data = b""
        while b"\n" not in data:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                raise AssertionError(f"{what} did not start (status "
                                     f"{proc.poll()}): {tail(log)}")
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    raise AssertionError(f"{what} did not start: "
                                         f"{tail(log)}")
                data += chunk
        return data.split(b"\n", 1)[0].decode().strip()

    def start_bus(self):
        config = self.path("bus.conf")
        with open(config, "w") as f:
            f.write(BUS_CONFIG.format(path=self.path("bus")))
        log = self.path("dbus.log")
        with open(log, "w") as err:
            proc = self.popen(["dbus-daemon", "--config-file", config,
                               "--nofork", "--nopidfile", "--print-address"],
                              stdout=subprocess.PIPE, stderr=err)
        return self.read_line(proc, proc.stdout.fileno(), "dbus-daemon", log)

    def start_x(self):
        # -displayfd: Xvfb takes the first free display number and writes
        # it there once it accepts clients.
        r, w = os.pipe()
        log = self.path("xvfb.log")
        try:
            with open(log, "w") as err:
                proc = self.popen(["Xvfb", "-displayfd", str(w), "-nolisten",
                                   "tcp", "-screen", "0", "640x480x24"],
                                  stdout=err, stderr=err, pass_fds=(w,))
            os.close(w)
            w = None
            number = self.read_line(proc, r, "Xvfb", log)
        finally:
            if w is not None:
                os.close(w)
            os.close(r)
        return f":{number}"

    def start_dunst(self):
        rc = self.path("dunstrc")
        with open(rc, "w") as f:
            f.write(DUNSTRC)
        log = self.path("dunst.log")
        with open(log, "w") as err:
            proc, out = self.popen(["dunst", "-config", rc, "-print"],
                                   lines=True, env=self.env,
                                   stdout=subprocess.PIPE, stderr=err,
                                   text=True)

        def serving():
            if proc.poll() is not None:
                raise AssertionError(f"dunst exited ({proc.returncode}): "
                                     f"{tail(log)}")
            r = self.dbus("org.freedesktop.Notifications.GetServerInformation")
            return r.returncode == 0 and "dunst" in r.stdout
        wait_until(serving, timeout=10, interval=0.05,
                   what="dunst serves org.freedesktop.Notifications")
        return proc, out

    def logs(self):
        """What the bus, Xvfb and dunst wrote on stderr, for a failure."""
        return "\n".join(f"{name}: {tail(self.path(name))}" for name in
                         ("dbus.log", "xvfb.log", "dunst.log"))

    def dbus(self, method, *args):
        return subprocess.run(
            ["dbus-send", "--session", "--print-reply",
             "--dest=org.freedesktop.Notifications",
             "/org/freedesktop/Notifications", method, *args],
            env=self.env, capture_output=True, text=True, timeout=10 * SLOW)

    def received(self):
        """The notifications dunst printed as it received them: dicts of
        their fields (appname, summary, body, ...)."""
        records, record = [], None
        for line in self.dunst_out.text().splitlines():
            if line == "{":
                record = {}
            elif line == "}" and record is not None:
                records.append(record)
                record = None
            elif record is not None:
                m = re.match(r"\t(\w+): '(.*)'$", line)
                if m:
                    record[m.group(1)] = m.group(2)
        return records

    def history(self):
        """Closes what dunst shows (which puts it in its history), then
        its history as dicts."""
        r = subprocess.run(["dunstctl", "close-all"], env=self.env,
                           capture_output=True, text=True, timeout=10 * SLOW)
        if r.returncode != 0:
            raise AssertionError(f"dunstctl close-all: {r.stderr}")
        r = self.dbus("org.dunstproject.cmd0.NotificationListHistory")
        if r.returncode != 0:
            raise AssertionError(f"NotificationListHistory: {r.stderr}")
        return [dict(entries) for entries in dbus_reply(r.stdout) or []]


def start_client(test, srv, env, user):
    """`herald client --notify` as user, its stdout and stderr apart:
    (Popen, stdout Lines, stderr Lines). Killed after the test."""
    env = dict(env)
    env.pop("HERALD_SERVER", None)
    env.pop("HERALD_PASSWORD", None)
    proc = subprocess.Popen([HERALD, "client", "--server",
                             f"127.0.0.1:{srv.port}", "--user", user,
                             "--notify"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = Lines(proc.stdout), Lines(proc.stderr)

    def stop():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for lines, stream in ((out, proc.stdout), (err, proc.stderr)):
            lines.thread.join(5)
            stream.close()
        check_report(out.text() + "\n" + err.text(), "herald client")
    test.addCleanup(stop)
    out.wait(r"^connected to .* as " + re.escape(user), timeout=10)
    return proc, out, err


def finish_client(proc, err):
    """Ends the client as Ctrl-C would (it says bye) and returns all it
    wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10 * SLOW)
    err.thread.join(5 * SLOW)
    return err.text()


def children(pid):
    """{pid: state letter} of the processes whose parent is pid."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found[int(entry)] = fields[0]
    return found


class Notify(HeraldTest):
    def setUp(self):
        require_programs(self)

    def test_each_message_reaches_the_notification_daemon(self):
        desktop = Desktop(self)
        srv = self.server()
        proc, out, err = start_client(self, srv, desktop.env, "Vanessa")
        texts = ["Maintenance at 22:00 – please save your work ✓",
                 "The server restarts in 5 minutes"]
        for text in texts:
            count, _ = send(srv, text)
            self.assertEqual(count, 1)
            out.wait(re.escape(text), timeout=10)  # the alert, as ever
            try:
                desktop.dunst_out.wait(r"^\tbody: '" + re.escape(text) +
                                       "'$", timeout=10)
            except AssertionError as e:
                raise AssertionError(f"{e}\nthe client's stderr: "
                                     f"{err.text()}\n{desktop.logs()}")
        received = desktop.received()
        self.assertEqual([(n.get("appname"), n.get("summary"), n.get("body"))
                          for n in received],
                         [("notify-send", "herald", t) for t in texts],
                         "dunst received one notification per message, "
                         "summary herald, the text as its body")

        def in_history():
            kept = [(n.get("summary"), n.get("body"))
                    for n in desktop.history()]
            return all(("herald", t) in kept for t in texts) and kept
        kept = wait_until(in_history, timeout=10, interval=0.1,
                          what="both notifications in dunst's history")
        self.assertEqual(len(kept), 2, kept)

        self.assertNotIn("notify-send", finish_client(proc, err))

    def test_failing_notify_send_still_shows_alerts_and_warns_once(self):
        srv = self.server()
        nobus = os.path.join(srv.dir, "no-such-bus")
        env = dict(os.environ, DISPLAY=":99999", LC_ALL="C.UTF-8",
                   DBUS_SESSION_BUS_ADDRESS=f"unix:path={nobus}")
        proc, out, err = start_client(self, srv, env, "Marc")
        for i in range(1, 5):
            text = f"Message {i} without a desktop"
            _, msg_id = send(srv, text)
            out.wait(re.escape(text), timeout=10)
            # The client acknowledges a message after it has shown it and
            # started its notify-send (collecting the one before).
            wait_until(lambda: message_status(srv, msg_id)["acknowledged"],
                       what=f"message {i} acknowledged")
            # That notify-send fails; the client collects it (and says so)
            # before it reads the next message, or as it shows it.
            wait_until(lambda: all(s == "Z" for s in
                                   children(proc.pid).values()),
                       interval=0.02, what=f"notify-send for message {i} "
                       "exited")
            if i == 2:
                # By message 2's ack, the first failure was collected.
                err.wait(re.escape(NOTIFY_FAILED), timeout=10)
        # Messages 2 to 4 collected three failures; one warning.
        text = finish_client(proc, err)
        self.assertEqual(text.count(NOTIFY_FAILED), 1, text)
        self.assertEqual(text.strip(), NOTIFY_FAILED)
        for i in range(1, 5):
            self.assertIn(f"Message {i} without a desktop", out.text())


if __name__ == "__main__":
    import unittest
    unittest.main()
