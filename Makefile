# ctrl-exec-go. `make demo` shows it working; `make test` is what CI runs.
GO       ?= go
# 0.9.0 on a commit tagged v0.9.0, else 0.9.0-dev+<commit> (packaging/version.sh).
VERSION  ?= $(shell sh packaging/version.sh)
COMMIT   ?= $(shell sh packaging/version.sh commit)
# urfave_cli_no_docs drops urfave/cli's man/markdown generators (and blackfriday):
# a smaller binary and 2 ms less start-up for every command.
TAGS     := urfave_cli_no_docs
LDFLAGS  := -s -w -X github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo.Version=$(VERSION) \
            -X github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo.Commit=$(COMMIT)
BIN      := bin/ctrl-exec
NAMES    := ctrl-exec ctrl-exec-dispatcher ced ctrl-exec-agent cea ctrl-exec-api update-ctrl-exec-serial

.PHONY: all build build-noetcd test vet fuzz bench demo demo-ha clean install install-man man-check dist packages test-packaging test-etcd

all: build

# One static, stripped multicall binary plus its role symlinks in bin/.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) .
	@for n in $(NAMES); do [ "$$n" = ctrl-exec ] || ln -sf ctrl-exec bin/$$n; done
	@ls -l $(BIN) | awk '{print "built " $$NF ", " $$5 " bytes"}'

# The same without the etcd state backend (the noetcd tag), for agents and
# appliances: about 6 MB smaller, 5 MiB less idle RSS and 2-4 ms less
# start-up per command; state_backend = etcd is refused with a clear error.
build-noetcd:
	$(MAKE) build TAGS=$(TAGS),noetcd

# staticcheck at a pinned release (2026.2.2), built from the module proxy;
# staticcheck.conf holds its settings and the deliberate exceptions.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# The whole suite under the race detector (unit, fuzz seed corpora, end-to-end).
# atexit_sleep_ms=0: a race-built binary otherwise sleeps 1 s when it exits.
# The end-to-end tests build the binary with the ctrlexec_testknobs tag (test
# knobs, pkg/testknobs); pkg/testknobs is tested in both builds.
test: vet
	GORACE="$(GORACE) atexit_sleep_ms=0" $(GO) test -race -count=1 -timeout 30m ./...
	GORACE="$(GORACE) atexit_sleep_ms=0" $(GO) test -race -count=1 -tags ctrlexec_testknobs ./pkg/testknobs/

# The etcd state backend against real etcd members (Debian's etcd-server,
# installed when missing), heavy tests included: lease expiry, member and
# whole-cluster failure, API nodes killed.
test-etcd:
	@command -v etcd >/dev/null || { apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }
	CTRL_EXEC_REQUIRE_ETCD=1 $(GO) test -race -count=1 -timeout 20m ./pkg/etcdstate/...
	CTRL_EXEC_REQUIRE_ETCD=1 $(GO) test -race -count=1 -timeout 20m ./test/ -run Etcd

# A short coverage-guided run of every fuzz target.
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# Benchmarks: package micro-benchmarks and the loopback fleet benchmark.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

demo: build
	bash test/demo.sh

# Two API nodes and one etcd on loopback: pair through A, run through B,
# read the status from A (needs etcd on PATH; make test-etcd installs it).
demo-ha: build
	bash test/demo-ha.sh

PREFIX  ?= /usr/local
MANDIR  ?= $(PREFIX)/share/man
ROLES   ?= --dispatcher --api --agent

# e.g. sudo make install ROLES=--agent ; make install DESTDIR=/tmp/stage
install: build
	sh packaging/install.sh $(ROLES) $(if $(DESTDIR),--prefix $(DESTDIR))

install-man:
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	ln -sf ctrl-exec.1 $(DESTDIR)$(MANDIR)/man1/ctrl-exec-dispatcher.1
	ln -sf ctrl-exec.1 $(DESTDIR)$(MANDIR)/man1/ced.1
	ln -sf ctrl-exec-agent.8 $(DESTDIR)$(MANDIR)/man8/cea.8

man-check:
	@for f in man/*.[158]; do \
	  out=$$(MANWIDTH=80 man --warnings -l $$f 2>&1 >/dev/null); \
	  if [ -n "$$out" ]; then echo "$$f: $$out"; exit 1; fi; \
	done; echo "man pages render cleanly"

# Static release builds for linux amd64, arm64, armv7, mipsle and mips (softfloat):
# dist/ctrl-exec-<ver>-linux-<arch>.tar.gz and ctrl-exec-noetcd-<ver>-linux-<arch>.tar.gz
# (+ .sha256, SHA256SUMS, SIZES), each with install.sh at its top beside bin/ man/
# packaging/. DIST_ARCHS=amd64 for one.
DIST_ARCHS ?=
dist:
	GO=$(GO) sh packaging/dist.sh $(VERSION) $(COMMIT) $(DIST_ARCHS)

# .deb, .apk and .ipk for every dist arch in dist/packages/ (nFPM, pinned, via go).
packages:
	GO=$(GO) sh packaging/nfpm/build.sh $(VERSION) $(DIST_ARCHS)

# The release artefacts proven for real, after make test in CI: images built
# and run under Docker, the .deb in a debootstrap root, install.sh in fresh
# roots, cross-builds under qemu-user. As root; installs its own tools
# (test/packaging/setup.sh) and starts dockerd when none runs.
PKG_CACHE ?= /var/cache/ctrl-exec-test
test-packaging:
	sh test/packaging/setup.sh
	$(MAKE) dist packages
	CTRL_EXEC_PACKAGING=1 CTRL_EXEC_PKG_CACHE=$(PKG_CACHE) $(GO) test -count=1 -timeout 40m -v ./test/packaging/

clean:
	rm -rf bin dist
