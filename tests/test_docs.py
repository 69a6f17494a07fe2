"""The documentation site (mkdocs.yml, docs/): it builds in strict mode, a broken internal
link fails the build, every error class is on the troubleshooting page, and every block the
docs mark runnable (``<!-- run -->`` before a ```python fence) runs as written, in the nav's
order, in one session (as `tests/test_readme.py` runs the README)."""
import inspect
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

import parallax_nb as px
from test_readme import ROOT, run_snippets

DOCS = os.path.join(ROOT, "docs")
RUNNABLE = re.compile(r"^<!-- run -->\n```python\n(.*?)^```", re.M | re.S)


def build(config, site):
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                           str(config), "-d", str(site)], cwd=os.path.dirname(config),
                          capture_output=True, text=True, timeout=300)


def nav_pages(nav):
    """The .md pages of the nav, in its order."""
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from nav_pages(value)
        elif value.endswith(".md"):
            yield value


def site_config():
    class Loader(yaml.SafeLoader):   # mkdocs.yml may carry !! tags; the nav is plain YAML
        pass

    Loader.add_multi_constructor("", lambda loader, suffix, node: None)
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        return yaml.load(f, Loader=Loader)


def test_the_site_builds_in_strict_mode_and_a_broken_link_fails_it(tmp_path):
    done = build(os.path.join(ROOT, "mkdocs.yml"), tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "guides" / "modes" / "index.html").exists()
    assert (tmp_path / "site" / "notebooks" / "01_quickstart" / "index.html").exists()
    # the same site with one link to a page that is not there
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(os.path.join(ROOT, "mkdocs.yml"), copy)
    shutil.copytree(DOCS, copy / "docs", symlinks=False)
    shutil.copytree(os.path.join(ROOT, "parallax_nb"), copy / "parallax_nb")
    page = copy / "docs" / "guides" / "modes.md"
    page.write_text(page.read_text() + "\nSee [the missing page](missing.md).\n")
    broken = build(copy / "mkdocs.yml", tmp_path / "broken")
    assert broken.returncode != 0
    assert "missing.md" in broken.stderr


def test_every_error_class_is_on_the_troubleshooting_page():
    with open(os.path.join(DOCS, "troubleshooting.md")) as f:
        page = f.read()
    errors = {name for name, value in vars(px).items()
              if inspect.isclass(value) and issubclass(value, Exception)}
    errors |= {name for name, value in vars(px.errors).items()
               if inspect.isclass(value) and issubclass(value, Exception)
               and value.__module__ == "parallax_nb.errors"}
    assert len(errors) >= 7
    assert sorted(e for e in errors if f"`{e}`" not in page) == []


@pytest.mark.timeout(900)
def test_every_runnable_block_in_the_docs_runs_as_written(tmp_path):
    snippets = []
    for page in nav_pages(site_config()["nav"]):
        with open(os.path.join(DOCS, page)) as f:
            text = f.read()
        snippets += [(f"docs/{page}:{text.count(chr(10), 0, m.start()) + 3}", m.group(1))
                     for m in RUNNABLE.finditer(text)]
    assert len(snippets) >= 6
    run_snippets(snippets, tmp_path, timeout=800)
