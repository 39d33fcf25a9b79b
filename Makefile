# p2p-chat: the developer's and CI's entry points. `make` (or `make help`) lists the targets.
# `make up` and `make test` set up what they need by themselves: the Python environment
# (.venv, scripts/dev-env.sh) and, for `make up`, a Docker engine with Compose v2
# (scripts/lab-setup.sh).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# The Python everything runs with: PYTHON=... is used as it is; otherwise the active
# virtualenv ($VIRTUAL_ENV), else .venv in the checkout, made from the machine's python3
# (BOOTSTRAP_PYTHON). Those two are kept up to date with pyproject.toml (their stamp file
# .p2p-chat-installed is older: scripts/dev-env.sh runs again), and their bin/ goes first on
# PATH, so that chat-server and chat-client are the checkout's.
VENV ?= .venv
ifeq ($(origin PYTHON),undefined)
ENV_DIR := $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),$(CURDIR)/$(VENV))
PYTHON := $(ENV_DIR)/bin/python
ENV_READY := $(ENV_DIR)/.p2p-chat-installed
export PATH := $(ENV_DIR)/bin:$(PATH)
endif
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

# "true" when this run is CI, empty otherwise: labkit.util.in_ci, the one rule the tests, the
# lab and the benchmarks use too (CI set to 1, true or yes). The machine's python3 runs it
# (labkit.util imports only the standard library), so it answers before .venv exists.
IN_CI := $(shell cd '$(CURDIR)' && python3 -c 'from labkit.util import in_ci; print("true" if in_ci() else "")' \
	2>/dev/null)

# The one check of the lab's Docker engine and Compose v2 (scripts/lab-check.sh; labkit and the
# scripts use it too): true when they are there, else false.
ENGINE_UP := scripts/lab-check.sh engine >/dev/null
COMPOSE_V2 := scripts/lab-check.sh compose >/dev/null

.PHONY: core help install lab lab-ready images up down logs demo trace graph screenshot lint unit-test e2e-test bench-smoke \
	integration-test test bench bench-full bench-series chaos clean clean-images nat-up nat-down nat-demo \
	swarm-up swarm-scale swarm-check swarm-client swarm-down swarm-test swarm-nodes-test swarm-chaos

help: ## list the targets
	@echo "usage: make TARGET   (PYTHON=$(PYTHON))"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-17s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

ifdef ENV_READY
$(ENV_READY): pyproject.toml
	@scripts/dev-env.sh "$(ENV_DIR)"
endif

# The core compiled with mypyc (scripts/core.sh, into build/core), made again when its sources
# change. The unit suite runs with both cores; e2e, bench and the images use the compiled one.
# Where it cannot be built (no C compiler) everything runs the pure-Python core, with a
# warning; under CI=true that is an error.
CORE_LIB := $(CURDIR)/build/core/lib
CORE_STAMP := build/core/.stamp
# The wheel scripts/core.sh builds carries every package of services/ (the images install it), so
# a change to any of them makes it again, not only one to the compiled chat_protocol.
CORE_SOURCES := $(shell find services -name "*.py" -not -path "*/__pycache__/*") setup.py pyproject.toml
# The environment that selects the compiled core, when there is one (expanded when a recipe runs).
CORE_ENV = $(if $(wildcard build/core/lib),CHAT_CORE_DIR=$(CORE_LIB) PYTHONPATH=$(CORE_LIB))

$(CORE_STAMP): $(CORE_SOURCES) $(ENV_READY)
	@if PYTHON="$(PYTHON)" scripts/core.sh; then touch $@; \
	elif [ -n "$(IN_CI)" ]; then \
		echo "make: the compiled core could not be built (an error under CI=true)"; exit 1; \
	else \
		rm -rf build/core; mkdir -p build/core; touch $@; \
		echo "make: going on with the pure-Python core only"; \
	fi

core: $(CORE_STAMP) ## the core compiled with mypyc (build/core; pure Python if it cannot be)

install: $(ENV_READY) ## the project, editable, with its dev, fast and bench extras, into PYTHON
ifndef ENV_READY
	$(PYTHON) -m pip install -e '.[dev,fast,bench]'
endif

lab: ## set up this machine for containers (root): Docker engine, Compose v2, base image
	scripts/lab-setup.sh

