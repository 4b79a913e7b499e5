# Two commands: `make demo` and `make test`. Both create .venv and install on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The local deployments' environment (Azure ML's inference server + MLflow + the model libraries), apart from the
# app's: the inference server's pins (pydantic~=2.12, opentelemetry-sdk==1.33) do not fit azure-ai-ml's.
SERVE  := .venv-serve/.installed

.PHONY: demo demo-fast demo-text test bench lint devhost chaos clean
TEXT   := $(VENV)/.installed-text

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $(STAMP)

# The text stack (issue 13) is an extra: the tabular path never needs it; `make test` and `make demo-text` do.
# NLTK data for BLEU/GLEU/METEOR, never downloaded at run time: WordNet from Debian (wordnet-base,
# wordnet-sense-index; .ci/run installs them), Punkt tables from the llama-index-core wheel (read, not installed),
# Perl Unicode tables from sacremoses. Missing sources leave those metrics "not evaluated", saying why.
NLTK_WHEEL := llama-index-core==0.14.25

$(TEXT): $(STAMP) requirements-text.txt
	$(PY) -m pip install -q -r requirements-text.txt
	$(PY) -m monitors.text export
	$(PY) -m pip download -q --no-deps -d $(VENV)/wheels $(NLTK_WHEEL)
	$(PY) -m monitors.text nltk-data
	@touch $(TEXT)

$(SERVE): requirements-serve.txt pyproject.toml
	$(PYTHON) -m venv .venv-serve
	.venv-serve/bin/python -m pip install -q --upgrade pip
	.venv-serve/bin/python -m pip install -q -r requirements-serve.txt
	.venv-serve/bin/python -m pip install -q -e .  # the product, so a scoring script can import its logger
	@touch $(SERVE)

node_modules/.bin/azurite: package.json
	npm ci --no-audit --no-fund --silent
	@touch $@

demo: $(STAMP) $(SERVE)
	$(PY) -m demo

demo-fast: $(STAMP) $(SERVE)
	$(PY) -m demo --fast

demo-text: $(TEXT)
	$(PY) -m demo --text

test: $(STAMP) $(TEXT) $(SERVE) node_modules/.bin/azurite
	$(PY) -m pytest

bench: $(STAMP) $(SERVE)
	$(PY) -m benchmarks

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# make devhost [WORKSPACE=out/demo/work] [PORT=7071] [ARGS=...]: with WORKSPACE, the demo's monitors and data on
# the demo's simulated clock (checks, labels and retrains line up with its 2013 traffic).
# SIGKILL the service at seeded random moments while it works, restart it, drain, check the invariants: one JSON line.
chaos: $(STAMP)
	$(PY) -m chaos --kills $(or $(KILLS),30) --seed $(or $(SEED),7)

devhost: $(STAMP)
	$(if $(WORKSPACE),MLOPS_MONITORS_DIR=$(WORKSPACE)/monitors MLOPS_DATA_DIR=$(WORKSPACE)/data )$(PY) -m devhost \
	  --settings $(if $(wildcard local.settings.json),local.settings.json,local.settings.example.json) \
	  $(if $(WORKSPACE),--clock demo) $(if $(PORT),--port $(PORT)) $(ARGS)

clean:
	rm -rf $(VENV) .venv-serve node_modules .local out
