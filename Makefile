# Hato: the two commands are `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# Real peers the tests talk to. Installed without starting the system's own instances
# (policy-rc.d refuses every service start while apt runs); tests run private ones.
DEBIAN_PACKAGES := dovecot-imapd dovecot-lmtpd swaks libnet-ssleay-perl postfix rspamd opendkim opendkim-tools chromium chromium-driver fonts-dejavu-core haproxy bsd-mailx git-email unbound

.PHONY: serve test lint bench venv dev clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed

dev: $(VENV)/.dev-installed

serve: venv
	$(BIN)/hato serve $(ARGS)

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src/

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	    echo "warning: cannot install$$missing (need root and apt-get); their tests will skip"; \
	  else \
	    echo "installing$$missing"; \
	    made_policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then made_policy=1; \
	      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing >/dev/null) \
	      || echo "warning: apt-get could not install$$missing; their tests will skip"; \
	    if [ -n "$$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  fi; \
	fi

test: lint system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

# make bench ARGS="--quick" for a subset in about a minute; bench/run.py --help for the rest.
# Haraka comes from npm into bench/.cache (skipped, and said so, without npm).
$(VENV)/.bench-installed: $(VENV)/.dev-installed pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed system-deps
	@if [ ! -x bench/.cache/haraka/node_modules/.bin/haraka ] && command -v npm >/dev/null; then \
	  mkdir -p bench/.cache/haraka && npm install --prefix bench/.cache/haraka --no-audit \
	    --no-fund --loglevel=error Haraka@3 >/dev/null || echo "warning: npm could not install Haraka"; \
	fi
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
