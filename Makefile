# pkgdirfs — see README.md. `make test` is what CI runs (via .ci/run).
GO      ?= go
BIN     := bin/pkgdirfs
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
STATE   ?= /var/lib/pkgdirfs
PKGDIR  ?= /var/cache/binpkgs
# A count, not a duration: a duration races the fuzz coordinator's own deadline
# in Go < 1.27 (golang/go#75804: a bare "context deadline exceeded" failure).
FUZZTIME ?= 150000x
# BenchmarkScale sizes: instances with package files, and catalog-only (0 skips it).
BENCH_SCALE ?= 100000
BENCH_SCALE_CATALOG ?= 1000000
SOAK_MINUTES ?= 30

# Debian packages the tests drive (the real tools users use) and the mount needs.
TEST_PKGS := fuse3 rsync zstd xz-utils bzip2 lz4 gzip tar coreutils util-linux curl nginx attr psmisc e2fsprogs

.PHONY: all build deps mount test vet unit integration fuzz bench crash soak clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/pkgdirfs

# Installs only what is missing, so a prepared machine needs no network.
deps:
	@missing=""; for p in $(TEST_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@test -c /dev/fuse || { echo "no /dev/fuse: load the fuse module (modprobe fuse)"; exit 1; }

# Import PKGDIR into the catalog, then mount the catalog over it.
mount: build
	@dpkg-query -W -f='$${Status}' fuse3 2>/dev/null | grep -q "ok installed" || { apt-get update -qq && apt-get install -y -qq fuse3; }
	$(BIN) import --link --state $(STATE) $(PKGDIR)
	$(BIN) mount --state $(STATE) --allow-other $(PKGDIR)
	@echo "mounted $(PKGDIR) (state $(STATE)); unmount with: umount $(PKGDIR)"

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./xpak/ ./layout/ ./catalog/ ./tree/... ./fs/ ./cmd/...

integration: build
	$(GO) test -count=1 -timeout 25m ./integration/

# Each fuzz target runs briefly on top of its seed corpus.
fuzz:
	@set -e; for t in FuzzDecodeBlock FuzzReadXpak FuzzInspect FuzzMetadata FuzzXzMaxDict; do \
	  $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2000x ./xpak/; done
	@set -e; for t in FuzzParseVersion FuzzParsePath FuzzPkgSplit FuzzUseReduce; do \
	  $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2000x ./layout/; done

test: deps vet build unit integration fuzz

# kill -9 trials of a mixed write workload (see integration/crash_test.go).
crash: deps build
	$(GO) test -count=1 -run TestCrashKill9 -v -timeout 25m ./integration/

# Uploads, removals, imports, verify and nginx downloads on one state for
# SOAK_MINUTES, with kill -9 and restarts (see integration/soak_test.go).
soak: deps build
	SOAK_MINUTES=$(SOAK_MINUTES) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout $$(( $(SOAK_MINUTES) + 20 ))m ./integration/

bench: deps build
	BENCH_SCALE=$(BENCH_SCALE) BENCH_SCALE_CATALOG=$(BENCH_SCALE_CATALOG) $(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x -timeout 60m ./integration/

# The scale section of bench alone (~25 min at the defaults; BENCH_SCALE=3000 BENCH_SCALE_CATALOG=20000 for a quick run).
bench-scale: deps build
	BENCH_SCALE=$(BENCH_SCALE) BENCH_SCALE_CATALOG=$(BENCH_SCALE_CATALOG) $(GO) test -count=1 -run='^$$' -bench='^BenchmarkScale$$' -benchtime=1x -timeout 60m ./integration/

clean:
	rm -rf bin
