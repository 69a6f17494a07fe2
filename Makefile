# The two commands in the README: `make run` and `make test`. Both create the environment
# (.venv, see scripts/setup_env.sh) on first use; later calls reuse it.
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup setup-python run test test-beside-a-run bench bench-quick bench-step-path bench-exchange-shapes bench-mode-choice bench-scale bench-soak bench-steady-steps bench-model-memory bench-startup docs clean

# The Python environment (all `make run` and the benchmarks need), then the system pieces
# only the tests drive (Chromium, the JupyterHub proxy).
setup-python:
	@bash scripts/setup_env.sh

setup: setup-python
	@bash scripts/setup_system.sh

# The main job: HYBRID training of the bundled language model (200k-word vocabulary, sampled
# softmax) on an embedded local Dask cluster of 2 workers, with its analysis and run report.
run: setup-python
	$(PY) -m parallax_nb train parallax_nb.examples.language_model:program --mode HYBRID \
	    --steps 60 --batch-size 32 --local 2

# The unit, integration, browser and hub tests, then the worked notebooks under nbval on the
# installed parallax_nb kernel (cells marked NBVAL_CHECK_OUTPUT must reproduce their output).
test: setup
	$(PY) -m parallax_nb.kernels install --sys-prefix
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-kernel-name parallax_nb --durations=25

# The suite with another parallax_nb run training beside it on its own embedded cluster
# (scripts/neighbour_run.py): the suite must pass, and the neighbour must still be training
# when it ends (nothing of the suite's touched the other run's processes or folders).
test-beside-a-run: setup
	@$(PY) scripts/neighbour_run.py > .neighbour.log 2>&1 & echo $$! > .neighbour.pid; \
	until grep -q "neighbour:" .neighbour.log || ! kill -0 $$(cat .neighbour.pid); do \
	    sleep 1; done; \
	$(MAKE) test; suite=$$?; \
	kill -TERM $$(cat .neighbour.pid); wait $$(cat .neighbour.pid); \
	grep "neighbour:" .neighbour.log; rm -f .neighbour.pid; \
	grep -q "still training" .neighbour.log && exit $$suite || exit 1

# The documentation site (mkdocs.yml, docs/) into site/, strict: a broken link or reference
# fails the build. `$(PY) -m mkdocs serve` serves it while you edit.
docs: setup-python
	$(PY) -m mkdocs build --strict

# Benchmarks (benchmarks/README.md): the paper's comparison and the partition search, results
# in benchmarks/results/. bench-quick runs the small variants (1-3 minutes) that CI runs through tests.
bench: setup-python
	$(PY) -m benchmarks.step_path
	$(PY) -m benchmarks.paper_comparison
	$(PY) -m benchmarks.partition_search

bench-quick: setup-python
	$(PY) -m benchmarks.step_path --quick
	$(PY) -m benchmarks.paper_comparison --quick
	$(PY) -m benchmarks.partition_search --quick

# HYBRID's step against plain TensorFlow and AR, with the per-phase profile (about 8 minutes).
bench-step-path: setup-python
	$(PY) -m benchmarks.step_path

# What a step's exchanges with a server cost by their shape, TensorFlow alone: the pull, the
# push, ids already on the server, push and next pull merged (about 1 minute).
bench-exchange-shapes: setup-python
	$(PY) -m benchmarks.exchange_shapes

# mode="auto" against every mode, 3 rounds in a turning order: LM and CNN, 1 rank, 2 ranks, 2 simulated hosts (about 40 minutes).
bench-mode-choice: setup-python
	$(PY) -m benchmarks.mode_choice

# Where Parallax wins (#15): 4 simulated hosts on links scaled to a GPU cluster's share of a
# step, and a model whose tables do not fit every rank (about 50 minutes; needs root for the
# network namespaces). benchmarks/accelerator_step.py is its GPU side (run on a GPU machine).
bench-scale: setup-python
	$(PY) -m benchmarks.scale

# Runs that survive (#17): 2,400 HYBRID steps with a process killed every 500 steps (about
# 3 minutes); step times over 3 epochs, before (one tf.data iterator per epoch) and after.
bench-soak: setup-python
	$(PY) -m benchmarks.soak

bench-steady-steps: setup-python
	$(PY) -m benchmarks.steady_steps --per-epoch-iterators
	$(PY) -m benchmarks.steady_steps

# The client's peak memory in run.model() of 1.5 GB of tables (#23), now and before (about
# 5 minutes, 8 GB of memory; --quick: 64 MB of tables).
bench-model-memory: setup-python
	$(PY) -m benchmarks.model_memory

# Start-up to the first step (#26): cold, warm, changed program and restart, with and without
# spare processes, and the cost of the always-on step sample (about 12 minutes).
bench-startup: setup-python
	$(PY) -m benchmarks.startup

clean:
	rm -rf .venv build *.egg-info
