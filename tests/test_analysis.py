"""Sparse detection, alpha, placement, the cost model, and the errors of `px.analyze`."""
import dataclasses
import numpy as np
import pytest

import parallax_nb as px
import programs
from parallax_nb.analysis.cost import variable_traffic
from parallax_nb.analysis.placement import plan_placement, row_splits, server_loads
from parallax_nb.analysis.timing import StepCost, calibrate
from parallax_nb.analysis.trace import VariableTrace
from parallax_nb.examples import cnn, language_model


def kinds(report):
    return dict(zip(report.to_frame()["name"], report.to_frame()["kind"]))


def test_keras_embedding_is_sparse_and_dense_layer_is_dense():
    report = px.analyze(programs.keras_embedding_program(), steps=2)
    assert kinds(report) == {"emb/embeddings:0": "sparse", "out/kernel:0": "dense",
                             "out/bias:0": "dense"}
    frame = report.to_frame().set_index("name")
    assert frame.loc["emb/embeddings:0", "placement"] == "ps"
    assert frame.loc["out/kernel:0", "placement"] == "allreduce"
    assert frame.loc["emb/embeddings:0", "bytes"] == 50 * 4 * 4


def test_gather_and_embedding_lookup_on_raw_variables_are_sparse():
    report = px.analyze(programs.gather_program(), steps=2)
    assert kinds(report) == {"gathered:0": "sparse", "looked_up:0": "sparse",
                             "weights:0": "dense"}


def test_sampled_softmax_weights_and_biases_are_sparse():
    program = language_model.make_program(vocab=2000, dim=8, hidden=8, num_sampled=16,
                                          examples=256)
    report = px.analyze(program, steps=2, config=px.Config(batch_size=8))
    assert kinds(report) == {"embedding/embeddings:0": "sparse", "body/kernel:0": "dense",
                             "body/bias:0": "dense", "softmax_weights:0": "sparse",
                             "softmax_biases:0": "sparse"}
    assert report.mode == "HYBRID"


def test_dense_cnn_has_no_sparse_variable_and_recommends_allreduce():
    report = px.analyze(cnn.make_program(examples=64), steps=1, config=px.Config(batch_size=8),
                        machines=4, workers_per_machine=2)
    assert set(report.to_frame()["kind"]) == {"dense"}
    assert report.recommended_mode == "AR"
    assert report.mode == "AR" and "no sparse variables" in report.mode_note
    assert set(report.to_frame()["placement"]) == {"allreduce"}


def test_table_used_densely_is_dense():
    report = px.analyze(programs.dense_table_program(), steps=2)
    assert kinds(report) == {"table:0": "dense"}


def test_alpha_matches_hand_computed_fraction_and_unused_variable_is_reported():
    report = px.analyze(programs.known_program(), steps=2)
    table, unused = report.variables
    assert table.kind == "sparse"
    assert table.alpha == pytest.approx((3 / 10 + 1 / 10) / 2)
    assert table.union_alphas == pytest.approx((0.2, 0.4))   # two batches together: {0,1,2,5}
    assert table.slices_per_step == 4
    assert unused.kind == "unused"
    assert any("unused:0 got no gradient" in w for w in report.warnings)
    assert "warning: unused:0 got no gradient" in str(report)


def test_partitions_from_config_int_and_per_variable_dict():
    program = programs.gather_program()
    report = px.analyze(program, steps=1, config=px.Config(partitions=3), servers=2)
    frame = report.to_frame().set_index("name")
    assert frame.loc["gathered:0", "partitions"] == 3
    per_variable = report.replan(partitions={"gathered": 4, "looked_up:0": 1})
    frame = per_variable.to_frame().set_index("name")
    assert frame.loc["gathered:0", "partitions"] == 4
    assert frame.loc["looked_up:0", "partitions"] == 1
    ps_mode = report.replan(mode="PS").to_frame().set_index("name")
    assert ps_mode.loc["weights:0", "placement"] == "ps"
    assert ps_mode.loc["weights:0", "partitions"] == 1


