"""Models as users write them: Keras 3 (`import keras`), mixed dtypes, unused variables.

Each trains data parallel to the weights of one process over the same examples, in every
mode it is run in."""
import os

import numpy as np
import pytest

import parallax_nb as px
import programs
from parallax_nb.runtime.single import train_single_device

pytestmark = pytest.mark.timeout(400)


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def assert_trains_like_one_process(cluster, program, mode, ranks=2, steps=3, tolerance=1e-5):
    config = px.Config(mode=mode, steps=steps, batch_size=4, average_sparse=True)
    run = px.train(program, cluster=cluster, select=ranks, config=config)
    trained = run.result(timeout=300)
    reference, _ = train_single_device(program, steps=steps, batch_size=4 * ranks)
    assert sorted(trained) == sorted(reference)
    for name in reference:
        assert relative_error(trained[name], reference[name]) < tolerance, name
    return run


CASES = [("HYBRID", "transformer", "sgd"), ("AR", "transformer", "sgd"),
         ("HYBRID", "embedding", "adam"), ("PS", "embedding", "adagrad")]


@pytest.mark.parametrize("mode, model, optimizer", CASES, ids=["-".join(c) for c in CASES])
def test_keras3_models_train_like_one_process(cluster, mode, model, optimizer):
    run = assert_trains_like_one_process(cluster, programs.keras3_program(model, optimizer),
                                         mode)
    frame = run.analysis.to_frame().set_index("name")
    table = "tokens/embeddings:0" if model == "transformer" else "sequential/emb/embeddings:0"
    assert frame.loc[table, "kind"] == "sparse"
    assert run.mode == mode


def test_a_keras3_embedding_on_a_server_gathers_only_the_looked_up_rows(cluster):
    run = px.train(programs.keras3_program("big", "adagrad"), cluster=cluster, select=1,
                   config=px.Config(mode="HYBRID", steps=3, batch_size=100))
    run.wait(timeout=300)
    per_step = run.metrics.set_index("step")
    row_bytes = 16 * 4
    # 100 distinct rows gathered per step (the table holds 100,000), pushed back once
    assert (per_step["ps_recv"] == 100 * row_bytes).all()
    assert (per_step["ps_sent"] == 100 * 8 + 100 * (row_bytes + 8)).all()


def test_a_keras3_run_restores_its_checkpoint(cluster, tmp_path):
    program = programs.keras3_program("transformer", "adam")

    def run(steps, directory):
        config = px.Config(mode="HYBRID", steps=steps, batch_size=4,
                           checkpoint_dir=str(directory), checkpoint_every_steps=2)
        return px.train(program, cluster=cluster, select=2, config=config)

    straight = run(4, tmp_path / "straight").result(timeout=300)
    run(2, tmp_path / "resumed").wait(timeout=300)
    resumed = run(4, tmp_path / "resumed")
    trained = resumed.result(timeout=300)
    assert any("restored step 2" in note for note in resumed.notes)
    for name in straight:   # Adam's slots (dense ones and the servers' rows) came back too
        assert relative_error(trained[name], straight[name]) < 1e-6, name


def test_one_program_must_use_one_keras():
    with pytest.raises(px.ProgramError, match=r"model_fn returns a tf_keras model but "
                                              r"optimizer_fn a Keras 3 optimizer; one program "
                                              r"must use one Keras.*build both with `keras\.`"):
        px.analyze(programs.mixed_keras_program(), steps=1)


def test_a_tf_variable_is_trainable_as_tensorflow_says():
    """tf.Variable gives its creator trainable=None (a tf.Module's variables): trainable,
    so the plan's server tables are found among them (they were left in the rank before),
    unless it is synchronised on read; Keras says True or False."""
    import tensorflow as tf
    from parallax_nb.runtime.server_variables import _trainable

    seen = []

    def creator(next_creator, **kwargs):
        seen.append(_trainable(tf, kwargs))
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        tf.Variable(1.0)
        tf.Variable(1.0, trainable=False)
        tf.Variable(1.0, synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.SUM)
        programs.keras_embedding_model()
    assert seen[:3] == [True, False, False] and len(seen) > 3 and all(seen[3:])


