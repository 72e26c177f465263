"""The Lua console end to end, in real terminals: each behaviour is typed
into a tmux pane and read back from the screen, for both entry points:

  - `herald console --socket S` attached to a server started by the
    harness (HeraldConsoleTest);
  - the prompt of `herald serve` itself, stdin a terminal (ServePromptTest).

Every test has a private tmux server (`tmux -L herald-test-<random>`, a
120x40 pane, killed in cleanup) and HOME in a temporary folder, where the
history file goes. Text is sent with `send-keys -l` (literal: `end` is not
the End key), keys separately; the screen is polled with `capture-pane`
until the expected text appears.
"""
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import (HERALD, SCRIPTS, SLOW, WRAPPER, HeraldTest, Server,
                     Wire, check_report)

PROMPT = "herald> "
MORE = "     >> "
PROMPTS = (PROMPT.rstrip(), MORE.rstrip())

# API.md's natives, each expected on one line of \help.
NATIVES = ("get_process_activity", "send_message_to_remote_user",
           "message_status", "drop_remote_user",
           "reject_new_remote_connections", "session_info", "process_info",
           "current_session", "delay_process")


def is_prompt(line):
    return line.startswith(PROMPTS)


def unvis(text):
    """libedit writes its history file strvis-encoded (a space is \\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def next_message(wire, timeout):
    """The next message frame the wire receives within timeout, or None
    (pings are answered, other frames skipped)."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            frame = wire.recv(left / SLOW)
        except socket.timeout:
            return None
        if frame is None or frame.get("type") == "message":
            return frame
        if frame.get("type") == "ping":
            wire.send({"type": "pong"})


