# torchrec-automtl: the two commands a newcomer runs are `make search` and `make test`.
# Each creates or refreshes .venv first; a second run reinstalls nothing (stamp keyed on
# pyproject.toml, the lock file and the stack). STACK=cuda installs the CUDA torch/fbgemm-gpu pair.

PYTHON_BOOT ?= python3.11
STACK ?= cpu
CUDA ?= cu128
CUDA_INDEX_URL ?= https://download.pytorch.org/whl/$(CUDA)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
LOCK := requirements/cpu-lock.txt
STAMP := $(VENV)/.installed-$(STACK)-$(shell cat pyproject.toml $(LOCK) | sha1sum | cut -c1-16)
PINS := $(PYTHON_BOOT) scripts/pins.py

SYNTHETIC_DIR := data/synthetic_aliccp
SYNTHETIC_ROWS ?= 300000

.PHONY: install install-cuda search train compare ablation synthetic-study test data clean-venv

install: $(STAMP)

install-cuda:
	$(MAKE) install STACK=cuda

$(STAMP): pyproject.toml $(LOCK) scripts/pins.py
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	rm -f $(VENV)/.installed-*
ifeq ($(STACK),cuda)
	$(PIP) install --index-url $(CUDA_INDEX_URL) $$($(PINS) torch)
	$(PIP) install --index-url $(CUDA_INDEX_URL) fbgemm-gpu==$$($(PINS) fbgemm-gpu-cpu | cut -d= -f3)
else
	$(PIP) install $$($(PINS) torch)
	$(PIP) install -c $(LOCK) $$($(PINS) fbgemm-gpu-cpu)
endif
	$(PIP) install -c $(LOCK) $$($(PINS) --rest torch fbgemm-gpu-cpu torchrec)
	$(PIP) install --no-deps $$($(PINS) torchrec)
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

# Regenerated when the generator changes, so the data always matches the code's planted model.
$(SYNTHETIC_DIR)/schema.json: $(STAMP) datasets/synthetic.py
	$(PY) -m torchrec_automtl.datasets.synthetic aliccp_like --rows $(SYNTHETIC_ROWS) --seed 0 --out $(SYNTHETIC_DIR) --overwrite

data: $(SYNTHETIC_DIR)/schema.json

# The main job: AutoMTL search + fine-tune on the embedded synthetic data (runs/make-search), MMoE
# trained by the same pipeline on the same data and budget (runs/make-search-mmoe), and a table of both.
search: data
	$(PY) -m torchrec_automtl.nas.search dataset.path=$(SYNTHETIC_DIR) run_dir=runs/make-search overwrite=true \
		search_space=small search=fast trainer=fast
	$(PY) -m torchrec_automtl.pipelines.train dataset.path=$(SYNTHETIC_DIR) run_dir=runs/make-search-mmoe overwrite=true \
		model=mmoe trainer=fast
	$(PY) -m torchrec_automtl.experiments.compare_runs runs/make-search runs/make-search-mmoe

# Trains MMoE on the embedded synthetic data; results in runs/make-train (replaced on each `make train`).
train: data
	$(PY) -m torchrec_automtl.pipelines.train dataset.path=$(SYNTHETIC_DIR) run_dir=runs/make-train overwrite=true

# Every model x 5 seeds on the embedded synthetic data (about 45-70 minutes on 2 cores): runs/compare/results.md
compare: data
	$(PY) -m torchrec_automtl.experiments.compare dataset.path=$(SYNTHETIC_DIR) out_dir=runs/compare overwrite=true

# Paper 001's ablations (conf/ablation.yaml: variants x 3 seeds) on the embedded synthetic data:
# runs/ablation/results.md; finished cells are kept, so a second run only fills in what is missing.
ablation: data
	$(PY) -m torchrec_automtl.experiments.ablation dataset.path=$(SYNTHETIC_DIR) out_dir=runs/ablation

# Paper 001's Table 5 protocol on the MMoE-paper regression data: runs/synthetic-study/study.md
synthetic-study: install
	$(PY) -m torchrec_automtl.experiments.synthetic_study --out runs/synthetic-study --overwrite

test: install
	$(PY) -m pytest

clean-venv:
	rm -rf $(VENV)
