# songmetrix.backup: the two commands of the README, and the pieces of `make test`.
#
#   make backup    demo backup of inventories/demo (SQLite + files) into ./var/backups
#   make test      install test dependencies, then run every suite (unit, integration, lint, sanity, latest, molecule)
#
# Works on a fresh Debian 12 as root with python3 (>= 3.11) and git; apt packages are
# installed only when missing. Set PYTHON=python3.13 (say) to build .venv with another Python.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
export PYTHON VENV

# Ansible needs a UTF-8 locale; a bare root shell on Debian may have none set.
ifeq ($(strip $(LC_ALL)$(LANG)),)
export LANG := C.UTF-8
endif

.PHONY: help venv venv-dev deps backup test unit integration lint sanity latest molecule bench bench-storage bench-prune bench-restore bench-encryption bench-fleet clean

help:
	@echo "make backup       run the demo backup (playbooks/backup.yml, inventories/demo) into ./var/backups"
	@echo "make test         install test dependencies and run all suites: unit integration lint sanity latest molecule"
	@echo "make unit | integration | lint | sanity | latest | molecule    one suite (latest: ansible-core 2.21"
	@echo "                  on Python 3.13; molecule: three Debian 12 chroot test hosts over SSH, root only)"
	@echo "make bench-fleet  backup.yml on 20 inventory hosts, forks 20 vs 1 host (not part of make test)"
	@echo "make bench        dump, restore and prune benchmarks (not part of make test)"
	@echo "make bench-storage  S3 streaming vs two-step upload, backup_info at 20,000 backups"
	@echo "make bench-prune  retention planning of 100,000 backups, prune of 10,000 backups on S3 (moto)"
	@echo "make bench-restore  restore module vs zstd -dc | pg_restore on the ~700 MB database"
	@echo "make bench-encryption  dump with zstd + age vs zstd alone (and vs pg_dump | zstd | age)"
	@echo "make venv         .venv with requirements.txt;  make deps: apt packages + requirements-dev.txt"
	@echo "make clean        remove .venv and caches (keeps ./var/backups)"

venv:
	@scripts/venv.sh runtime

venv-dev:
	@scripts/venv.sh dev

# apt packages for the real-server tests (when missing) + .venv with requirements-dev.txt
deps:
	@scripts/install-test-deps.sh

backup: venv
	@command -v zstd >/dev/null 2>&1 || scripts/apt-ensure.sh zstd
	$(VENV)/bin/ansible-playbook playbooks/backup.yml

test: deps
	@scripts/test.sh unit integration lint sanity latest molecule

unit integration lint sanity latest molecule: deps
	@scripts/test.sh $@

# The dump benchmark, the restore one (about 3 minutes), the encryption one, then the prune one;
# bench-storage stays separate.
bench: deps
	$(VENV)/bin/python tests/bench/run.py
	$(VENV)/bin/python tests/bench/restore.py
	$(VENV)/bin/python tests/bench/encryption.py
	$(VENV)/bin/python tests/bench/prune.py

bench-storage: deps
	$(VENV)/bin/python tests/bench/storage.py

bench-prune: deps
	$(VENV)/bin/python tests/bench/prune.py

bench-restore: deps
	$(VENV)/bin/python tests/bench/restore.py

bench-encryption: deps
	$(VENV)/bin/python tests/bench/encryption.py

# install.yml then backup.yml on 3 chroot test hosts from scratch, then backup.yml on 20 inventory
# hosts (aliases over them) with forks 20 against 1 host; root only. --mode local: localhost aliases.
bench-fleet: deps
	$(VENV)/bin/python tests/bench/fleet.py --mode ssh

clean:
	rm -rf $(VENV) .venv-latest .pytest_cache .ruff_cache .cache \
		collections/ansible_collections/songmetrix/backup/tests/output tests/bench/output
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
