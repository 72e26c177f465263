"""The audit log end to end: an entry for every administrative action
(send, drop, reject, schedule, unschedule, run_job) and every refused
login, with the actor that did it (a method, the console, a `herald run`
script, a job, a remote address); audit_log and its query syntax;
`herald audit` with --since and --json; audit_log refused to methods;
entries kept in the state database across a restart and pruned after
audit_keep_days; in memory (the newest 10,000) without a state
database."""
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time

from harness import HERALD, SCRIPTS, SLOW, HeraldTest

KEYS = ["time", "actor", "action", "target", "count", "detail", "outcome"]
ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"
ME = pwd.getpwuid(os.getuid()).pw_name


def audit(srv, *args):
    """`herald audit --json ARGS`: the entries, newest first."""
    r = srv.cli("audit", "--socket", srv.socket, "--json", *args)
    if r.returncode != 0:
        raise AssertionError(f"herald audit failed ({r.returncode}): "
                             f"{r.stderr}")
    entries = [json.loads(line) for line in r.stdout.splitlines()]
    for e in entries:
        assert list(e) == KEYS, e  # every key, in this order
    return entries


def wait_for(srv, predicate, timeout=5, what="entry"):
    """The first entry matching predicate, waiting for it to be written."""
    deadline = time.monotonic() + timeout * SLOW
    while True:
        entries = audit(srv)
        for e in entries:
            if predicate(e):
                return e
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in the audit log: {entries}")
        time.sleep(0.1)


def only(entries, action):
    return [e for e in entries if e["action"] == action]


