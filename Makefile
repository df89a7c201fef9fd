# groupvpn — see README.md.
GO        ?= go
PKGS      ?= ./...
FUZZTIME  ?= 10m
# FUZZ narrows `make fuzz` to the targets matching a regexp (e.g. FUZZ=Pull).
FUZZ      ?= .

# Installation directories, GNU-like. PREFIX=/usr (a distribution package)
# and PREFIX=/usr/local (the default) keep configuration in /etc and state
# in /var, where the binary's defaults look (/etc/groupvpn/src.conf,
# /var/lib/groupvpn/isakmpd.db); any other PREFIX (/opt/groupvpn) keeps
# them under it, PREFIX/etc and PREFIX/var, and the installed src.conf and
# unit name those paths. DESTDIR is prepended to every path (staging).
PREFIX        ?= /usr/local
BINDIR        ?= $(PREFIX)/bin
DATADIR       ?= $(PREFIX)/share
ifneq ($(filter /usr /usr/local,$(PREFIX)),)
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
else
SYSCONFDIR    ?= $(PREFIX)/etc
LOCALSTATEDIR ?= $(PREFIX)/var
endif
STATEDIR      ?= $(LOCALSTATEDIR)/lib/groupvpn
UNITDIR       ?= $(PREFIX)/lib/systemd/system
COMPLETIONDIR ?= $(DATADIR)/bash-completion/completions
SRC_LINKS := srcmstr startsrc stopsrc refresh lssrc

.PHONY: all build install lab test deps lint bench fuzz clean

all: build

build:
	$(GO) build -o bin/groupvpn ./cmd/groupvpn

## install: the binary, and the SRC verbs as links to it (`startsrc -g ike`,
## `lssrc -g ike`, ...: the binary dispatches on the name it was run as);
## SYSCONFDIR/groupvpn/src.conf (kept if present) naming SYSCONFDIR and
## STATEDIR; STATEDIR (0700: key-server keys and state); the systemd unit
## in UNITDIR (Type=notify); the bash completion in COMPLETIONDIR.
install: build
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 bin/groupvpn $(DESTDIR)$(BINDIR)/groupvpn
	for l in $(SRC_LINKS); do ln -sf groupvpn $(DESTDIR)$(BINDIR)/$$l; done
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/groupvpn
	[ -e $(DESTDIR)$(SYSCONFDIR)/groupvpn/src.conf ] || { \
		sed -e 's|/etc/groupvpn/|$(SYSCONFDIR)/groupvpn/|g' \
		    -e 's|-f $(SYSCONFDIR)/groupvpn/isakmpd.conf|& -state $(STATEDIR)/isakmpd.db|' \
		    docs/src.conf.example > $(DESTDIR)$(SYSCONFDIR)/groupvpn/src.conf.tmp && \
		chmod 0644 $(DESTDIR)$(SYSCONFDIR)/groupvpn/src.conf.tmp && \
		mv $(DESTDIR)$(SYSCONFDIR)/groupvpn/src.conf.tmp $(DESTDIR)$(SYSCONFDIR)/groupvpn/src.conf; }
	install -d -m 0700 $(DESTDIR)$(STATEDIR)
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		contrib/systemd/groupvpn-srcmstr.service.in > $(DESTDIR)$(UNITDIR)/groupvpn-srcmstr.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/groupvpn-srcmstr.service
	install -d $(DESTDIR)$(COMPLETIONDIR)
	bin/groupvpn completion bash > $(DESTDIR)$(COMPLETIONDIR)/groupvpn
	chmod 0644 $(DESTDIR)$(COMPLETIONDIR)/groupvpn

## lab: run the in-process lab (no root, no setup).
lab:
	$(GO) run ./cmd/groupvpn lab

## deps: install the Debian packages the tests drive (idempotent).
deps:
	./scripts/install-test-deps.sh

# The dead-code checkers `make lint` runs, pinned, built once from the Go
# module proxy into bin/ (a file per version: a new pin builds anew).
DEADCODE_VERSION    ?= v0.52.0
STATICCHECK_VERSION ?= v0.8.2
DEADCODE    := bin/deadcode-$(DEADCODE_VERSION)
STATICCHECK := bin/staticcheck-$(STATICCHECK_VERSION)

$(DEADCODE):
	GOBIN=$(CURDIR)/bin/.tools $(GO) install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VERSION)
	mv bin/.tools/deadcode $@

$(STATICCHECK):
	GOBIN=$(CURDIR)/bin/.tools $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv bin/.tools/staticcheck $@

## lint: gofmt and go vet must be clean, and there is no dead code: no
## function of internal/ or cmd/ (outside _test.go files) unreachable from main and every test
## (deadcode -test; the exported API of isakmp/ is not judged by what this
## module calls), and no unused unexported identifier anywhere (staticcheck
## U1000). A few seconds once the tools are built.
lint: $(DEADCODE) $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	@# deadcode's findings in _test.go files are left out: a test type that
	@# only asserts an interface (var _ I = T{}) has methods nothing calls;
	@# U1000 still reports what a test declares and never uses.
	@mod=$$($(GO) list -m) && out=$$($(DEADCODE) -test -filter "^$$mod/(internal|cmd)/" $(PKGS)) || exit 1; \
	out=$$(printf '%s\n' "$$out" | grep -v '_test\.go:' || true); \
	if [ -n "$$out" ]; then echo "dead code (unreachable from main and every test; delete it):"; echo "$$out"; exit 1; fi
	$(STATICCHECK) -checks U1000 $(PKGS)

