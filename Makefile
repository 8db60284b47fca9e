# mandrill: the two commands a newcomer needs are `make demo` and `make test`.
# Everything here is a thin wrapper over a script you can also run directly.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
CLUSTER := deploy/local/cluster.sh

.DEFAULT_GOAL := help
.PHONY: help venv build-cluster cluster-up cluster-down cluster-purge cluster-env cluster-status \
        build-tools demo test test-fast test-node test-in-cluster deploy-local lint bench image constraints

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test,lint]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## create .venv with mandrill installed (editable) and test tools

# Exit status 3 from node.sh: no real node can run on this machine (it says why
# in one line); everything else still works, on kwok's nodes alone.
NODE := deploy/local/node.sh
NODE_OR_SAY_WHY = $(NODE) $(1) || [ $$? -eq 3 ]

build-cluster: ## build the control plane (etcd, kube-*, kubectl, kwok), the real node (kubelet, kube-proxy; Debian packages), the operator's image, and install PostgreSQL for the store tests; cached
	deploy/local/build.sh
	@$(call NODE_OR_SAY_WHY,prepare)
	@deploy/local/image.sh build || [ $$? -eq 3 ]
	@deploy/local/postgres.sh prepare || [ $$? -eq 3 ]

build-tools: ## build helm and promtool from pinned Go modules (tests/helm, tests/monitoring); cached
	deploy/local/build.sh tools

cluster-up: ## start the local control plane and its real node (idempotent); MANDRILL_CLUSTER_PORT / _DIR to move it
	$(CLUSTER) up
	@$(call NODE_OR_SAY_WHY,up)

cluster-down: ## stop what cluster-up started, and undo what the real node set up
	@$(call NODE_OR_SAY_WHY,down)
	$(CLUSTER) down

cluster-purge: ## stop the cluster and delete its state folder
	@$(call NODE_OR_SAY_WHY,down)
	$(CLUSTER) down --purge

cluster-env: ## print export lines: eval "$$(make -s cluster-env)"
	@$(CLUSTER) env

cluster-status: ## show which control-plane processes run
	@$(CLUSTER) status

# The operator's image from deploy/Dockerfile with buildah (no Docker), on a
# Debian/Python 3.11 base made with debootstrap; needs root. Cached by content
# (an unchanged tree only re-imports, if the node lacks it).
# MANDRILL_CLUSTER_DIR names the cluster whose node gets it.
image: ## build the operator's image (deploy/Dockerfile, buildah) and import it into the real node if one runs; cached by content
	deploy/local/image.sh up

constraints: ## regenerate deploy/constraints.txt, the versions the image installs (a clean `pip install .` in the image's Python, frozen)
	deploy/local/image.sh constraints

demo: $(STAMP) build-cluster ## set up and run the main job against the local cluster
	deploy/local/demo.sh

# The control plane is built here, in the open, before pytest starts: a cold
# build takes minutes and must never run inside a test's timeout.
# Then two halves at once, on clusters of their own (deploy/local/test.sh):
# pytest with operators as child processes, and the operator installed as a
# pod on the real node from the image built here, with the e2e suite against
# it and the real node's tests (deploy/local/in-cluster.sh; it says why and
# passes where no real node can run). The real node needs root; it changes
# iptables and kernel settings while it runs, all undone by node.sh down.
# PYTEST_ARGS runs only pytest, with them.
test: $(STAMP) build-cluster build-tools ## set up and run the whole test suite: operators as processes, and the operator installed as a pod (starts its own clusters and real node)
	deploy/local/test.sh $(PYTEST_ARGS)

test-in-cluster: $(STAMP) build-cluster build-tools ## only the in-cluster half of `make test`: the operator as a pod on the real node, the e2e suite and tests/node
	deploy/local/in-cluster.sh $(PYTEST_ARGS)

deploy-local: $(STAMP) build-cluster ## install the operator into the dev cluster (make cluster-up) as a pod on the real node: kubectl apply -k deploy/local/install
	$(CLUSTER) up
	$(NODE) up
	deploy/local/image.sh up
	eval "$$($(CLUSTER) env)" && MANDRILL_IMAGE_DIGEST=$$(sed -n 's/^DIGEST=//p' .cache/image/image.env) \
	  deploy/rollout.sh deploy/local/install

test-node: $(STAMP) build-cluster ## only the real-node tests (deploy/local/node.sh; needs root)
	$(VENV)/bin/python -m pytest -m real_node tests/node $(PYTEST_ARGS)

test-fast: $(STAMP) build-tools ## tests that need no cluster
	$(VENV)/bin/python -m pytest -m "not cluster" $(PYTEST_ARGS)

bench: $(STAMP) ## benchmarks (print tables): restart latency vs bare API, crawl vs baselines, load
	$(VENV)/bin/python -m pip install --quiet -e '.[test,lint,bench]'
	$(VENV)/bin/python -m tests.bench.restart_latency --n 100 --n 1000 --rounds 3
	$(VENV)/bin/python -m tests.bench.crawl_compare
	$(VENV)/bin/python -m tests.bench.extract
	$(VENV)/bin/python -m tests.bench.load
	$(VENV)/bin/python -m tests.bench.store_writes --rounds 3

lint: $(STAMP) ## ruff, mypy --strict and the import-layering contracts (pyproject.toml)
	$(VENV)/bin/ruff check operator tests
	$(VENV)/bin/ruff format --check operator tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