class Pane:
    """A private tmux server whose one pane (120x40) runs argv, in cwd,
    with HOME=home."""

    def __init__(self, argv, cwd, home):
        self.name = "herald-test-" + secrets.token_hex(6)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("TMUX", "TMUX_PANE")}
        self.env["HOME"] = home
        self.pid = 0
        try:
            self.tmux("new-session", "-d", "-x", "120", "-y", "40", "-c",
                      cwd, "-e", "HOME=" + home, *argv)
            self.pid = int(self.tmux("display-message", "-p",
                                     "#{pane_pid}"))
        except BaseException:
            self.kill()
            raise

    def tmux(self, *args):
        r = subprocess.run(["tmux", "-L", self.name, "-f", os.devnull,
                            *args], env=self.env, capture_output=True,
                           text=True, timeout=10)
        if r.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {r.stderr}")
        return r.stdout

    def send(self, text):
        """Types text (literally), without Enter."""
        self.tmux("send-keys", "-l", text)

    def keys(self, *keys):
        """Presses keys: Enter, Tab, Up, C-c, C-d, C-r..."""
        self.tmux("send-keys", *keys)

    def lines(self):
        """The pane's lines, history included, wrapped lines joined,
        trailing blanks dropped."""
        out = self.tmux("capture-pane", "-p", "-J", "-S", "-")
        lines = [line.rstrip() for line in out.split("\n")]
        while lines and lines[-1] == "":
            lines.pop()
        return lines

    def text(self):
        return "\n".join(self.lines())

    def mark(self):
        """The index of the last line (the current prompt line): what
        follows it is the answer to what is typed next."""
        return max(0, len(self.lines()) - 1)

    def wait(self, pattern, since=0, timeout=5):
        """The first match of pattern (multi-line) in the lines from since;
        fails with the screen when it does not show up in time."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout * SLOW
        while True:
            m = rx.search("\n".join(self.lines()[since:]))
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} on the screen within "
                                     f"{timeout} s; it shows:\n" +
                                     self.text())
            time.sleep(0.05)

    def wait_last(self, line, timeout=5):
        """Waits until the last line reads line (e.g. the prompt with what
        has been typed)."""
        line = line.rstrip()
        deadline = time.monotonic() + timeout * SLOW
        while True:
            lines = self.lines()
            if lines and lines[-1] == line:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the last line is not {line!r} within "
                                     f"{timeout} s; the screen shows:\n" +
                                     "\n".join(lines))
            time.sleep(0.05)

    def answer(self, since, echo, timeout=5):
        """What was printed after the line `prompt + echo` (at or after
        line since) and before the next prompt."""
        echo = echo.rstrip()
        deadline = time.monotonic() + timeout * SLOW
        while True:
            lines = self.lines()[since:]
            start = None
            for i, line in enumerate(lines):
                if line in (PROMPT + echo, MORE + echo):
                    start = i
                    break
            if start is not None:
                for j in range(start + 1, len(lines)):
                    if is_prompt(lines[j]):
                        return "\n".join(lines[start + 1:j])
            if time.monotonic() > deadline:
                what = ("no line " + repr(PROMPT + echo) if start is None
                        else "no prompt after " + repr(PROMPT + echo))
                raise AssertionError(f"{what} within {timeout} s; the "
                                     f"screen shows:\n" + self.text())
            time.sleep(0.05)

    def run(self, source, timeout=5):
        """Types source and Enter; returns what it printed."""
        since = self.mark()
        self.send(source)
        self.keys("Enter")
        return self.answer(since, source, timeout)

    def children(self):
        """The processes the pane's shell started, but its closing sleep:
        herald (or the wrapper it runs under)."""
        if not self.pid:
            return []
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return []
        out = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() != "sleep":
                        out.append(pid)
            except OSError:
                pass
        return out

    def kill(self):
        """Ends what still runs in the pane, then the tmux server."""
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5 * SLOW
        while self.children() and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in self.children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["tmux", "-L", self.name, "kill-server"],
                       env=self.env, capture_output=True, timeout=10)


def shell(argv):
    """argv run by sh, its exit status shown as EXIT=N, the terminal's
    settings as STTY=... before and after, the pane kept. sh catches SIGINT
    (`trap :`) so Ctrl-C reaches herald only; herald starts with SIGINT at
    its default."""
    return ["sh", "-c", "trap : INT; echo STTY=$(stty -g); " +
            shlex.join(argv) +
            "; echo EXIT=$?; echo STTY=$(stty -g); sleep 60"]


class ConsoleBehaviour:
    """The behaviours of a console (issue: the interactive console), the
    same for both entry points. A subclass provides console() (a Pane at
    the prompt), wire(user) (a greeted raw protocol connection) and
    is_serve."""

    is_serve = False

    def setUp(self):
        super().setUp()
        self.home = tempfile.mkdtemp(prefix="herald-console-home-")
        self.addCleanup(shutil.rmtree, self.home, True)

    def log_text(self):
        """What the server logged so far."""
        raise NotImplementedError

    def open_pane(self, argv, cwd, who):
        """A pane running argv (through shell()); at cleanup, left with \\q
        when still at the prompt, then ended, and its screen checked for a
        sanitizer or valgrind report."""
        pane = Pane(shell(argv), cwd, self.home)
        self.addCleanup(self.close_pane, pane, who)
        return pane

    def close_pane(self, pane, who):
        try:
            if not re.search(r"(?m)^EXIT=", pane.text()):
                pane.send("\\q")
                pane.keys("Enter")
                try:
                    pane.wait(r"^EXIT=", timeout=5)
                except AssertionError:
                    pass
            text = pane.text()
        finally:
            pane.kill()
        check_report(text, who)

    def leave_status(self, pane, since):
        """The exit status the pane's shell printed after line since."""
        m = pane.wait(r"^EXIT=(\d+)$", since, timeout=10)
        return int(m.group(1))

    # Evaluation and printing.

    def test_expression_prints_its_value(self):
        pane = self.console()
        self.assertEqual(pane.run("1 + 41"), "42")

    def test_several_values_tab_separated(self):
        pane = self.console()
        out = pane.run('1, "two", nil')
        # Tabs land on the terminal's 8-column stops.
        self.assertRegex(out, r'^1 {7}"two" {3}nil$')

    def test_state_persists_between_lines(self):
        pane = self.console()
        self.assertEqual(pane.run("x = 5"), "")
        self.assertEqual(pane.run("x * 2"), "10")

    def test_incomplete_statement_continues(self):
        pane = self.console()
        self.assertEqual(pane.run("for i = 1, 3 do"), "")
        self.assertEqual(pane.lines()[-1], MORE.rstrip(),
                         "no continuation prompt:\n" + pane.text())
        self.assertEqual(pane.run("print(i)"), "")
        self.assertEqual(pane.lines()[-1], MORE.rstrip())
        self.assertEqual(pane.run("end"), "1\n2\n3")
        self.assertEqual(pane.lines()[-1], PROMPT.rstrip())

    def test_incomplete_expression_continues(self):
        pane = self.console()
        for first, rest, value in (("1 +", "41", "42"),
                                   ("math.max(1,", "42)", "42"),
                                   ("{ 1,", "2 }", "{ 1, 2 }"),
                                   ("(function(", "x) return x end)(7)",
                                    "7"),
                                   ('"con\\', 'tinued"', '"con\\ntinued"')):
            self.assertEqual(pane.run(first), "", first)
            self.assertEqual(pane.lines()[-1], MORE.rstrip(),
                             f"no continuation prompt after {first!r}:\n" +
                             pane.text())
            self.assertEqual(pane.run(rest), value, first)
            self.assertEqual(pane.lines()[-1], PROMPT.rstrip())
        # What can never be completed is an error at once.
        self.assertRegex(pane.run("1 + )"), r"^console:1: .*near")
        self.assertEqual(pane.lines()[-1], PROMPT.rstrip())

    def test_table_prints_its_contents(self):
        pane = self.console()
        out = pane.run('{1, 2, name = "x", sub = {b = 3}}')
        self.assertNotIn("table: 0x", out)
        self.assertIn('name = "x"', out)
        self.assertIn("b = 3", out)
        self.assertRegex(out, r"1,\s*2,")

    def test_big_table_prints_bounded(self):
        pane = self.console()
        pane.run("big = {} for i = 1, 100000 do big[i] = i end")
        out = pane.run("big")
        self.assertNotIn("table: 0x", out)
        self.assertIn("1", out)
        self.assertNotIn("100000", out)
        self.assertLess(len(out.split("\n")), 100, out)
        self.assertRegex(out, r"more")

    def test_runtime_error_prints_message_and_traceback(self):
        pane = self.console()
        out = pane.run('error("boom")')
        self.assertRegex(out, r"(?m)^console:1: boom$")
        self.assertIn("stack traceback", out)
        self.assertEqual(pane.run("1 + 1"), "2")

    def test_syntax_error_prints_message(self):
        pane = self.console()
        out = pane.run("x = = 1")
        self.assertRegex(out, r"(?m)^console:1: .*near '='$")
        self.assertNotIn("stack traceback", out)
        self.assertEqual(pane.run("1 + 1"), "2")

    def test_print_shows_on_the_console(self):
        pane = self.console()
        self.assertEqual(pane.run('print("hello")'), "hello")
        # Not through the server's log (as "... info: ... hello").
        self.assertNotRegex(self.log_text(), r"(?m)^\S+ \w+: .*hello$")

    def test_help_lists_the_natives(self):
        pane = self.console()
        out = pane.run("\\help")
        for name in NATIVES:
            self.assertRegex(out, r"(?m)^ +" + name + r"\(.*\S {2,}\S",
                             f"{name} has no line of its own:\n{out}")
        self.assertRegex(out, r"(?m)^ +drop_remote_user\(sessionID "
                         r"\[, reason\]\) .*reason")

    # Line editing.

    def test_tab_completes_a_global_name(self):
        pane = self.console()
        since = pane.mark()
        pane.send("get_process_act")
        pane.keys("Tab")
        pane.wait_last(PROMPT + "get_process_activity")
        pane.send(' == nil')
        pane.keys("Enter")
        self.assertEqual(
            pane.answer(since, "get_process_activity == nil"), "false")

    def test_tab_completes_a_table_field(self):
        pane = self.console()
        since = pane.mark()
        pane.send("string.up")
        pane.keys("Tab")
        pane.wait_last(PROMPT + "string.upper")
        pane.send('("q")')
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, 'string.upper("q")'), '"Q"')

    def test_tab_after_a_call_or_an_index_keeps_the_line(self):
        self.wire("alice")
        pane = self.console()
        self.assertEqual(pane.run('t = { { a = 1 } } s = "abc"'), "")
        # Tab twice (the second lists what the first could not insert),
        # then the rest: the line must be what was typed, unchanged.
        for typed, rest, value in (("sessions()[1].", "userName", '"alice"'),
                                   ("t[1].", "a", "1"),
                                   ('("abc"):', "upper()", '"ABC"'),
                                   ("sessions()", "[1].ID ~= nil", "true"),
                                   ("t[1]", ".a", "1"),
                                   ("s:", "len()", "3")):
            since = pane.mark()
            pane.send(typed)
            pane.wait_last(PROMPT + typed)
            pane.keys("Tab")
            pane.keys("Tab")
            pane.send(rest)
            pane.keys("Enter")
            self.assertEqual(pane.answer(since, typed + rest), value,
                             typed + " + Tab")
            self.assertNotIn("xpcall", "\n".join(pane.lines()[since:]),
                             typed + " + Tab listed the globals")

    def test_tab_completes_a_plain_name_path_only(self):
        self.wire("alice")
        pane = self.console()
        # The fields of a session object, reached by a plain name.
        self.assertEqual(pane.run("one = sessions()[1]"), "")
        since = pane.mark()
        pane.send("one.userN")
        pane.keys("Tab")
        pane.wait_last(PROMPT + "one.userName")
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, "one.userName"), '"alice"')
        # Methods after a colon.
        self.assertEqual(pane.run('s = "abc"'), "")
        since = pane.mark()
        pane.send("s:upp")
        pane.keys("Tab")
        pane.wait_last(PROMPT + "s:upper")
        pane.send("()")
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, "s:upper()"), '"ABC"')
        # Completing never runs code: no __index function, no __pairs.
        self.assertEqual(pane.run(
            "p = setmetatable({}, { __index = function() hits = "
            "(hits or 0) + 1 return {} end, __pairs = function() hits = "
            "(hits or 0) + 1 return next, {} end })"), "")
        since = pane.mark()
        pane.send("p.x.")
        pane.keys("Tab")
        pane.keys("Tab")
        pane.send("y == nil, p.")
        pane.keys("Tab")
        pane.keys("Tab")
        pane.send("z ~= nil")
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, "p.x.y == nil, p.z ~= nil"),
                         "true    true")
        self.assertEqual(pane.run("hits"), "2")

    def test_up_arrow_brings_back_the_last_line(self):
        pane = self.console()
        self.assertEqual(pane.run("20 + 22"), "42")
        since = pane.mark()
        pane.keys("Up")
        pane.wait_last(PROMPT + "20 + 22")
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, "20 + 22"), "42")

    def test_ctrl_r_finds_an_earlier_line(self):
        pane = self.console()
        self.assertEqual(pane.run('"needle" .. 1'), '"needle1"')
        self.assertEqual(pane.run("2 + 2"), "4")
        # Type a fragment, then Ctrl-R: the previous line that holds it
        # takes its place (README: the search never blocks the server).
        since = pane.mark()
        pane.send("needl")
        pane.keys("C-r")
        pane.wait(r'"needle" \.\. 1', since)
        pane.keys("Enter")
        pane.wait(r'^"needle1"$', since)
        self.assertEqual(pane.run("1 + 1"), "2")

    # Interrupting and leaving.

    def test_ctrl_c_interrupts_a_running_line(self):
        pane = self.console()
        since = pane.mark()
        pane.send("while true do end")
        pane.keys("Enter")
        pane.wait(r"^" + re.escape(PROMPT + "while true do end") + "$", since)
        time.sleep(0.3)  # let the loop be under way
        self.assertEqual(pane.lines()[-1], PROMPT + "while true do end",
                         "the loop ended by itself")
        # The server goes on while the loop runs: a new client is greeted
        # and answered.
        w = self.wire("pinger")
        w.send({"type": "ping"})
        self.assertEqual(w.recv_type("pong", timeout=5)["type"], "pong")
        pane.keys("C-c")
        pane.wait(r"interrupted", since)
        self.assertEqual(pane.run("1+1"), "2")
        self.assertNotRegex(pane.text(), r"(?m)^EXIT=")

    def test_ctrl_c_at_the_prompt_drops_the_typed_text(self):
        pane = self.console()
        pane.send("12345")
        pane.wait_last(PROMPT + "12345")
        pane.keys("C-c")
        pane.wait_last(PROMPT)
        self.assertEqual(pane.run("1+1"), "2")
        self.assertNotRegex(pane.text(), r"(?m)^EXIT=")

    def test_ctrl_d_leaves(self):
        pane = self.console()
        self.assertEqual(pane.run('marker = "ctrl d"'), "")
        since = pane.mark()
        pane.keys("C-d")
        self.assertEqual(self.leave_status(pane, since), 0, pane.text())
        self.check_history('marker = "ctrl d"')

    def test_backslash_q_leaves(self):
        pane = self.console()
        self.assertEqual(pane.run('marker = "backslash q"'), "")
        since = pane.mark()
        pane.send("\\q")
        pane.keys("Enter")
        self.assertEqual(self.leave_status(pane, since), 0, pane.text())
        self.check_history('marker = "backslash q"')

    def test_history_survives_a_new_console(self):
        pane = self.console()
        self.assertEqual(pane.run("30 + 12"), "42")
        since = pane.mark()
        pane.send("\\q")
        pane.keys("Enter")
        self.assertEqual(self.leave_status(pane, since), 0, pane.text())
        pane = self.console(fresh=True)
        since = pane.mark()
        pane.keys("Up")
        pane.wait_last(PROMPT + "\\q")
        pane.keys("Up")
        pane.wait_last(PROMPT + "30 + 12")
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, "30 + 12"), "42")

    def test_terminal_restored_on_leaving(self):
        pane = self.console()
        self.assertEqual(pane.run("1 + 1"), "2")
        since = pane.mark()
        pane.keys("C-d")
        self.assertEqual(self.leave_status(pane, since), 0, pane.text())
        settings = pane.wait(r"(?s)^STTY=(\S*)$.*^STTY=(\S*)$")
        self.assertEqual(settings.group(1), settings.group(2),
                         "the terminal's settings changed")
        with open(f"/proc/{pane.pid}/fdinfo/0") as f:
            flags = int(re.search(r"flags:\s*(\d+)", f.read()).group(1), 8)
        self.assertFalse(flags & os.O_NONBLOCK,
                         "the terminal was left non-blocking (O_NONBLOCK)")

    def check_history(self, line):
        path = os.path.join(self.home, ".herald_history")
        self.assertTrue(os.path.exists(path), "no ~/.herald_history")
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [unvis(l) for l in f.read().split("\n")]
        self.assertIn(line, lines)

    # Helpers and the sessions.

    def test_sessions_prints_an_aligned_table(self):
        self.wire("alice", machineName="m-alice")
        self.wire("bob", machineName="m-bob")
        pane = self.console()
        out = pane.run("sessions()").split("\n")
        header = out[0]
        self.assertEqual(header.split(), ["ID", "userName", "machineName",
                                          "IPAddress", "state", "age"],
                         "\n".join(out))
        rows = {}
        for row in out[1:-1]:
            for user in ("alice", "bob"):
                if " " + user + " " in row:
                    rows[user] = row
        self.assertEqual(sorted(rows), ["alice", "bob"], "\n".join(out))
        for user, row in rows.items():
            self.assertRegex(row, r"^[0-9A-F]{32} ")
            for cell, column in ((user, "userName"),
                                 ("m-" + user, "machineName"),
                                 ("127.0.0.1", "IPAddress"),
                                 ("active", "state")):
                self.assertEqual(row.index(" " + cell) + 1,
                                 header.index(column),
                                 f"{cell} not under {column}:\n" +
                                 "\n".join(out))
        self.assertEqual(out[-1], "2 sessions")
        # One session prints as its fields.
        one = pane.run("sessions()[1]")
        self.assertNotIn("table: 0x", one)
        self.assertRegex(one, r'userName = "(alice|bob)"')
        self.assertIn('IPAddress = "127.0.0.1"', one)

    def test_processes_shows_the_console_line(self):
        pane = self.console()
        out = pane.run("processes()")
        self.assertRegex(out.split("\n")[0], r"^number +name +type +state")
        # herald console's lines are named after who connected.
        self.assertRegex(out, r"(?m)^ *\d+ +console(:\w+)? +console/script +"
                         r"executing ")
        self.assertRegex(out, r"(?m)^\d+ process(es)?$")

    def test_message_reaches_only_that_session(self):
        wires = {"alice": self.wire("alice"), "bob": self.wire("bob")}
        pane = self.console()
        first = pane.run("sessions()[1].userName")
        self.assertIn(first, ('"alice"', '"bob"'))
        first = first.strip('"')
        other = "bob" if first == "alice" else "alice"
        out = pane.run('send_message_to_remote_user("hi", sessions()[1].ID)')
        self.assertRegex(out, r"^1\s+\d+$")
        frame = wires[first].recv_type("message", timeout=5)
        self.assertEqual(frame["text"], "hi")
        self.assertIsNone(next_message(wires[other], 0.5))

    def test_typing_while_a_client_connects(self):
        pane = self.console()
        since = pane.mark()
        pane.send("6 * ")
        pane.wait_last(PROMPT + "6 *")
        w = self.wire("carol")  # greeted: the welcome came
        w.send({"type": "ping"})
        w.recv_type("pong", timeout=5)
        if self.is_serve:
            pane.wait(r"session \S+ opened: carol", since)
            pane.wait_last(PROMPT + "6 *")
        pane.send("7")
        pane.keys("Enter")
        self.assertEqual(pane.answer(since, "6 * 7"), "42")
        self.assertEqual(pane.run("1 + 1"), "2")


