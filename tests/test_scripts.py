"""Scripts as users run them from a terminal: what they print, and the main guard."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_NOISE = re.compile(r"cuda|cudnn|cublas|cufft|cuinit|absl", re.I)


def run_python(arguments, cwd, timeout=600):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS")}
    environment["PYTHONPATH"] = ROOT
    return subprocess.run([sys.executable, *arguments], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def test_a_standard_run_prints_its_report_and_no_cuda_lines(tmp_path):
    done = run_python(["-m", "parallax_nb", "train", "parallax_nb.examples.language_model:program",
                       "--mode", "HYBRID", "--steps", "6", "--batch-size", "16", "--local", "2"],
                      tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "examples/s" in output
    assert not [line for line in output.splitlines() if CUDA_NOISE.search(line)]


def test_a_script_without_the_main_guard_gets_one_clear_error(tmp_path):
    (tmp_path / "train.py").write_text(
        "import parallax_nb as px\n"
        "\n"
        "cluster = px.connect(local=1)\n"
        "print('connected')\n")
    done = run_python(["train.py"], tmp_path, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"parallax_nb.errors.ConfigError: px.connect() (an embedded LocalCluster) starts Dask "
        f"worker processes, which re-import {tmp_path / 'train.py'}: put the script's code "
        f"(line 3 and what follows) under `if __name__ == \"__main__\":`, or every worker will "
        f"run it again and fail to start")
    assert "Nanny" not in done.stderr and "connected" not in done.stdout


def test_the_same_script_with_the_guard_runs(tmp_path):
    (tmp_path / "train.py").write_text(
        "import parallax_nb as px\n"
        "\n"
        "if __name__ == '__main__':\n"
        "    with px.connect(local=1) as cluster:\n"
        "        print('devices', len(cluster.devices()))\n")
    done = run_python(["train.py"], tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "devices 1" in done.stdout
