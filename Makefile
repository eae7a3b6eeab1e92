# ecomstream: real-time e-commerce analytics platform.
#
#   make demo   start the local stack and the services, generate traffic, show where to look
#   make test   unit tests, the alert rules' promtool tests, then integration and end-to-end tests against the real local stack
#   make bench  end-to-end throughput, latency and CPU: clickstream over Kafka and HTTP, orders at a 20x burst, catalog snapshot and CDC
#               (not in it: bq-writer on the BigQuery emulator and on bqwh's fake, cd deploy/local && go run ./cmd/bench -phases bigquery)
#   make bench-compare BASE=<ref>  the same, alternating BASE's services and this tree's
#   make fuzz   fuzz every Fuzz* target for FUZZTIME each (default 1m)
#
# Modules come from go.work, never from a hand-kept list.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export CGO_ENABLED := 1
MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
SERVICES := $(notdir $(wildcard services/*))
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
STACK := deploy/local/stack.sh

.PHONY: help
help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install what the local stack, demo and bench need (Java 17 and 21+, Maven, PostgreSQL, gcc) if missing
	@deploy/local/bootstrap.sh

.PHONY: deps-browser
deps-browser: ## install headless Chromium and a font for the demo shop's browser tests if missing (run by make test)
	@deploy/local/bootstrap.sh --browser

.PHONY: build
build: ## build every service into bin/
	@mkdir -p bin
	@for s in $(SERVICES); do \
		echo "build $$s"; \
		(cd services/$$s && go build -ldflags "-X main.version=$(VERSION)" -o ../../bin/$$s .); \
	done

.PHONY: test
# deps-browser is a phase of its own: a failure to install Chromium fails
# make test but does not stop the integration tests (the browser tests then
# fail naming make deps-browser), and the stack, demo and bench never need it.
test: ## unit tests and the alert rules' tests, then integration + e2e tests against the local stack; prints each phase's time
	@eval "$$($(STACK) env)"; status=0; summary=; \
	for phase in test-unit test-rules stack-up deps-browser test-integration; do \
		start=$$(date +%s); rc=0; \
		$(MAKE) --no-print-directory $$phase || rc=$$?; \
		took=$$(( $$(date +%s) - start )); summary+=" $${phase#test-} $${took}s"; \
		echo "== $${phase#test-} took $${took}s$$( [ $$rc -eq 0 ] || echo ' (FAILED)')"; \
		[ $$rc -eq 0 ] || status=$$rc; \
		[ $$rc -eq 0 ] || [ $$phase = deps-browser ] || break; \
	done; \
	echo "== make test:$$summary"; exit $$status

.PHONY: test-unit
test-unit: ## unit tests of every module (no servers needed)
	@status=0; for m in $(MODULES); do echo "== unit $$m"; (cd $$m && go test -short -count=1 ./...) || status=1; done; exit $$status

.PHONY: test-rules
test-rules: ## promtool check rules and test rules on deploy/prometheus (promtool from deploy/local/stack/prometheus-fetch.sh)
	@bin=$$(deploy/local/stack/prometheus-fetch.sh | tail -n 1); \
	"$$bin/promtool" check rules deploy/prometheus/rules/*.yml; \
	cd deploy/prometheus/tests && "$$bin/promtool" test rules *.yml

.PHONY: test-integration
test-integration: ## integration and end-to-end tests (needs: make stack-up)
	@status=0; for m in $(MODULES); do \
		if grep -rlqE '^func Test(Integration|E2E)' --include='*_test.go' $$m; then \
			echo "== integration $$m"; (cd $$m && go test -p 1 -count=1 -timeout 20m -run '^Test(Integration|E2E)' -v ./...) || status=1; \
		fi; \
	done; exit $$status

.PHONY: test-race
test-race: ## unit tests with the race detector
	@for m in $(MODULES); do (cd $$m && go test -short -race -count=1 ./...); done

FUZZTIME ?= 1m
.PHONY: fuzz
fuzz: ## run every Fuzz* target of every module for FUZZTIME each (make fuzz FUZZTIME=2m); new failures land in testdata/fuzz
	@status=0; for m in $(MODULES); do \
		for f in $$(grep -rlE '^func Fuzz[A-Z0-9_]' --include='*_test.go' $$m); do \
			dir=$$(dirname $$f); \
			for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' $$f); do \
				echo "== fuzz $$name in $${dir#$(CURDIR)/} for $(FUZZTIME)"; \
				(cd $$dir && go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) .) || status=1; \
			done; \
		done; \
	done; exit $$status

.PHONY: stack-up
stack-up: deps ## start Kafka, PostgreSQL, Apicurio Registry, the BigQuery emulator, Jaeger and Prometheus (idempotent)
	@$(STACK) up

.PHONY: stack-down
stack-down: ## stop the local stack (idempotent)
	@$(STACK) down

.PHONY: stack-status
stack-status: ## show the local stack
	@$(STACK) status

.PHONY: demo
demo: stack-up ## run the platform locally with generated traffic (Ctrl-C stops)
	@eval "$$($(STACK) env)"; cd deploy/local && go run ./cmd/demo

.PHONY: bench
bench: stack-up ## end-to-end throughput, p50/p99 latency and CPU: clickstream (Kafka, HTTP), orders (20x burst), catalog (100k-product snapshot, CDC latency); BigQuery: go run ./cmd/bench -phases bigquery in deploy/local
	@eval "$$($(STACK) env)"; cd deploy/local && go run ./cmd/bench

.PHONY: generate
generate: ## regenerate Go types from proto/avro
	@cd pkg && go generate ./...

.PHONY: lint
lint: ## gofmt and go vet every module
	@test -z "$$(gofmt -l $(MODULES))" || { gofmt -l $(MODULES); exit 1; }
	@for m in $(MODULES); do (cd $$m && go vet ./...); done

.PHONY: clean
clean: ## remove build output (keeps the stack's data; see stack.sh reset)
	rm -rf bin .cache/bin

BASE ?= main
RUNS ?= 3
.PHONY: bench-compare
bench-compare: stack-up ## make bench alternately on BASE's services and this tree's, RUNS each (ARGS: bench flags)
	@eval "$$($(STACK) env)"; cd deploy/local && go run ./cmd/bench -compare '$(BASE)' -runs '$(RUNS)' $(ARGS)
