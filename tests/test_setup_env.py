"""scripts/setup_env.sh meets the machine: it takes a Python TensorFlow 2.18.1 supports
(3.10-3.12), and where there is none it stops at once with what to install. Interpreters here
are small fakes that answer the script's version check, on a PATH of their own."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "setup_env.sh")
FAKE = """#!/bin/sh
# a Python {version}: runs the script's check `sys.exit(not (3,10) <= v <= (3,12))`
[ "$1" = "-c" ] && exit {status}
exit 1
"""


def fake_path(tmp_path, pythons):
    """A PATH holding only ``dirname`` and the given fake interpreters {name: "3.x"}."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname"), bin_dir / "dirname")
    for name, version in pythons.items():
        minor = int(version.split(".")[1])
        (bin_dir / name).write_text(FAKE.format(version=version,
                                                status=0 if 10 <= minor <= 12 else 1))
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def setup_env(path, **env):
    return subprocess.run([shutil.which("bash"), SCRIPT], capture_output=True, text=True,
                          timeout=60, env={"PATH": path, "PARALLAX_SETUP_CHECK_PYTHON": "1",
                                           "PARALLAX_VENV": "/nonexistent-venv", **env})


def test_only_a_too_new_python3_stops_with_what_to_install(tmp_path):
    done = setup_env(fake_path(tmp_path, {"python3": "3.13"}))
    assert done.returncode == 2
    assert "no Python 3.10-3.12 found on PATH" in done.stderr
    assert "install python3.12" in done.stderr and "PYTHON=" in done.stderr
    assert not os.path.exists("/nonexistent-venv")


def test_a_supported_interpreter_beside_a_too_new_python3_is_taken(tmp_path):
    done = setup_env(fake_path(tmp_path, {"python3": "3.13", "python3.11": "3.11"}))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "python3.11"


@pytest.mark.parametrize("version, ok", [("3.13", False), ("3.12", True)])
def test_python_names_the_interpreter_and_a_too_new_one_is_refused(tmp_path, version, ok):
    path = fake_path(tmp_path, {"mypython": version})
    done = setup_env(path, PYTHON=os.path.join(path, "mypython"))
    if ok:
        assert done.returncode == 0 and done.stdout.strip().endswith("mypython")
    else:
        assert done.returncode == 2
        assert "mypython is not Python 3.10-3.12" in done.stderr
