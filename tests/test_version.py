"""One version, from setup.py through the package metadata to the API and the CLI."""
import re
import subprocess
import sys
from importlib.metadata import version

import parallax_nb as px

ROOT = __file__.rsplit("/tests/", 1)[0]


def test_the_version_is_setup_pys_everywhere():
    declared = re.search(r'version="([^"]+)"', open(f"{ROOT}/setup.py").read()).group(1)
    assert px.__version__ == version("parallax_nb") == declared
    done = subprocess.run([sys.executable, "-m", "parallax_nb", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"parallax_nb {declared}"
