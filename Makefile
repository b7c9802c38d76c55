# gremesh: the two commands are `make demo` and `make test` (as root on Debian 12).
SHELL := /bin/bash
LAB_DIR ?= /run/gremesh-lab
HOSTS ?= 3

.PHONY: deps build lint demo demo-down test test-unit test-e2e soak bench clean

deps: node_modules/.installed
	@bash deploy/install-deps.sh

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

build: deps
	npm run --silent build

## the main job: a local multi-host lab, joined to a coordinator, containers pinging across hosts
demo: build
	node dist/deploy/lab/demo.js --hosts $(HOSTS) --dir $(LAB_DIR)

demo-down:
	node dist/deploy/lab/main.js down --dir $(LAB_DIR)

## every test: format and lint, unit (no root), then end to end (root: namespaces, OVS,
## dockerd); at most 12 minutes on a 2-core machine. Long fault cases: `make soak`.
test: build
	@bash test/run-all.sh

lint: deps
	npm run --silent lint

test-unit: build
	npm run --silent test:unit

test-e2e: build
	bash test/run-e2e.sh

## the fault suite at full length (300 s outage, 1000 churn cycles, 100-join burst
## under load); figures go to docs/BENCHMARKS.md
soak: build
	node dist/test/bench/report.js --only soak

bench: build
	@bash deploy/install-deps.sh bench
	node dist/test/bench/report.js

clean:
	rm -rf dist proto/gen
