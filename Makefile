# Two commands on a fresh machine: `make demo` (the main job) and `make test` (what CI runs).
# Everything installs into a virtualenv outside the repo; models and bundles are cached there too.
CACHE ?= $(HOME)/.cache/edgemode
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python

.PHONY: demo test install

$(VENV)/bin/activate:
	python3 -m venv $(VENV)

install: $(VENV)/bin/activate
	$(PY) -m pip install -q -e '.[test]'

demo: install
	EDGEMODE_CACHE=$(CACHE) $(VENV)/bin/edgemode demo

test: install
	$(PY) -m pytest -q
