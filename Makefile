# Set-up and checks. Every target creates .venv when missing and installs into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
CHROMIUM ?= /usr/bin/chromium
PORT   ?= 8888

.PHONY: demo app serve-demo serve-app test test-fast bench lint browser-deps postgres-deps clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)          # first: a CPU build from the local file, not a CUDA one

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev,export]'
	touch $(VENV)/.installed $@

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-dev
	$(PY) -m pip install -q -e '.[dev,export,bench]'
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

# Debian's PostgreSQL server for the tests of studies shared across machines (the tests start
# their own server in a temporary folder; nothing is configured system-wide). Without root or
# sudo it can't be installed and those tests skip loudly, unless XB_REQUIRE_POSTGRES=1 (set by
# .ci/run) makes that a failure.
POSTGRES_PACKAGES := postgresql
postgres-deps:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; then :; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "WARNING: not root and no sudo: cannot install $(POSTGRES_PACKAGES); the PostgreSQL tests will skip"; exit 0; fi; \
	  ($$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(POSTGRES_PACKAGES)) >/dev/null \
	    || echo "WARNING: could not install $(POSTGRES_PACKAGES); the PostgreSQL tests will skip"; \
	fi

# Opens a browser where there is a display (X11, Wayland, or macOS), else only prints the URL.
# The server is rooted in notebooks/ and opens the quickstart; binder/jupyter adds a page
# config that turns JupyterLab's "official Jupyter news" prompt off, and a server config that
# keeps widget (comm) messages out of the kernel status, so the status bar reads Busy while a
# cell runs even when a click was handled on a kernel subshell meanwhile (JUPYTER_CONFIG_PATH
# only adds a config folder: the user's own settings stay as they are).
LAB_CONFIG := JUPYTER_CONFIG_PATH="$(CURDIR)/binder/jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}"
LAB_FLAGS  := --ip=127.0.0.1 --port=$(PORT) --LabApp.news_url=None \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  $$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ] || echo --no-browser ) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )
demo: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory serve-demo

# The classroom app: notebooks/app.ipynb under Voila (outputs and widgets, no code).
app: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory serve-app

# serve-*: the servers alone, without the install step (the browser tests start them so).
serve-demo:
	@echo "Opening JupyterLab on notebooks/01_quickstart.ipynb (the URL with its token is printed below)"
	$(LAB_CONFIG) $(PY) -m jupyterlab --ServerApp.root_dir=notebooks \
	  --LabApp.default_url=/lab/tree/01_quickstart.ipynb $(LAB_FLAGS)

# binder/share/jupyter holds the "exburn" Voila template: Voila's lab template without its
# Font Awesome links to a CDN (Voila bundles Font Awesome), so the app works offline.
serve-app:
	@echo "Opening the classroom app (Voila) on notebooks/app.ipynb (the URL is printed below)"
	JUPYTER_PATH="$(CURDIR)/binder/share/jupyter$${JUPYTER_PATH:+:$$JUPYTER_PATH}" \
	  $(PY) -m voila notebooks/app.ipynb --template=exburn --Voila.ip=127.0.0.1 --port=$(PORT) \
	  $$( [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ] || [ "$$(uname)" = Darwin ] || echo --no-browser )

test: $(VENV)/.installed-dev browser-deps postgres-deps
	$(PY) -m ruff check exburn_nb tests bench conftest.py
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -q -m "not browser and not notebook"

bench: $(VENV)/.installed-bench
	$(PY) -m bench

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check exburn_nb tests bench conftest.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
