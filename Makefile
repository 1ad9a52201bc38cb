# xenblk — see README.md. `make check` is the test command CI runs.
GO ?= go
FUZZTIME ?= 5s
SOAK ?= 5m
# Recipes run in bash with pipefail: a pipeline fails when any part does.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# What `xenblk --version` names: the commit (go build records it too, but
# not in a git worktree).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)

.PHONY: run check deps vet test interop fuzz bench build xenlab xenlab-bench soak

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/xenblk ./cmd/xenblk

# The main job: a simulated Xen host, our backend, our frontend, an NBD export.
# Built, then run, so that Ctrl-C's outcome is the program's exit status
# (`go run` reports its own). ARGS: more flags for sim.
run: build
	./bin/xenblk sim $(ARGS)

deps:
	./scripts/install-deps.sh

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt -w these files:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags cinterop ./internal/cinterop/...

# Every package under the race detector, reported as plain go test does,
# then every skipped test with its reason (scripts/testreport); the cgo
# interop tests against Xen's C headers (never skipped: deps installs
# libxen-dev and gcc-multilib).
test:
	$(GO) test -race -timeout 20m -json ./... | $(GO) run ./scripts/testreport

interop:
	$(GO) test -race -tags cinterop -count=1 ./internal/cinterop/...

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

check: deps vet test interop
	$(MAKE) fuzz FUZZTIME=$(FUZZTIME)

# Nothing lost under kill -9: for $(SOAK), verified writes and flushes
# through xenblk front's NBD export while xenblk host, serve and front are
# SIGKILLed and restarted at seeded random moments (the seed is printed;
# rerun one with: go run ./cmd/xenblk-soak --seed N). The last line counts
# kills, writes, flushes and bytes checked. CI runs `make soak SOAK=2m`.
soak: build
	$(GO) run ./cmd/xenblk-soak --duration $(SOAK) --xenblk bin/xenblk

# Linux's own xen-blkfront and xen-blkback against ours on a real Xen 4.17
# (booted under QEMU; the image is built once and cached in /var/tmp/xenlab).
xenlab:
	./xenlab/run.sh

# fio through Linux's xen-blkfront in one lab boot, on one image served by
# xen-blkback, QEMU's qdisk and xenblk serve in turn (xenlab/README.md,
# BENCHMARKS.md "Real Xen, side by side"); about 20 minutes.
xenlab-bench:
	XENLAB_SCENARIOS=bench ./xenlab/run.sh

# The whole comparison (xenblk bench beside fio, memcpy and the C ring.h
# pair); rewrites BENCHMARKS.md's measured section and bench/results/.
bench:
	./scripts/install-deps.sh
	GO=$(GO) ./scripts/bench.sh
	$(GO) test -run '^$$' -bench . -benchmem ./bench/ ./ring/ ./internal/stacktest/
	$(GO) test -run '^$$' -bench BatchFile -benchmem ./storage/
	$(GO) test -run '^$$' -bench EventPingPong ./xen/sim/
