"""Every Python snippet in README.md runs as written, in order, on the default embedded cluster.

The snippets share one namespace, as they would in one notebook, except a snippet that starts
with ``# <name>.py``: that is a script of its own and runs in a fresh namespace. ``ipython``
blocks (magics) are covered by the notebooks' nbval run instead.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUNNER = '''
import json
import sys

if __name__ == "__main__":          # the embedded cluster's workers re-import this file
    shared = {"__name__": "__main__"}
    try:
        for line, code in json.load(open(sys.argv[1])):
            script = code.startswith("# ") and code.split("\\n", 1)[0].endswith(".py")
            namespace = {"__name__": "__main__"} if script else shared
            exec(compile(code, f"README.md, the snippet at line {line}", "exec"), namespace)
            print(f"README.md:{line} ran", flush=True)
    finally:
        if shared.get("cluster") is not None:
            shared["cluster"].close()
'''


def python_snippets(text):
    """(line, code) of every fenced ```python block."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)]


def test_the_snippets_are_found():
    with open(os.path.join(ROOT, "README.md")) as f:
        snippets = python_snippets(f.read())
    assert len(snippets) >= 7
    assert not [code for _, code in snippets if code.lstrip().startswith("%")]   # no magics


@pytest.mark.timeout(1200)
def test_every_python_snippet_in_the_readme_runs_as_written(tmp_path):
    with open(os.path.join(ROOT, "README.md")) as f:
        snippets = python_snippets(f.read())
    (tmp_path / "snippets.json").write_text(json.dumps(snippets))
    (tmp_path / "readme_snippets.py").write_text(RUNNER)
    environment = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "readme_snippets.py", "snippets.json"], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=1100)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert [int(n) for n in re.findall(r"^README\.md:(\d+) ran$", done.stdout, re.M)] == \
        [line for line, _ in snippets]
