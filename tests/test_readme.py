"""Every Python snippet in README.md runs as written, in order, on the default embedded cluster.

The snippets share one namespace, as they would in one notebook, except a snippet that starts
with ``# <name>.py``: that is a script of its own and runs in a fresh namespace. ``ipython``
blocks (magics) are covered by the notebooks' nbval run instead. `run_snippets` is also how
the documentation site's runnable blocks run (tests/test_docs.py).
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
        for where, code in json.load(open(sys.argv[1])):
            script = code.startswith("# ") and code.split("\\n", 1)[0].endswith(".py")
            namespace = {"__name__": "__main__"} if script else shared
            exec(compile(code, f"the snippet at {where}", "exec"), namespace)
            print(f"{where} ran", flush=True)
    finally:
        if shared.get("cluster") is not None:
            shared["cluster"].close()
'''


def python_snippets(text):
    """(line, code) of every fenced ```python block."""
    return [(text.count("\n", 0, m.start()) + 2, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)]


def run_snippets(snippets, tmp_path, timeout=1100):
    """Run ``[(where, code)]`` in order in one fresh Python process (one shared namespace, a
    ``# name.py`` script apart); fails naming the snippet that raised, and unless each ran."""
    (tmp_path / "snippets.json").write_text(json.dumps(snippets))
    (tmp_path / "run_snippets.py").write_text(RUNNER)
    environment = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "run_snippets.py", "snippets.json"], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert re.findall(r"^(.*) ran$", done.stdout, re.M) == [where for where, _ in snippets]


def test_the_snippets_are_found():
    with open(os.path.join(ROOT, "README.md")) as f:
        snippets = python_snippets(f.read())
    assert len(snippets) >= 2
    assert not [code for _, code in snippets if code.lstrip().startswith("%")]   # no magics


@pytest.mark.timeout(1200)
def test_every_python_snippet_in_the_readme_runs_as_written(tmp_path):
    with open(os.path.join(ROOT, "README.md")) as f:
        snippets = python_snippets(f.read())
    run_snippets([(f"README.md:{line}", code) for line, code in snippets], tmp_path)
