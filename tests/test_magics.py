"""The %parallax magics in a real IPython shell (no kernel, so the text forms are printed):
argument handling, help, errors, and a training run launched from a cell on a LocalCluster
with the selection edited as the cluster panel would."""
import re

import dask
import distributed  # noqa: F401  (its config defaults must exist before dask.config.set)
import pytest
from IPython.core.error import UsageError

import programs
from programs import CELL
from cluster_tools import cluster_children, wait_for, wait_until_gone
from parallax_nb.errors import ConfigError, ParallaxError, ProgramError
from parallax_nb.notebook import current_session



@pytest.fixture(scope="module")
def shell(ipython):
    ip = ipython
    ip.run_line_magic("load_ext", "parallax_nb")
    yield ip
    current_session().close()


def magic(shell, line, cell=None):
    if cell is None:
        return shell.run_line_magic("parallax", line)
    return shell.run_cell_magic("parallax", line, cell)


def test_help_lists_every_command_with_its_options(shell, capsys):
    magic(shell, "--help")
    text = capsys.readouterr().out
    for command in ("connect", "cluster", "analyze", "train", "status", "stop", "wait"):
        assert command in text
    assert "--partitions P" in text and "--local N" in text
    assert "--batch-size" in shell.find_line_magic("parallax").__doc__   # %parallax?
    magic(shell, "train --help")
    assert "--no-local-aggregation" in capsys.readouterr().out


@pytest.mark.parametrize("line, message", [
    ("frobnicate", "invalid choice: 'frobnicate'"),
    ("train --steps 3", "train is a cell magic"),
    ("connect tcp://127.0.0.1:1 --local 2", "cannot be combined with an ADDRESS"),
    ("analyze p --mode XX", "invalid choice: 'XX'"),
    ("connect --local two", "invalid int value: 'two'"),
])
def test_bad_arguments_are_usage_errors_saying_what_is_wrong(shell, line, message):
    with pytest.raises(UsageError, match=message):
        magic(shell, line)


def test_bad_values_and_missing_state_say_how_to_fix_them(shell):
    with pytest.raises(UsageError, match="takes no cell body"):
        magic(shell, "status", "x = 1")
    with pytest.raises(ConfigError, match="partitions"):
        magic(shell, "train --partitions many", CELL.format(dense="Dense"))
    with pytest.raises(ConfigError, match="steps must be a positive integer"):
        magic(shell, "train --steps 0", CELL.format(dense="Dense"))
    with pytest.raises(ParallaxError, match="no run in this session yet"):
        magic(shell, "status")
    shell.user_ns["not_a_program"] = 3
    with pytest.raises(ProgramError, match="not_a_program is a int, not a parallax_nb.Program"):
        magic(shell, "analyze not_a_program")
    with pytest.raises(ProgramError, match="neither a name in this notebook"):
        magic(shell, "analyze nowhere")
    with pytest.raises(ProgramError, match="the cell must define loss_fn, dataset_fn"):
        magic(shell, "train", "def model_fn(): pass\ndef optimizer_fn(): pass\n"
                              "loss_fn = dataset_fn = None")


def test_analyze_prints_the_variables_and_the_cost_per_mode(shell, capsys):
    shell.user_ns["prog"] = programs.keras_embedding_program()
    magic(shell, "analyze prog --steps 2 --partitions 3 --servers 2")
    text = capsys.readouterr().out
    assert "emb/embeddings:0" in text and "sparse" in text
    assert "0,1,0" in text                       # three partitions over two servers
    assert "recommended:" in text


