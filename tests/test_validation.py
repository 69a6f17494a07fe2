"""Validation during training, exact over ranks (#23): every rank evaluates its shard of the
validation data, the ranks sum their Keras metric *states*, and each value equals one device's
``model.evaluate`` of the same weights on all of it, with shards of unequal length (103
examples: 52 and 51, each ending in a short batch). Three runs cover the three modes, both
kinds of program (compile-style and the four functions with ``metrics_fn``) and both Kerases;
the HYBRID one also counts epochs, stops early, keeps its best checkpoint and writes its
validation to TensorBoard. Then the pure parts, without processes."""

import numpy as np
import pytest

import parallax_nb as px
import programs
import tensorflow as tf

pytestmark = pytest.mark.timeout(400)
VAL_IDS, VAL_LABELS = programs.click_data(103, 2)
RELATIVE = 1e-6


@pytest.fixture(scope="module")
def hybrid(cluster, tmp_path_factory):
    """tf_keras, compiled, HYBRID: 3 epochs of 6 steps, validation every 3 steps, early
    stopping that cannot see an improvement after the first (min_delta 1 on an AUC),
    the best checkpoint kept, TensorBoard."""
    folder = tmp_path_factory.mktemp("validation")
    config = px.Config(mode="HYBRID", epochs=3, batch_size=8, validate_every_steps=3,
                       early_stopping={"monitor": "val_auc", "min_delta": 1.0, "patience": 1},
                       keep_best="val_auc", checkpoint_dir=str(folder / "ckpt"),
                       tensorboard_dir=str(folder / "board"))
    program = programs.click_programs()["tf_keras"]
    run = px.train(program, cluster=cluster, select=2, progress=False, config=config)
    run.wait(300)
    return run, folder


@pytest.fixture(scope="module")
def plain_ps(cluster):
    """The four functions with validation_fn and metrics_fn, PS, validated at the end."""
    run = px.train(programs.click_plain_program(), cluster=cluster, select=2, progress=False,
                   config=px.Config(mode="PS", steps=4, batch_size=8))
    run.wait(300)
    return run


@pytest.fixture(scope="module")
def keras3_ar(cluster):
    run = px.train(programs.click_programs()["keras3"], cluster=cluster, select=2,
                   progress=False, config=px.Config(mode="AR", steps=5, batch_size=8,
                                                    validate_every_steps=5))
    run.wait(300)
    return run


def assert_equal_values(reported, expected):
    for name, value in expected.items():
        assert reported[f"val_{name}"] == pytest.approx(value, rel=RELATIVE), name


def evaluate(model):
    return model.evaluate(VAL_IDS, VAL_LABELS, batch_size=8, return_dict=True, verbose=0)


def test_hybrid_validation_equals_one_device_evaluating_all_of_it(hybrid):
    run, _ = hybrid
    last = run.validation.iloc[-1]
    assert last["val_examples"] == 103
    assert_equal_values(last, evaluate(run.model()))
    assert set(evaluate(run.model())) == {"loss", "accuracy", "auc"}
    assert last["val_auc"] > 0.6   # the labels come from the ids: it learns


def test_ps_validation_of_a_plain_program_equals_one_device(plain_ps):
    model = plain_ps.model()
    model.compile(loss="binary_crossentropy",
                  metrics=["accuracy", tf.keras.metrics.AUC(name="auc")])
    rows = plain_ps.validation
    assert list(rows["step"]) == [4]   # at the end of the run
    assert_equal_values(rows.iloc[-1], evaluate(model))


def test_ar_validation_of_a_keras3_model_equals_one_device(keras3_ar):
    rows = keras3_ar.validation
    assert list(rows["step"]) == [5]
    assert_equal_values(rows.iloc[-1], evaluate(keras3_ar.model()))


def test_validation_costs_the_rows_it_reads(hybrid, plain_ps, keras3_ar):
    """Rows gathered from the servers: one per id of the 103 examples (two ids each); the
    plain program's loss_fn and metrics call the model apart: twice that. No sparse table
    is read whole; AR has no servers to read from."""
    run, _ = hybrid
    assert set(run.validation["val_rows_gathered"]) == {206}
    assert set(plain_ps.validation["val_rows_gathered"]) == {412}
    assert set(keras3_ar.validation["val_rows_gathered"]) == {0}
    for frame in (run.validation, plain_ps.validation, keras3_ar.validation):
        assert set(frame["val_table_reads"]) == {0}


def test_epochs_count_the_smallest_shards_batches(hybrid):
    run, _ = hybrid
    assert run.config.steps_per_epoch == 6 and run.config.steps == 18   # 48 examples, batch 8
    assert list(run.validation["epoch"]) == [1, 1]


