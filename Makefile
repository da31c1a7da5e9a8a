# Two commands on a fresh machine: `make demo` (the main job) and `make test` (what CI runs).
# Everything installs into a virtualenv outside the repo; models and bundles are cached there too.
CACHE ?= $(HOME)/.cache/edgemode
VENV ?= $(CACHE)/venv
PY := $(VENV)/bin/python
# onnxruntime-genai in a virtualenv of its own (never a project dependency): tests/test_genai.py.
# The C app (examples/c) loads the C libraries of the same versions' wheels.
GENAI_VENV ?= $(CACHE)/genai-venv
GENAI_VERSION := 0.18.0
ORT_VERSION := 1.32.0

.PHONY: demo test install chromium app

$(VENV)/bin/activate:
	python3 -m venv $(VENV)

install: $(VENV)/bin/activate
	$(PY) -m pip install -q -e '.[test]'

demo: install
	EDGEMODE_CACHE=$(CACHE) $(VENV)/bin/edgemode demo

$(GENAI_VENV)/installed:
	python3 -m venv $(GENAI_VENV)
	$(GENAI_VENV)/bin/python -m pip install -q onnxruntime-genai==$(GENAI_VERSION) onnxruntime==$(ORT_VERSION)
	touch $@

# A real headless browser: tests/test_explain.py renders `edgemode explain --html`'s page (Debian's
# chromium; CI runs as root on Debian).
chromium:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# examples/c/edgemode-app and the two libraries it loads, in one folder to copy onto a device:
# `make app` for this machine, `make app APP_ARCH=aarch64` cross-compiled with Debian's
# gcc-aarch64-linux-gnu (installed when missing) for a 64-bit ARM board (docs/DEVICES.md).
APP_ARCH ?= $(shell uname -m)
APP_DIR = examples/c/build/$(APP_ARCH)
CROSS = $(filter-out $(shell uname -m),$(APP_ARCH))
APP_CC = $(if $(CROSS),$(APP_ARCH)-linux-gnu-gcc,$(CC))

app: $(APP_DIR)/edgemode-app $(APP_DIR)/libonnxruntime-genai.so

$(APP_DIR)/edgemode-app: examples/c/edgemode-app.c
	command -v $(APP_CC) >/dev/null || (apt-get update -q && apt-get install -y -q $(if $(CROSS),gcc-$(APP_ARCH)-linux-gnu,gcc))
	mkdir -p $(@D)
	$(APP_CC) -O2 -Wall -Wextra -Werror -std=c11 -Wl,-rpath,'$$ORIGIN' -o $@ $< -ldl

$(APP_DIR)/libonnxruntime-genai.so: examples/c/fetch_libraries.py | $(VENV)/bin/activate
	$(PY) examples/c/fetch_libraries.py --arch $(APP_ARCH) --wheels $(CACHE)/wheels/$(APP_ARCH) -o $(@D) \
		onnxruntime-genai==$(GENAI_VERSION) onnxruntime==$(ORT_VERSION)

# -rs: the summary gives every skip's reason
test: install $(GENAI_VENV)/installed chromium app
	EDGEMODE_GENAI_PYTHON=$(GENAI_VENV)/bin/python $(PY) -m pytest -q -rs
