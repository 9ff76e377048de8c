# Two-command quick start (README): `make demo` and `make test` each install what they need first.
# torch 2.14.1 + torchvision 0.29.1 are pinned on purpose: see README "Install".
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[vision,cluster,trackers,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m probes demo --out out/demo --runs runs/demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check probes synthetic analysis cli tests

clean:
	rm -rf $(VENV) runs/demo out/demo .pytest_cache
