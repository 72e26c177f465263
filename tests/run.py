#!/usr/bin/env python3
"""herald's test runner: every cmocka unit test binary in build/tests, then
every end-to-end module in tests/e2e, and one closing line:

    57 passed, 0 failed

Usage: tests/run.py [--e2e] [PATTERN...]   (run only the tests whose name
contains one of the patterns: a unit binary, an e2e module, or
Class.method; --e2e: the end-to-end tests only)

HERALD_BUILD names the build folder (default build): its tests/ holds the
unit binaries, and the e2e harness runs its herald.
"""
import os
import re
import subprocess
import sys
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNIT_DIR = os.path.join(ROOT, os.environ.get("HERALD_BUILD", "build"),
                        "tests")
E2E_DIR = os.path.join(ROOT, "tests", "e2e")


def selected(name, patterns):
    return not patterns or any(p in name for p in patterns)


def run_unit(patterns):
    """Runs each cmocka binary; returns (passed, failed, failures)."""
    passed = failed = 0
    failures = []
    if not os.path.isdir(UNIT_DIR):
        return passed, failed, failures
    for name in sorted(os.listdir(UNIT_DIR)):
        path = os.path.join(UNIT_DIR, name)
        if not name.startswith("test_") or not os.access(path, os.X_OK):
            continue
        if not selected(name, patterns):
            continue
        proc = subprocess.run([path], cwd=ROOT, capture_output=True,
                              text=True, timeout=600)
        out = proc.stdout + proc.stderr
        ok = sum(int(n) for n in re.findall(r"\[  PASSED  \] (\d+) test", out))
        bad = sum(int(n) for n in re.findall(r"\[  FAILED  \] (\d+) test", out))
        if proc.returncode != 0 and bad == 0:
            bad = 1  # crashed before cmocka could count
        passed += ok
        failed += bad
        print(f"unit  {name}: {ok} passed, {bad} failed")
        if bad:
            failures.append((name, out))
    return passed, failed, failures


class CountingResult(unittest.TextTestResult):
    pass


def run_e2e(patterns):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    sys.path.insert(0, E2E_DIR)
    for name in sorted(os.listdir(E2E_DIR)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        module = name[:-3]
        for test in iter_tests(loader.loadTestsFromName(module)):
            tid = f"{module}.{type(test).__name__}.{test._testMethodName}"
            if selected(tid, patterns):
                suite.addTest(test)
    if suite.countTestCases() == 0:
        return 0, 0, []
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=CountingResult)
    result = runner.run(suite)
    # A test and its cleanup may both fail: count tests, not reports.
    bad = len({test.id() for test, _ in result.failures + result.errors} |
              {test.id() for test in result.unexpectedSuccesses})
    return result.testsRun - bad - len(result.skipped), bad, []


def iter_tests(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from iter_tests(item)
        else:
            yield item


def main():
    patterns = [p for p in sys.argv[1:] if p != "--e2e"]
    started = time.monotonic()
    if "--e2e" in sys.argv[1:]:
        up, uf, failures = 0, 0, []
    else:
        up, uf, failures = run_unit(patterns)
    for name, out in failures:
        print(f"\n--- {name} ---\n{out}")
    ep, ef, _ = run_e2e(patterns)
    passed, failed = up + ep, uf + ef
    print(f"\n(unit: {up} passed, {uf} failed; end-to-end: {ep} passed, "
          f"{ef} failed; {time.monotonic() - started:.0f} s)")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
