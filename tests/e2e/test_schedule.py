"""Scheduled jobs end to end: the `schedule` configuration, runs as
processes of type 5, no overlap, failures and timeouts, refusal of a bad
schedule at start, the Lua functions schedule/unschedule/get_schedule/
run_job, the shipped maintenance scripts and the sample herald.conf.lua."""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import harness
from harness import HERALD, ROOT, SCRIPTS, HeraldTest

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"

# Prints each job of get_schedule() as "key=value" fields on one line.
JOBS = r'''
for _, j in ipairs(get_schedule()) do
  print(string.format("ID=%s|name=%s|spec=%s|script=%s|nextRun=%s|"
    .. "lastRun=%s|lastResult=%s|running=%s|process=%s", j.ID, j.name,
    j.spec, j.script, tostring(j.nextRun), tostring(j.lastRun),
    tostring(j.lastResult), tostring(j.running), tostring(j.process)))
end
'''


def parse_jobs(text):
    """The lines printed by JOBS, as dicts keyed by job name."""
    jobs = {}
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split("|"))
        jobs[fields["name"]] = fields
    return jobs


class Schedule(HeraldTest):
    def scripts(self, files):
        """A scripts folder of its own (methods/, maintenance/) holding
        files {relative path: Lua text}; removed after the test."""
        d = tempfile.mkdtemp(prefix="herald-scripts-")
        self.addCleanup(shutil.rmtree, d, True)
        os.makedirs(os.path.join(d, "methods"))
        os.makedirs(os.path.join(d, "maintenance"))
        for name, text in files.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        return d

    def messages(self, wire, seconds):
        """The texts and arrival times of the messages wire receives within
        seconds, each acknowledged."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                frame = wire.recv(timeout=left)
            except socket.timeout:
                return got
            self.assertIsNotNone(frame, "the server closed the connection")
            if frame["type"] == "ping":
                wire.send({"type": "pong"})
            elif frame["type"] == "message":
                got.append((frame["text"], time.monotonic()))
                wire.send({"type": "ack", "id": frame["id"]})

    def refused(self, config, scripts):
        """Starts `herald serve` with config; returns (status, output)."""
        d = tempfile.mkdtemp(prefix="herald-bad-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "herald.conf.lua")
        with open(path, "w") as f:
            f.write(config)
        # Under the harness's wrapper (valgrind) when it has one.
        wrapper = list(getattr(harness, "WRAPPER", []))
        r = subprocess.run(
            [*wrapper, HERALD, "serve", "--config", path,
             "--listen", "127.0.0.1:0",
             "--admin-socket", os.path.join(d, "a", "herald.sock"),
             "--scripts", scripts, "--no-console"],
            cwd=d, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=60)
        if hasattr(harness, "check_report"):
            harness.check_report(r.stdout + r.stderr, "herald serve")
        return r.returncode, r.stdout + r.stderr

    # --- runs ----------------------------------------------------------

    def test_every_second_job_delivers_about_one_message_a_second(self):
        scripts = self.scripts({"maintenance/tick.lua":
                                'send_message_to_remote_user("tick")\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { every = 1, script = "maintenance/tick.lua" } }'))
        wire = srv.wire("Vanessa", systemUserName="Vanessa")
        got = self.messages(wire, 3.5)
        self.assertIn(len(got), (3, 4), got)
        self.assertTrue(all(text == "tick" for text, _ in got), got)
        gaps = [b - a for (_, a), (_, b) in zip(got, got[1:])]
        for gap in gaps:
            self.assertAlmostEqual(gap, 1.0, delta=0.25, msg=gaps)

    def test_a_slow_job_is_not_overlapped_and_the_skip_is_logged(self):
        scripts = self.scripts({"maintenance/slow.lua":
                                'print("begin")\ndelay_process(1.3)\n'
                                'print("end")\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { every = 0.5, name = "slow", '
            'script = "maintenance/slow.lua" } }'))
        srv.wait_log(r"job slow: still running \(process \d+\) when due "
                     r"again; this run is skipped", timeout=5)
        srv.wait_log(r"job slow: end", timeout=5)
        time.sleep(1.5)
        # Each run ends before the next begins.
        events = re.findall(r"job slow: (begin|end)$", srv.log.text(),
                            re.M)
        self.assertGreaterEqual(events.count("begin"), 2, events)
        for i, event in enumerate(events):
            self.assertEqual(event, "begin" if i % 2 == 0 else "end", events)
        out = srv.lua('print(#get_process_activity(PROCESSES_ONLY)'
                      '.processes:query("name = :1", "slow"))')
        self.assertIn(out.strip(), ("0", "1"))

    def test_a_running_job_is_a_process_of_type_5_with_its_name(self):
        scripts = self.scripts({"maintenance/report.lua":
                                'delay_process(5)\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { cron = "@reboot", name = "nightly report", '
            'script = "maintenance/report.lua" } }'))
        out = srv.lua(
            'for _, p in ipairs(get_process_activity(PROCESSES_ONLY)'
            '.processes:query("type = 5")) do\n'
            '  print(p.name, p.type, p.state, p.sessionID == "")\n'
            'end\n' + JOBS)
        lines = out.splitlines()
        self.assertEqual(lines[0], "nightly report\t5\t1\ttrue")
        job = parse_jobs("\n".join(lines[1:]))["nightly report"]
        self.assertEqual(job["running"], "true")
        self.assertRegex(job["process"], r"^\d+$")
        self.assertEqual(job["lastResult"], "nil")
        self.assertEqual(job["nextRun"], "nil")  # @reboot: once, at start

    def test_a_failing_job_is_logged_with_its_traceback_and_runs_again(self):
        scripts = self.scripts({"maintenance/fail.lua":
                                'local function check()\n'
                                '  error("disk full")\n'
                                'end\n'
                                'check()\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { every = 0.4, script = "maintenance/fail.lua" } }'))
        failed = (r"job maintenance/fail\.lua failed: "
                  r"maintenance/fail\.lua:2: disk full")
        srv.wait_log(failed, timeout=5)
        srv.wait_log("stack traceback:", timeout=5)
        srv.wait_log(r"maintenance/fail\.lua:2: in .*check", timeout=5)
        srv.wait_log(r"maintenance/fail\.lua:4: in main chunk", timeout=5)
        time.sleep(1)
        self.assertGreaterEqual(len(re.findall(failed, srv.log.text())), 2)
        # Messages name the script relative to the scripts folder only
        # (lines of a wrapper such as valgrind aside).
        for line in srv.log.text().splitlines():
            if not line.startswith("=="):
                self.assertNotIn(scripts, line)
        job = parse_jobs(srv.lua(JOBS))["maintenance/fail.lua"]
        self.assertEqual(job["lastResult"],
                         "maintenance/fail.lua:2: disk full")
        self.assertRegex(job["lastRun"], ISO)
        self.assertRegex(job["nextRun"], ISO)

    def test_timeouts_end_runaway_jobs(self):
        scripts = self.scripts({"maintenance/spin.lua":
                                'while true do end\n'})
        srv = self.server(scripts=scripts, config=(
            'method_timeout = 0.6\n'
            'schedule = {\n'
            '  { cron = "@reboot", name = "own", timeout = 0.2,\n'
            '    script = "maintenance/spin.lua" },\n'
            '  { cron = "@reboot", name = "default",\n'
            '    script = "maintenance/spin.lua" },\n'
            '}\n'))
        srv.wait_log(r"job own failed: timed out after 0\.2 s", timeout=5)
        srv.wait_log(r"job default failed: timed out after 0\.6 s",
                     timeout=5)
        jobs = parse_jobs(srv.lua(JOBS))
        self.assertEqual(jobs["own"]["lastResult"], "timed out after 0.2 s")
        self.assertEqual(jobs["default"]["running"], "false")

    def test_a_reboot_job_runs_once_in_the_sandbox_with_its_args(self):
        scripts = self.scripts({"maintenance/boot.lua":
                                'print("boot", arg[0], ...)\n'
                                'print("sandbox", type(io), type(os.execute),'
                                ' type(package), type(os.time))\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { cron = "@reboot", name = "boot", '
            'script = "maintenance/boot.lua", args = { "a", 2 } } }'))
        srv.wait_log(r"job boot: boot\tmaintenance/boot\.lua\ta\t2$")
        srv.wait_log(r"job boot: sandbox\tnil\tnil\tnil\tfunction$")
        time.sleep(1)
        self.assertEqual(len(re.findall(r"job boot: boot", srv.log.text())),
                         1)
        job = parse_jobs(srv.lua(JOBS))["boot"]
        self.assertEqual(job["lastResult"], "ok")
        self.assertEqual(job["spec"], "@reboot")

    # --- refusal at start ----------------------------------------------

    def test_bad_schedules_stop_the_server_at_start(self):
        scripts = self.scripts({"maintenance/tick.lua": "\n"})
        cases = [
            ('{ every = 1, script = "maintenance/tick.lua", colour = "red" }',
             r"schedule entry 1 \(maintenance/tick\.lua\): unknown field "
             r"'colour'"),
            ('{ cron = "0 3 * * *", script = "maintenance/tick.lua" },\n'
             '{ cron = "61 * * * *", name = "nightly",\n'
             '  script = "maintenance/tick.lua" }',
             r"schedule entry 2 \(nightly\): minute field: 61 is out of "
             r"range 0-59"),
            ('{ every = 300, name = "sweep",\n'
             '  script = "maintenance/nope.lua" }',
             r"schedule entry 1 \(sweep\): script maintenance/nope\.lua not "
             r"found in scripts folder '" + re.escape(scripts) + "'"),
            ('{ cron = "* * * * *", every = 60, name = "both",\n'
             '  script = "maintenance/tick.lua" }',
             r"schedule entry 1 \(both\): give exactly one of 'cron' or "
             r"'every'"),
            ('{ cron = "0 0 30 2 *", name = "never",\n'
             '  script = "maintenance/tick.lua" }',
             r"schedule entry 1 \(never\): cron '0 0 30 2 \*' never fires"),
            ('{ every = 60, name = "out", script = "../tick.lua" }',
             r"schedule entry 1 \(out\): script '\.\./tick\.lua' must be a "
             r"path inside the scripts folder"),
        ]
        for entries, message in cases:
            with self.subTest(message=message):
                status, out = self.refused(
                    "schedule = {\n" + entries + "\n}\n", scripts)
                self.assertEqual(status, 2, out)
                self.assertRegex(out, r"herald: configuration: .*" + message)
                self.assertNotIn("listening on", out)

    # --- from Lua ------------------------------------------------------

    def test_schedule_get_schedule_run_job_and_unschedule(self):
        scripts = self.scripts({"maintenance/echo.lua":
                                'send_message_to_remote_user("echo " .. '
                                'table.concat({...}, " "))\n',
                                "maintenance/hold.lua": 'delay_process(3)\n'})
        srv = self.server(scripts=scripts)
        wire = srv.wire("Vanessa")
        out = srv.lua('print(schedule({ every = 0.4, name = "pinger", '
                      'args = { "hi", "there" } }, "maintenance/echo.lua"))')
        job_id = out.strip()
        self.assertRegex(job_id, r"^\d+$")
        got = self.messages(wire, 1.5)
        self.assertGreaterEqual(len(got), 2, got)
        self.assertEqual(got[0][0], "echo hi there")
        job = parse_jobs(srv.lua(JOBS))["pinger"]
        self.assertEqual(job["ID"], job_id)
        self.assertEqual(job["spec"], "every 0.4 s")
        self.assertEqual(job["script"], "maintenance/echo.lua")
        self.assertEqual(job["lastResult"], "ok")
        self.assertEqual(job["running"], "false")
        self.assertRegex(job["nextRun"], ISO)
        self.assertRegex(job["lastRun"], ISO)
        self.assertEqual(
            srv.lua(f"print(unschedule({job_id}), unschedule({job_id}))"),
            "true\tfalse\n")
        self.messages(wire, 0.3)  # one run may have been under way
        self.assertEqual(self.messages(wire, 1.0), [])
        self.assertEqual(srv.lua(JOBS), "")

        # run_job: a yearly job runs now, once; not while it is running.
        out = srv.lua('local id = schedule({ cron = "0 0 1 1 *", '
                      'name = "yearly", args = { "now" } }, '
                      '"maintenance/echo.lua")\n'
                      'print(id, run_job(id), run_job(id), run_job(9999), '
                      'get_schedule():query("ID = :1", id)[1].nextRun)')
        yearly, first, again, unknown, next_run = out.split()
        self.assertEqual((first, again, unknown), ("true", "false", "false"))
        self.assertEqual([t for t, _ in self.messages(wire, 1.0)],
                         ["echo now"])
        # The run on demand leaves the job's own schedule as it was.
        job = parse_jobs(srv.lua(JOBS))["yearly"]
        self.assertEqual((job["ID"], job["nextRun"], job["lastResult"]),
                         (yearly, next_run, "ok"))
        out = srv.lua('local id = schedule("@yearly", "maintenance/hold.lua")'
                      '\nprint(id, run_job(id))')
        hold, started = out.split()
        self.assertEqual(started, "true")
        time.sleep(0.3)
        out = srv.lua(f"print(run_job({hold}))\n" + JOBS)
        self.assertEqual(out.splitlines()[0], "false")
        self.assertEqual(parse_jobs(out.split("\n", 1)[1])
                         ["maintenance/hold.lua"]["running"], "true")

    def test_a_function_scheduled_by_a_script_outlives_the_script(self):
        srv = self.server()
        wire = srv.wire("Vanessa")
        r = srv.run_script('local count = 0\n'
                           'local id = schedule(0.3, function()\n'
                           '  count = count + 1\n'
                           '  send_message_to_remote_user("fn " .. count)\n'
                           'end)\n'
                           'print(id)\n')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^\d+\n$")
        # The script has ended; its function keeps running, with its
        # upvalue, as a job of its own.
        got = [t for t, _ in self.messages(wire, 1.2)]
        self.assertEqual(got[:2], ["fn 1", "fn 2"])
        jobs = parse_jobs(srv.lua(JOBS))
        self.assertEqual(len(jobs), 1)
        (name, job), = jobs.items()
        self.assertEqual(job["script"], "function")
        self.assertEqual(job["spec"], "every 0.3 s")
        self.assertRegex(name, r"\.lua:2$")

    def test_a_function_job_gets_its_args_and_counts(self):
        srv = self.server()
        wire = srv.wire("Vanessa")
        srv.lua('local n = 0\n'
                'schedule({ every = 0.3, name = "counter", '
                'args = { "tick " } }, function(word)\n'
                '  n = n + 1\n'
                '  send_message_to_remote_user(word .. n)\n'
                'end)\n')
        got = [t for t, _ in self.messages(wire, 1.1)]
        self.assertEqual(got[:3], ["tick 1", "tick 2", "tick 3"])

    def test_a_reboot_job_scheduled_from_lua_is_refused(self):
        # @reboot means "at the server's start", which has passed: such a
        # job would never run, so schedule() refuses it, in any form.
        scripts = self.scripts({"maintenance/echo.lua": "\n"})
        srv = self.server(scripts=scripts)
        for call in ('schedule("@reboot", function() end)',
                     'schedule(" @REBOOT ", "maintenance/echo.lua")',
                     'schedule({ cron = "@reboot", name = "late" }, '
                     'function() end)'):
            with self.subTest(call=call):
                out = srv.lua(f"print(pcall(function() return {call} end))")
                self.assertTrue(out.startswith("false\t"), out)
                self.assertIn("schedule: @reboot is only for the "
                              "configuration's schedule", out)
        self.assertEqual(srv.lua(JOBS), "")

    def test_bad_calls_of_schedule_raise(self):
        scripts = self.scripts({"maintenance/echo.lua": "\n"})
        srv = self.server(scripts=scripts)
        cases = {
            'schedule("61 * * * *", "maintenance/echo.lua")':
                "schedule: minute field: 61 is out of range 0-59",
            'schedule(1, "maintenance/nope.lua")':
                "schedule: script maintenance/nope.lua not found",
            'schedule({ every = 1, colour = 1 }, "maintenance/echo.lua")':
                "unknown field 'colour'",
            'schedule({ every = 1, cron = "@daily" }, "maintenance/echo.lua")':
                "give exactly one of 'cron' or 'every'",
            'schedule(0, "maintenance/echo.lua")':
                "'every' must be a number of seconds from 0.01",
            'schedule(1, 42)': "script path or function expected",
            'schedule("@daily", "/etc/passwd")':
                "must be a path inside the scripts folder",
        }
        for call, message in cases.items():
            with self.subTest(call=call):
                out = srv.lua(f"print(pcall(function() return {call} end))")
                self.assertTrue(out.startswith("false\t"), out)
                self.assertIn(message, out)
        self.assertEqual(srv.lua(JOBS), "")

    def test_a_server_method_can_read_the_schedule(self):
        scripts = self.scripts({
            "maintenance/tick.lua": "\n",
            "methods/jobs.lua": 'return function()\n'
                                '  return get_schedule():map(function(j)\n'
                                '    return j.name end)\n'
                                'end\n'})
        srv = self.server(scripts=scripts, config=(
            'schedule = { { cron = "@hourly", name = "hourly", '
            'script = "maintenance/tick.lua" } }'))
        r = srv.cli("call", "jobs")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip().replace(" ", ""), '["hourly"]')

    # --- the shipped scripts and sample configuration ------------------

    def test_the_sample_configuration_loads_and_its_notice_runs(self):
        with open(os.path.join(ROOT, "herald.conf.lua")) as f:
            # Its pages on a free port: 7480 may be make run's.
            sample = f.read().replace('"127.0.0.1:7480"', '"127.0.0.1:0"')
        srv = self.server(config=sample)
        jobs = parse_jobs(srv.lua(JOBS))
        notice = jobs["restart notice"]
        self.assertEqual(notice["spec"], "45 21 * * 1-5")
        self.assertEqual(notice["script"], "maintenance/restart_notice.lua")
        self.assertRegex(notice["nextRun"], ISO)
        self.assertEqual(jobs["maintenance/sweep.lua"]["spec"],
                         "every 300 s")
        vanessa = srv.wire("Vanessa", systemUserName="Vanessa")
        marc = srv.wire("Marc", systemUserName="Marc")
        self.assertEqual(srv.lua(f'print(run_job({notice["ID"]}))'),
                         "true\n")
        notice_text = ("A maintenance operation is scheduled for 10pm. The "
                       "server will be restarted. Please log out before "
                       "10pm.")
        self.assertEqual([t for t, _ in self.messages(vanessa, 1.0)],
                         [notice_text, "Hello Vanessa"])
        self.assertEqual([t for t, _ in self.messages(marc, 0.3)],
                         [notice_text])
        srv.wait_log(r"job restart notice: restart notice: 2 session\(s\) "
                     r"warned, 1 greeted as Vanessa")

    def test_sweep_drops_only_sleeping_sessions_and_reports_its_status(self):
        srv = self.server(config="sleep_after = 0.5\n")
        sleeper = srv.wire("Sleeper")
        awake = srv.wire("Awake")
        sweep = os.path.join(SCRIPTS, "maintenance", "sweep.lua")
        deadline = time.monotonic() + 1.2
        call = 0
        while time.monotonic() < deadline:  # Awake keeps calling
            call += 1
            awake.send({"type": "call", "id": call, "method": "noop"})
            time.sleep(0.1)
        r = srv.cli("run", "--socket", srv.socket, sweep, "0", "dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("would drop", r.stdout)
        self.assertIn("Sleeper@", r.stdout)
        self.assertNotIn("Awake", r.stdout)
        r = srv.cli("run", "--socket", srv.socket, sweep, "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("sweep: 1 sleeping session(s) older than 0 s dropped",
                      r.stdout)
        self.assertEqual(sleeper.recv_type("drop")["type"], "drop")
        self.assertEqual(srv.lua("print(#get_process_activity(SESSIONS_ONLY)"
                                 ".sessions)"), "1\n")
        # The exit statuses a crontab line relies on.
        r = srv.cli("run", "--socket", srv.socket, sweep, "soon")
        self.assertEqual(r.returncode, 1)
        self.assertIn("max_age must be a number of seconds", r.stderr)
        r = srv.cli("run", "--socket", os.path.join(srv.dir, "none.sock"),
                    sweep)
        self.assertEqual(r.returncode, 2)
