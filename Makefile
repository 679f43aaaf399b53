# axonfs — everything a fresh Debian machine needs, then run or test.
#
#   make run     build a runtime-only venv (.venv-run), then mount the default local store
#                on ./mnt (foreground: Ctrl-C unmounts)
#   make test    install with the test extras (.venv), then run the whole test suite
#                (also builds .venv-synapse: Synapse for the Telepath tests, kept out of .venv,
#                and installs Ceph for the S3 tests' RGW server: see deps-rgw)
#   make install        (root) a venv in PREFIX (/opt/axonfs) with the runtime dependencies,
#                       axonfs in /usr/local/bin, /sbin/mount.fuse.axonfs (mount -t fuse.axonfs,
#                       fstab), the systemd units, the man page and bash/zsh completion.
#                       DESTDIR=DIR stages everything under DIR (for packaging).
#   make install-user   the same for one user without root: ~/.local/lib/axonfs, ~/.local/bin,
#                       ~/.config/systemd/user, ~/.local/share/{man,bash-completion,zsh}
#   make bench   run every benchmark (bench/run_all.py) and write the ratios into docs/PERFORMANCE.md
#                (BENCH_ARGS=--quick for a smoke run)

PYTHON ?= python3
VENV   ?= .venv
STORE  ?= $(HOME)/.local/share/axonfs
MNT    ?= $(CURDIR)/mnt
BIN     = $(VENV)/bin
# Synapse is a test dependency only, in a venv of its own: its pins (lmdb, aiohttp, ...)
# must not reach axonfs's. The Telepath tests run its client, tools and cells from here.
SYNAPSE_VENV    ?= .venv-synapse
SYNAPSE_VERSION  = 2.256.0
DEBS    = fuse3 libfuse3-dev pkg-config attr rsync
# `make run` gets a venv of its own with the runtime dependencies only (no test extras).
RUN_VENV ?= .venv-run

# make install: where things go. DESTDIR only prefixes the files written; every path
# written *into* a file (ExecStart=, the scripts' #!, the links) is the final one.
DESTDIR ?=
PREFIX  ?= /opt/axonfs
BINDIR  ?= /usr/local/bin
SBINDIR ?= /sbin
MANDIR  ?= /usr/local/share/man
BASH_COMPLETION_DIR ?= /usr/local/share/bash-completion/completions
ZSH_COMPLETION_DIR  ?= /usr/local/share/zsh/site-functions
SYSTEMD_SYSTEM_DIR  ?= /etc/systemd/system
SYSTEMD_USER_DIR    ?= /etc/systemd/user
# ExecStart= of the user unit: installed system-wide it runs BINDIR's axonfs; a per-user
# install (install-user) keeps the unit's own %h/.local/bin/axonfs.
USER_UNIT_EXEC ?= $(BINDIR)/axonfs

# A one-node Ceph cluster (monitor, memstore OSD, RADOS Gateway) that the S3 tests start
# on 127.0.0.1 (tests/helpers/rgw.py): a real S3 server beside moto, over HTTP and HTTPS.
# About 100 packages, 290 MB on disk. Where they cannot be installed (not Debian, no root,
# no mirror) the RGW tests skip and say why; the rest of the suite runs.
RGW_DEBS = ceph-mon ceph-osd radosgw ceph-common openssl

.PHONY: run test lint bench bench-mount bench-socket bench-s3 bench-telepath deps deps-rgw venv venv-synapse \
        venv-run install install-common install-user clean

deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

deps-rgw:
	@missing=""; for p in $(RGW_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the RGW test server:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	      --no-install-recommends $$missing; } \
	  || echo "WARNING: could not install$$missing; the tests against Ceph RGW will be skipped"; \
	fi

$(BIN)/axonfs: pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

$(SYNAPSE_VENV)/.synapse-$(SYNAPSE_VERSION): | deps
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install -q synapse==$(SYNAPSE_VERSION)
	@touch $@

venv-synapse: $(SYNAPSE_VENV)/.synapse-$(SYNAPSE_VERSION)

venv: $(BIN)/axonfs venv-synapse

$(RUN_VENV)/bin/axonfs: pyproject.toml | deps
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_VENV)/bin/pip install -q -e .
	@touch $@

venv-run: $(RUN_VENV)/bin/axonfs

run: venv-run
	mkdir -p $(MNT)
	$(RUN_VENV)/bin/axonfs mount --foreground --store $(STORE) $(MNT)

