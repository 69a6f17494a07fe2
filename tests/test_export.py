"""A run ends in a model the user can use: ``run.model()`` is the user's Keras model with the
trained weights, ``run.save`` writes a file plain Keras loads in a process without
parallax_nb, and ``px.load_model`` rebuilds the same model from the run's checkpoint. A model
written the Keras way (compiled, ``Program.from_keras``) trains like any program."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import parallax_nb as px
import tensorflow as tf
import programs
from parallax_nb.runtime.export import assign_weights, build_model

pytestmark = pytest.mark.timeout(400)
IDS = np.arange(30, dtype=np.int64).reshape(10, 3) % 50


# tf_keras in HYBRID with a table split over two partitions; Keras 3 in AR
CASES = {"tf_keras": (programs.keras_embedding_program(optimizer_fn=programs.adagrad),
                      "HYBRID"),
         "keras3": (programs.keras3_program(model="embedding", optimizer="adagrad"), "AR")}


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request, cluster, tmp_path_factory):
    """(flavour, program, run, checkpoint_dir) of one finished 2-rank run."""
    program, mode = CASES[request.param]
    checkpoint_dir = str(tmp_path_factory.mktemp(f"ckpt-{request.param}"))
    run = px.train(program, cluster=cluster, select=2, progress=False,
                   config=px.Config(mode=mode, steps=4, batch_size=4, partitions=2,
                                    checkpoint_dir=checkpoint_dir))
    run.result(timeout=300)
    return request.param, program, run, checkpoint_dir


def weights_by_name(model):
    from parallax_nb.keras3 import variable_names

    return dict(zip(variable_names(model.variables), (v.numpy() for v in model.variables)))


def test_run_model_is_the_users_model_with_the_trained_weights(trained):
    flavour, program, run, _ = trained
    model = run.model()
    assert type(model) is type(program.model())
    weights, result = weights_by_name(model), run.result()
    assert sorted(weights) == sorted(result)
    for name in result:
        np.testing.assert_array_equal(weights[name], result[name], err_msg=name)
    # and the weights are trained ones, not model_fn's initial values
    assert any(not np.array_equal(result[n], v) for n, v in weights_by_name(
        build_model(program, initial_values=True)).items())


def test_load_model_from_the_checkpoint_equals_run_model(trained):
    _, program, run, checkpoint_dir = trained
    loaded, model = weights_by_name(px.load_model(program, checkpoint_dir)), \
        weights_by_name(run.model())
    assert sorted(loaded) == sorted(model)
    for name in model:
        np.testing.assert_array_equal(loaded[name], model[name], err_msg=name)


LOAD_WITHOUT_PARALLAX = """
import json, sys, numpy as np
sys.modules["parallax_nb"] = None   # importing parallax_nb fails here
{load}
ids = np.array(json.loads(sys.argv[2]), dtype=np.int64)
np.save(sys.argv[3], np.asarray({predict}))
"""
LOADERS = {
    "tf_keras": ("import tf_keras\nmodel = tf_keras.models.load_model(sys.argv[1])",
                 "model.predict(ids, verbose=0)"),
    "keras3": ("import keras\nmodel = keras.models.load_model(sys.argv[1])",
               "model.predict(ids, verbose=0)"),
    "tf": ("import tensorflow as tf\nmodel = tf.saved_model.load(sys.argv[1])",
           "model(ids)"),
    "tf_serve": ("import tensorflow as tf\nmodel = tf.saved_model.load(sys.argv[1])",
                 "model.serve(ids)"),
}


def predict_elsewhere(loader, path, tmp_path):
    load, predict = LOADERS[loader]
    out = tmp_path / f"{loader}.npy"
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if loader == "tf_keras":
        env["TF_USE_LEGACY_KERAS"] = "1"
    done = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_PARALLAX.format(
        load=load, predict=predict), str(path), json.dumps(IDS.tolist()), str(out)],
        env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out)


def test_a_saved_keras_file_loads_and_predicts_the_same_without_parallax_nb(trained, tmp_path):
    flavour, _, run, _ = trained
    path = run.save(str(tmp_path / "model.keras"))
    expected = run.model().predict(IDS, verbose=0)
    assert np.max(np.abs(predict_elsewhere(flavour, path, tmp_path) - expected)) == 0


def test_a_saved_model_folder_loads_in_plain_tensorflow(trained, tmp_path):
    flavour, _, run, _ = trained
    path = run.save(str(tmp_path / "saved"), format="tf")
    expected = run.model().predict(IDS, verbose=0)
    loader = "tf" if flavour == "tf_keras" else "tf_serve"   # Keras 3 exports ``serve``
    np.testing.assert_allclose(predict_elsewhere(loader, path, tmp_path), expected, rtol=0,
                               atol=1e-6)


def test_a_save_that_could_not_be_written_is_refused_before_any_work(trained, tmp_path):
    _, _, run, _ = trained
    with pytest.raises(px.ConfigError, match=r"ends in \.keras.*format='tf'"):
        run.save(str(tmp_path / "model.h5"))
    with pytest.raises(px.ConfigError, match=r"format='onnx' names no save format"):
        run.save(str(tmp_path / "model.keras"), format="onnx")


def test_load_model_from_a_folder_without_checkpoints_says_so(tmp_path):
    with pytest.raises(px.ConfigError, match="no checkpoint in"):
        px.load_model(programs.keras_embedding_program(), str(tmp_path))


def test_weights_that_do_not_fit_the_model_are_refused_by_name():
    model = build_model(programs.keras_embedding_program())
    weights = weights_by_name(model)
    weights["extra/kernel:0"] = weights.pop("out/bias:0")
    with pytest.raises(px.ProgramError, match=r"without a trained value \['out/bias:0'\].*"
                                              r"no variable takes \['extra/kernel:0'\]"):
        assign_weights(model, weights)


COMPILED = programs.compiled_programs()


@pytest.mark.parametrize("flavour", sorted(COMPILED))
def test_a_compiled_keras_model_trains_in_every_mode_to_the_reference(cluster, flavour):
    """Loss, optimizer from compile; tf_keras's batches carry sample weights. Every mode
    over the two flavours (each mode's maths are test_hybrid's; the suite's budget)."""
    program = COMPILED[flavour]
    config = px.Config(steps=3, batch_size=4, partitions=2)
    reference, losses = px.reference(program, config, ranks=2)
    assert len(losses) == 3 and all(np.isfinite(losses))
    for mode in {"tf_keras": ("HYBRID", "PS"), "keras3": ("HYBRID", "AR")}[flavour]:
        trained = px.train(program, cluster=cluster, select=2, progress=False,
                           config=config.replace(mode=mode)).result(timeout=300)
        assert sorted(trained) == sorted(reference), mode
        for name in reference:
            error = np.linalg.norm(trained[name] - reference[name]) / max(
                np.linalg.norm(reference[name]), 1e-12)
            assert error < 1e-5, (mode, name, error)


def test_the_compiled_loss_is_the_one_fit_minimises():
    """compute_loss with sample weights equals Keras' weighted mean squared error."""
    from parallax_nb.keras_program import compiled_loss

    program = COMPILED["tf_keras"]
    model = program.model()
    ids, target, weight = next(iter(program.dataset(0, 1)))
    expected = tf.reduce_sum(weight * tf.square(model(ids)[:, 0] - target)) / 4
    assert float(compiled_loss(model, (ids, target, weight))) == pytest.approx(
        float(expected), rel=1e-6)


def test_a_model_without_compile_is_refused_with_what_to_do():
    with pytest.raises(px.ProgramError, match=r"compiled Keras model.*Sequential without "
                                              r"compile.*px.Program\(model_fn, loss_fn"):
        px.Program.from_keras(programs.keras_embedding_model, programs.id_batches)
    with pytest.raises(px.ProgramError, match=r"batches are \(x, y\) or \(x, y, "
                                              r"sample_weight\).*int"):
        from parallax_nb.keras_program import unpack
        unpack(3)


def test_rank_0_writes_the_runs_scalars_for_tensorboard(cluster, tmp_path):
    """Read back with TensorBoard's own event reader: one events file (rank 0's), a loss
    per step equal to what rank 0 reported, examples/s and step time beside it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = tmp_path / "board"
    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   progress=False, config=px.Config(mode="HYBRID", steps=4, batch_size=4,
                                                    tensorboard_dir=str(board)))
    run.result(timeout=300)
    files = list(board.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    events = EventAccumulator(str(board), size_guidance={"tensors": 0}).Reload()
    assert {"loss", "examples_per_sec", "step_time"} <= set(events.Tags()["tensors"])
    written = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("loss")}
    reported = run.metrics.query("rank == 0").set_index("step")["loss"]
    assert sorted(written) == [1, 2, 3, 4] == sorted(reported.index)
    for step, loss in written.items():
        assert loss == pytest.approx(reported[step], rel=1e-6)
    assert all(float(tf.make_ndarray(e.tensor_proto)) > 0
               for e in events.Tensors("examples_per_sec"))


def test_a_relative_tensorboard_dir_is_the_clients():
    assert px.Config(tensorboard_dir="tb").tensorboard_dir == os.path.abspath("tb")
