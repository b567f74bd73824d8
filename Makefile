# Two commands matter: `make book` (build the HTML book) and `make test` (all
# tests). Each creates .venv if missing and installs what it needs, pinned by
# requirements-lock.txt; re-running them installs nothing new.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
PROFILE ?= short
BOOK_FLAGS := -W -n --keep-going
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: book test lint unit notebooks dryrun install clean

install: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c $(LOCK) -e ".[dev,metaworld]"
	# learn2learn 0.2.0 declares dependencies that break numpy 2 (see README):
	# build it without them; it needs only torch, numpy, scipy, gym and tqdm.
	$(PIP) install -q -c $(LOCK) --no-deps --use-pep517 \
		--config-settings="--build-option=build_ext" learn2learn==0.2.0
	$(PIP) install -q -c $(LOCK) --no-deps gym==0.26.2
	$(BIN)/python -c "import learn2learn, metalearn; print('learn2learn', learn2learn.__version__)"
	$(BIN)/python -c "import metaworld, mujoco; print('mujoco', mujoco.__version__)"
	@touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . $(BOOK_FLAGS)
	@echo "The book is at $(CURDIR)/_build/html/index.html"

lint: $(STAMP)
	$(BIN)/ruff check src tests chapters benchmarks

# Unit tests, then every notebook executed in the `smoke` profile (nbval), in
# one pytest run, then the `paper` and `gpu` dry runs (make dryrun), then the book
# build in which a warning is an error, then every built page opened offline in
# headless Chromium (tests/browser). The smoke workloads are tiny: one thread
# each avoids oversubscribing small CI machines (two torch processes with two
# threads each on two cores run up to 50x slower).
test: lint
	OMP_NUM_THREADS=1 METALEARN_PROFILE=smoke MPLBACKEND=Agg METALEARN_PROGRESS=0 \
		$(BIN)/python -m pytest tests chapters --ignore=tests/browser \
		--nbval-lax --nbval-current-env
	$(MAKE) --no-print-directory dryrun
	$(MAKE) --no-print-directory book
	$(BIN)/python -m pytest tests/browser -q

unit: $(STAMP)
	$(BIN)/python -m pytest tests

# Re-execute every chapter in place with PROFILE (default short) to refresh the
# outputs stored in the notebooks, which is what the book shows. The chapters run
# in the order of the table of contents, so later chapters load the models earlier
# ones trained (metalearn.zoo); NB=chapters/x.ipynb runs one. MPLBACKEND is unset
# because a non-inline backend (e.g. Agg) would store no figures; progress bars
# are off (METALEARN_PROGRESS=0): a stored notebook keeps summaries.
TOC_NOTEBOOKS = $(shell $(BIN)/python -c "import yaml; toc = yaml.safe_load(open('_toc.yml')); print(' '.join(c['file'] + '.ipynb' for p in toc['parts'] for c in p['chapters'] if c['file'].startswith('chapters/')))" 2>/dev/null)
NB ?= $(TOC_NOTEBOOKS)

notebooks: $(STAMP)
	for nb in $(NB); do \
		echo "== $$nb (profile $(PROFILE))"; \
		env -u MPLBACKEND METALEARN_PROFILE=$(PROFILE) METALEARN_PROGRESS=0 \
			$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=-1 "$$nb"; \
	done

# The code paths of `paper` and `gpu` on a CPU: every chapter executed (nbval,
# as in the smoke run) under each profile with METALEARN_MAX_STEPS=2, which caps
# every training at 2 steps and every evaluation at 2 episodes but keeps the
# profile's meta-batch sizes, shots, queries, inner steps and widths. Capped runs
# keep their checkpoints apart (<profile>-max2); those are removed first, so that
# every training runs here instead of loading the last dry run's. The profiles
# run side by side, one thread each (the smoke run leaves a core idle); their
# logs are printed when both are done (also in _build/dryrun-<profile>.log).
DRYRUN_PROFILES ?= paper gpu
DRYRUN_STEPS ?= 2

dryrun: $(STAMP)
	cache=$$($(BIN)/python -c "from metalearn.data.paths import cache_root; print(cache_root())"); \
	mkdir -p _build; \
	for profile in $(DRYRUN_PROFILES); do \
		rm -rf "$$cache/checkpoints/$$profile-max$(DRYRUN_STEPS)" _build/dryrun-$$profile.*; \
		( status=0; OMP_NUM_THREADS=1 METALEARN_PROFILE=$$profile METALEARN_PROGRESS=0 \
			METALEARN_MAX_STEPS=$(DRYRUN_STEPS) MPLBACKEND=Agg $(BIN)/python -m pytest \
			-q -p no:cacheprovider --nbval-lax --nbval-current-env \
			$(or $(TOC_NOTEBOOKS),chapters) > _build/dryrun-$$profile.log 2>&1 \
			|| status=$$?; echo $$status > _build/dryrun-$$profile.status ) & \
	done; \
	wait; failed=0; \
	for profile in $(DRYRUN_PROFILES); do \
		echo "== every chapter, profile $$profile, METALEARN_MAX_STEPS=$(DRYRUN_STEPS)"; \
		cat _build/dryrun-$$profile.log; \
		test "$$(cat _build/dryrun-$$profile.status)" = 0 || failed=1; \
	done; \
	exit $$failed

clean:
	rm -rf _build .pytest_cache .ruff_cache
