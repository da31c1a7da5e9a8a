# Two commands on a fresh machine: `make demo` (the main job) and `make test` (what CI runs).
# Everything installs into a virtualenv outside the repo; models and bundles are cached there too.
CACHE ?= $(HOME)/.cache/edgemode
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
# onnxruntime-genai in a virtualenv of its own (never a project dependency): tests/test_genai.py
GENAI_VENV ?= $(CACHE)/genai-venv

.PHONY: demo test install chromium

$(VENV)/bin/activate:
	python3 -m venv $(VENV)

install: $(VENV)/bin/activate
	$(PY) -m pip install -q -e '.[test]'

demo: install
	EDGEMODE_CACHE=$(CACHE) $(VENV)/bin/edgemode demo

$(GENAI_VENV)/installed:
	python3 -m venv $(GENAI_VENV)
	$(GENAI_VENV)/bin/python -m pip install -q onnxruntime-genai==0.18.0
	touch $@

# A real headless browser: tests/test_explain.py renders `edgemode explain --html`'s page (Debian's
# chromium; CI runs as root on Debian).
chromium:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

test: install $(GENAI_VENV)/installed chromium
	EDGEMODE_GENAI_PYTHON=$(GENAI_VENV)/bin/python $(PY) -m pytest -q
