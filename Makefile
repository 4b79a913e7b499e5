# Two commands: `make demo` and `make test`. Both create .venv and install on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo demo-fast demo-text test bench lint devhost clean
TEXT   := $(VENV)/.installed-text

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

# The text stack (issue 13) is an extra: the tabular path never needs it; `make test` and `make demo-text` do.
$(TEXT): $(STAMP) requirements-text.txt
	$(PY) -m pip install -q -r requirements-text.txt
	$(PY) -m monitors.text export
	@touch $(TEXT)

node_modules/.bin/azurite: package.json
	npm ci --no-audit --no-fund --silent
	@touch $@

demo: $(STAMP)
	$(PY) -m demo

demo-fast: $(STAMP)
	$(PY) -m demo --fast

demo-text: $(TEXT)
	$(PY) -m demo --text

test: $(STAMP) $(TEXT) node_modules/.bin/azurite
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .

devhost: $(STAMP)
	$(PY) -m devhost --settings $(if $(wildcard local.settings.json),local.settings.json,local.settings.example.json)

clean:
	rm -rf $(VENV) node_modules .local out
