"""The reference stays with the code: the man page renders without a
warning and names every command and every option that `herald --help` and
`herald COMMAND --help` print; docs/configuration.md names every key the
server accepts; and nothing points to ../shared, which a clone of the
repository does not have."""
import os
import re
import shutil
import subprocess
import unittest

from harness import HERALD, ROOT

MAN_PAGE = os.path.join(ROOT, "man", "herald.1")
CONFIGURATION = os.path.join(ROOT, "docs", "configuration.md")
CONFIG_C = os.path.join(ROOT, "runtime", "config.c")
# What must never mention ../shared: files, and folders walked whole.
NO_SHARED = ["README.md", "docs", "man", "herald.conf.lua", "modules",
             "runtime", "Makefile"]


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def man_text():
    """The man page's source as plain words: font changes dropped, \\- and
    \\(aq as the characters they print."""
    text = read(MAN_PAGE)
    text = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", text)
    return text.replace("\\-", "-").replace("\\(aq", "'").replace("\\e", "\\")


def herald_help(*args):
    """What `herald ARGS --help` prints on stdout (status 0)."""
    proc = subprocess.run([HERALD, *args, "--help"], capture_output=True,
                          text=True, timeout=10)
    if proc.returncode != 0:
        raise AssertionError(f"herald {' '.join(args)} --help: status "
                             f"{proc.returncode}: {proc.stderr}")
    return proc.stdout


def commands():
    """The commands `herald --help` lists, in its order."""
    out = herald_help()
    found = re.findall(r"^  ([a-z]+)\s{2,}\S", out, re.M)
    if not found:
        raise AssertionError(f"herald --help lists no commands:\n{out}")
    return found


class ManPage(unittest.TestCase):
    def test_renders_without_warnings(self):
        if shutil.which("man") is None:
            self.skipTest("man is not installed (Debian: apt-get install "
                          "man-db groff)")
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        proc = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l",
                               MAN_PAGE], capture_output=True, text=True,
                              env=env, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        if proc.stderr.strip():
            self.fail("man --warnings found problems in man/herald.1:\n"
                      + proc.stderr)
        self.assertIn("herald", proc.stdout)

    def test_every_command_has_a_section(self):
        text = man_text()
        for cmd in commands():
            with self.subTest(command=cmd):
                if not re.search(rf"(?m)^\.SS {cmd}\s*$", text):
                    self.fail(f"man/herald.1 has no '.SS {cmd}' section for "
                              f"the command 'herald {cmd}'")

    def test_every_option_is_described(self):
        text = man_text()
        for cmd in commands():
            out = herald_help(cmd)
            for opt in sorted(set(re.findall(r"--[a-z][a-z0-9-]*", out))):
                with self.subTest(command=cmd, option=opt):
                    if not re.search(
                            rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text):
                        self.fail(f"'herald {cmd} --help' prints {opt}, "
                                  f"which man/herald.1 does not mention")


class Configuration(unittest.TestCase):
    def config_keys(self):
        """Every key runtime/config.c accepts: its numeric table, and the
        other keys it compares by name."""
        src = read(CONFIG_C)
        numeric = re.findall(r"^\s*NUM\((\w+),", src, re.M)
        named = re.findall(r'strcmp\(key, "(\w+)"\)', src)
        self.assertTrue(numeric, "no NUM( entries found in runtime/config.c")
        self.assertTrue(named, "no strcmp(key, ...) found in runtime/config.c")
        return numeric + named

    def test_every_key_is_documented(self):
        doc = read(CONFIGURATION)
        for key in self.config_keys():
            with self.subTest(key=key):
                if f"`{key}`" not in doc:
                    self.fail(f"docs/configuration.md does not describe the "
                              f"key '{key}' (as `{key}`)")


class NoSharedFolder(unittest.TestCase):
    def files(self):
        for name in NO_SHARED:
            path = os.path.join(ROOT, name)
            if os.path.isfile(path):
                yield path
            for folder, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if d != "__pycache__"]
                for n in names:
                    yield os.path.join(folder, n)

    def test_nothing_points_to_shared(self):
        checked = 0
        for path in self.files():
            checked += 1
            for number, line in enumerate(read(path).splitlines(), 1):
                if "../shared" in line:
                    self.fail(f"{os.path.relpath(path, ROOT)}:{number} "
                              f"points to ../shared, which a clone does "
                              f"not have: {line.strip()}")
        self.assertGreater(checked, 10, "too few files checked")


if __name__ == "__main__":
    unittest.main()