# install-common: what a system-wide and a per-user install share (the venv, the command
# on PATH, the user unit, the man page and completion).
# The venv is built where it will run when DESTDIR is empty. Staged under DESTDIR, the
# text files of bin/ (the scripts' #!, activate) and pyvenv.cfg are rewritten to the final
# PREFIX, and nothing is byte-compiled (a .pyc would keep the staging path): the venv
# finds its site-packages relative to bin/python, so nothing else names the staging path.
# No --clear: reinstalling over a running daemon's venv only replaces files, as pip does.
install-common: | deps
	$(PYTHON) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/pip install -q $(if $(DESTDIR),--no-compile) .
	@if [ -n "$(DESTDIR)" ]; then \
	  grep -rlI -F '$(DESTDIR)$(PREFIX)' $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/pyvenv.cfg \
	  | xargs -r sed -i 's|$(DESTDIR)$(PREFIX)|$(PREFIX)|g'; fi
	install -d $(DESTDIR)$(BINDIR)
	ln -sfn $(PREFIX)/bin/axonfs $(DESTDIR)$(BINDIR)/axonfs
	install -d $(DESTDIR)$(SYSTEMD_USER_DIR)
	sed 's|^ExecStart=%h/.local/bin/axonfs |ExecStart=$(USER_UNIT_EXEC) |' \
	  systemd/user/axonfs.service > $(DESTDIR)$(SYSTEMD_USER_DIR)/axonfs.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_USER_DIR)/axonfs.service
	install -d $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASH_COMPLETION_DIR) \
	  $(DESTDIR)$(ZSH_COMPLETION_DIR)
	$(DESTDIR)$(PREFIX)/bin/python -m axonfs.manpage > $(DESTDIR)$(MANDIR)/man1/axonfs.1
	$(DESTDIR)$(PREFIX)/bin/python -m axonfs.completion bash \
	  > $(DESTDIR)$(BASH_COMPLETION_DIR)/axonfs
	$(DESTDIR)$(PREFIX)/bin/python -m axonfs.completion zsh > $(DESTDIR)$(ZSH_COMPLETION_DIR)/_axonfs

install: install-common
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSTEMD_SYSTEM_DIR)
	ln -sfn $(PREFIX)/bin/mount.fuse.axonfs $(DESTDIR)$(SBINDIR)/mount.fuse.axonfs
	sed 's|^ExecStart=/usr/local/bin/axonfs |ExecStart=$(BINDIR)/axonfs |' \
	  systemd/axonfs@.service > $(DESTDIR)$(SYSTEMD_SYSTEM_DIR)/axonfs@.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_SYSTEM_DIR)/axonfs@.service

# No root: FUSE's setuid fusermount3 mounts; the user unit keeps %h/.local/bin/axonfs.
# No mount helper and no system unit: mount(8) runs helpers from /sbin only (a user
# mounts with `axonfs mount`), and system units are root's.
install-user:
	$(MAKE) install-common PREFIX=$(HOME)/.local/lib/axonfs BINDIR=$(HOME)/.local/bin \
	  MANDIR=$(HOME)/.local/share/man \
	  BASH_COMPLETION_DIR=$(HOME)/.local/share/bash-completion/completions \
	  ZSH_COMPLETION_DIR=$(HOME)/.local/share/zsh/site-functions \
	  SYSTEMD_USER_DIR=$(HOME)/.config/systemd/user USER_UNIT_EXEC=%h/.local/bin/axonfs

test: venv deps-rgw
	$(BIN)/python -m pytest -q

# Style and types over the package, the tests and the benchmarks (CI runs it first).
lint: venv
	$(BIN)/ruff check axonfs tests bench
	$(BIN)/ruff format --check axonfs tests bench
	$(BIN)/mypy --strict axonfs tests bench

bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

bench-store: venv
	$(BIN)/python bench/bench_store.py $(BENCH_ARGS)

# The mount against native ceilings: root, /dev/fuse, ~15 GiB free in /var/tmp.
bench-mount: venv
	$(BIN)/python bench/bench_mount.py

# The control socket against Synapse over Telepath (the reference runs from the
# Synapse venv that `make venv` builds).
bench-socket: venv
	$(BIN)/python bench/bench_socket.py --runs 2 --run-reference

# axonfs over Telepath against a Synapse 2.256 Axon, both through Synapse's client.
bench-telepath: venv
	$(BIN)/python bench/bench_telepath.py --runs 2

# The S3 backend (a moto server on 127.0.0.1) against the local backend.
bench-s3: venv
	$(BIN)/python bench/bench_s3.py

clean:
	rm -rf $(VENV) $(RUN_VENV) $(SYNAPSE_VENV) build *.egg-info
