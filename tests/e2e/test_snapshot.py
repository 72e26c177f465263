"""The sessions collection of get_process_activity() is built when Lua
first looks at it, and written straight from its copy when a method
returns it untouched (modules/snapshot.c). These tests hold that this
cannot be seen: the fast reply equals the built one, every way of reading
a table sees the sessions, and a snapshot is of the moment it was taken."""
import os
import tempfile

from harness import add_user, sync
from test_methods import MethodsTest

# Returns the listing untouched: the copy is written into the reply.
FAST = ("return function(opts) return get_process_activity(opts or "
        "SESSIONS_ONLY).sessions end\n")
# The same sessions through Lua tables: map builds the collection first.
BUILT = ("return function() return get_process_activity(SESSIONS_ONLY)"
         ".sessions:map(function(s) return s end) end\n")

ODD = {
    "quote": 'Va"nessa \\ back/slash',
    "ctrl": "tab\there\x01\x1f",
    "unicode": "h\u00e9l\u00e8ne \u65e5\u672c \U0001F600",
}


def by_id(sessions):
    return {s["ID"]: s for s in sessions}


class Snapshot(MethodsTest):
    def users_server(self, **methods):
        d = tempfile.mkdtemp(prefix="herald-users-")
        users = os.path.join(d, "users")
        add_user(users, "vanessa", "secret1", "admin", "ops")
        add_user(users, "marc", "secret2")
        folder = self.folder(**methods)
        return self.server(config=f'users_file = "{users}"\n',
                           scripts=folder)

    def test_untouched_reply_equals_the_built_one(self):
        srv = self.users_server(fast=FAST, built=BUILT)
        vanessa = srv.wire()
        vanessa.send({"type": "hello", "protocol": 1, "userName": "vanessa",
                      "password": "secret1", "machineName": ODD["quote"],
                      "systemUserName": ODD["unicode"]})
        self.assertEqual(vanessa.recv()["type"], "welcome")
        marc = srv.wire()
        marc.send({"type": "hello", "protocol": 1, "userName": "marc",
                   "password": "secret2", "machineName": ODD["ctrl"]})
        self.assertEqual(marc.recv()["type"], "welcome")
        fast = self.ok(self.call(vanessa, "fast", id=1))
        built = self.ok(self.call(vanessa, "built", id=2))
        self.assertEqual(len(fast), 2)
        self.assertEqual(by_id(fast), by_id(built))
        names = {s["userName"]: s for s in fast}
        self.assertEqual(names["vanessa"]["groups"], ["admin", "ops"])
        self.assertEqual(names["vanessa"]["machineName"], ODD["quote"])
        self.assertEqual(names["vanessa"]["systemUserName"], ODD["unicode"])
        self.assertIs(names["vanessa"]["authenticated"], True)
        self.assertEqual(names["marc"]["machineName"], ODD["ctrl"])
        # cjson writes an empty table as {}: so does the copy.
        self.assertEqual(names["marc"]["groups"], {})
        self.assertEqual(names["marc"]["type"], "remote")
        self.assertEqual(names["marc"]["state"], "active")

    def test_the_whole_snapshot_and_processes_come_back(self):
        srv = self.start(self.folder(fast=FAST,
                                     whole="return function() return "
                                     "get_process_activity() end\n"))
        w = srv.wire("ada")
        value = self.ok(self.call(w, "whole"))
        self.assertEqual([s["userName"] for s in value["sessions"]], ["ada"])
        self.assertTrue(any(p["name"].startswith("whole")
                            for p in value["processes"]), value)
        value = self.ok(self.call(w, "fast", 0, id=2))
        self.assertEqual([s["userName"] for s in value], ["ada"])

    def test_every_way_of_reading_sees_the_sessions(self):
        # Each line reads a fresh listing in one way; all must see 3.
        reads = {
            "len": "#s",
            "rawlen": "rawlen(s)",
            "next": "next(s) ~= nil and select('#', next(s)) == 2 and 3",
            "rawget": "rawget(s, 3) and rawget(s, 3).ID and 3",
            "index": "s[3] and s[3].ID and 3",
            "pairs": "(function() local n = 0 for _ in pairs(s) do "
                     "n = n + 1 end return n end)()",
            "ipairs": "(function() local n = 0 for _ in ipairs(s) do "
                      "n = n + 1 end return n end)()",
            "length": "s:length()",
            "query": "s:query('userName != :1', 'nobody'):length()",
            "sort": "(function() table.sort(s, function(a, b) return "
                    "a.userName < b.userName end) return #s end)()",
            "insert": "(function() table.insert(s, {}) return #s - 1 end)()",
            "rawset": "(function() rawset(s, 4, true) return rawlen(s) - 1 "
                      "end)()",
            "assign": "(function() s[4] = true return #s - 1 end)()",
        }
        methods = {name: "return function() local s = get_process_activity("
                         "SESSIONS_ONLY).sessions return %s end\n" % expr
                   for name, expr in reads.items()}
        srv = self.start(self.folder(**methods))
        w = srv.wire("ada")
        srv.wire("bob")
        srv.wire("cyd")
        for i, name in enumerate(reads, 1):
            with self.subTest(read=name):
                self.assertEqual(self.ok(self.call(w, name, id=i)), 3)

    def test_a_changed_element_is_returned_as_changed(self):
        srv = self.start(self.folder(renamed="""
return function()
  local s = get_process_activity(SESSIONS_ONLY).sessions
  s[1].userName = "renamed"
  s[1].extra = { 1, 2 }
  return s
end
"""))
        w = srv.wire("ada")
        value = self.ok(self.call(w, "renamed"))
        self.assertEqual(value[0]["userName"], "renamed")
        self.assertEqual(value[0]["extra"], [1, 2])

    def test_a_snapshot_is_of_the_moment_it_was_taken(self):
        # The listing is taken, bob leaves and cyd comes, then it is
        # returned: bob is in it, cyd is not, and bob's fields are whole.
        srv = self.start(self.folder(later="""
return function()
  local s = get_process_activity(SESSIONS_ONLY).sessions
  delay_process(0.5)
  return s
end
"""))
        w = srv.wire("ada")
        bob = srv.wire("bob", machineName="bob-pc")
        w.send({"type": "call", "id": 1, "method": "later", "args": []})
        sync(w)
        bob.send({"type": "bye"})
        srv.wait_log(r"\(bob\) logged out")
        srv.wire("cyd")
        value = self.ok(self.result(w, 1))
        names = {s["userName"]: s for s in value}
        self.assertEqual(sorted(names), ["ada", "bob"])
        self.assertEqual(names["bob"]["machineName"], "bob-pc")

    def test_the_console_and_cjson_see_the_sessions(self):
        srv = self.server()
        srv.wire("ada")
        out = srv.lua("""
local s = get_process_activity(SESSIONS_ONLY).sessions
print(cjson.encode(s):match('"userName":"ada"') ~= nil)
local whole = get_process_activity()
print(cjson.encode(whole):match('"userName":"ada"') ~= nil)
local t = get_process_activity(SESSIONS_ONLY).sessions
print(cjson.new().encode({ inner = { t } }):match('"ada"') ~= nil)
""")
        self.assertEqual(out.split(), ["true", "true", "true"])

    def test_many_unread_snapshots_are_collected(self):
        # Snapshots nobody looks at are garbage like any table: a loop of
        # them stays within the memory limit, and the server serves on.
        srv = self.start(self.folder(churn="""
return function()
  for i = 1, 2000 do get_process_activity(SESSIONS_ONLY) end
  return #get_process_activity(SESSIONS_ONLY).sessions
end
"""), config="method_timeout = 10\nsession_memory_limit = 8 * 1024 * 1024\n")
        w = srv.wire("ada")
        for i in range(20):
            srv.wire("user%d" % i)
        self.assertEqual(self.ok(self.call(w, "churn", timeout=20)), 21)