@pytest.mark.parametrize("mode", ["HYBRID", "PS", "AR"])
def test_several_dtypes_index_types_and_an_unused_variable_in_every_mode(cluster, mode):
    program = programs.mixed_dtype_program()
    report = px.analyze(program, steps=2)
    kinds = report.to_frame().set_index("name")["kind"].to_dict()
    assert kinds == {"half:0": "sparse", "brain:0": "sparse", "single:0": "sparse",
                     "weights:0": "dense", "scale:0": "dense", "unused:0": "unused"}
    # float16 and bfloat16 sums differ from one process's in their last bits
    assert_trains_like_one_process(cluster, program, mode, tolerance=1e-2)


# -- a program kept in the user's own modules --------------------------------------------------
USER_MODULE = '''
import numpy as np
import tensorflow as tf

from helpers import ROWS, scaled


def model_fn():
    return tf.keras.Sequential([
        tf.keras.Input(shape=(3,), dtype="int64"),
        tf.keras.layers.Embedding(ROWS, 4, name="words",
                                  embeddings_initializer=tf.keras.initializers.RandomUniform(seed=1)),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(1, name="out",
                              kernel_initializer=tf.keras.initializers.GlorotUniform(seed=2))])


def loss_fn(model, batch):
    ids, target = batch
    return scaled(tf.reduce_mean(tf.square(model(ids)[:, 0] - target)))


def dataset_fn(shard, num_shards, batch_size=4):
    rng = np.random.default_rng(0)
    ids, target = rng.integers(0, ROWS, (64, 3)), rng.normal(size=64).astype("float32")
    return tf.data.Dataset.from_tensor_slices(
        (ids[shard::num_shards], target[shard::num_shards])).batch(batch_size, drop_remainder=True)


def optimizer_fn():
    return tf.keras.optimizers.SGD(0.1)
'''


def test_a_program_in_the_users_own_modules_runs_on_a_worker_started_elsewhere(tmp_path,
                                                                                 monkeypatch):
    """``from mymodel import ...`` (a file beside the script, importing a package beside it):
    the worker runs in another directory and cannot import either; the program still runs."""
    import subprocess
    import sys

    from distributed import LocalCluster

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "helpers").mkdir(parents=True)
    elsewhere.mkdir()
    (project / "helpers" / "__init__.py").write_text(
        "ROWS = 30\n\n\ndef scaled(loss):\n    return 2.0 * loss\n")
    (project / "mymodel.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(project))
    import mymodel
    program = px.Program(mymodel.model_fn, mymodel.loss_fn, mymodel.dataset_fn,
                         mymodel.optimizer_fn, name="user_module")
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as scheduler:
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", scheduler.scheduler_address,
             "--nthreads", "1", "--no-dashboard"], cwd=elsewhere, env=environment,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with px.connect(scheduler.scheduler_address) as cluster:
                cluster.client.wait_for_workers(1, timeout=60)
                run = px.train(program, cluster=cluster, select=1,
                               config=px.Config(mode="HYBRID", steps=3, batch_size=4))
                trained = run.result(timeout=300)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            sys.modules.pop("mymodel")
            sys.modules.pop("helpers")
    reference, _ = train_single_device(program, steps=3, batch_size=4)
    assert sorted(trained) == sorted(reference) == ["out/bias:0", "out/kernel:0",
                                                    "words/embeddings:0"]
    for name in reference:
        assert relative_error(trained[name], reference[name]) < 1e-6, name


def test_modules_count_as_the_users_by_where_their_files_are(tmp_path, monkeypatch):
    """Installed (site-packages, the editable parallax_nb, the standard library) stay
    references; a file beside the script is shipped by value, even one whose name is an
    installed distribution's (it shadows the distribution here, and would not on a worker),
    and even beside a project's own ``*.egg-info`` (a project built in place)."""
    import sys

    from parallax_nb.program import user_modules

    (tmp_path / "beside_the_script.py").write_text("X = 1\n")
    (tmp_path / "yaml.py").write_text("SHADOW = True\n")   # PyYAML is installed (dask needs it)
    (tmp_path / "myproject.egg-info").mkdir()
    (tmp_path / "myproject.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 2.1\nName: myproject\nVersion: 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "yaml", raising=False)
    import beside_the_script  # noqa: F401
    import yaml
    try:
        assert yaml.SHADOW
        found = user_modules()
        assert "beside_the_script" in found and "yaml" in found
        assert not {"parallax_nb", "numpy", "tensorflow", "json", "distributed"} & set(found)
    finally:
        sys.modules.pop("beside_the_script")
        sys.modules.pop("yaml")