def test_early_stopping_ends_every_rank_at_one_step_and_says_why(hybrid):
    run, folder = hybrid
    assert run.status == "finished"
    assert list(run.validation["step"]) == [3, 6]
    assert run.metrics.groupby("rank")["step"].max().to_dict() == {0: 6, 1: 6}
    assert run.stopped_early.startswith("early stopping at step 6: val_auc did not improve")
    assert run.stopped_early in run.notes
    assert tf.train.latest_checkpoint(str(folder / "ckpt")).endswith("ckpt-6")


def test_the_best_checkpoint_is_kept_and_its_model_comes_back(hybrid):
    run, folder = hybrid
    best = run.validation[run.validation["best"].astype(bool)].iloc[-1]
    assert tf.train.latest_checkpoint(str(folder / "ckpt" / "best")).endswith(
        f"ckpt-{best['step']}")
    assert_equal_values(best, evaluate(run.model(best=True)))


def test_training_metrics_are_reported_per_rank_and_window(hybrid):
    run, _ = hybrid
    frame = run.metrics
    assert {"accuracy", "auc"} <= set(frame.columns)
    assert frame["accuracy"].between(0, 1).all() and frame["auc"].between(0, 1).all()


def test_tensorboard_holds_the_validation_scalars(hybrid):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, folder = hybrid
    events = EventAccumulator(str(folder / "board"), size_guidance={"tensors": 0}).Reload()
    assert {"val_loss", "val_auc", "val_accuracy", "auc", "accuracy"} <= \
        set(events.Tags()["tensors"])
    written = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("val_auc")}
    assert sorted(written) == [3, 6]
    for _, row in run.validation.iterrows():
        assert written[row["step"]] == pytest.approx(row["val_auc"], rel=1e-6)


# -- the pure parts ----------------------------------------------------------------------------
def test_metric_states_of_two_shards_add_up_to_one_device_on_all():
    """The rule validation rests on: states summed over uneven shards equal one set of
    metrics updated on everything (AUC and accuracy, which averaged values get wrong)."""
    from parallax_nb.keras_metrics import MetricSet

    rng = np.random.default_rng(5)
    y = (rng.random((103, 1)) < 0.4).astype(np.float32)
    p = rng.random((103, 1)).astype(np.float32)
    sets = []
    for part in (slice(0, 80), slice(80, 103), slice(0, 103)):
        metrics = MetricSet(["accuracy", tf.keras.metrics.AUC(name="auc")], "tf_keras")
        metrics.build(tf.constant(y), tf.constant(p))
        metrics.update(tf.constant(y[part]), tf.constant(p[part]))
        sets.append(metrics)
    first, second, whole = sets
    averaged = (first.results()["auc"] + second.results()["auc"]) / 2
    for a, b in zip(first.variables, second.variables):
        a.assign_add(b)
    combined, expected = first.results(), whole.results()
    for name in expected:
        assert combined[name] == pytest.approx(expected[name], rel=1e-6), name
    assert abs(averaged - expected["auc"]) > 1e-3   # what averaging the values would give


def test_accuracy_is_resolved_by_the_shapes_as_keras_does():
    from parallax_nb.keras_metrics import MetricSet

    cases = {((4, 1), (4, 1)): "BinaryAccuracy", ((4,), (4, 3)): "SparseCategoricalAccuracy",
             ((4, 3), (4, 3)): "CategoricalAccuracy"}
    for (y, p), kind in cases.items():
        metrics = MetricSet({"metrics": ["acc"], "weighted_metrics": ["mse"]}, "tf_keras")
        metrics.build(tf.zeros(y), tf.zeros(p))
        assert [type(m).__name__ for m, _ in metrics.metrics] == [kind, "MeanMetricWrapper"]
        assert metrics.names == ["acc", "mse"]


def test_metrics_that_name_nothing_or_clash_are_refused():
    from parallax_nb.keras_metrics import MetricSet

    with pytest.raises(px.ProgramError, match="'auc' names no Keras metric|'auc' is not"):
        MetricSet(["auc"], "tf_keras").build(tf.zeros((2, 1)), tf.zeros((2, 1)))
    with pytest.raises(px.ProgramError, match=r"\['mse'\] are used twice"):
        MetricSet(["mse", "mse"], "tf_keras").build(tf.zeros((2, 1)), tf.zeros((2, 1)))
    with pytest.raises(px.ProgramError, match="'losses'.*takes 'metrics' and"):
        MetricSet({"losses": []}, "tf_keras")


