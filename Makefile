# The two commands of the README. Each installs what it needs: the Debian packages of its profile
# (deploy/system-packages.txt, through deploy/install-system-packages.sh) and the virtualenv (.venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SYSTEM := deploy/install-system-packages.sh

.PHONY: demo test lint bench clean system-demo system-test

system-demo:
	@$(SYSTEM) demo

system-test:
	@$(SYSTEM) test

$(BIN)/captionbot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[models,portaudio,eval,dev]'
	touch $@

# Caption the bundled speech sample live and write its transcripts (no devices needed).
demo: system-demo $(BIN)/captionbot
	$(BIN)/captionbot demo --out captions-out

# The whole test suite (real speech from ../shared/data; tests needing it skip without it).
test: system-test $(BIN)/captionbot
	$(BIN)/python -m pytest -q

lint: $(BIN)/captionbot
	$(BIN)/ruff check bot tests bench

bench: $(BIN)/captionbot
	$(BIN)/python bench/streaming_latency.py

clean:
	rm -rf $(VENV) captions-out .pytest_cache