# make up's first step: with no Docker engine answering, set the lab up if this machine allows
# it (root, apt-get), else print the one command that will; add Compose v2 if it is missing.
lab-ready:
	@if ! $(ENGINE_UP); then \
		if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "make up: no Docker engine answering; setting up the lab (scripts/lab-setup.sh)"; \
			scripts/lab-setup.sh; \
		elif command -v apt-get >/dev/null 2>&1; then \
			echo "make up: no Docker engine answering, and setting one up needs root. Run:"; \
			echo "    sudo make lab"; \
			echo "then make up again (docker needs root, or membership of the docker group)."; \
			exit 1; \
		else \
			echo "make up: no Docker engine answering, and scripts/lab-setup.sh knows only"; \
			echo "Debian and Ubuntu. Install Docker with Compose v2 and start it"; \
			echo "(https://docs.docker.com/engine/install/), then make up again."; \
			exit 1; \
		fi; \
	elif ! $(COMPOSE_V2); then \
		echo "make up: no Docker Compose v2; installing it (scripts/lab-setup.sh compose)"; \
		scripts/lab-setup.sh compose; \
	fi

images: $(ENV_READY) $(CORE_STAMP) ## build the server and client images (wheels, base image, compose build)
	base="$$(scripts/base-image.sh)"; \
	BASE_IMAGE="$$base" scripts/wheels.sh; \
	BASE_IMAGE="$$base" $(COMPOSE) build server client; \
	docker image prune -f --filter label=org.opencontainers.image.title=p2p-chat >/dev/null

up: lab-ready images ## the lab: Docker set up if needed, images built, the server up and healthy
	$(PYTHON) -m labkit up

down: ## stop and remove every container, network and volume of the project
	$(COMPOSE) --profile '*' down -v --remove-orphans --timeout 5
	@$(COMPOSE) -p $(DEMO_PROJECT) --profile '*' down -v --remove-orphans --timeout 2 \
		>/dev/null 2>&1 || true   # what an interrupted `make demo` may have left

# The NAT lab (compose.nat.yaml, README "Across NATs"): NAT_A, NAT_B, NAT_C and NAT_CGN pick
# each router's kind (none, full-cone, port-restricted, symmetric; port-restricted if unset).
nat-up: lab-ready images ## the NAT lab: routers (NAT_A= NAT_B= NAT_C= NAT_CGN=), STUN, the server
	scripts/router-image.sh >/dev/null
	$(PYTHON) -m labkit.natlab up

nat-demo: lab-ready images ## a message across every pair of NAT kinds: path, ms, RFC 5780 verdicts (build/nat-demo.json, .png)
	$(PYTHON) -m labkit.natdemo --json build/nat-demo.json

nat-down: $(ENV_READY) ## remove every container, network and volume of the NAT lab
	$(PYTHON) -m labkit.natlab down

logs: ## follow the lab's logs (Ctrl-C to stop)
	$(COMPOSE) --profile '*' logs -f --tail=100

demo: images ## a scripted conversation, then bob killed and the server stopped; timelines in traces/
	$(PYTHON) -m labkit demo

# make trace: every datagram captured in the three containers' namespaces (as root: nsenter),
# labelled from the senders' own logs (CHAT_WIRE_LOG); fails if any DATA touched the server.
trace: images ## alice sends bob one message, every datagram captured: traces/trace.{png,svg,txt}
	$(PYTHON) -m labkit.trace

screenshot: $(ENV_READY) ## the README's terminal picture: a real run on loopback, alice's pyte screen -> docs/terminal.{png,txt}
	$(PYTHON) -m labkit.screenshot docs/terminal.png

graph: $(ENV_READY) ## the running labs' topology from the docker SDK: traces/graph-PROJECT.{png,svg,txt}
	$(PYTHON) -m labkit.graph

lint: $(ENV_READY) ## ruff and mypy (both run; fails if either failed)
	@rc=0; \
	echo "$(PYTHON) -m ruff check ."; $(PYTHON) -m ruff check . || rc=1; \
	echo "$(PYTHON) -m mypy"; $(PYTHON) -m mypy || rc=1; \
	exit $$rc