def test_a_whole_table_read_is_counted_and_a_gather_is_not():
    from parallax_nb.runtime.validation import whole_table_reads

    table = tf.Variable(tf.zeros([100, 4]))
    gather = tf.function(lambda ids: tf.gather(table, ids))
    whole = tf.function(lambda ids: tf.gather(table + 0.0, ids))
    ids = tf.constant([1, 2])
    assert whole_table_reads(gather.get_concrete_function(ids), [table]) == 0
    assert whole_table_reads(whole.get_concrete_function(ids), [table]) == 1


def test_early_stopping_follows_keras_rule():
    from parallax_nb.runtime.monitor import Monitor

    monitor = Monitor("early_stopping", "val_loss", "min", min_delta=0.1, patience=2)
    seen = []
    for step, value in enumerate([1.0, 0.8, 0.75, 0.72, 0.6, 0.55, 0.59], start=1):
        monitor.update({"val_loss": value}, step)
        seen.append(monitor.should_stop)
    # improvements (by more than 0.1) at 1, 2, 5; stops after 2 without one: at 4 and at 7
    assert seen == [False, False, False, True, False, False, True]
    assert int(monitor.best_step.numpy()) == 5
    with pytest.raises(px.ConfigError, match="monitors 'val_loss', which the validation does "
                                             "not give: it gives val_auc"):
        monitor.update({"val_auc": 0.5}, 8)


def test_config_refuses_what_cannot_be_meant():
    with pytest.raises(px.ConfigError, match="give one of them"):
        px.Config(steps=10, epochs=2)
    with pytest.raises(px.ConfigError, match="needs epochs"):
        px.Config(steps_per_epoch=10)
    assert px.Config(epochs=2, steps_per_epoch=5).steps == 10
    assert px.Config().steps == 100
    with pytest.raises(px.ConfigError, match="set checkpoint_dir too"):
        px.Config(keep_best="val_auc")
    with pytest.raises(px.ConfigError, match="monitors 'loss': it watches validation values"):
        px.Config(early_stopping={"monitor": "loss"})
    with pytest.raises(px.ConfigError, match=r"\['patiense'\] name no option"):
        px.Config(early_stopping={"monitor": "val_loss", "patiense": 3})
    assert px.Config(early_stopping={"monitor": "val_auc"}).early_stopping["mode"] == "max"
    assert px.Config(early_stopping="val_loss").early_stopping["mode"] == "min"


def test_validation_options_without_validation_data_are_refused_before_any_work():
    from parallax_nb.launch.checks import check_validation_options

    with pytest.raises(px.ConfigError, match=r"validate_every_steps=.*needs validation data.*"
                                             r"validation_fn"):
        check_validation_options(programs.keras_embedding_program(),
                                 px.Config(validate_every_steps=5))


def test_steps_per_epoch_is_the_smallest_shards_batch_count():
    from parallax_nb.launch.checks import steps_for_epochs

    program = programs.click_programs()["tf_keras"]
    # 100 examples over 3 shards: 34, 33, 33 -> batches of 8: 5, 5, 5; of 11: 4, 3, 3
    uneven = px.Program.from_keras(programs.click_model, lambda s, n, batch_size=8:
                                   programs.click_batches(s, n, batch_size, examples=100))
    assert steps_for_epochs(uneven, px.Config(epochs=2, batch_size=11), 3).steps == 6
    assert steps_for_epochs(program, px.Config(epochs=1, batch_size=8), 2).steps_per_epoch == 6


def absolute_error(y_true, y_pred):
    return tf.reduce_mean(tf.abs(y_true - y_pred))


def compiled_with_every_kind_of_metric():
    model = programs.click_model()
    model.compile(optimizer="adagrad", loss="binary_crossentropy",
                  metrics=[absolute_error, "mae", tf.keras.metrics.AUC(name="roc")],
                  weighted_metrics=["accuracy"])
    return model


def test_compiles_metrics_travel_to_the_ranks_as_names_functions_and_configs():
    """A function metric goes by itself, a metric object by its config (its variables stay
    behind): after a trip through cloudpickle, the same metrics, weighted where compiled so."""
    import cloudpickle

    from parallax_nb.runtime.validation import build_metrics

    program = px.Program.from_keras(compiled_with_every_kind_of_metric, programs.click_batches)
    shipped = cloudpickle.loads(cloudpickle.dumps(program))
    metrics = build_metrics(shipped.metrics(), shipped.model(),
                            next(iter(programs.click_batches(0, 1))))
    assert metrics.names == ["absolute_error", "mae", "roc", "accuracy"]
    assert [weighted for _, weighted in metrics.metrics] == [False, False, False, True]