def test_row_splits_are_even_and_contiguous():
    assert row_splits(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert row_splits(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def _variable(index, rows, row_bytes, kind="sparse", alpha=0.1, slices=0.0, unions=()):
    return VariableTrace(index, f"v{index}", (rows, row_bytes // 4), "float32", rows * row_bytes,
                         kind, alpha, slices, unions, 8)


@pytest.mark.parametrize("seed", range(20))
def test_greedy_placement_is_balanced(seed):
    rng = np.random.default_rng(seed)
    variables = [_variable(i, int(rng.integers(10, 5000)), 4 * int(rng.integers(1, 64)))
                 for i in range(int(rng.integers(1, 8)))]
    servers = int(rng.integers(1, 6))
    config = px.Config(partitions=int(rng.integers(1, 7)))
    placements = plan_placement(variables, "HYBRID", servers, config)
    loads = server_loads(placements, servers)
    largest = max(p.bytes for vp in placements for p in vp.partitions)
    assert sum(loads) == sum(v.bytes for v in variables)
    assert max(loads) <= np.mean(loads) + largest


def test_estimates_equal_hand_computed_values():
    dense = _variable(0, 25, 40, kind="dense", alpha=1.0)                # w = 1000 bytes
    sparse = _variable(1, 100, 16, alpha=0.1, slices=15, unions=(0.1, 0.15))
    # 2 machines x 1 rank: ring allreduce 2w(N-1)/N; PS dense (m-1)/m (g w + w)
    assert variable_traffic(dense, "allreduce", 2, 1, True) == (1000.0, 1000.0)
    assert variable_traffic(dense, "ps", 2, 1, True) == (1000.0, 1000.0)
    # sparse slice = 16 + 8 bytes; AR allgather (N-1) * 15 slices; PS pulls all 15 slices
    # (gathers keep duplicates) and pushes the 10 distinct rows: (360 + 240) / 2
    assert variable_traffic(sparse, "allreduce", 2, 1, True) == (360.0, 360.0)
    assert variable_traffic(sparse, "ps", 2, 1, True) == pytest.approx((300.0, 300.0))
    # 2 machines x 2 ranks: allgather over N = 4; the host pushes the union of 2 batches
    assert variable_traffic(sparse, "allreduce", 2, 2, True) == (1080.0, 1080.0)
    assert variable_traffic(sparse, "ps", 2, 2, True) == pytest.approx((540.0, 540.0))
    assert variable_traffic(sparse, "ps", 2, 2, False) == pytest.approx((600.0, 600.0))
    assert variable_traffic(dense, "allreduce", 2, 2, True) == (1500.0, 1500.0)
    # One machine: nothing crosses the network.
    assert variable_traffic(sparse, "ps", 1, 4, True) == (0.0, 0.0)


SLOW_LINK = {"bytes_per_second": 10e6 / 8, "exchange_seconds": 1.3e-3,
             "collective_seconds": 1e-3}


def test_estimate_totals_and_recommendation_for_the_language_model():
    program = language_model.make_program(vocab=5000, dim=8, hidden=8, num_sampled=16,
                                          examples=512)
    report = px.analyze(program, steps=3, config=px.Config(batch_size=16, link=SLOW_LINK))
    estimate = report.estimate(machines=4, workers_per_machine=2)
    frame = estimate.to_frame()
    for mode in ("HYBRID", "PS", "AR"):
        assert estimate.totals[mode][0] == pytest.approx(frame[f"{mode}_send"].sum())
        assert estimate.wire[mode] > max(estimate.totals[mode])          # framed
    # 10 Mbit/s: the tables' bytes outweigh the servers' two exchanges
    assert estimate.totals["HYBRID"][0] < estimate.totals["AR"][0]
    assert estimate.seconds["HYBRID"] < estimate.seconds["AR"]
    assert estimate.recommended == min(estimate.seconds, key=estimate.seconds.get)
    assert "least time per step on the link" in str(estimate) and "0.01 Gbit/s" in str(estimate)
    placed = report.replan(machines=4, workers_per_machine=2, servers=4).placements
    assert {vp.placement for vp in placed if vp.variable.kind == "sparse"} == {"ps"}
    # 10 Gbit/s: 160 KB tables densified cost less than the servers' two exchanges
    fast = report.replan(machines=4, workers_per_machine=2, servers=4)
    fast = dataclasses.replace(fast, config=fast.config.replace(
        link=px.Link(10e9 / 8, 1.3e-3, 1e-3)))
    for vp in fast.placements:
        if vp.variable.kind == "sparse":
            assert vp.placement == "allreduce" and vp.dense_sync, vp.reason
            assert "no variable on the servers: their 2 exchanges per step" in vp.reason
            assert " ms by AllReduce (as a dense gradient)" in vp.reason
    estimate = fast.estimate()
    assert estimate.seconds["HYBRID"] == estimate.seconds["AR"] < estimate.seconds["PS"]
    assert estimate.recommended == "HYBRID"      # ties go to HYBRID
    # no link given: bytes place and recommend; the default link prices, for information
    default = dataclasses.replace(fast, config=fast.config.replace(link=None))
    assert default.link is None and default.pricing_link == px.Link(10e9 / 8, 1.3e-3, 1e-3)
    assert all(vp.placement == "ps" for vp in default.placements
               if vp.variable.kind == "sparse")
    reason = next(vp.reason for vp in default.placements if vp.variable.kind == "sparse")
    assert reason.startswith("sparse (alpha 0.0162); servers move no more bytes: ")
    assert " ms on the default link, before the servers' exchanges" in reason
    estimate = default.estimate()
    assert estimate.recommended == "HYBRID" and "fewest bytes" in estimate.reason
    assert estimate.seconds["HYBRID"] > 0 and "priced on 10 Gbit/s" in str(estimate)
    # what a run of the bytes plan measured, to calibrate the link: its phases on the link
    # (pull, push, AllReduce, dispatch), its rounds and collectives, its wire bytes
    phases = {"input": 9.0, "pull": 2.0, "compute": 50.0, "local_aggregation": 7.0,
              "push_update": 3.0, "allreduce": 4.0, "apply": 6.0, "host": 1.0}
    cost = default.step_cost(phases)
    assert (cost.rounds, cost.collectives) == (2, 1)                # servers; dense AllReduce
    assert cost.seconds == pytest.approx(0.010)
    assert cost.wire_bytes == default.estimate().wire["HYBRID"]
    assert cost.bytes_per_second == 10e9 / 8                       # the default link's
    assert (fast.step_cost(phases).rounds, fast.step_cost(phases).collectives) == (0, 1)
    assert default.step_cost({}) is None
    # one real machine with host labels: bytes, and no time
    labelled = dataclasses.replace(fast, one_machine=True)
    assert labelled.link is None and labelled.pricing_link is None
    assert labelled.step_cost(phases) is None                      # no link to calibrate
    assert all(vp.placement == "ps" for vp in labelled.placements
               if vp.variable.kind == "sparse")


def test_report_renders_html_with_sparse_rows_marked_and_text():
    report = px.analyze(programs.keras_embedding_program(), steps=1)
    html = report._repr_html_()
    assert html.count("background: #fff3cd") == 1 and "emb/embeddings:0" in html
    assert "Recommended: <b>HYBRID</b>" in html
    text = str(report)
    assert "emb/embeddings:0" in text and "sparse" in text and "allreduce" in text


def test_names_do_not_drift_when_the_model_is_built_again():
    import tensorflow as tf

    tf.keras.layers.Dense(1)            # the notebook's own counters move on ...
    program = cnn.make_program(examples=16)
    first = px.analyze(program, steps=1, config=px.Config(batch_size=8))
    second = px.analyze(program, steps=1, config=px.Config(batch_size=8))
    assert list(first.to_frame()["name"])[:2] == ["conv2d/kernel:0", "conv2d/bias:0"]
    assert list(first.to_frame()["name"]) == list(second.to_frame()["name"])
    assert tf.keras.layers.Dense(1).name == "dense_1"   # ... and are left as they were


# -- bad input ----------------------------------------------------------------------------------
def _program(**changes):
    base = dict(model_fn=programs.keras_embedding_model, loss_fn=programs.regression_loss,
                dataset_fn=programs.id_batches, optimizer_fn=programs.sgd)
    base.update(changes)
    return px.Program(**base)


@pytest.mark.parametrize("changes, message", [
    (dict(model_fn=programs.raising_model), r"model_fn\(\) raised RuntimeError: typo in model_fn"),
    (dict(loss_fn=programs.vector_loss), r"loss_fn must return a scalar, got shape \(4,\)"),
    (dict(model_fn=programs.NoVariables), "no trainable variables"),
    (dict(dataset_fn=programs.empty_batches), r"dataset_fn\(0, 1\) yielded no batches"),
    (dict(optimizer_fn=programs.optimizer_holding_a_lock), "optimizer_fn cannot be pickled"),
])
def test_bad_programs_get_errors_that_name_the_problem(changes, message):
    with pytest.raises(px.ProgramError, match=message):
        px.analyze(_program(**changes), steps=1)


def test_batch_size_for_a_dataset_without_that_parameter_is_an_error():
    with pytest.raises(px.ProgramError, match="takes no batch_size argument"):
        px.analyze(programs.known_program(), steps=1, config=px.Config(batch_size=4))


def test_program_fields_must_be_functions_and_config_is_validated():
    with pytest.raises(px.ProgramError, match="loss_fn must be a function"):
        px.Program(programs.keras_embedding_model, 3, programs.id_batches, programs.sgd)
    with pytest.raises(px.ConfigError, match="mode='SYNC' is not one of HYBRID, PS, AR"):
        px.Config(mode="SYNC")
    with pytest.raises(px.ConfigError, match="partitions must be a positive integer"):
        px.Config(partitions=0)


def test_cli_analyze_prints_the_report(capsys):
    from parallax_nb.__main__ import main

    assert main(["analyze", "parallax_nb.examples.cnn:program", "--steps", "1"]) == 0
    assert "conv2d/kernel:0" in capsys.readouterr().out
    assert main(["analyze", "no_such_module:program"]) == 2
    assert "cannot import 'no_such_module'" in capsys.readouterr().err


def test_criteo_shaped_recommender_has_26_sparse_tables_of_criteo_sizes():
    from parallax_nb.examples import recommender

    program = recommender.make_program(scale=0.001, examples=512)
    report = px.analyze(program, steps=2, config=px.Config(batch_size=32))
    frame = report.to_frame().set_index("name")
    tables = frame[frame["kind"] == "sparse"]
    assert len(tables) == 26 and (frame["kind"] == "dense").sum() == 6
    sizes = sorted(int(shape.split("x")[0]) if isinstance(shape, str) else shape[0]
                   for shape in tables["shape"])
    assert sizes == sorted(recommender.table_sizes(0.001))
    assert sizes[0] == 3 and sizes[-1] == int(10131227 * 0.001)


@pytest.mark.parametrize("optimizer_fn, says", [
    (programs.adagrad, "Adagrad: Adagrad, row-wise (exact"),
    (programs.adam, "Adam: lazy Adam: rows and their slots are updated when a step touches"),
])
def test_the_report_says_which_update_the_sparse_variables_get(optimizer_fn, says):
    report = px.analyze(programs.keras_embedding_program(optimizer_fn=optimizer_fn), steps=2,
                        config=px.Config(batch_size=4))
    assert f"sparse updates: {says}" in str(report)
    assert f"Sparse updates: {says}" in report._repr_html_()


# -- placement per variable, by cost, with its reason ------------------------------------------
def test_a_small_table_every_step_touches_whole_goes_to_allreduce_as_a_dense_gradient():
    # 5 rows looked up 12 times a step: the servers would move every row and more
    report = px.analyze(programs.keras_embedding_program(rows=5), steps=2,
                        config=px.Config(batch_size=4)).replan(machines=1,
                                                               workers_per_machine=2)
    table = next(p for p in report.placements if p.variable.name == "emb/embeddings:0")
    assert (table.placement, table.dense_sync) == ("allreduce", True)
    assert table.reason.startswith("sparse (alpha 1); AllReduce moves fewer bytes: ")
    assert "by AllReduce (as a dense gradient)" in table.reason
    assert report.to_frame().set_index("name").loc["emb/embeddings:0", "why"] == table.reason
    # a large table a step touches a little of stays on the servers, saying why: on one
    # machine by bytes, between machines by time on a slow link
    big = px.analyze(programs.keras_embedding_program(rows=5000), steps=2)
    table = next(p for p in big.replan(workers_per_machine=2).placements
                 if p.variable.name == "emb/embeddings:0")
    assert table.placement == "ps" and "servers move no more bytes" in table.reason


def test_between_machines_each_table_goes_where_its_step_costs_less_time():
    """A table (4,096 rows touched of 100,000, 256 B rows), a 12-row table every step
    touches whole, a dense layer; 4 machines x 1 rank, 4 servers."""
    big = _variable(0, 100_000, 256, alpha=0.04, slices=4096.0, unions=(0.04,))
    small = _variable(1, 12, 64, alpha=1.0, slices=4096.0, unions=(1.0,))
    dense = _variable(2, 64, 256, kind="dense", alpha=1.0)
    variables = (big, small, dense)

    def place(link, **config):
        return plan_placement(variables, "HYBRID", 4, px.Config(link=link, **config), 4, 1,
                              px.Config(link=link).link)

    # 1 Gbit/s: the big table saves far more than two exchanges; the small one joins the
    # dense AllReduce (no collective of its own), although the exchanges are paid anyway
    on_gbit = place({"bytes_per_second": 1e9 / 8, "exchange_seconds": 1.3e-3,
                     "collective_seconds": 1e-3})
    assert [(p.placement, p.dense_sync) for p in on_gbit[:2]] == [("ps", False),
                                                                   ("allreduce", True)]
    assert "costs less time on the servers (their 2 exchanges, 2." in on_gbit[0].reason
    assert "shared by the 1 variable(s) there" in on_gbit[0].reason
    assert on_gbit[1].reason.startswith("sparse (alpha 1); AllReduce costs less time; it "
                                        "joins the dense gradients' AllReduce")
    # a link so fast that two exchanges cost more than all the bytes: nothing on the servers
    fast = place({"bytes_per_second": 1e12, "exchange_seconds": 1e-3,
                  "collective_seconds": 1e-3})
    assert [p.placement for p in fast[:2]] == ["allreduce", "allreduce"]
    assert "no variable on the servers: their 2 exchanges per step" in fast[0].reason
    # ... but a table over 32 MiB stays on the servers: a copy in every rank is memory
    huge = (_variable(0, 1_000_000, 256, alpha=0.004, slices=4096.0, unions=(0.004,)),
            small, dense)
    link = px.Link(1e12, 1e-3, 1e-3)
    kept = plan_placement(huge, "HYBRID", 4, px.Config(), 4, 1, link)
    assert kept[0].placement == "ps"
    assert "a copy in every rank (256.0 MB) is more than time trades for" in kept[0].reason
    # no latency at all: the bytes decide, as on one machine
    free = place({"bytes_per_second": 1e9 / 8, "exchange_seconds": 0,
                  "collective_seconds": 0})
    by_bytes = plan_placement(variables, "HYBRID", 4, px.Config(), 4, 1)
    assert [p.placement for p in free] == [p.placement for p in by_bytes]
    # an override is kept, and priced: the small table on the servers
    pinned = place({"bytes_per_second": 1e12, "exchange_seconds": 1e-3,
                    "collective_seconds": 1e-3}, placement={"v1": "ps"})
    assert pinned[1].placement == "ps" and "Config.placement" in pinned[1].reason
    with pytest.raises(px.ConfigError, match=r"Link.exchange_seconds must be a finite number "
                                             r">= 0, got -1"):
        px.Config(link={"bytes_per_second": 1e9, "exchange_seconds": -1,
                        "collective_seconds": 0})
    with pytest.raises(px.ConfigError, match=r"\['latency'\] are not fields of a link"):
        px.Config(link={"latency": 1})


def test_the_runs_calibrate_the_links_fixed_costs_and_move_tables_off_costly_servers():
    """A run without servers shows what a collective costs, one with servers what a round
    of exchanges costs; placement by time then plans with them."""
    link = px.Link(1e9 / 8, 1.3e-3, 1e-3, source="measured")
    assert calibrate(link, []) is link                              # nothing ran: as measured
    wire = 1e6                                                      # 8 ms at 1 Gbit/s
    allreduce = StepCost(rounds=0, collectives=2, wire_bytes=wire, bytes_per_second=1e9 / 8,
                         seconds=0.008 + 2 * 0.004)
    servers = StepCost(rounds=2, collectives=1, wire_bytes=wire, bytes_per_second=1e9 / 8,
                       seconds=0.008 + 0.004 + 2 * 0.040)
    fitted = calibrate(link, [allreduce, servers])
    assert fitted.collective_seconds == pytest.approx(0.004)
    assert fitted.exchange_seconds == pytest.approx(0.040)
    assert fitted.bytes_per_second == link.bytes_per_second
    assert fitted.source == "measured; fixed costs from 1 run(s) without servers and 1 with"
    only_servers = calibrate(link, [servers])                       # the collective as given
    assert only_servers.exchange_seconds == pytest.approx((0.084 - 0.001) / 2)
    assert only_servers.collective_seconds == link.collective_seconds
    # a step faster than its bytes: no negative cost
    assert calibrate(link, [dataclasses.replace(servers, seconds=0.001)]).exchange_seconds == 0
    # the 4,096-row lookups of a 100,000-row table: on the servers while an exchange costs
    # 1.3 ms, allgathered once the runs show 40 ms
    big = _variable(0, 100_000, 256, alpha=0.04, slices=4096.0, unions=(0.04,))
    dense = _variable(1, 64, 256, kind="dense", alpha=1.0)
    before = plan_placement((big, dense), "HYBRID", 4, px.Config(), 4, 1, link)
    after = plan_placement((big, dense), "HYBRID", 4, px.Config(), 4, 1, fitted)
    assert before[0].placement == "ps"
    assert (after[0].placement, after[0].dense_sync) == ("allreduce", False)
    assert "no variable on the servers: their 2 exchanges per step (80.0" in after[0].reason


def test_placement_can_be_overridden_per_variable_and_unknown_names_are_refused():
    program = programs.keras_embedding_program(rows=5)
    config = px.Config(batch_size=4, placement={"emb/embeddings": "ps"})
    report = px.analyze(program, steps=2, config=config).replan(workers_per_machine=2)
    table = next(p for p in report.placements if p.variable.name == "emb/embeddings:0")
    assert table.placement == "ps" and "Config.placement" in table.reason
    with pytest.raises(px.ConfigError, match=r"Config.placement names \['embedding'\], which "
                                             r"the model does not have; its variables are: "
                                             r"emb/embeddings:0, out/kernel:0, out/bias:0"):
        px.analyze(program, steps=1, config=px.Config(placement={"embedding": "ps"}))
    with pytest.raises(px.ConfigError, match=r"Config.partitions names \['emb'\]"):
        px.analyze(program, steps=1, config=px.Config(partitions={"emb": 2}))
    with pytest.raises(px.ConfigError, match=r"must be one of 'ps', 'allreduce'"):
        px.Config(placement={"emb/embeddings": "server"})


def test_a_regularized_embedding_is_dense_and_the_report_says_why():
    report = px.analyze(programs.regularized_program(), steps=2)
    table = next(p for p in report.placements if p.variable.name == "emb/embeddings:0")
    assert table.variable.kind == "dense" and table.placement == "allreduce"
    assert table.reason == ("dense: its embeddings_regularizer (L2) reads every row, so its "
                            "gradient is dense; without it, it would be sparse")
    assert "embeddings_regularizer (L2) reads every row" in str(report)
