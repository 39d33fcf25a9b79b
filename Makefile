# p2p-chat: the developer's and CI's entry points. `make` (or `make help`) lists the targets.
# The container lab needs a Docker engine and Compose v2: `scripts/lab-setup.sh` provides both.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
PYTEST ?= $(PYTHON) -m pytest
PYTEST_ARGS ?=
COMPOSE ?= docker compose
DEMO_PROJECT ?= p2p-chat-demo
export PYTHON DEMO_PROJECT
export CHAT_IMAGE_PREFIX ?= p2p-chat

# Run pytest on one folder (an empty folder fails: pytest exits 5 when it collects nothing).
define pytest_dir
	$(PYTEST) $(1) $(PYTEST_ARGS)
endef

.PHONY: help install lab images up down logs demo lint unit-test e2e-test bench-smoke \
	integration-test \
	test bench bench-full clean clean-images

help: ## list the targets
	@echo "usage: make TARGET   (PYTHON=$(PYTHON))"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

install: ## pip install the project, editable, with the dev, fast and bench extras
	$(PYTHON) -m pip install -e '.[dev,fast,bench]'

lab: ## set up this machine for containers: Docker engine, Compose v2, base image
	scripts/lab-setup.sh

images: ## build the server and client images (wheels, base image, compose build)
	base="$$(scripts/base-image.sh)"; \
	BASE_IMAGE="$$base" scripts/wheels.sh; \
	BASE_IMAGE="$$base" $(COMPOSE) build server client; \
	docker image prune -f --filter label=org.opencontainers.image.title=p2p-chat >/dev/null

# `up --wait` of Compose v2.40 exits 0 even when the server exited: check its health too.
HEALTH_FMT := {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}

up: images ## start the server in the background and wait until it is healthy
	$(COMPOSE) up -d --wait server
	@status="$$(docker inspect -f '$(HEALTH_FMT)' "$$($(COMPOSE) ps -a -q server)")"; \
	if [ "$$status" != healthy ]; then \
		$(COMPOSE) logs --tail=20 server; \
		echo "make up: error: the server is $$status, not healthy (logs above)"; exit 1; \
	fi
	@echo "The server is up. A client:  docker compose run --rm client -u alice"
	@echo "(another terminal: -u bob).  Logs: make logs.  Stop: make down"

down: ## stop and remove every container, network and volume of the project
	$(COMPOSE) --profile '*' down -v --remove-orphans --timeout 5
	@$(COMPOSE) -p $(DEMO_PROJECT) --profile '*' down -v --remove-orphans --timeout 2 \
		>/dev/null 2>&1 || true   # what an interrupted `make demo` may have left

logs: ## follow the lab's logs (Ctrl-C to stop)
	$(COMPOSE) --profile '*' logs -f --tail=100

demo: images ## a scripted conversation between two client containers, printed
	scripts/demo.sh

lint: ## ruff and mypy (both run; fails if either failed)
	@rc=0; \
	echo "$(PYTHON) -m ruff check ."; $(PYTHON) -m ruff check . || rc=1; \
	echo "$(PYTHON) -m mypy"; $(PYTHON) -m mypy || rc=1; \
	exit $$rc

unit-test: ## unit tests (no network)
	$(call pytest_dir,tests/unit)

.PHONY: fuzz
fuzz: ## unit tests, many random hypothesis examples (PYTEST_ARGS=--hypothesis-seed=N replays)
	$(PYTEST) tests/unit --hypothesis-profile=fuzz $(PYTEST_ARGS)

e2e-test: ## end-to-end tests: real processes on loopback
	$(call pytest_dir,tests/e2e)

# The images are built here, once, when there is an engine; without one the fixtures skip
# (or fail, under CI=true) with the reason.
integration-test: ## integration tests in containers (needs Docker; see scripts/lab-setup.sh)
	@if docker info >/dev/null 2>&1; then $(MAKE) images; \
	else echo "make: no Docker engine answering (scripts/lab-setup.sh starts one)"; fi
	$(call pytest_dir,tests/integration)

integration-test: PYTEST := CHAT_IMAGES_READY=1 $(PYTEST)

test: ## everything: lint, unit, e2e, integration (runs all; fails if any failed)
	@failed=""; \
	for t in lint unit-test e2e-test bench-smoke integration-test; do \
		echo "==> make $$t"; \
		$(MAKE) $$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all suites passed"

bench-smoke: ## a miniature of every benchmark (keys present, numbers finite; no timings)
	$(call pytest_dir,tests/bench)

bench: ## quick benchmarks
	$(PYTHON) -m bench.run --quick

bench-full: ## full benchmarks
	$(PYTHON) -m bench.run --full

clean: ## remove build output and caches (not the images: see clean-images)
	rm -rf .lab build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +

clean-images: down ## remove the project's images, including the offline base
	-docker image rm $(CHAT_IMAGE_PREFIX)-server:latest $(CHAT_IMAGE_PREFIX)-client:latest \
		p2p-chat-base:bookworm 2>/dev/null
