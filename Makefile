# axonfs — everything a fresh Debian machine needs, then run or test.
#
#   make run     install, then mount the default local store on ./mnt (foreground: Ctrl-C unmounts)
#   make test    install, then run the whole test suite
#                (also builds .venv-synapse: Synapse for the Telepath tests, kept out of .venv,
#                and installs Ceph for the S3 tests' RGW server: see deps-rgw)
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
# A one-node Ceph cluster (monitor, memstore OSD, RADOS Gateway) that the S3 tests start
# on 127.0.0.1 (tests/helpers/rgw.py): a real S3 server beside moto, over HTTP and HTTPS.
# About 100 packages, 290 MB on disk. Where they cannot be installed (not Debian, no root,
# no mirror) the RGW tests skip and say why; the rest of the suite runs.
RGW_DEBS = ceph-mon ceph-osd radosgw ceph-common openssl

.PHONY: run test bench bench-mount bench-socket bench-s3 bench-telepath deps deps-rgw venv venv-synapse clean

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

run: venv
	mkdir -p $(MNT)
	$(BIN)/axonfs mount --foreground --store $(STORE) $(MNT)

test: venv deps-rgw
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/run_all.py $(BENCH_ARGS)

bench-store: venv
	$(BIN)/python bench/bench_store.py $(BENCH_ARGS)

# The mount against native ceilings (issue 3): root, /dev/fuse, ~15 GiB free in /var/tmp.
bench-mount: venv
	$(BIN)/python bench/bench_mount.py

# The control socket against Synapse over Telepath (issue 4): needs /tmp/synapse-venv
# (see ../shared/bench/README.md) for --run-reference.
bench-socket: venv
	$(BIN)/python bench/bench_socket.py --runs 2 --run-reference

# axonfs over Telepath against a Synapse 2.256 Axon, both through Synapse's client.
bench-telepath: venv
	$(BIN)/python bench/bench_telepath.py --runs 2

# The S3 backend (a moto server on 127.0.0.1) against the local backend (issue 5).
bench-s3: venv
	$(BIN)/python bench/bench_s3.py

clean:
	rm -rf $(VENV) $(SYNAPSE_VENV) build *.egg-info
