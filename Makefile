# Two-command quick start (README): `make demo` and `make test` each install what they need first.
# torch 2.14.1 + torchvision 0.29.1 are pinned on purpose: see README "Install".
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-fast lint clean upgrade-pins

EXTRAS := vision,cluster,trackers,dev

# Installs exactly the versions in constraints.txt (the environment the suite last passed with), so a new
# upstream release cannot change what a fresh clone runs.
$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
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

# Moving the pins forward: a fresh environment with the newest versions pyproject.toml allows (torch stays at
# the Makefile's pin), the whole suite on it, and constraints.txt rewritten from it only if the suite passes.
upgrade-pins:
	rm -rf .venv-latest && python3 -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	.venv-latest/bin/python -m pip install -q --upgrade -e '.[$(EXTRAS)]'
	.venv-latest/bin/python -m pytest -q -n 2
	{ sed -n '1,3p' constraints.txt; .venv-latest/bin/python -m pip freeze --exclude-editable | grep -v '^probes'; } \
	  > constraints.txt.new && mv constraints.txt.new constraints.txt
	@echo "constraints.txt now pins the environment that just passed; commit it with the suite's result"

clean:
	rm -rf $(VENV) .venv-latest runs/demo out/demo .pytest_cache
