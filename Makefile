# ctrl-exec-go. `make demo` shows it working; `make test` is what CI runs.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo.Version=$(VERSION)
BIN      := bin/ctrl-exec
NAMES    := ctrl-exec ctrl-exec-dispatcher ced ctrl-exec-agent cea ctrl-exec-api update-ctrl-exec-serial

.PHONY: all build test vet fuzz bench demo clean

all: build

# One static, stripped multicall binary plus its role symlinks in bin/.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .
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

clean:
	rm -rf bin
