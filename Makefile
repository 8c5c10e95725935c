# The two commands of the README. Each creates the virtualenv (.venv) when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/captionbot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[models,eval,dev]'
	touch $@

# Caption the bundled speech sample live and write its transcripts (no devices needed).
demo: $(BIN)/captionbot
	$(BIN)/captionbot demo --out captions-out

# The whole test suite (real speech from ../shared/data; tests needing it skip without it).
test: $(BIN)/captionbot
	$(BIN)/python -m pytest -q

lint: $(BIN)/captionbot
	$(BIN)/ruff check bot tests bench

bench: $(BIN)/captionbot
	$(BIN)/python bench/streaming_latency.py

clean:
	rm -rf $(VENV) captions-out .pytest_cache
