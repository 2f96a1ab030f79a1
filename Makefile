# The kit's two entry points (see README): `make reproduce` and `make test`.
PYTHON  ?= python3
VENV    ?= .venv
PROFILE ?= scifact
BIN     := $(VENV)/bin
SHARED_IRDS := $(wildcard ../shared/ir_datasets)
# Jupyter refuses to run as root unless told; only root gets --allow-root.
LAB_UID ?= $(shell id -u)
LAB_FLAGS := $(if $(filter 0,$(LAB_UID)),--allow-root)

# ir_datasets cache: a writable copy of ../shared/ir_datasets when it is there (see data/README.md).
export IR_DATASETS_HOME ?= $(CURDIR)/data/ir_datasets
export HF_HUB_OFFLINE ?= 1

.PHONY: setup browser reproduce test lab study walkthrough explorer clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-compile --no-deps -e .
	@# notebooks run in JupyterLab keep their outputs on disk, never in git (.gitattributes)
	-@git config filter.rqakit-notebook.clean "$(abspath $(BIN))/python -m rqakit.nbstrip" 2>/dev/null
	@touch $@

$(IR_DATASETS_HOME)/.copied:
	@mkdir -p $(IR_DATASETS_HOME)
	@if [ -n "$(SHARED_IRDS)" ]; then cp -r $(SHARED_IRDS)/. $(IR_DATASETS_HOME)/ && chmod -R u+w $(IR_DATASETS_HOME); fi
	@touch $@

reproduce: setup $(IR_DATASETS_HOME)/.copied
	$(BIN)/rqakit reproduce --profile $(PROFILE)

test: setup browser
	$(BIN)/ruff check rqakit tests benchmarks
	$(BIN)/python -m pytest -q

# Debian's Chromium for the JupyterLab browser test (tests/test_lab_browser.py), when it is missing.
browser:
	@command -v chromium >/dev/null || { apt-get install -y -qq chromium >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } || \
		echo "make: Chromium is missing and could not be installed (apt-get install chromium, as root)"; }

# Executed copies of the two notebooks beside the chapters (the explorer reads runs/$(PROFILE)).
PAPERMILL := TQDM_MININTERVAL=60 $(BIN)/papermill --no-progress-bar
# The distillation study: trains what is missing (hours; resumable), exports each run, writes reports/scifact-study.
study: setup $(IR_DATASETS_HOME)/.copied
	$(BIN)/rqakit study --profile scifact

walkthrough: setup $(IR_DATASETS_HOME)/.copied
	$(PAPERMILL) notebooks/walkthrough.ipynb reports/walkthrough/walkthrough.ipynb -p out_dir reports/walkthrough

explorer: setup $(IR_DATASETS_HOME)/.copied
	$(PAPERMILL) notebooks/explorer.ipynb reports/explorer/$(PROFILE).ipynb -p run_folder runs/$(PROFILE) \
		-p out_dir reports/explorer/$(PROFILE) -p interactive False

lab: setup $(IR_DATASETS_HOME)/.copied
	$(BIN)/jupyter lab $(LAB_FLAGS) notebooks/

clean-venv:
	rm -rf $(VENV)
