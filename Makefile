# Everyday targets. The two a new user needs:  make run   (main job)   and   make test.
PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= quick
DATASET ?= omniglot
DEVICE  ?= auto
CI_NOTEBOOKS := build/notebooks-ci
COURSE  := $(VENV)/.course
SUBMISSIONS ?= submissions

.PHONY: setup run test unit notebooks-ci nbval nbval-committed notebooks lab download readme clean course-setup student grade

setup: $(VENV)/.installed  ## create .venv and install htlib with its test tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

download: setup  ## fetch Omniglot, verified, into $HTLIB_DATA or ./data (HTLIB_SOURCE moves the source)
	$(PY) -m htlib download omniglot

run: setup  ## main job: every notebook end to end with papermill (PROFILE, DATASET, DEVICE); fetches Omniglot if missing
	$(PY) -m htlib notebooks --profile $(PROFILE) --dataset $(DATASET) --device $(DEVICE)

test: unit nbval nbval-committed  ## unit tests; every notebook at ci (papermill, nbval); the committed notebooks under strict nbval

unit: setup $(COURSE)  ## pytest: htlib's unit tests, the papermill runs of the notebooks, the coursework (builds, grading)
	$(PY) -m pytest -q

nbval: setup  ## re-execute the papermill outputs (ci parameters injected) under nbval
	@test -n "$$(ls $(CI_NOTEBOOKS)/*.ipynb 2>/dev/null)" || { echo "run 'make unit' first: no notebooks in $(CI_NOTEBOOKS)"; exit 1; }
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider $(CI_NOTEBOOKS)/*.ipynb

nbval-committed: setup  ## re-execute notebooks/*.ipynb and compare every output with the committed one
	$(PY) -m pytest -q --nbval -p no:cacheprovider --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/*.ipynb

notebooks: setup  ## refresh the committed notebooks in place (their outputs) after a change of code or results
	$(PY) -m htlib notebooks --in-place

course-setup: $(COURSE)  ## add the coursework tools (the "course" extra: nbgrader) to .venv

$(COURSE): $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[course]"
	touch $@

student: $(COURSE)  ## write the student versions of notebooks 01-05 into notebooks/student/ (solutions -> stubs)
	$(PY) -m htlib.course student

grade: $(COURSE)  ## grade submissions at ci: make grade SUBMISSIONS=DIR (DIR/<student>/01_episodes.ipynb ...)
	$(PY) -m htlib.course grade $(SUBMISSIONS)

lab: setup  ## open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

readme: setup  ## rewrite README.md's result sections from results/ (python -m htlib readme; --check only compares)
	$(PY) -m htlib readme

clean:  ## remove executed notebooks and caches (not the datasets)
	rm -rf build runs/notebooks data/cache .pytest_cache