class AuditTest(HeraldTest):
    def folder(self, files):
        """A scripts folder of its own holding files {path: Lua text}."""
        d = tempfile.mkdtemp(prefix="herald-scripts-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "methods"))
        os.makedirs(os.path.join(d, "maintenance"))
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        return d

    def state_dir(self):
        """A folder for a state database that outlives one server."""
        d = tempfile.mkdtemp(prefix="herald-state-")
        self.addCleanup(shutil.rmtree, d, True)
        return d


class Actions(AuditTest):
    def test_send_drop_and_reject_by_a_script(self):
        srv = self.server()
        a = srv.wire("Vanessa")
        srv.wire("Marc")
        sid = a.welcome["sessionID"]
        r = srv.run_script(f'''
send_message_to_remote_user("to everyone")
send_message_to_remote_user("to Vanessa", "{sid}")
send_message_to_remote_user("to nobody", "{"0" * 32}")
drop_remote_user("{"F" * 32}", "never there")
reject_new_remote_connections(true)
reject_new_remote_connections(false)
drop_remote_user("{sid}", "time to go")
''')
        self.assertEqual(r.returncode, 0, r.stderr)
        script = "run:script0.lua"
        got = [(e["actor"], e["action"], e["target"], e["count"],
                e["detail"], e["outcome"]) for e in audit(srv)]
        # Newest first.
        self.assertEqual(got, [
            (script, "drop", sid, 1, "time to go", "ok"),
            (script, "reject", "all", 0, "off", "ok"),
            (script, "reject", "all", 0, "on", "ok"),
            (script, "drop", "F" * 32, 0, "never there", "no such session"),
            (script, "send", "0" * 32, 0, "to nobody", "no such session"),
            (script, "send", sid, 1, "to Vanessa", "ok"),
            (script, "send", "all", 2, "to everyone", "ok"),
        ])
        for e in audit(srv):
            self.assertRegex(e["time"], ISO)
        times = [e["time"] for e in audit(srv)]
        self.assertEqual(times, sorted(times, reverse=True))

    def test_a_method_that_sends_is_named_with_its_caller(self):
        srv = self.server()  # the shipped methods: broadcast sends
        w = srv.wire("Vanessa", systemUserName="Vanessa")
        srv.wire("Marc")
        w.send({"type": "call", "id": 7, "method": "broadcast",
                "args": ["the server restarts at ten"]})
        frame = w.recv_type("result")
        self.assertEqual((frame["ok"], frame["value"]), (True, 2), frame)
        [e] = audit(srv)
        self.assertEqual(
            (e["actor"], e["action"], e["target"], e["count"], e["detail"],
             e["outcome"]),
            ("method:broadcast@Vanessa", "send", "all", 2,
             "the server restarts at ten", "ok"))

    def test_a_console_line_is_named_with_the_os_user(self):
        srv = self.server()
        srv.wire("Vanessa")
        r = srv.cli("console", "--socket", srv.socket,
                    input='send_message_to_remote_user("from the console")\n'
                          'reject_new_remote_connections(true)\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        got = [(e["actor"], e["action"], e["detail"]) for e in audit(srv)]
        self.assertEqual(got, [
            (f"console:{ME}", "reject", "on"),
            (f"console:{ME}", "send", "from the console"),
        ])

    def test_a_job_is_named_after_itself(self):
        scripts = self.folder({"maintenance/tick.lua":
                               'send_message_to_remote_user("tick")\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { every = 1, name = "tick", '
            'script = "maintenance/tick.lua" } }'))
        srv.wire("Vanessa")
        e = wait_for(srv, lambda e: e["action"] == "send", timeout=4,
                     what="send by the job")
        self.assertEqual((e["actor"], e["target"], e["count"], e["detail"]),
                         ("job:tick", "all", 1, "tick"))

    def test_schedule_unschedule_and_run_job(self):
        scripts = self.folder({"maintenance/nap.lua": "delay_process(5)\n"})
        srv = self.server(scripts=scripts)
        out = srv.lua('''
local id = schedule({every = 3600, name = "nap"}, "maintenance/nap.lua")
print(id)
print(run_job(id))
print(run_job(id))      -- still running
print(unschedule(id))
print(unschedule(id))   -- gone
print(run_job(4242))
print((pcall(schedule, "61 * * * *", "maintenance/nap.lua")))
''').split()
        job = out[0]
        self.assertEqual(out[1:], ["true", "false", "true", "false",
                                   "false", "false"])
        got = [(e["actor"], e["action"], e["target"], e["detail"],
                e["outcome"]) for e in audit(srv)]
        script = "run:script0.lua"
        nap = "nap (every 3600 s)"
        self.assertEqual(got, [
            (script, "schedule", "none", "",
             "minute field: 61 is out of range 0-59"),
            (script, "run_job", "4242", "", "no such job"),
            (script, "unschedule", job, "", "no such job"),
            (script, "unschedule", job, nap, "ok"),
            (script, "run_job", job, nap, "already running"),
            (script, "run_job", job, nap, "ok"),
            (script, "schedule", job, nap, "ok"),
        ])

    def test_a_refused_login_is_named_with_the_address(self):
        d = self.state_dir()
        users = os.path.join(d, "users")
        r = subprocess.run([HERALD, "user", "add", "vanessa", "--file",
                            users], input="right horse\n",
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        srv = self.server(config=f'users_file = "{users}"\n'
                                 'auth_delay = 0\n')
        for user, password in (("vanessa", "wrong horse"),
                               ("nobody", "anything"), ("vanessa", None)):
            w = srv.wire()
            fields = {} if password is None else {"password": password}
            frame = w.hello(user, **fields)
            self.assertEqual(frame["type"], "error", frame)
        w = srv.wire()
        self.assertEqual(w.hello("vanessa", password="right horse")["type"],
                         "welcome")
        got = [(e["actor"], e["action"], e["target"], e["count"],
                e["detail"], e["outcome"]) for e in audit(srv)]
        # The right password leaves no entry.
        self.assertEqual(got, [
            ("remote:127.0.0.1", "login_failed", "vanessa", 0,
             "no password", "refused"),
            ("remote:127.0.0.1", "login_failed", "nobody", 0,
             "no such user", "refused"),
            ("remote:127.0.0.1", "login_failed", "vanessa", 0,
             "wrong password", "refused"),
        ])

    def test_a_long_message_is_cut_on_a_character_boundary(self):
        srv = self.server()
        srv.lua('send_message_to_remote_user(string.rep("é", 1000))')
        [e] = audit(srv)
        self.assertEqual(e["detail"], "é" * 512)  # 1024 bytes
        srv.lua('send_message_to_remote_user("x" .. string.rep("é", 1000))')
        e = audit(srv)[0]
        self.assertEqual(e["detail"], "x" + "é" * 511)  # 1023 bytes


class Reading(AuditTest):
    def test_audit_log_is_a_collection_with_the_query_syntax(self):
        srv = self.server()
        srv.lua('''
send_message_to_remote_user("one")
drop_remote_user("AAAA", "first")
send_message_to_remote_user("two")
drop_remote_user("BBBB", "second")
''')
        out = srv.lua('''
local drops = audit_log("action = :1", "drop")
print(drops:length())
for _, e in ipairs(drops) do print(e.target, e.detail, e.outcome) end
print(audit_log("action = 'send' and detail = :1", "t@"):first().detail)
print(audit_log("target in :1", {"AAAA", "all"}):length())
print(#audit_log(), audit_log():length())
local e = audit_log()[1]
print(e.time, e.actor, e.action, e.target, math.type(e.count))
''').splitlines()
        self.assertEqual(out[0], "2")
        self.assertEqual(out[1:3], ["BBBB\tsecond\tno such session",
                                    "AAAA\tfirst\tno such session"])
        self.assertEqual(out[3], "two")
        self.assertEqual(out[4], "3")
        self.assertEqual(out[5], "4\t4")
        time_, actor, action, target, kind = out[6].split("\t")
        self.assertRegex(time_, ISO)
        self.assertEqual((actor, action, target, kind),
                         ("run:script0.lua", "drop", "BBBB", "integer"))
        r = srv.run_script('audit_log("action = ")')
        self.assertEqual(r.returncode, 1)
        self.assertIn("query:", r.stderr)

    def test_since_takes_a_duration_or_a_utc_date_and_time(self):
        srv = self.server()
        details = lambda *a: [e["detail"] for e in audit(srv, *a)]
        srv.lua('send_message_to_remote_user("older")')
        time.sleep(2.5)
        srv.lua('send_message_to_remote_user("newer")')
        self.assertEqual(details("--since", "2s"), ["newer"])
        entries = audit(srv)
        self.assertEqual([e["detail"] for e in entries], ["newer", "older"])
        newer = entries[0]["time"]
        self.assertEqual(details("--since", "10m"), ["newer", "older"])
        self.assertEqual(details("--since", "2h"), ["newer", "older"])
        self.assertEqual(details("--since", "7d"), ["newer", "older"])
        self.assertEqual(details("--since", newer), ["newer"])
        self.assertEqual(details("--since", newer[:10]), ["newer", "older"])
        minute = time.strftime("%Y-%m-%dT%H:%M",
                               time.gmtime(time.time() - 120))
        self.assertEqual(details("--since", minute), ["newer", "older"])
        future = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400
                                                       * 2))
        self.assertEqual(details("--since", future), [])
        r = srv.cli("audit", "--socket", srv.socket, "--since", future)
        self.assertEqual((r.returncode, r.stdout), (0, "no entries\n"))
        for bad in ("yesterday", "10x", "2026-13-01", "2026-02-30",
                    "2026-11-30T25:00", "-5m", ""):
            with self.subTest(since=bad):
                r = srv.cli("audit", "--socket", srv.socket, "--since", bad)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("--since", r.stderr)
                self.assertEqual(r.stdout, "")

    def test_the_table_and_json_lines(self):
        srv = self.server()
        srv.lua('send_message_to_remote_user("line one\\nline two\\27[31m '
                '" .. string.rep("z", 200))\n'
                'drop_remote_user("' + "C" * 32 + '", "gone")')
        r = srv.cli("audit", "--socket", srv.socket)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["time", "(UTC)", "actor",
                                            "action", "target", "count",
                                            "detail"])
        self.assertEqual(len(lines), 3)
        drop, send = lines[1], lines[2]
        self.assertRegex(drop, r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "
                               r"run:script0\.lua  drop    C{32}\s+0  "
                               r"gone \(no such session\)$")
        # The columns line up under the header.
        self.assertEqual(send.index("send"), lines[0].index("action"))
        self.assertEqual(drop.index("drop"), lines[0].index("action"))
        # The detail: one line, no escape sequence, shortened.
        self.assertNotIn("\x1b", r.stdout)
        self.assertIn("line one line two?[31m zzz", send)
        self.assertTrue(send.endswith("\u2026"), send)
        self.assertLess(len(send), 160)
        # --json: the full detail, one object per line.
        r = srv.cli("audit", "--socket", srv.socket, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        objects = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertEqual([list(o) for o in objects], [KEYS, KEYS])
        self.assertEqual(objects[1]["detail"],
                         "line one\nline two\x1b[31m " + "z" * 200)
        self.assertEqual(objects[0]["count"], 0)

    def test_command_line_errors_and_help(self):
        srv = self.server()
        r = srv.cli("audit", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("usage: herald audit"), r.stdout)
        for args in (["--bogus"], ["extra"], ["--since"]):
            with self.subTest(args=args):
                r = srv.cli("audit", "--socket", srv.socket, *args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertTrue(r.stderr.startswith("herald: audit: "),
                                r.stderr)
        r = srv.cli("audit", "--socket", os.path.join(srv.dir, "none",
                                                      "x.sock"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot reach the server", r.stderr)
        # The trust check of herald run: a folder others may write to.
        d = tempfile.mkdtemp(prefix="herald-open-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o777)
        self.assertFalse(os.stat(d).st_mode & stat.S_ISVTX)
        r = srv.cli("audit", "--socket", os.path.join(d, "herald.sock"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("refusing the admin socket", r.stderr)

    def test_methods_may_not_read_the_log_but_jobs_may(self):
        scripts = self.folder({
            "methods/peek.lua": "return function() return "
                                "audit_log():length() end\n",
            "maintenance/count.lua": 'print("job sees", '
                                     'audit_log():length())\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { every = 0.5, name = "count", '
            'script = "maintenance/count.lua" } }'))
        srv.lua('send_message_to_remote_user("secret text")')
        w = srv.wire("Mallory")
        w.send({"type": "call", "id": 1, "method": "peek", "args": []})
        frame = w.recv_type("result")
        self.assertFalse(frame["ok"], frame)
        self.assertIn("audit_log: not available to methods", frame["error"])
        self.assertNotIn("value", frame)
        srv.wait_log(r"job count: job sees\s+1$")


class Keeping(AuditTest):
    def config(self, d, *extra):
        return "\n".join([f'state = "{os.path.join(d, "herald.db")}"',
                          *extra]) + "\n"

    def test_entries_survive_a_restart(self):
        d = self.state_dir()
        srv = self.server(config=self.config(d))
        srv.lua('send_message_to_remote_user("kept")\n'
                'reject_new_remote_connections(false)')
        before = audit(srv)
        self.assertEqual(len(before), 2)
        self.assertEqual(srv.stop(), 0)
        srv = self.server(config=self.config(d))
        self.assertEqual(audit(srv), before)
        srv.lua('drop_remote_user("DDDD")')
        self.assertEqual(audit(srv)[1:], before)

    def test_entries_older_than_audit_keep_days_are_pruned_at_start(self):
        d = self.state_dir()
        db = os.path.join(d, "herald.db")
        config = self.config(d, "audit_keep_days = 1")
        srv = self.server(config=config)
        srv.lua('send_message_to_remote_user("today")')
        self.assertEqual(srv.stop(), 0)
        now = int(time.time() * 1000)
        with sqlite3.connect(db) as c:
            for age_h, detail in ((72, "three days old"),
                                  (25, "a day and an hour old"),
                                  (12, "half a day old")):
                c.execute("INSERT INTO audit(time_ms, actor, action, target,"
                          " count, detail, outcome) VALUES(?,?,?,?,?,?,?)",
                          (now - age_h * 3600 * 1000, "server", "send",
                           "all", 0, detail, "ok"))
        c.close()
        srv = self.server(config=config)
        # At start, before anything is recorded or read.
        with sqlite3.connect(db) as c:
            left = [r[0] for r in c.execute(
                "SELECT detail FROM audit ORDER BY time_ms")]
        c.close()
        self.assertEqual(left, ["half a day old", "today"])
        # Newest first by time, whatever the order they were written in.
        self.assertEqual([e["detail"] for e in audit(srv)],
                         ["today", "half a day old"])

    def test_without_a_state_database_the_newest_10000_are_in_memory(self):
        srv = self.server(config="state = false\n")
        srv.lua('for i = 1, 10050 do '
                'send_message_to_remote_user("m" .. i) end')
        out = srv.lua('local log = audit_log()\n'
                      'print(log:length(), log[1].detail, '
                      'log[#log].detail, log[1].actor)').split()
        self.assertEqual(out, ["10000", "m10050", "m51", "run:script0.lua"])
        self.assertEqual(len(audit(srv, "--since", "1h")), 10000)
        self.assertFalse(any(name.startswith("herald.db")
                             for name in os.listdir(srv.dir)),
                         os.listdir(srv.dir))
        self.assertEqual(srv.stop(), 0)
        srv = self.server(config="state = false\n")
        self.assertEqual(audit(srv), [])  # memory: gone with the server


if __name__ == "__main__":
    import unittest
    unittest.main()
