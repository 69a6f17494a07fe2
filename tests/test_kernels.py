"""The kernel spec installer, ``python -m parallax_nb.kernels install``: where it writes the
spec, that the spec starts the installing environment's Python with TF_USE_LEGACY_KERAS=1,
that it ships in a wheel, and what it says about bad input."""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parents[1]
SOURCE_SPEC = json.loads((ROOT / "kernels" / "parallax_nb" / "kernel.json").read_text())


def install(*args, cwd, env=None, python=sys.executable):
    return subprocess.run([str(python), "-m", "parallax_nb.kernels", "install", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env=env or os.environ.copy())


def installed_spec(kernels_dir: Path, name: str) -> dict:
    return json.loads((kernels_dir / name / "kernel.json").read_text())


def test_prefix_install_points_at_this_python(tmp_path):
    done = install("--prefix", str(tmp_path / "prefix"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    spec = installed_spec(tmp_path / "prefix" / "share" / "jupyter" / "kernels", "parallax_nb")
    assert spec["argv"][0] == sys.executable
    assert spec["env"]["TF_USE_LEGACY_KERAS"] == "1"
    assert spec["argv"][-4:] == SOURCE_SPEC["argv"][-4:]       # ipykernel_launcher -f ...
    for key in ("display_name", "env", "language"):
        assert spec[key] == SOURCE_SPEC[key], key
    # Jupyter does not search an arbitrary prefix: the installer says what to add.
    assert f"add {tmp_path / 'prefix' / 'share' / 'jupyter'} to JUPYTER_PATH" in done.stderr


def test_user_install_with_its_own_name(tmp_path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(tmp_path / "data"))
    done = install("--user", "--name", "Parallax-GPU", "--display-name", "Parallax (GPU env)",
                   cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    spec = installed_spec(tmp_path / "data" / "kernels", "parallax-gpu")   # names are lowercase
    assert spec["display_name"] == "Parallax (GPU env)"
    assert done.stderr == ""                      # the user's data dir is searched


def test_the_installed_kernel_starts_by_name_with_the_spec_environment(tmp_path, monkeypatch):
    assert install("--prefix", str(tmp_path), "--name", "px_started", cwd=tmp_path
                   ).returncode == 0
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.delenv("TF_USE_LEGACY_KERAS")     # must come from the spec, not from here
    manager, client = start_new_kernel(kernel_name="px_started", startup_timeout=120)
    outputs = []
    try:
        reply = client.execute_interactive(
            "import os, sys; print(os.environ.get('TF_USE_LEGACY_KERAS'), sys.executable)",
            timeout=60, output_hook=outputs.append)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok"
    printed = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream")
    assert printed.split() == ["1", sys.executable]
    assert not manager.is_alive()


def test_the_wheel_ships_the_spec_and_installs_it_into_its_own_environment(tmp_path):
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ["parallax_nb", "kernels"]:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ["setup.py", "README.md"]:
        shutil.copy(ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
                            "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("parallax_nb-*.whl"))
    files = zipfile.ZipFile(wheel).namelist()
    assert "parallax_nb/kernels/parallax_nb/kernel.json" in files
    assert "parallax_nb/runtime/rank.py" in files

    # A fresh environment with the wheel; its dependencies come from this one (no network).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    placed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                             "--ignore-installed", "-q", "--prefix", str(venv), str(wheel)],
                            capture_output=True, text=True, timeout=300)
    assert placed.returncode == 0, placed.stderr
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    done = install("--sys-prefix", cwd=tmp_path, python=python)
    assert done.returncode == 0, done.stderr
    spec = installed_spec(venv / "share" / "jupyter" / "kernels", "parallax_nb")
    assert spec["argv"][0] == str(python)
    assert done.stdout.startswith(f"Installed kernel spec 'parallax_nb' in {venv}")


def test_bad_input_says_what_to_do(tmp_path):
    bad_name = install("--prefix", str(tmp_path), "--name", "my kernel", cwd=tmp_path)
    assert bad_name.returncode == 2
    assert "cannot install the kernel spec as 'my kernel'" in bad_name.stderr
    assert "Kernel names can only contain ASCII letters and numbers" in bad_name.stderr

    (tmp_path / "a_file").write_text("")
    unwritable = install("--prefix", str(tmp_path / "a_file"), cwd=tmp_path)
    assert unwritable.returncode == 2
    assert f"cannot write the kernel spec to {tmp_path / 'a_file'}" in unwritable.stderr
    assert "choose --user (for yourself), --sys-prefix" in unwritable.stderr

    two_places = install("--user", "--sys-prefix", cwd=tmp_path)
    assert two_places.returncode == 2
    assert "argument --sys-prefix: not allowed with argument --user" in two_places.stderr
