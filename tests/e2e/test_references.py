"""Lua references and memory over many sessions: a thousand remote users
connect, get a message, acknowledge it, some call a method, and leave by
`bye` or are dropped with drop_remote_user; afterwards the server's Lua
registry holds no more live references than before and its heap has not
grown beyond a small tolerance."""
import socket
import time

from harness import HeraldTest

CYCLES = 1000
BATCH = 50  # sessions connected at the same time
# Heap growth allowed over the thousand cycles (the string table may
# double once, 4 KB): a leak of one empty table (56 bytes) per session
# goes past it.
HEAP_SLACK_KB = 32

# Counts the registry after two full collections: live references, every
# entry, and the heap in KB. A reference that luaL_unref released stays in
# the registry as a number in the free list (integer key, number value),
# so it is not live.
MEASURE = r'''
collectgarbage("collect")
collectgarbage("collect")
local live, total = 0, 0
for k, v in pairs(debug.getregistry()) do
  total = total + 1
  if math.type(k) ~= "integer" or type(v) ~= "number" then
    live = live + 1
  end
end
'''

# After MEASURE: fails the script, and so the test, when the live
# references or the heap grew past what was measured before.
CHECK = r'''
local live0, kb0, cycles, slack = {live0}, {kb0}, {cycles}, {slack}
local kb = collectgarbage("count")
assert(live <= live0, string.format(
  "live references: %d before, %d after %d sessions", live0, live, cycles))
assert(kb <= kb0 + slack, string.format(
  "heap: %.0f KB before, %.0f KB after %d sessions", kb0, kb, cycles))
print(live, total, kb)
'''


class References(HeraldTest):
    def measure(self, srv):
        """(live references, registry entries, heap KB) on the server."""
        out = srv.lua(MEASURE + 'print(live, total, collectgarbage("count"))')
        live, total, kb = out.split()
        return int(live), int(total), float(kb)

    def cycle(self, srv, batch):
        """batch sessions connect, get and acknowledge one message; the odd
        ones call whoami and say bye, the even ones are dropped."""
        wires = [srv.wire(f"user{i}", systemUserName="refs")
                 for i in range(batch)]
        for w in wires:
            # ack then call are two small writes: without this, the call
            # waits out the server's delayed ACK (40 ms) every time.
            w.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = srv.lua('print(send_message_to_remote_user("cycle"))')
        self.assertEqual(out.split()[0], str(batch))
        for i, w in enumerate(wires):
            frame = w.recv_type("message")
            self.assertEqual(frame["text"], "cycle")
            w.send({"type": "ack", "id": frame["id"]})
            if i % 2:
                w.send({"type": "call", "id": i, "method": "whoami",
                        "args": []})
                result = w.recv_type("result")
                self.assertTrue(result["ok"], result)
                self.assertEqual(result["value"]["ID"],
                                 w.welcome["sessionID"])
                w.send({"type": "bye"})
        dropped = [w.welcome["sessionID"] for w in wires[::2]]
        out = srv.lua("local n = 0\n"
                      + "".join(f'if drop_remote_user("{sid}") then '
                                "n = n + 1 end\n" for sid in dropped)
                      + "print(n)")
        self.assertEqual(out.strip(), str(len(dropped)))
        for i, w in enumerate(wires):
            if i % 2 == 0:
                self.assertEqual(w.recv_type("drop")["type"], "drop")
            self.assertTrue(w.closed(), f"user{i} left connected")
            w.close()
        srv.wires.clear()

    def wait_no_sessions(self, srv):
        deadline = time.monotonic() + 10
        while True:
            out = srv.lua("print(#get_process_activity(SESSIONS_ONLY)"
                          ".sessions)")
            if out.strip() == "0":
                return
            if time.monotonic() > deadline:
                self.fail(f"{out.strip()} sessions left after the cycles")
            time.sleep(0.05)

    def test_thousand_sessions_leak_no_reference(self):
        srv = self.server()
        # One round first, so that what is made once (the method's chunk,
        # interned strings, tables grown to their size) is in the baseline.
        self.cycle(srv, BATCH)
        self.wait_no_sessions(srv)
        live0, total0, kb0 = self.measure(srv)
        for _ in range(CYCLES // BATCH):
            self.cycle(srv, BATCH)
        self.wait_no_sessions(srv)
        out = srv.lua(MEASURE + CHECK.format(live0=live0, kb0=kb0,
                                             cycles=CYCLES,
                                             slack=HEAP_SLACK_KB))
        total = int(out.split()[1])
        # Freed references are reused: the registry does not grow either.
        self.assertLessEqual(total, total0 + BATCH,
                             f"registry entries: {total0} before, {total} "
                             f"after")
