# Set-up and checks. Every target creates .venv when missing and installs into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
CHROMIUM ?= /usr/bin/chromium
PORT   ?= 8888

.PHONY: demo test test-fast bench lint browser-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)          # first: a CPU build from the local file, not a CUDA one

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-dev
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $@

# Debian's Chromium and fonts for the real-browser tests (never `playwright install`: it
# downloads a browser). Without root or sudo they can't be installed and the browser tests
# skip loudly, unless XB_REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure.
APT_PACKAGES := chromium fonts-dejavu-core
browser-deps:
	@if [ -x "$(CHROMIUM)" ] && [ -d /usr/share/fonts/truetype/dejavu ]; then :; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "WARNING: not root and no sudo: cannot install $(APT_PACKAGES); the browser tests will skip"; exit 0; fi; \
	  ($$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(APT_PACKAGES)) >/dev/null \
	    || echo "WARNING: could not install $(APT_PACKAGES); the browser tests will skip"; \
	fi

# Opens a browser where there is a display (X11, Wayland, or macOS), else only prints the URL.
demo: $(VENV)/.installed-dev
	@echo "Opening JupyterLab on notebooks/01_quickstart.ipynb (the URL with its token is printed below)"
	$(PY) -m jupyterlab notebooks/01_quickstart.ipynb --ip=127.0.0.1 --port=$(PORT) \
	  --LabApp.default_url=/lab/tree/notebooks/01_quickstart.ipynb \
	  $$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ] || echo --no-browser ) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: $(VENV)/.installed-dev browser-deps
	$(PY) -m ruff check exburn_nb tests bench
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -q -m "not browser and not notebook"

bench: $(VENV)/.installed-bench
	$(PY) -m bench

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check exburn_nb tests bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
