# The two commands in the README: `make run` and `make test`. Both create the environment
# (.venv, see scripts/setup_env.sh) on first use; later calls reuse it.
PY := .venv/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup run test bench bench-quick clean

setup:
	@bash scripts/setup_env.sh

# The main job: the bundled language model on an embedded local Dask cluster, with its report.
run: setup
	$(PY) -m parallax_nb analyze parallax_nb.examples.language_model:program --steps 5 --machines 2 --workers-per-machine 2

test: setup
	$(PY) -m pytest tests

clean:
	rm -rf .venv build *.egg-info