unit-test: $(ENV_READY) $(CORE_STAMP) ## unit tests (no network), pure-Python core and compiled
	@if [ -z "$(CORE_ENV)" ] && [ -n "$(IN_CI)" ]; then \
		echo "make: no compiled core in build/core (an earlier build fell back); under CI=true"; \
		echo "that is an error: rm -rf build/core and make core again to see why"; exit 1; \
	fi
	$(call pytest_dir,tests/unit)
	@if [ -n "$(CORE_ENV)" ]; then \
		echo "==> the unit tests again, with the compiled core ($(CORE_LIB))"; \
		echo "$(CORE_ENV) $(PYTEST) tests/unit $(PYTEST_ARGS)"; \
		$(CORE_ENV) $(PYTEST) tests/unit $(PYTEST_ARGS); \
	fi

.PHONY: fuzz
fuzz: $(ENV_READY) ## unit tests, many random hypothesis examples (PYTEST_ARGS=--hypothesis-seed=N replays)
	$(PYTEST) tests/unit --hypothesis-profile=fuzz $(PYTEST_ARGS)

.PHONY: mutate
mutate: $(ENV_READY) ## remove each '# guard:' protection in turn; its tests must fail (labkit.mutate)
	$(PYTHON) -m labkit.mutate $(if $(GUARDS),--only $(GUARDS)) --json build/mutate.json

e2e-test: $(ENV_READY) $(CORE_STAMP) ## end-to-end tests: real processes on loopback
	$(CORE_ENV) $(PYTEST) tests/e2e $(PYTEST_ARGS)

# The images are built here, once, when there is an engine (and Compose v2 is added if it is
# missing); without an engine the fixtures skip (or fail, under CI=true) with the reason.
integration-test: $(ENV_READY) ## integration tests in containers (needs a Docker engine)
	@if $(ENGINE_UP); then \
		$(COMPOSE_V2) || scripts/lab-setup.sh compose; \
		$(MAKE) images; \
		scripts/router-image.sh >/dev/null; \
	else echo "make: no Docker engine answering (make up sets one up)"; fi
	$(call pytest_dir,tests/integration)

integration-test: PYTEST := CHAT_IMAGES_READY=1 $(PYTEST)

test: $(ENV_READY) ## everything: lint, unit, e2e, bench smoke, integration (runs all; fails if any did)
	@failed=""; \
	for t in lint unit-test e2e-test bench-smoke integration-test; do \
		echo "==> make $$t"; \
		$(MAKE) $$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all suites passed"

bench-smoke: $(ENV_READY) $(CORE_STAMP) ## a miniature of every benchmark (keys present, numbers finite; no timings)
	$(CORE_ENV) $(PYTEST) tests/bench $(PYTEST_ARGS)

bench: $(ENV_READY) $(CORE_STAMP) ## quick benchmarks (the compiled core, if there is one)
	$(CORE_ENV) $(PYTHON) -m bench.run --quick

bench-full: $(ENV_READY) $(CORE_STAMP) ## full benchmarks (the compiled core, if there is one)
	$(CORE_ENV) $(PYTHON) -m bench.run --full

RUNS ?= 3
ONLY ?=
bench-series: $(ENV_READY) $(CORE_STAMP) ## RUNS (3) bench-full runs in a row, judged together (bench/results/series.md); ONLY=loss,rtt: those sections
	@set -e; for i in $$(seq 1 $(RUNS)); do \
		echo "==> bench-full run $$i of $(RUNS)"; \
		$(CORE_ENV) $(PYTHON) -m bench.run --full $(if $(ONLY),--only $(ONLY)) \
			--out bench/results/full-$$i; \
	done; \
	rc=0; $(PYTHON) -m bench.series $$(seq -f 'bench/results/full-%g/summary.json' 1 $(RUNS)) \
		> bench/results/series.md || rc=$$?; \
	cat bench/results/series.md; exit $$rc

