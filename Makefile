# Parley: `make dev` runs the service locally, `make test` runs every check.
# Both work from a fresh clone: they create .venv and install what they need.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
BROWSER_STAMP := $(VENV)/.browser
# The web client's libraries (marked, DOMPurify), copied from node_modules (docs/web.md).
VENDOR := web/vendor
VENDOR_STAMP := $(VENDOR)/.installed
PORT ?= 7071

.PHONY: dev test lint typecheck unit cosmos cosmos-sdk-tests bench bench-quick soak browser vendor clean

$(PY_STAMP): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium for the browser tests (Playwright's own browser download cannot work here).
$(BROWSER_STAMP): | $(PY_STAMP)
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	touch $@

browser: $(BROWSER_STAMP)

# The ES module builds that web/ imports, as they are pinned in package-lock.json; served and
# deployed with the rest of web/ (git-ignored: `make vendor` before copying web/ anywhere).
$(VENDOR_STAMP): $(NODE_STAMP)
	rm -rf $(VENDOR) && mkdir -p $(VENDOR)
	cp node_modules/marked/lib/marked.esm.js node_modules/marked/lib/marked.esm.js.map $(VENDOR)/
	cp node_modules/marked/LICENSE $(VENDOR)/marked.LICENSE.md
	cp node_modules/dompurify/dist/purify.es.mjs $(VENDOR)/purify.es.js
	cp node_modules/dompurify/dist/purify.es.mjs.map $(VENDOR)/
	cp node_modules/dompurify/LICENSE $(VENDOR)/dompurify.LICENSE
	touch $@

vendor: $(VENDOR_STAMP)

dev: $(PY_STAMP) $(VENDOR_STAMP)
	AUTH_MODE=$${AUTH_MODE:-dev} PORT=$(PORT) $(PY) -m devhost

cosmos: $(NODE_STAMP)
	node tools/cosmos/server.mjs

# The azure-cosmos SDK's own tests against tools/cosmos, every module that applies (see
# tests/tools/cosmos/sdk/run.py; `make test` runs the core ones).
cosmos-sdk-tests: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m tests.tools.cosmos.sdk.run --all

# openapi.yaml against Redocly's recommended rules (redocly.yaml); no telemetry, no update check.
lint: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
	  node_modules/.bin/redocly lint --format=stylish openapi.yaml

typecheck: $(PY_STAMP)
	$(PY) -m mypy shared functions devhost tools infra bench

test: $(PY_STAMP) $(NODE_STAMP) $(BROWSER_STAMP) $(VENDOR_STAMP) lint typecheck
	$(PY) -m pytest
	$(PY) -m tests.tools.cosmos.sdk.run
	# The benchmark, smaller, into a scratch folder: it must keep running, and a test run
	# must not rewrite the committed results.
	out=$$(mktemp -d) && $(PY) -m bench --quick --out "$$out" > "$$out/bench.log" \
	  || { cat "$$out/bench.log"; exit 1; }
	# The soak for one minute (real time: docs/testing.md, "The soak"): nothing acknowledged
	# lost or doubled, no error status.
	out=$$(mktemp -d) && $(PY) -m bench.soak 1 --users 16 --out "$$out/soak.json" \
	  > "$$out/soak.log" 2>&1 || { cat "$$out/soak.log"; exit 1; }

# The full benchmark; writes bench/results/ and the generated part of docs/performance.md.
bench: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m bench

bench-quick: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m bench --quick

# The local host on the local Cosmos server under a mixed load for SOAK_MINUTES (default 20);
# writes its report as soak.json in bench/results (docs/testing.md, "The soak").
SOAK_MINUTES ?= 20
soak: $(PY_STAMP) $(NODE_STAMP)
	$(PY) -m bench.soak $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) node_modules $(VENDOR) .data .pytest_cache .mypy_cache .ruff_cache
