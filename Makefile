# The two commands that matter: `make demo` (the main job) and `make test`.
# Each creates .venv if missing and installs the project into it (an isolated venv, so nothing left
# on this machine can hide a missing dependency).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= work/demo

.PHONY: demo test lint bench results install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m pipeline.demo --workdir $(WORKDIR)

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) bench/build_records.py
	$(PY) bench/synthesize.py
	$(PY) bench/detect.py
	$(PY) bench/train_step.py
	$(PY) bench/infer.py
	$(PY) bench/search.py
	$(PY) bench/review.py

# RESULTS.md: the demo, its spread over seeds and every benchmark rerun (~1 hour on 2 cores)
results: $(VENV)/.installed
	$(PY) bench/results.py

clean:
	rm -rf $(VENV) work
