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
# BenchmarkBrowse sizes (instances, comma-separated): browsing and serving the mount vs a native copy.
BENCH_BROWSE ?= 10000,100000
SOAK_MINUTES ?= 30
# BenchmarkMultiHost: instances of the shared-catalog benchmark (PostgreSQL beside SQLite).
BENCH_MULTIHOST ?= 100000
# BenchmarkFollowerNoOpen: small instances (20–200 KiB) beside its one 1 GiB package.
BENCH_NOOPEN ?= 4000
# BenchmarkChannels: instances with 10 live channels, and a catalog-only one for snapshots.
BENCH_CHANNELS ?= 100000
BENCH_CHANNELS_CATALOG ?= 1000000

# make install: PREFIX=/usr for a distribution package (mount(8) finds
# SBINDIR/mount.pkgdirfs only in /sbin or /usr/sbin); DESTDIR stages it.
PREFIX         ?= /usr/local
BINDIR         ?= $(PREFIX)/bin
SBINDIR        ?= $(PREFIX)/sbin
MANDIR         ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR    ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR     ?= $(PREFIX)/share/zsh/site-functions
DOCDIR         ?= $(PREFIX)/share/doc/pkgdirfs
# What install builds first; INSTALL_DEPS= BIN=FILE installs a binary built elsewhere.
INSTALL_DEPS   ?= build

# Debian packages the tests drive (the real tools users use) and the mount needs.
TEST_PKGS := fuse3 rsync zstd xz-utils bzip2 lz4 gzip tar coreutils util-linux curl nginx attr psmisc e2fsprogs postgresql gnupg
# Debian packages only the benchmarks drive (wrk: the HTTP load of BenchmarkBrowse's nginx rows).
BENCH_PKGS := wrk

.PHONY: all build deps bench-deps fuse-check mount install uninstall test vet unit integration fuzz bench bench-scale bench-browse bench-multihost bench-noopen bench-sign bench-channels crash soak clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/pkgdirfs

# $(call apt-missing,PACKAGES): installs only what is missing, so a prepared
# machine needs no network; apt-get only on Debian/Ubuntu, elsewhere it lists them.
define apt-missing
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "not Debian/Ubuntu: make sure the equivalents of these packages are installed: $(1)"; \
	else missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; fi
endef

deps:
	$(call apt-missing,$(TEST_PKGS))
	@test -c /dev/fuse || { echo "no /dev/fuse: load the fuse module (modprobe fuse)"; exit 1; }

bench-deps:
	$(call apt-missing,$(BENCH_PKGS))

