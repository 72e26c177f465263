"""The command line of API.md: `herald run` (remote and --local),
`herald client`, `herald call`, help and usage errors, with their exit
statuses."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import HeraldTest, HERALD, free_port


def finish(proc, out, timeout=5):
    """Waits for a spawned command to exit and for its output to be read
    to the end; returns its exit status."""
    status = proc.wait(timeout=timeout)
    out.thread.join(timeout=timeout)
    return status


class Standalone(unittest.TestCase):
    """Commands run with no server at all."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="herald-cli-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.env = dict(os.environ,
                        HERALD_SOCKET=os.path.join(self.dir, "none.sock"),
                        HERALD_SERVER=f"127.0.0.1:{free_port()}")

    def herald(self, *args, timeout=20):
        return subprocess.run([HERALD, *args], env=self.env, cwd=self.dir,
                              capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def script(self, source, name="s.lua"):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(source)
        return path

    def test_help_and_version(self):
        for args, first in ((["--help"], "usage: herald COMMAND"),
                            (["serve", "--help"], "usage: herald serve"),
                            (["run", "--help"], "usage: herald run"),
                            (["client", "--help"], "usage: herald client"),
                            (["call", "--help"], "usage: herald call")):
            with self.subTest(args=args):
                r = self.herald(*args)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertTrue(r.stdout.startswith(first), r.stdout)
                self.assertEqual(r.stderr, "")
        r = self.herald("--help")
        for command in ("serve", "run", "client", "call", "version"):
            self.assertIn(command, r.stdout)
        r = self.herald("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^herald \d+\.\d+\.\d+\S*\n$")

    def test_unknown_command_or_option_exits_2(self):
        for args in (["frobnicate"], ["--frobnicate"], ["serve", "--bogus"],
                     ["run", "--bogus", "x.lua"], ["client", "--bogus"],
                     ["call", "--bogus", "whoami"], ["serve", "extra"],
                     ["client", "extra"]):
            with self.subTest(args=args):
                r = self.herald(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertTrue(r.stderr.startswith("herald: "), r.stderr)

    def test_every_usage_error_ends_with_one_try_line(self):
        # One form everywhere: the error, then "Try 'herald COMMAND
        # --help'." on a line of its own, last.
        for args in (["call"], ["call", "--bogus", "whoami"],
                     ["call", "whoami", "--timeout", "abc"],
                     ["client", "--bogus"], ["client", "extra"],
                     ["client", "--give-up", "x"],
                     ["run"], ["run", "--bogus", "x.lua"],
                     ["console", "--bogus"], ["console", "extra"],
                     ["audit", "--since", "yesterday"], ["audit", "extra"],
                     ["user"], ["user", "--bogus"], ["user", "frob", "x"],
                     ["cert"], ["cert", "--bogus"],
                     ["serve", "--bogus"], ["serve", "extra"],
                     ["frobnicate"]):
            with self.subTest(args=args):
                r = self.herald(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                lines = r.stderr.splitlines()
                cmd = "herald" if args == ["frobnicate"] else \
                    f"herald {args[0]}"
                self.assertGreaterEqual(len(lines), 2, r.stderr)
                self.assertTrue(lines[0].startswith("herald: "), r.stderr)
                self.assertEqual(lines[-1], f"Try '{cmd} --help'.")
                self.assertEqual(r.stderr.lower().count("try '"), 1,
                                 r.stderr)

    def test_call_suggests_quoting_an_argument_that_is_not_json(self):
        r = self.herald("call", "hello", "world")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(r.stdout, "")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 2, r.stderr)
        self.assertTrue(lines[0].startswith(
            "herald: call: argument 1 is not valid JSON: "), r.stderr)
        self.assertEqual(lines[1], "herald: call: hint: a string argument "
                                   "is JSON too: '\"world\"'")
        # The suggestion is shell-quoted and JSON-escaped: pasted back, it
        # is the argument meant.
        for arg in ("it's", 'say "hi"', "a\\b", "1.2.3"):
            with self.subTest(arg=arg):
                r = self.herald("call", "hello", "1", arg)
                self.assertIn("argument 2 is not valid JSON", r.stderr)
                hint = r.stderr.splitlines()[-1]
                prefix = "herald: call: hint: a string argument is JSON too: "
                self.assertTrue(hint.startswith(prefix), r.stderr)
                echoed = subprocess.run(
                    ["sh", "-c", "printf %s " + hint[len(prefix):]],
                    capture_output=True, text=True).stdout
                self.assertEqual(json.loads(echoed), arg)
        # What looks like a broken array, object or string gets no hint.
        for arg in ("[1,", "{not json", '"open'):
            with self.subTest(arg=arg):
                r = self.herald("call", "hello", arg)
                self.assertEqual(r.returncode, 2)
                self.assertNotIn("hint", r.stderr)

    def test_no_command_exits_2_with_usage(self):
        r = self.herald()
        self.assertEqual(r.returncode, 2)
        self.assertIn("usage: herald", r.stderr)

    def test_run_unreachable_server_exits_2(self):
        path = self.script('print("never")')
        r = self.herald("run", "--socket",
                        os.path.join(self.dir, "nobody.sock"), path)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertIn("cannot reach the server", r.stderr)
        # Through HERALD_SOCKET as well.
        r = self.herald("run", path)
        self.assertEqual(r.returncode, 2)
        self.assertIn("none.sock", r.stderr)

    def test_run_without_script_exits_2(self):
        r = self.herald("run")
        self.assertEqual(r.returncode, 2)
        self.assertIn("no script", r.stderr)
        r = self.herald("run", "--local")
        self.assertEqual(r.returncode, 2)

    def test_run_local_missing_file_exits_2(self):
        missing = os.path.join(self.dir, "missing.lua")
        r = self.herald("run", "--local", missing)
        self.assertEqual(r.returncode, 2,
                         f"status {r.returncode}, stderr {r.stderr!r}")
        self.assertIn("missing.lua", r.stderr)

    def test_run_local(self):
        path = self.script("""
print("local", ...)
print(send_message_to_remote_user("nobody hears this"))
print(drop_remote_user("0123456789ABCDEF0123456789ABCDEF"))
print(reject_new_remote_connections(true))
local pa = get_process_activity()
print(pa.sessions == nil, pa.processes ~= nil)
""")
        r = self.herald("run", "--local", path, "a", "b")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(),
                         ["local\ta\tb", "0", "false", "false",
                          "true\ttrue"])

    def test_run_local_error_exits_1(self):
        path = self.script('error("local failure")')
        r = self.herald("run", "--local", path)
        self.assertEqual(r.returncode, 1)
        self.assertIn("local failure", r.stderr)

    def test_client_without_server_exits_2(self):
        port = free_port()
        started = time.monotonic()
        r = self.herald("client", "--server", f"127.0.0.1:{port}",
                        timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertLess(time.monotonic() - started, 5)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(f"cannot connect to 127.0.0.1:{port}", lines[0])
        self.assertIn("refused", lines[0].lower())

    def test_call_without_server_exits_2(self):
        r = self.herald("call", "whoami")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot connect", r.stderr)


class Run(HeraldTest):
    def setUp(self):
        self.srv = self.server(config="heartbeat = 5\n")

    def script_file(self, source, name):
        path = os.path.join(self.srv.dir, name)
        with open(path, "w") as f:
            f.write(source)
        return path

    def test_missing_file_exits_2(self):
        missing = os.path.join(self.srv.dir, "missing.lua")
        r = self.srv.cli("run", missing)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertIn("missing.lua", r.stderr)

    def test_success_streams_prints_in_order(self):
        r = self.srv.run_script(
            'for i = 1, 200 do print("line", i) end print("done")')
        self.assertEqual(r.returncode, 0, r.stderr)
        expected = [f"line\t{i}" for i in range(1, 201)] + ["done"]
        self.assertEqual(r.stdout.splitlines(), expected)
        self.assertEqual(r.stderr, "")

    def test_an_interrupted_run_is_logged_and_its_script_ended(self):
        path = self.script_file('print("started") delay_process(60)',
                                "long.lua")
        proc, out = self.srv.spawn("run", path)
        out.wait("^started$", timeout=3)
        proc.kill()
        proc.wait()
        self.srv.wait_log(r"script long\.lua interrupted: the herald run "
                          r"that started it went away")
        self.assertNotIn("long.lua", self.srv.lua(
            "for _, p in ipairs(get_process_activity(PROCESSES_ONLY)"
            ".processes) do print(p.name) end"))

    def test_output_arrives_while_the_script_runs(self):
        path = self.script_file(
            'print("first") delay_process(0.6) print("second")', "slow.lua")
        proc, out = self.srv.spawn("run", path)
        started = time.monotonic()
        out.wait("^first$", timeout=3)
        self.assertLess(time.monotonic() - started, 0.5)
        self.assertIsNone(proc.poll(), "ended before its delay")
        self.assertEqual(finish(proc, out), 0)
        self.assertEqual(out.text().splitlines(), ["first", "second"])

    def test_lua_error_exits_1_with_traceback(self):
        r = self.srv.run_script(
            'print("before")\nlocal function f() error("it broke") end\n'
            'f()\n')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "before\n")
        self.assertIn("it broke", r.stderr)
        self.assertIn("stack traceback", r.stderr)
        self.assertRegex(r.stderr, r"script\d+\.lua:2")
        self.srv.wait_log("failed: .*it broke")

    def test_syntax_error_exits_1(self):
        r = self.srv.run_script('print("never"\nlocal = 3\n')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertRegex(r.stderr, r"script\d+\.lua:\d+: .*near")

    def test_arguments(self):
        r = self.srv.run_script(
            'print(select("#", ...), ...)\n'
            'print(#arg, arg[1], arg[2], arg[3])\n'
            'print(arg[0])\n', "one", "two words", "")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "3\tone\ttwo words\t")
        self.assertEqual(lines[1], "3\tone\ttwo words\t")
        self.assertRegex(lines[2], r"script\d+\.lua$")

    def test_delay_process_keeps_the_server_serving(self):
        w = self.srv.wire("Pinger")
        path = self.script_file(
            'print("start") delay_process(0.2) print("end")', "delay.lua")
        proc, out = self.srv.spawn("run", path)
        started = time.monotonic()
        out.wait("^start$", timeout=3)
        # While the script sleeps, a ping is answered at once.
        w.send({"type": "ping"})
        self.assertEqual(w.recv(timeout=2), {"type": "pong"})
        self.assertLess(time.monotonic() - started, 0.2)
        self.assertNotIn("end", out.text().splitlines())
        self.assertEqual(finish(proc, out), 0)
        self.assertGreaterEqual(time.monotonic() - started, 0.18)
        self.assertEqual(out.text().splitlines(), ["start", "end"])

    def test_delayed_script_is_state_1_and_others_run_meanwhile(self):
        path = self.script_file(
            'print("start") delay_process(0.5) print("end")', "nap.lua")
        proc, out = self.srv.spawn("run", path)
        out.wait("^start$", timeout=3)
        state = self.srv.lua("""
for _, p in ipairs(get_process_activity(PROCESSES_ONLY).processes) do
  if p.name == "nap.lua" then print(p.state, p.type) end
end""")
        self.assertEqual(state.split(), ["1", "3"])  # delayed, a script
        self.assertIsNone(proc.poll())
        self.assertEqual(finish(proc, out), 0)