def test_train_runs_the_cell_on_the_ticked_devices(shell, capsys, monkeypatch):
    # Behind JupyterHub the dashboard is reached through the user's server proxy.
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/")
    with dask.config.set({"distributed.dashboard.link":
                          "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"}):
        magic(shell, "connect --local 2")
    out = capsys.readouterr().out
    assert "2 of 2 device(s) selected" in out
    assert re.search(r"Dask dashboard: /user/alice/proxy/\d+/status", out)
    session = current_session()
    untick = session.cluster_view.selected_keys[1]
    session.cluster_view.set_selected(untick, False)     # what unticking in the panel does
    magic(shell, "train --mode HYBRID --steps 3 --batch-size 4 --wait --out run",
          CELL.format(dense="Dense"))
    run = shell.user_ns["run"]
    assert run.status == "finished" and len(run.slots) == 1
    assert run.slots[0].device.key != untick
    assert sorted(run.metrics["step"]) == [1, 2, 3]
    assert callable(shell.user_ns["model_fn"])           # the cell ran as notebook code
    printed = capsys.readouterr().out
    assert "mode HYBRID, 1 rank(s)" in printed           # the final report
    magic(shell, "status")
    assert "finished" in capsys.readouterr().out


COMPILED_CELL = """
import tensorflow as tf
from parallax_nb.examples import clicks

def model_fn():
    return clicks.model_fn()

def shard_of(examples, seed, shard, num_shards, batch_size):
    ids, labels = clicks.clicks(examples, seed)
    return tf.data.Dataset.from_tensor_slices(
        (ids[shard::num_shards], labels[shard::num_shards])).batch(batch_size)

def dataset_fn(shard, num_shards, batch_size=8):
    return shard_of(96, 3, shard, num_shards, batch_size)

def validation_fn(shard, num_shards, batch_size=8):
    return shard_of(103, 4, shard, num_shards, batch_size)
"""


def test_a_compile_style_cell_trains_for_epochs_and_validates(shell, capsys):
    """No loss_fn or optimizer_fn: the compiled model's; the cell's validation_fn joins it;
    --epochs counts the steps (96 examples over the selected ranks, batch 8)."""
    session = current_session()
    if session.cluster is None:
        magic(shell, "connect --local 2")
    for leftover in ("loss_fn", "optimizer_fn", "metrics_fn"):
        shell.user_ns.pop(leftover, None)
    magic(shell, "train --mode AR --epochs 1 --batch-size 8 --validate-every 3 --wait "
                 "--out compiled_run", COMPILED_CELL)
    run = shell.user_ns["compiled_run"]
    steps = 96 // len(run.slots) // 8    # the selection left by the tests before
    assert run.config.steps == steps and list(run.validation["step"]) == list(
        range(3, steps + 1, 3))
    assert set(run.validation["val_examples"]) == {103}
    magic(shell, "status")
    assert re.search(rf"validation at step {steps} \(epoch 1\): val_loss [\d.]+, "
                     rf"val_accuracy", capsys.readouterr().out)


def test_a_typo_in_model_fn_is_a_normal_error_and_starts_nothing(shell):
    session = current_session()
    if session.cluster is None:
        magic(shell, "connect --local 2")
    before = session.run
    with pytest.raises(ProgramError, match="has no attribute 'Dnse'"):
        magic(shell, "train --steps 3", CELL.format(dense="Dnse"))
    assert session.run is before                         # no run was launched
    assert wait_until_gone([p.pid for p in cluster_children(session.cluster)]) == []


def test_a_failing_rank_shows_rank_host_and_traceback_in_the_run_panel(shell):
    import parallax_nb as px
    from parallax_nb.notebook.widgets.run_panel import RunPanel

    session = current_session()
    if session.cluster is None:
        magic(shell, "connect --local 2")
    run = px.train(programs.failing_program(), cluster=session.cluster,
                   config=px.Config(mode="AR", steps=5))
    panel = RunPanel("failing")
    session.follow(run, panel)
    with pytest.raises(px.RankError):
        run.wait(120)
    assert wait_for(lambda: "traceback of rank 1" in panel.text(), timeout=10)
    assert "rank 1 on host" in panel.text() and "model_fn broke on rank 1" in panel.text()
    outcome = panel.widget.children[-1].value
    assert "model_fn broke on rank 1" in outcome and "Traceback" in outcome
    assert panel.status == "failed"
    with pytest.raises(px.RankError, match="model_fn broke"):
        magic(shell, "wait")                       # the notebook error, once asked for
