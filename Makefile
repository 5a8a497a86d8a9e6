# One place for tasks: the README, .ci/run and developers all use these targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint fuzz bench bench-serve bench-scale bench-processes bench-cap bench-notify clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: replay January 2022 in Kazakhstan on a fresh embedded SQLite database
demo: $(STAMP)
	$(BIN)/tocsin demo

## test: the whole suite, on SQLite and on a throwaway local PostgreSQL
test: $(STAMP)
	scripts/with-postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: ruff and mypy (strict on the domain)
lint: $(STAMP)
	$(BIN)/ruff check src tests bench fuzz
	$(BIN)/mypy

## fuzz: every parser of outside input against 100,000 generated inputs each (about 20 min;
## INPUTS=N or ONLY=target,… for less); new crashes become cases in tests/fuzz_cases/
fuzz: $(STAMP)
	$(BIN)/python fuzz/run.py $(if $(INPUTS),--inputs $(INPUTS)) $(if $(ONLY),--only $(ONLY))

## bench: the resolver benchmark (100,000 areas, 1,000,000 declarations)
bench: $(STAMP)
	$(BIN)/python bench/resolve.py

## bench-serve: tocsin's server against nginx with wrk, and declare → visible (needs nginx, wrk)
bench-serve: $(STAMP)
	$(BIN)/python bench/serve.py

## bench-scale: the server at 1,000, 10,000 and 100,000 areas against issue 16's targets (long;
## SIZES=1000,10000 or QUICK=1 for less; generated databases are cached in bench/.cache/)
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(if $(SIZES),--sizes $(SIZES)) $(if $(QUICK),--quick)

## bench-processes: what a change costs each of 2 server processes on a throwaway PostgreSQL
## (10,000 areas; AREAS=N for another size)
bench-processes: $(STAMP)
	scripts/with-postgres $(BIN)/python bench/processes.py $(if $(AREAS),--areas $(AREAS))

## bench-cap: CAP export + validation (tocsin, lxml, xmlschema side by side) and import, msg/s
bench-cap: $(STAMP)
	$(BIN)/python bench/cap.py

## bench-notify: webhooks to 10,000 and 100,000 subscribers, deliveries/s beside wrk (needs wrk)
bench-notify: $(STAMP)
	$(BIN)/python bench/notify.py

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache .hypothesis
