"""The command line of the real binary: --help, --version, --print-default-config,
--check-config (every file in conf/, the printed default, a file with five mistakes),
and the exit codes 0/1/2."""

import glob
import os
import re
import socket
import subprocess
import tempfile
import unittest

from harness import BINARY, SOURCE_DIR, config_with, free_port, run


def write_temp(text, suffix=".toml"):
    fd, path = tempfile.mkstemp(prefix="hubdns-cli-", suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


class CommandLineTest(unittest.TestCase):
    def test_version_and_help(self):
        result = run([BINARY, "--version"])
        self.assertEqual(result.returncode, 0)
        self.assertRegex(result.stdout, r"^hubdns \d+\.\d+\.\d+")
        result = run([BINARY, "--help"])
        self.assertEqual(result.returncode, 0)
        for option in ("--config", "--check-config", "--print-default-config", "--version"):
            self.assertIn(option, result.stdout)

    def test_unknown_argument_exits_1(self):
        result = run([BINARY, "--no-such-option"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("unknown argument", result.stderr)
        result = run([BINARY, "--config"])
        self.assertEqual(result.returncode, 1)

    def test_every_example_in_conf_passes_check_config(self):
        files = sorted(glob.glob(os.path.join(SOURCE_DIR, "conf", "*.toml")))
        self.assertTrue(files, "conf/ holds no example configuration")
        for path in files:
            result = run([BINARY, "--check-config", path])
            self.assertEqual((result.returncode, result.stdout.strip()), (0, "ok"),
                             f"{path}: {result.stdout}{result.stderr}")

    def test_printed_default_is_commented_and_passes_check_config(self):
        result = run([BINARY, "--print-default-config"])
        self.assertEqual(result.returncode, 0)
        text = result.stdout
        self.assertIn("#", text)
        self.assertIn("5300", text)
        self.assertIn("8053", text)
        path = write_temp(text)
        try:
            checked = run([BINARY, "--check-config", path])
            self.assertEqual((checked.returncode, checked.stdout.strip()), (0, "ok"), checked.stdout)
        finally:
            os.unlink(path)

    def test_five_mistakes_are_all_reported_with_line_and_column(self):
        text = "\n".join([
            "[server]",
            'listn = ["127.0.0.1:53"]',           # 2: unknown key
            'listen = ["127.0.0.1:53"]',
            'workers = "two"',                     # 4: wrong type
            'query_timeout = "5 parsecs"',         # 5: bad duration
            'allow = ["10.0.0.0/33"]',             # 6: bad CIDR
            "",
            "[[forward]]",
            'zone = "."',
            "upstreams = []",                      # 10: empty upstream list
            "",
        ])
        path = write_temp(text)
        try:
            result = run([BINARY, "--check-config", path])
        finally:
            os.unlink(path)
        self.assertEqual(result.returncode, 1, result.stdout)
        lines = [l for l in (result.stdout + result.stderr).splitlines() if l.strip()]
        pattern = re.compile(re.escape(path) + r":(\d+):(\d+): (.+)")
        found = {}
        for line in lines:
            m = pattern.match(line)
            self.assertIsNotNone(m, f"not FILE:LINE:COL: message: {line!r}")
            found[int(m.group(1))] = m.group(3)
        self.assertEqual(sorted(found), [2, 4, 5, 6, 10], result.stdout)
        self.assertIn("listen", found[2])  # the nearest valid name is suggested

    def test_missing_file_exits_1(self):
        result = run([BINARY, "--check-config", "/nonexistent/hubdns.toml"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("/nonexistent/hubdns.toml", result.stdout + result.stderr)
        result = run([BINARY, "--config", "/nonexistent/hubdns.toml"])
        self.assertEqual(result.returncode, 1)

    def test_bind_failure_exits_2(self):
        # Hold a TCP port, then ask hubdns to listen on it.
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        text = config_with('[[forward]]\nzone = "."\nupstreams = ["127.0.0.1:9"]\n')
        path = write_temp(text.format(dns_port=port, health_port=free_port()))
        try:
            result = subprocess.run([BINARY, "--config", path], capture_output=True, text=True,
                                    timeout=20)
        finally:
            os.unlink(path)
            holder.close()
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn(str(port), result.stderr)


if __name__ == "__main__":
    unittest.main()