class HeraldConsoleTest(ConsoleBehaviour, HeraldTest):
    """`herald console --socket S` on a server started by the harness."""

    def console(self, fresh=False):
        """A new console on the test's server (started on first use)."""
        self.srv = self.server()
        pane = self.open_pane([HERALD, "console", "--socket",
                               self.srv.socket], self.srv.dir,
                              "herald console")
        pane.wait(r"^" + re.escape(PROMPT.rstrip()) + "$")
        return pane

    def wire(self, user, **fields):
        if not hasattr(self, "srv"):
            self.srv = self.server()
        return self.srv.wire(user, **fields)

    def server(self, **kw):
        if hasattr(self, "srv"):
            return self.srv
        return super().server(**kw)

    def log_text(self):
        return self.srv.log.text()


class ServePromptTest(ConsoleBehaviour, unittest.TestCase):
    """The prompt of `herald serve` (stdin the pane's terminal)."""

    is_serve = True

    def start(self):
        """Starts herald serve in a new pane (a new server, new port)."""
        self.dir = tempfile.mkdtemp(prefix="herald-serve-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        argv = [*WRAPPER, HERALD, "serve", "--listen", "127.0.0.1:0",
                "--admin-socket", os.path.join(self.dir, "a.sock"),
                "--scripts", SCRIPTS]
        self.pane = self.open_pane(argv, self.dir, "herald serve")
        m = self.pane.wait(r"listening on 127\.0\.0\.1:(\d+)", timeout=10)
        self.port = int(m.group(1))
        self.pane.wait(r"^" + re.escape(PROMPT.rstrip()) + "$")

    def console(self, fresh=False):
        """The prompt of the test's server; fresh: of a new server."""
        if fresh or not hasattr(self, "pane"):
            self.start()
        return self.pane

    def wire(self, user, **fields):
        if not hasattr(self, "pane"):
            self.start()
        w = Wire(self.port)
        self.addCleanup(w.close)
        welcome = w.hello(user, **fields)
        self.assertEqual(welcome and welcome["type"], "welcome", welcome)
        return w

    def test_ctrl_d_leaves(self):
        super().test_ctrl_d_leaves()
        self.assertServerGone()

    def test_backslash_q_leaves(self):
        super().test_backslash_q_leaves()
        self.assertServerGone()

    def test_ctrl_d_asks_once_when_sessions_are_connected(self):
        pane = self.console()
        w = self.wire("alice")
        since = pane.mark()
        pane.keys("C-d")
        pane.wait(r"^1 session is connected; Ctrl-D again \(or \\q\) "
                  r"stops the server and drops it$", since)
        pane.wait_last(PROMPT)
        w.send({"type": "ping"})
        w.recv_type("pong", timeout=5)
        # Not twice in a row: a line in between asks again.
        self.assertEqual(pane.run("1 + 1"), "2")
        self.wire("bob")
        since = pane.mark()
        pane.keys("C-d")
        pane.wait(r"^2 sessions are connected; Ctrl-D again \(or \\q\) "
                  r"stops the server and drops them$", since)
        pane.wait_last(PROMPT)
        self.assertNotRegex(pane.text(), r"(?m)^EXIT=")
        since = pane.mark()
        pane.keys("C-d")
        self.assertEqual(self.leave_status(pane, since), 0, pane.text())
        self.assertServerGone()

    def test_backslash_q_asks_once_when_sessions_are_connected(self):
        pane = self.console()
        self.wire("alice")
        since = pane.mark()
        pane.send("\\q")
        pane.keys("Enter")
        pane.wait(r"^1 session is connected; Ctrl-D again \(or \\q\) "
                  r"stops the server and drops it$", since)
        pane.wait_last(PROMPT)
        since = pane.mark()
        pane.send("\\q")
        pane.keys("Enter")
        self.assertEqual(self.leave_status(pane, since), 0, pane.text())
        self.assertServerGone()

    def log_text(self):
        return self.pane.text()

    def assertServerGone(self):
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", self.port),
                                     timeout=2 * SLOW).close()