# A chaos run (docs/CHAOS.md): SEED picks the faults and the texts, DURATION the seconds of
# traffic, CLIENTS and RATE (messages/s per client) its size; BROKEN=1 breaks one client on
# purpose (the checker must say "lost"). LAB=nat runs it on the NAT lab (compose.nat.yaml;
# NAT_A= ... pick its routers). Output in chaos-runs/; exit status chat-check's.
SEED ?= 1
DURATION ?= 400
CLIENTS ?= 6
RATE ?= 5
BROKEN ?=
LAB ?= main
chaos: images ## client containers under seeded faults, judged by chat-check (SEED= DURATION= CLIENTS= BROKEN=1 LAB=nat)
	@case "$(LAB)" in main|nat) ;; *) echo "make chaos: LAB=$(LAB): want main or nat"; exit 2;; esac
	$(if $(filter nat,$(LAB)),scripts/router-image.sh >/dev/null)
	$(PYTHON) -m labkit.chaos --seed $(SEED) --duration $(DURATION) --clients $(CLIENTS) \
		--rate $(RATE) --lab $(LAB) $(if $(BROKEN),--broken)

# The lab as a Swarm stack (stack.yaml, docs/SWARM.md): the directory server and a `bots` service
# of scripted clients (chat-bots) on the attachable overlay chat_chatnet.
BOTS ?= 20
BOTS_RATE ?= 1
BOTS_MESSAGES ?= 0
NODES ?= 1
swarm-up: lab-ready images ## a single-node swarm if none (NODES=3: engines in containers), the stack `chat` deployed and healthy (BOTS= BOTS_RATE= BOTS_MESSAGES=)
	$(PYTHON) -m labkit.swarm up --bots $(BOTS) --rate $(BOTS_RATE) --messages $(BOTS_MESSAGES) --nodes $(NODES)

swarm-scale: $(ENV_READY) ## run BOTS=N bot clients (20 per task)
	$(PYTHON) -m labkit.swarm scale $(BOTS)

swarm-check: $(ENV_READY) ## stop the bots, collect their histories from every node, chat-check them, start them again
	$(PYTHON) -m labkit.swarm check

swarm-client: ## an interactive client on the overlay network (NAME=alice)
	@test -n "$(NAME)" || { echo "make swarm-client: NAME=... is needed (make swarm-client NAME=alice)"; exit 2; }
	$(PYTHON) -m labkit.swarm client $(NAME)

swarm-down: $(ENV_READY) ## remove the stack, its network and volumes; leave the swarm if swarm-up made it
	$(PYTHON) -m labkit.swarm down

# A chaos run on the stack (docs/SWARM.md, "Faults"): on the swarm that is up, else on one made
# for it (NODES=3: kill_task, drain_node, partition_node, restart_directory; NODES=1: no drain or
# partition) and taken down after. DURATION (default 120 here) and BOTS (80) given on the command
# line count; output in chaos-runs/swarm-seed<N>-<time>/; exit status chat-check's (3: the lab failed).
SWARM_CHAOS_DURATION = $(if $(filter command line,$(origin DURATION)),$(DURATION),120)
SWARM_CHAOS_BOTS = $(if $(filter command line,$(origin BOTS)),$(BOTS),80)
swarm-chaos: lab-ready images ## bots of the stack under seeded swarm faults, judged by chat-check --plot (SEED= DURATION= NODES=3 BOTS= BOTS_RATE=)
	$(PYTHON) -m labkit.chaos.swarmlab --seed $(SEED) --duration $(SWARM_CHAOS_DURATION) \
		--bots $(SWARM_CHAOS_BOTS) --rate $(BOTS_RATE) --nodes $(NODES)

swarm-test: $(ENV_READY) ## the Swarm suite (tests/integration/test_swarm.py: 200 bots, a killed task; several minutes)
	CHAT_SWARM_TESTS=1 $(PYTEST) tests/integration/test_swarm.py $(PYTEST_ARGS)

swarm-nodes-test: $(ENV_READY) ## three node containers, 200 bots spread, a worker partitioned 10 s, a swarm chaos run (test_swarm_nodes.py; ~10 min)
	CHAT_SWARM_NODES_TESTS=1 $(PYTEST) tests/integration/test_swarm_nodes.py $(PYTEST_ARGS)

clean: ## remove build output and caches (not .venv, not the images: see clean-images)
	rm -rf .lab build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -not -path './.git/*' -not -path './$(VENV)/*' \
		-exec rm -rf {} +

clean-images: down nat-down ## remove the project's images, including the offline base
	-docker image rm $(CHAT_IMAGE_PREFIX)-server:latest $(CHAT_IMAGE_PREFIX)-client:latest \
		p2p-chat-base:bookworm p2p-chat-router:bookworm 2>/dev/null