class Client(HeraldTest):
    def setUp(self):
        self.srv = self.server()

    def test_json_once_exits_after_the_first_message_and_acks(self):
        proc, out = self.srv.spawn("client", "--json", "--once", "--user",
                                   "Once")
        self.srv.wait_log("opened: Once@")
        out_lua = self.srv.lua('print(send_message_to_remote_user("only"))')
        msg_id = int(out_lua.split()[1])
        self.assertEqual(finish(proc, out), 0)
        frames = [json.loads(l) for l in out.text().splitlines()
                  if l.startswith("{")]
        messages = [f for f in frames if f["type"] == "message"]
        self.assertEqual([m["text"] for m in messages], ["only"])
        self.assertEqual(messages[0]["id"], msg_id)
        # The ack reaches the server before the client's bye.
        acked = None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            acked = self.srv.lua(
                f"print(message_status({msg_id}).acknowledged)").strip()
            if acked == "1":
                break
            time.sleep(0.05)
        self.assertEqual(acked, "1")
        self.srv.wait_log(r"\(Once\) logged out")

    def test_alert_box_on_a_pipe(self):
        self.srv.env["LC_ALL"] = "C.UTF-8"
        proc, out = self.srv.spawn("client", "--user", "Boxed")
        self.srv.wait_log("opened: Boxed@")
        self.srv.lua('send_message_to_remote_user("Maintenance at 10pm")')
        line = out.wait("Maintenance at 10pm", timeout=5)
        self.assertTrue(line.startswith("\u2551"), line)
        self.assertTrue(line.rstrip().endswith("\u2551"), line)
        text = out.text()
        self.assertIn("\u2554", text)  # top-left corner
        self.assertIn("\u255a", text)  # bottom-left corner
        self.assertIn("Message from the server", text)
        self.assertNotIn("\a", text)  # no bell on a pipe
        self.assertIsNone(proc.poll())

    def test_alert_box_in_ascii(self):
        self.srv.env["LC_ALL"] = "C"
        proc, out = self.srv.spawn("client", "--user", "Ascii")
        self.srv.wait_log("opened: Ascii@")
        self.srv.lua('send_message_to_remote_user("caf\\u{e9} at 10")')
        line = out.wait("at 10", timeout=5)
        self.assertTrue(line.startswith("|"), line)
        self.assertIn("caf? at 10", line)
        self.assertTrue(all(ord(ch) < 128 for ch in out.text()))

    def test_client_dropped_prints_one_line_and_exits_non_zero(self):
        proc, out = self.srv.spawn("client", "--user", "Dropped")
        self.srv.wait_log("opened: Dropped@")
        self.assertEqual(self.srv.lua("""
for _, s in ipairs(get_process_activity(SESSIONS_ONLY).sessions) do
  print(drop_remote_user(s.ID))
end""").strip(), "true")
        status = finish(proc, out)
        self.assertNotEqual(status, 0)
        self.assertEqual(status, 1)
        mentions = [l for l in out.text().splitlines() if "drop" in l]
        self.assertEqual(len(mentions), 1, out.text())
        self.assertIn("dropped by an administrator", mentions[0])

    def test_client_refused_by_the_server_exits_1(self):
        self.srv.lua("reject_new_remote_connections(true)")
        r = self.srv.cli("client", "--user", "Late", timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn("rejected", r.stderr)

    def test_client_identity_reaches_the_session(self):
        proc, out = self.srv.spawn("client", "--json", "--user", "Lea",
                                   "--machine", "lea-laptop",
                                   "--system-user", "lea")
        self.srv.wait_log("opened: Lea@lea-laptop")
        s = self.srv.lua("""
local s = get_process_activity(SESSIONS_ONLY).sessions[1]
print(s.userName, s.machineName, s.systemUserName, s.hostType)""")
        self.assertEqual(s.split(), ["Lea", "lea-laptop", "lea", "linux"])


class Call(HeraldTest):
    def setUp(self):
        self.srv = self.server()

    def test_a_call_logs_its_session_in_two_lines(self):
        # Opened, then one line for the bye and the close, with how long
        # the session lived: not three lines for every herald call.
        r = self.srv.cli("call", "--user", "Brief", "whoami")
        self.assertEqual(r.returncode, 0, r.stderr)
        line = self.srv.wait_log(r"\(Brief\) logged out after \d+\.\d\d s$")
        sid = re.search(r"session ([0-9A-F]{32}) ", line).group(1)
        mine = [l for l in self.srv.log.text().splitlines()
                if sid in l and " info: " in l]
        self.assertEqual(len(mine), 2, mine)
        self.assertRegex(mine[0], rf" info: session {sid} opened: Brief@")
        self.assertRegex(mine[1], rf" info: session {sid} \(Brief\) "
                                  r"logged out after \d+\.\d\d s$")

    def test_whoami(self):
        r = self.srv.cli("call", "--user", "Caller", "whoami")
        self.assertEqual(r.returncode, 0, r.stderr)
        me = json.loads(r.stdout)
        self.assertEqual(me["userName"], "Caller")
        self.assertEqual(me["type"], "remote")
        self.assertEqual(me["IPAddress"], "127.0.0.1")
        self.assertRegex(me["ID"], r"^[0-9A-F]{32}$")
        self.assertEqual(me["state"], "active")
        # The call's session ends with it: nothing left postponed.
        self.srv.wait_log(r"\(Caller\) logged out")

    def test_broadcast(self):
        w = self.srv.wire("Listener")
        r = self.srv.cli("call", "--user", "Admin", "broadcast", '"hi"')
        self.assertEqual(r.returncode, 0, r.stderr)
        frame = w.recv_type("message")
        self.assertEqual(frame["text"], "hi")
        # Queued for every session, the caller's own included.
        self.assertEqual(r.stdout.strip(), "2")

    def test_method_error_exits_1(self):
        r = self.srv.cli("call", "broadcast", "42")
        self.assertEqual(r.returncode, 1)
        self.assertIn("text must be a string", r.stderr)

    def test_unknown_method_exits_1(self):
        r = self.srv.cli("call", "nosuch")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn("unknown method", r.stderr)

    def test_bad_json_argument_exits_2(self):
        r = self.srv.cli("call", "broadcast", "hi")  # unquoted: not JSON
        self.assertEqual(r.returncode, 2)
        self.assertIn("argument 1", r.stderr)

    def test_options_anywhere_and_arguments_that_start_with_a_dash(self):
        # getopt_long's forms (--opt=value), options before or after
        # METHOD, and JSON arguments like -1 that are not options.
        for args in (["--user=Opt", "broadcast", '"a"'],
                     ["broadcast", "--user", "Opt", '"a"'],
                     ["broadcast", '"a"', "--timeout=30", "--user=Opt"]):
            with self.subTest(args=args):
                r = self.srv.cli("call", *args)
                self.assertEqual(r.returncode, 0, r.stderr)
        # -1 reaches the method (which refuses a number: exit 1, not 2)
        r = self.srv.cli("call", "broadcast", "-1")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("text must be a string", r.stderr)
        # after --, even --user is an argument (not JSON: exit 2)
        r = self.srv.cli("call", "broadcast", "--", "--user")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("argument 1", r.stderr)
        r = self.srv.cli("call", "--timeout")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown or incomplete option '--timeout'", r.stderr)

    def test_missing_method_exits_2(self):
        r = self.srv.cli("call")
        self.assertEqual(r.returncode, 2)
        self.assertIn("METHOD", r.stderr)