class HeraldConsoleCommandTest(unittest.TestCase):
    """`herald console` without a terminal, or without a server."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="herald-console-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_no_server_exits_2(self):
        path = os.path.join(self.dir, "nobody.sock")
        r = subprocess.run([HERALD, "console", "--socket", path],
                           capture_output=True, text=True,
                           timeout=10 * SLOW, stdin=subprocess.DEVNULL,
                           cwd=self.dir)
        check_report(r.stderr, "herald console")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"^herald: console: .*" +
                         re.escape(path) + r".*\S\n$")
        self.assertEqual(r.stdout, "")

    def test_piped_input(self):
        with Server() as srv:
            r = srv.cli("console", "--socket", srv.socket,
                        input='1+1\n1, "two", nil\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, '2\n1\t"two"\tnil\n')

    def test_piped_errors_go_to_stderr_and_exit_1(self):
        with Server() as srv:
            r = srv.cli("console", "--socket", srv.socket,
                        input='1+1\nerror("boom")\nx = = 1\n'
                              'print("after")\n')
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertEqual(r.stdout, "2\nafter\n")
            self.assertRegex(r.stderr, r"(?m)^console:1: boom$")
            self.assertIn("stack traceback", r.stderr)
            self.assertRegex(r.stderr, r"(?m)^console:1: .*near '='$")
            # One error is enough, even before lines that succeed.
            r = srv.cli("console", "--socket", srv.socket,
                        input='error("x")\n1\n')
            self.assertEqual((r.returncode, r.stdout), (1, "1\n"), r.stderr)
            r = srv.cli("console", "--socket", srv.socket,
                        input='print("fine")\n')
            self.assertEqual((r.returncode, r.stdout, r.stderr),
                             (0, "fine\n", ""))


if __name__ == "__main__":
    unittest.main()
