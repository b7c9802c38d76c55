# gremesh: the two commands are `make demo` and `make test` (as root on Debian 12).
SHELL := /bin/bash
LAB_DIR ?= /run/gremesh-lab
HOSTS ?= 3

.PHONY: deps build demo demo-down test test-unit test-e2e bench clean

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

## every test: unit (no root) then end to end (root: namespaces, OVS, dockerd)
test: build
	npm run --silent test:unit
	npm run --silent test:e2e

test-unit: build
	npm run --silent test:unit

test-e2e: build
	npm run --silent test:e2e

bench: build
	node dist/test/bench/report.js

clean:
	rm -rf dist proto/gen
