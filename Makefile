# groupvpn — see README.md.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 10m
FUZZ_PKG  := ./isakmp
FUZZ_TARGETS := FuzzMessage FuzzPayload FuzzSA FuzzGroupSA FuzzKD FuzzAttributes FuzzLKHArray

.PHONY: all build lab test deps lint bench fuzz clean

all: build

build:
	$(GO) build -o bin/groupvpn ./cmd/groupvpn

## lab: run the in-process lab (no root, no setup).
lab:
	$(GO) run ./cmd/groupvpn lab

## deps: install the Debian packages the tests drive (idempotent).
deps:
	./scripts/install-test-deps.sh

## lint: gofmt and go vet must be clean.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## test: everything CI runs (under the race detector): deps, lint, unit,
## golden, tshark, netns, strongSwan, and a short
## pass of every fuzz target over its seed corpus.
test: deps lint
	$(GO) test -race -count=1 $(PKGS)

## bench: Go benchmarks with allocations, and the groupvpn bench table.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	$(GO) run ./cmd/groupvpn bench codec
	$(GO) run ./cmd/groupvpn bench mainmode
	$(GO) run ./cmd/groupvpn bench register --members 1000
	$(GO) run ./cmd/groupvpn bench rekey --members 1000
	$(GO) run ./cmd/groupvpn bench removal --members 1000

## fuzz: run every fuzz target for FUZZTIME (default 10m) each.
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "== $$t ($(FUZZTIME))"; \
		$(GO) test $(FUZZ_PKG) -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

clean:
	rm -rf bin
