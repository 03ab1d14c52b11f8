# ctrl-exec-go. `make demo` shows it working; `make test` is what CI runs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# urfave_cli_no_docs drops urfave/cli's man/markdown generators (and blackfriday):
# a smaller binary and 2 ms less start-up for every command.
TAGS     := urfave_cli_no_docs
LDFLAGS  := -s -w -X github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo.Version=$(VERSION)
BIN      := bin/ctrl-exec
NAMES    := ctrl-exec ctrl-exec-dispatcher ced ctrl-exec-agent cea ctrl-exec-api update-ctrl-exec-serial

.PHONY: all build test vet fuzz bench demo clean install install-man man-check dist

all: build

# One static, stripped multicall binary plus its role symlinks in bin/.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN) .
	@for n in $(NAMES); do [ "$$n" = ctrl-exec ] || ln -sf ctrl-exec bin/$$n; done
	@ls -l $(BIN) | awk '{print "built " $$NF ", " $$5 " bytes"}'

vet:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

# The whole suite under the race detector (unit, fuzz seed corpora, end-to-end).
test: vet
	$(GO) test -race -count=1 -timeout 30m ./...

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

PREFIX  ?= /usr/local
MANDIR  ?= $(PREFIX)/share/man
DIST    := ctrl-exec-$(VERSION)-linux-$(shell $(GO) env GOARCH)
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

# dist/ctrl-exec-<ver>-linux-<arch>.tar.gz (+ .sha256): bin/ man/ packaging/ LICENCE README.md
dist: build
	rm -rf dist/$(DIST) && mkdir -p dist/$(DIST)
	cp -a bin man packaging LICENCE README.md dist/$(DIST)/
	tar -C dist --owner=0 --group=0 --numeric-owner -czf dist/$(DIST).tar.gz $(DIST)
	cd dist && sha256sum $(DIST).tar.gz > $(DIST).tar.gz.sha256
	rm -rf dist/$(DIST)
	@echo "built dist/$(DIST).tar.gz"

clean:
	rm -rf bin dist
