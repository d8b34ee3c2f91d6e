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

.PHONY: setup run test unit notebooks-ci nbval nbval-committed other-cpu check-device notebooks lab download readme clean course-setup student grade

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

test: unit nbval nbval-committed other-cpu  ## unit tests; every notebook at ci (papermill, nbval); the committed notebooks under strict nbval; the float-sensitive part again as another CPU rounds

# DEVICE reaches the tests (HTLIB_TEST_DEVICE: the device the notebooks run on). `make test DEVICE=cuda`
# on a GPU machine; DEVICE=cpu hides a GPU from the committed notebooks too (their device is "auto").
TEST_ENV := HTLIB_TEST_DEVICE=$(DEVICE) $(if $(filter cpu,$(DEVICE)),CUDA_VISIBLE_DEVICES=)

check-device: setup  # a GPU asked for where there is none: say so before any test runs
	@$(PY) -c "from htlib.utils import resolve_device; resolve_device('$(DEVICE)')" 2>&1 | tail -1 | grep . && exit 2 || true

unit: setup $(COURSE) check-device  ## pytest: htlib's unit tests, the papermill runs of the notebooks, the coursework (builds, grading)
	$(TEST_ENV) $(PY) -m pytest -q

nbval: setup  ## re-execute the papermill outputs (ci parameters injected) under nbval
	@test -n "$$(ls $(CI_NOTEBOOKS)/*.ipynb 2>/dev/null)" || { echo "run 'make unit' first: no notebooks in $(CI_NOTEBOOKS)"; exit 1; }
	$(PY) -m pytest -q --nbval-lax -p no:cacheprovider $(CI_NOTEBOOKS)/*.ipynb

nbval-committed: setup check-device  ## re-execute notebooks/*.ipynb and compare every output with the committed one
	$(TEST_ENV) $(PY) -m pytest -q --nbval -p no:cacheprovider --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks/*.ipynb

# The tests marked `numeric` and the committed notebooks once more, with the kernels capped one
# instruction set below this CPU's (python -m htlib.cpu --other-env) and one thread: what another
# machine of the pool would compute. A check tied to this CPU's rounding fails here.
other-cpu: setup $(COURSE)  ## the float-sensitive tests and strict nbval again, as a CPU one instruction set below rounds
	@echo "[other-cpu] $$($(PY) -m htlib.cpu --other-env) OMP_NUM_THREADS=1"
	env $$($(PY) -m htlib.cpu --other-env) OMP_NUM_THREADS=1 $(TEST_ENV) $(PY) -m pytest -q -m numeric -p no:cacheprovider
	env $$($(PY) -m htlib.cpu --other-env) OMP_NUM_THREADS=1 $(MAKE) --no-print-directory nbval-committed

notebooks: setup  ## refresh the committed notebooks in place (their outputs) after a change of code or results
	$(PY) -m htlib notebooks --in-place

course-setup: $(COURSE)  ## add the coursework tools (the "course" extra: nbgrader) to .venv

$(COURSE): $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[course]"
	touch $@

student: $(COURSE)  ## write the student versions of notebooks 01-06 into notebooks/student/ (solutions -> stubs)
	$(PY) -m htlib.course student

grade: $(COURSE)  ## grade submissions at ci: make grade SUBMISSIONS=DIR [TIMEOUT=s per cell] [OUT=dir] [ONLY="01 04"]
	$(PY) -m htlib.course grade $(SUBMISSIONS) $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(OUT),--out $(OUT)) \
		$(if $(ONLY),--only $(ONLY))

lab: setup  ## open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

readme: setup  ## rewrite README.md's result sections from results/ (python -m htlib readme; --check only compares)
	$(PY) -m htlib readme

clean:  ## remove executed notebooks and caches (not the datasets)
	rm -rf build runs/notebooks data/cache .pytest_cache