# fuse3 (fusermount3, mount.fuse3) and /dev/fuse. The package manager is
# used only on Debian/Ubuntu, and only when fuse3 is missing; elsewhere this
# says what to install. As root pkgdirfs mounts without fusermount3.
fuse-check:
	@if ! command -v fusermount3 >/dev/null 2>&1 && ! command -v mount.fuse3 >/dev/null 2>&1; then \
	  if [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing fuse3 (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fuse3 || exit 1; \
	  else \
	    echo "fuse3 is not installed (no fusermount3, no mount.fuse3); install it:"; \
	    echo "  Gentoo: emerge --ask sys-fs/fuse:3   Fedora: dnf install fuse3   Arch: pacman -S fuse3   Alpine: apk add fuse3"; \
	    if [ "$$(id -u)" != 0 ]; then exit 1; fi; \
	    echo "continuing: as root, pkgdirfs mounts without it (mount -t fuse.pkgdirfs needs it)"; \
	  fi; \
	fi
	@test -c /dev/fuse || { echo "no /dev/fuse: load the fuse module (modprobe fuse)"; exit 1; }

# Import PKGDIR into the catalog, then mount the catalog over it; first, a
# state already mounted is left alone (over PKGDIR: done; elsewhere: refused
# before anything is imported), and so is a state that serves another
# PKGDIR (its packages and refused files would show in this one). Files that
# are not valid packages are listed by import (exit status 1), kept in the
# mount's quarantine .pkgdirfs/refused/ (--keep-invalid) and do not stop the
# mount; a worse failure (2: usage, e.g. a directory of PKGDIRs; others) does.
# The mount may hide what the import refused (--hide-existing): every valid
# package is in the catalog.
mount: build fuse-check
	@pk=$$(realpath -m $(PKGDIR)); st=$$($(BIN) status --state $(STATE) 2>/dev/null); \
	if [ $$? = 0 ]; then \
	  if printf '%s\n' "$$st" | grep -qxF "mounted at:   $$pk"; then \
	    echo "$(PKGDIR) is mounted from $(STATE) already; nothing to do"; exit 0; fi; \
	  echo "state $(STATE) is in use: mounted at $$(printf '%s\n' "$$st" | sed -n 's/^mounted at: *//p' | head -n 1); nothing imported (umount it first, or choose another STATE=)"; exit 1; \
	fi; \
	sv=$$(printf '%s\n' "$$st" | sed -n 's/^serves: *//p' | head -n 1); \
	if [ -n "$$sv" ] && [ "$$sv" != "$$pk" ]; then \
	  echo "state $(STATE) serves the PKGDIR $$sv, not $(PKGDIR): nothing imported (choose another STATE= for $(PKGDIR))"; exit 1; \
	fi; \
	$(BIN) import --link --keep-invalid --state $(STATE) $(PKGDIR); rc=$$?; \
	if [ $$rc = 1 ]; then echo "(the files listed as invalid above are not packages in the catalog; the mount keeps them under .pkgdirfs/refused/, and verify lists them)"; \
	elif [ $$rc != 0 ]; then exit $$rc; fi; \
	$(BIN) mount --state $(STATE) --allow-other --hide-existing $(PKGDIR) && \
	echo "mounted $(PKGDIR) (state $(STATE)); unmount with: umount $(PKGDIR)"

# The directories install puts files in. Those it creates (with their
# missing parents) are listed in DOCDIR/installed-dirs, so that uninstall
# removes exactly those, once empty, and never a /usr/local/bin that was there.
INSTALL_DIRS = $(BINDIR) $(SBINDIR) $(MANDIR)/man8 $(SYSTEMDUNITDIR) $(BASHCOMPDIR) $(ZSHCOMPDIR) $(DOCDIR)
DIRS_LIST    = $(DESTDIR)$(DOCDIR)/installed-dirs

install: $(INSTALL_DEPS)
	@new=$$(for d in $(INSTALL_DIRS); do \
	  while [ "$$d" != / ] && [ "$$d" != . ] && [ ! -d "$(DESTDIR)$$d" ]; do echo "$$d"; d=$$(dirname "$$d"); done; \
	done); \
	echo "install -d $(addprefix $(DESTDIR),$(INSTALL_DIRS))"; \
	install -d $(addprefix $(DESTDIR),$(INSTALL_DIRS)) && \
	{ cat $(DIRS_LIST) 2>/dev/null; [ -z "$$new" ] || printf '%s\n' $$new; } | LC_ALL=C sort -u > $(DIRS_LIST).new && \
	mv $(DIRS_LIST).new $(DIRS_LIST)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/pkgdirfs
	ln -sf $(BINDIR)/pkgdirfs $(DESTDIR)$(SBINDIR)/mount.pkgdirfs
	install -m 0644 contrib/man/pkgdirfs.8 $(DESTDIR)$(MANDIR)/man8/pkgdirfs.8
	printf '.so man8/pkgdirfs.8\n' > $(DESTDIR)$(MANDIR)/man8/mount.pkgdirfs.8
	sed 's|@BINDIR@|$(BINDIR)|g' contrib/systemd/pkgdirfs@.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/pkgdirfs@.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/pkgdirfs@.service
	install -m 0644 contrib/completion/pkgdirfs.bash $(DESTDIR)$(BASHCOMPDIR)/pkgdirfs
	install -m 0644 contrib/completion/_pkgdirfs $(DESTDIR)$(ZSHCOMPDIR)/_pkgdirfs
	install -m 0644 contrib/nginx/pkgdirfs-binhost.conf contrib/portage/binrepos.conf $(DESTDIR)$(DOCDIR)/
	install -m 0644 contrib/logrotate/pkgdirfs $(DESTDIR)$(DOCDIR)/logrotate.pkgdirfs

# The list is read before DOCDIR goes. Children sort after their parents:
# in reverse order each directory comes before the one holding it.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pkgdirfs $(DESTDIR)$(SBINDIR)/mount.pkgdirfs $(DESTDIR)$(MANDIR)/man8/pkgdirfs.8 \
	  $(DESTDIR)$(MANDIR)/man8/mount.pkgdirfs.8 $(DESTDIR)$(SYSTEMDUNITDIR)/pkgdirfs@.service \
	  $(DESTDIR)$(BASHCOMPDIR)/pkgdirfs $(DESTDIR)$(ZSHCOMPDIR)/_pkgdirfs
	@dirs=$$(LC_ALL=C sort -r $(DIRS_LIST) 2>/dev/null); \
	echo "rm -rf $(DESTDIR)$(DOCDIR)"; rm -rf $(DESTDIR)$(DOCDIR) || exit 1; \
	for d in $$dirs; do \
	  if [ -d "$(DESTDIR)$$d" ]; then rmdir --ignore-fail-on-non-empty "$(DESTDIR)$$d" || exit 1; \
	    [ -d "$(DESTDIR)$$d" ] || echo "rmdir $(DESTDIR)$$d"; fi; \
	done

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./xpak/ ./layout/ ./catalog/... ./tree/... ./view/ ./ingest/ ./blobs/ ./fs/ ./cmd/... ./sign/
	# The catalog's rules once more on PostgreSQL (a throw-away server, started by the tests).
	PKGDIRFS_TEST_CATALOG=postgres $(GO) test -race -count=1 ./catalog/

integration: build
	$(GO) test -count=1 -timeout 25m ./integration/...

# Each fuzz target runs briefly on top of its seed corpus.
fuzz:
	@set -e; for t in FuzzDecodeBlock FuzzReadXpak FuzzInspect FuzzMetadata FuzzXzMaxDict FuzzGpkgStream; do \
	  $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2000x ./xpak/; done
	@set -e; for t in FuzzParseVersion FuzzParsePath FuzzPkgSplit FuzzUseReduce; do \
	  $(GO) test -run='^$$' -fuzz="^$$t\$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=2000x ./layout/; done

test: deps vet build unit integration fuzz

# What signing on arrival costs (BenchmarkSign, ~1 min): commit latency of a 24 KiB and a 200 MiB
# gpkg with and without mount --sign-key, import throughput with and without --sign-key.
bench-sign: deps build
	$(GO) test -count=1 -run='^$$' -bench='^BenchmarkSign$$' -benchtime=1x -timeout 30m ./integration/

# Live channels at scale (BenchmarkChannels): channel load, memory per channel, commit and first
# byte of a channel's new Packages with 10 live channels, snapshot create at BENCH_CHANNELS_CATALOG (BENCH_CHANNELS=20000 BENCH_CHANNELS_CATALOG=0 quick).
bench-channels: deps bench-deps build
	BENCH_CHANNELS=$(BENCH_CHANNELS) BENCH_CHANNELS_CATALOG=$(BENCH_CHANNELS_CATALOG) $(GO) test -count=1 -run='^$$' -bench='^BenchmarkChannels$$' -benchtime=1x -timeout 60m ./integration/

# kill -9 trials of a mixed write workload (see integration/crash_test.go).
crash: deps build
	$(GO) test -count=1 -run TestCrashKill9 -v -timeout 25m ./integration/

# Uploads, removals, imports, verify and nginx downloads on one state for
# SOAK_MINUTES, with kill -9 and restarts (see integration/soak_test.go).
soak: deps build
	SOAK_MINUTES=$(SOAK_MINUTES) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout $$(( $(SOAK_MINUTES) + 20 ))m ./integration/

# Every benchmark; BenchmarkScale and BenchmarkBrowse at their default sizes take most of the time.
bench: deps bench-deps build
	BENCH_SCALE=$(BENCH_SCALE) BENCH_SCALE_CATALOG=$(BENCH_SCALE_CATALOG) BENCH_BROWSE=$(BENCH_BROWSE) $(GO) test -count=1 -run='^$$' -bench=. -benchtime=1x -timeout 120m ./integration/

# The scale section of bench alone (~25 min at the defaults; BENCH_SCALE=3000 BENCH_SCALE_CATALOG=20000 for a quick run).
bench-scale: deps bench-deps build
	BENCH_SCALE=$(BENCH_SCALE) BENCH_SCALE_CATALOG=$(BENCH_SCALE_CATALOG) $(GO) test -count=1 -run='^$$' -bench='^BenchmarkScale$$' -benchtime=1x -timeout 60m ./integration/

# Several hosts: a PostgreSQL catalog beside SQLite (import, mount start, first Packages.gz,
# commit latency, change-to-visible on the other mount); BENCH_MULTIHOST=20000 for a quick run.
bench-multihost: deps bench-deps build
	BENCH_MULTIHOST=$(BENCH_MULTIHOST) $(GO) test -count=1 -run='^$$' -bench='^BenchmarkMultiHost$$' -benchtime=1x -timeout 60m ./integration/

# Read-only followers with and without no-open (PKGDIRFS_NO_OPEN=1) beside a native copy: nginx
# small and 1 GiB GETs, rsync -a, tar -c, open+read+close (~5 min at the default; BENCH_NOOPEN=1000 for a quick run).
bench-noopen: deps bench-deps build
	BENCH_NOOPEN=$(BENCH_NOOPEN) $(GO) test -count=1 -run='^$$' -bench='^BenchmarkFollowerNoOpen$$' -benchtime=1x -timeout 60m ./integration/

# The browse/serve section of bench alone: ls, find, tar, rsync, sha1sum, nginx vs a native copy (BENCH_BROWSE=2000 for a quick run).
bench-browse: deps bench-deps build
	BENCH_BROWSE=$(BENCH_BROWSE) $(GO) test -count=1 -run='^$$' -bench='^BenchmarkBrowse$$' -benchtime=1x -timeout 60m ./integration/

clean:
	rm -rf bin
