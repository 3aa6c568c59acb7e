# standbyd: build, test and run the demo. `make help` lists the targets.

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
# An execution count, not a duration: a duration-bounded run of Go's fuzz
# coordinator (go1.26) can end in a spurious "context deadline exceeded"
# failure with no failing input when its deadline races a busy worker.
FUZZTIME  ?= 200000x
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
export PATH := /usr/local/go/bin:$(GOBIN):$(PATH)

BIN := bin/standbyd
# `standbyd call` without the daemon's packages: a fast start for shell loops.
CALL_BIN := bin/standbyd-call
# The end-to-end tests run this build: a data race in the daemon fails them.
RACE_BIN := bin/standbyd-race

BENCH_FLAGS ?=

MAJORS ?= 17 18 19
DEB_MAJORS ?= 15 17 18 19

SOAK ?= 10m
SOAK_REPORT ?= bench/results/soak-$(shell date -u +%Y-%m-%d).md

.PHONY: all build build-call build-race extension deps test test-majors test-unit fuzz lint check-units demo soak bench bench-tools deb test-deb clean help

all: build extension ## build the daemon and the extension

build: build-call ## build bin/standbyd and bin/standbyd-call
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/standbyd

# standbyd-call is linked statically: a process that makes one call starts
# about 1.5 ms sooner without the dynamic loader and cgo's start-up.
build-call: ## build bin/standbyd-call (static)
	CGO_ENABLED=0 $(GO) build -ldflags "-X main.version=$(VERSION)" -o $(CALL_BIN) ./cmd/standbyd-call

extension: ## build and install the extension (root)
	scripts/cluster.sh extension

deps: ## install Debian packages for the servers and the extension (root)
	scripts/cluster.sh deps

build-race: ## build bin/standbyd-race (the race detector on; the end-to-end tests use it)
	$(GO) build -race -ldflags "-X main.version=$(VERSION)" -o $(RACE_BIN) ./cmd/standbyd

test: deps extension build build-race ## everything: the extension's pg_regress suite, unit, fuzz seeds and end-to-end tests (daemon under -race) against real servers
	scripts/regress.sh
	STANDBYD_BIN=$(CURDIR)/$(RACE_BIN) $(GO) test -race -count=1 -timeout 30m ./...

test-majors: build ## the extension (build, pg_regress) and the extension's end-to-end tests on PostgreSQL 17, 18, 19rc in Debian chroots (root; MAJORS="17 18" selects)
	STANDBYD_BIN=$(CURDIR)/$(BIN) scripts/majors.sh $(MAJORS)

test-unit: ## unit tests only (no servers; the end-to-end tests skip by request, even under CI)
	CI= $(GO) test -race -short -count=1 ./...

fuzz: ## run every Go fuzz target for FUZZTIME executions each (CI: FUZZTIME=20000x); the corpus is kept in testdata/fuzz
	@set -e; n=0; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
			n=$$((n+1)); \
		done; \
	done; \
	if [ $$n -eq 0 ]; then echo "no fuzz targets found"; exit 1; fi; echo "$$n fuzz targets run"

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v staticcheck >/dev/null || GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	staticcheck ./...
	@if command -v shellcheck >/dev/null; then shellcheck scripts/*.sh .ci/run; else echo "shellcheck not installed: shell scripts not checked"; [ -z "$$CI" ]; fi
	@$(MAKE) --no-print-directory check-units
	@if command -v promtool >/dev/null; then \
		promtool check rules deploy/prometheus/alerts.yml && \
		(cd deploy/prometheus && promtool test rules alerts_test.yml); \
	else echo "promtool not installed (Debian package prometheus): alert rules not checked"; [ -z "$$CI" ]; fi

check-units: build ## systemd-analyze verify the units and the socket (ExecStart pointed at bin/standbyd); under CI a missing tool fails
	@if ! command -v systemd-analyze >/dev/null; then echo "systemd-analyze not installed: units not checked"; [ -z "$$CI" ] || exit 1; exit 0; fi; \
	d=$$(mktemp -d); trap 'rm -rf $$d' EXIT; \
	for u in deploy/systemd/standbyd.service deploy/systemd/standbyd@.service deploy/systemd/standbyd.socket; do \
		n=$$(basename $$u | sed 's/@\.service/@15-main.service/'); \
		sed "s|/usr/local/bin/standbyd|$(CURDIR)/$(BIN)|" $$u > $$d/$$n; \
	done; \
	out=$$(systemd-analyze verify $$d/*.service $$d/*.socket 2>&1); rc=$$?; \
	if [ $$rc -ne 0 ] || [ -n "$$out" ]; then echo "$$out"; echo "units: systemd-analyze complained"; exit 1; fi; \
	echo "units verified: $$(ls $$d | tr '\n' ' ')"

deb: ## Debian packages into dist/: standbyd and postgresql-MAJOR-standbyd for 15 (host), 17, 18, 19 (chroots), then lintian (root; DEB_MAJORS="15 17" selects)
	scripts/deb.sh $(DEB_MAJORS)

test-deb: ## install, use, upgrade and purge the packages of dist/ in fresh Debian 12 and 13 chroots (root; builds what dist/ lacks, and a bumped version)
	scripts/debtest.sh

demo: ## throwaway primary + standby + standbyd, requests flowing
	scripts/demo.sh

soak: deps extension build ## random faults under load for SOAK (10m); report in bench/results/
	@mkdir -p bench/results
	STANDBYD_BIN=$(CURDIR)/$(BIN) STANDBYD_SOAK=$(SOAK) STANDBYD_SOAK_REPORT=$(CURDIR)/$(SOAK_REPORT) \
		$(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./test/e2e
	@echo "soak report: $(SOAK_REPORT)"

bench-tools: build ## build bin/standbyd-bench, bin/chanbench (the libpq contender) and bin/ctcp (the C loopback limit)
	$(GO) build -o bin/standbyd-bench ./bench
	$(MAKE) -C bench/libpq PG_CONFIG=$(PG_CONFIG) OUT=$(CURDIR)/bin/chanbench
	$(MAKE) -C bench/ctcp OUT=$(CURDIR)/bin/ctcp

bench: deps extension bench-tools ## side-by-side latency, throughput and resources (BENCH_FLAGS=-quick for a short run); report in bench/results/
	bin/standbyd-bench -standbyd $(BIN) -call $(CALL_BIN) -chanbench bin/chanbench -ctcp bin/ctcp $(BENCH_FLAGS)

clean: ## remove build outputs
	rm -rf bin build dist
	$(MAKE) -C extension PG_CONFIG=$(PG_CONFIG) clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'
