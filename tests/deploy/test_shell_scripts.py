"""Every shell script of the project passes shellcheck.

Scripts are found, not listed: any file with a .sh suffix or a sh/bash #! line, anywhere in
the source tree outside build and VCS folders, plus the Debian maintainer scripts. A new
script is checked the day it is added. A missing shellcheck is a failure, not a skip:
scripts/deps.sh installs it.
"""

import os
import re
import shutil
import subprocess
import unittest

SOURCE_DIR = os.environ.get(
    "HUBDNS_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
)

# Folders that hold no project scripts: VCS data, build trees (build, build-asan,
# build-helper-*, ...) and fuzz inputs, which are arbitrary bytes.
SKIP_DIRS = re.compile(r"^(\.git|build.*|corpus|node_modules|__pycache__)$")
SHEBANG = re.compile(rb"^#!\s*(/usr)?/bin/(env\s+)?(ba|da)?sh\b")


def shell_scripts(root):
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not SKIP_DIRS.match(d)]
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".sh"):
                found.append(path)
                continue
            try:
                with open(path, "rb") as f:
                    first = f.readline(200)
            except OSError:
                continue
            if SHEBANG.match(first):
                found.append(path)
    return sorted(found)


class ShellScriptsTest(unittest.TestCase):
    def test_discovery_finds_the_known_scripts(self):
        # Guards the finder itself: if it found nothing, the shellcheck test would pass on
        # an empty list.
        found = {os.path.relpath(p, SOURCE_DIR) for p in shell_scripts(SOURCE_DIR)}
        for known in (".ci/run", "scripts/test.sh", "scripts/deps.sh", "deploy/debian/postinst",
                      "deploy/debian/prerm", "deploy/debian/postrm"):
            self.assertIn(known, found)

    def test_every_script_passes_shellcheck(self):
        shellcheck = shutil.which("shellcheck")
        self.assertIsNotNone(shellcheck, "shellcheck not installed (scripts/deps.sh --test installs it)")
        scripts = shell_scripts(SOURCE_DIR)
        result = subprocess.run([shellcheck, "--format=gcc", *scripts], capture_output=True, text=True)
        print(f"shellcheck: {len(scripts)} scripts")
        self.assertEqual(result.returncode, 0, "shellcheck findings:\n" + result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
