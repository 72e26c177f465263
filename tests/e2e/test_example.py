"""4D's example, end to end: three remote users on the real `herald
client`, the administrator's script through the real `herald run`."""
import json
import os

from harness import HeraldTest, SCRIPTS

EXAMPLE = os.path.join(SCRIPTS, "examples", "maintenance_notice.lua")
NOTICE = ("A maintenance operation is scheduled for 10pm. The server will "
          "be restarted. Please log out before 10pm.")


class MaintenanceNotice(HeraldTest):
    def test_everyone_gets_the_notice_and_only_vanessa_the_greeting(self):
        srv = self.server()
        clients = {}
        for user in ("Vanessa", "Marc", "Lea"):
            proc, out = srv.spawn("client", "--json", "--user", user,
                                  "--system-user", user, "--machine",
                                  user.lower() + "-laptop")
            clients[user] = (proc, out)
        for user in clients:
            srv.wait_log(f"opened: {user}@")
        r = srv.cli("run", EXAMPLE)
        self.assertEqual(r.returncode, 0, r.stderr)
        for user, (proc, out) in clients.items():
            line = out.wait(r'"type":"message"')
            self.assertEqual(json.loads(line)["text"], NOTICE)
        greeting = clients["Vanessa"][1].wait("Hello Vanessa")
        self.assertEqual(json.loads(greeting)["text"], "Hello Vanessa")
        # Every client acknowledges what it showed: nothing stays pending.
        status = srv.lua("print(message_status(1).acknowledged, "
                         "message_status(2).acknowledged)")
        self.assertEqual(status.split(), ["3", "1"])
        for user in ("Marc", "Lea"):
            self.assertNotIn("Hello Vanessa", clients[user][1].text())