## test: everything CI runs (under the race detector): deps, lint, unit,
## golden, tshark, netns, strongSwan, and a short
## pass of every fuzz target over its seed corpus.
test: deps lint
	$(GO) test -race -count=1 $(PKGS)
	@# The race detector makes sync.Pool drop items, so the per-packet
	@# allocation tests skip under it: run them once without it; and the
	@# 100,000-member COOP sync, too slow under the race detector; the
	@# KS's allocations per registration and per datagram read, and those
	@# of its main mode, served pulls and policy layout, and the served
	@# pulls' table's heap per exchange and a finished pull's, counted without it; the load
	@# generator's heap per member and page faults per registration, a
	@# GM's allocations per Install.
	$(GO) test -count=1 -run 'NoAlloc' ./internal/esp ./internal/dataplane
	$(GO) test -count=1 -run 'TestCOOPMemberSync|TestKSRegistrationAllocations|TestReadDirectSourcesAndAllocations|TestKSPeerFormatsNothing|TestServeTableSAIndex|TestServeTableHeapPerExchange' ./internal/node
	$(GO) test -count=1 -run 'TestResponderMainModeAllocations|TestResponderMainModeHandleInto|TestResponderReusesReleasedState|TestPRFaAllocations|TestInitiatorMainModeAllocations' ./internal/ike
	$(GO) test -count=1 -run 'TestLaidOutAllocations|TestServeAllocations|TestPullAllocations|TestDoneServeHoldsLessThanMessage4' ./internal/gdoi
	$(GO) test -count=1 -run 'TestPeerIDFormattedWhenNeeded|TestLogRegsCompleteIsMnemonicLog|TestDeltaSaveAllocationsPerMember|TestSmallDeltaAllocatesForItsMembers' ./internal/ks ./internal/store
	$(GO) test -count=1 -run 'TestLogKSRegsCompleteAllocations|TestDaemonLogIsSlogText' ./internal/mnemonic ./internal/app
	$(GO) test -count=1 -run 'TestGeneratorRetainedPerMember|TestPrefaultSparesTheStageFaults' ./internal/loadgen
	$(GO) test -count=1 -run 'TestInstallAllocations' ./internal/gm

## bench: Go benchmarks with allocations, and the groupvpn bench table.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	$(GO) run ./cmd/groupvpn bench codec
	$(GO) run ./cmd/groupvpn bench mainmode
	$(GO) run ./cmd/groupvpn bench daemons
	$(GO) run ./cmd/groupvpn bench esp
	@# wireguard-go, the yardstick of the data plane, built from the module
	@# proxy at the version go.mod names (needs root; skips without).
	GOBIN=$(CURDIR)/bin $(GO) install golang.zx2c4.com/wireguard@$$($(GO) list -m -f '{{.Version}}' golang.zx2c4.com/wireguard)
	$(GO) run ./cmd/groupvpn bench dataplane --wireguard-go bin/wireguard
	$(GO) run ./cmd/groupvpn bench register --members 1000
	$(GO) run ./cmd/groupvpn bench register --protocol gikev2 --members 1000
	$(GO) run ./cmd/groupvpn bench rekey --members 1000
	$(GO) run ./cmd/groupvpn bench removal --members 1000
	$(GO) run ./cmd/groupvpn bench disruption --members 50 --speed 5
	$(GO) run ./cmd/groupvpn bench coop
	@# the KS as its own process, members played by groupvpn loadgen (issue 18,
	@# docs/scale.md); 100,000 members (the default) takes many minutes
	$(GO) run ./cmd/groupvpn bench scale --members 10000,50000
	$(GO) run ./cmd/groupvpn bench scale --members 10000 --multicast

## fuzz: run every fuzz target of the repository for FUZZTIME (default 10m)
## each, one `go test -fuzz` per target (Go fuzzes one target of one package
## at a time). Targets are discovered, not listed: every func FuzzXxx in a
## _test.go file. `make test` runs each over its seed corpus.
fuzz:
	@set -e; \
	pkgs=$$(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | xargs -n1 dirname | sort -u); \
	[ -n "$$pkgs" ] || { echo "no fuzz targets found"; exit 1; }; \
	n=0; \
	for p in $$pkgs; do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep -E '^Fuzz' | grep -E '$(FUZZ)'); do \
			n=$$((n+1)); \
			echo "== $$p $$t ($(FUZZTIME))"; \
			$(GO) test $$p -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s; \
		done; \
	done; \
	echo "== $$n fuzz targets passed"

clean:
	rm -rf bin
