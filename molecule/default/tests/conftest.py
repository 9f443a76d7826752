"""Shared helpers of the scenario's testinfra tests (molecule verify).

molecule runs pytest with --connection=ansible and --ansible-inventory=<its inventory>, so a
test module names its hosts in ``testinfra_hosts`` and gets one ``host`` per host. What each host
should have comes from the scenario's own inventory files (host_vars/<host>.yml: job names,
schedules, schedulers) and from the servers create.yml started (<state>/servers.json).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml

SCENARIO_DIR = Path(__file__).resolve().parents[1]
HOST_VARS = SCENARIO_DIR / "inventory" / "host_vars"
STATE_DIR = Path(os.environ.get("SONGMETRIX_MOLECULE_STATE", "/nonexistent"))

LOCAL_STORAGE = "/var/backups/songmetrix"
SFTP_HOST, SFTP_PATH = "backup-files", "/srv/sftp-backups"
UNIT_DIR = "/etc/systemd/system"
CRON_DIR = "/etc/cron.d"
BIN_DIR = "/opt/songmetrix-backup/bin"
CONFIG_DIR = "/etc/songmetrix-backup"


def host_vars(name: str) -> dict:
    return yaml.safe_load((HOST_VARS / f"{name}.yml").read_text())


def jobs_of(name: str) -> list[dict]:
    return host_vars(name)["songmetrix_backup_jobs"]


def scheduler_of(name: str, job: dict) -> str:
    return job.get("scheduler") or host_vars(name).get("songmetrix_backup_scheduler", "systemd")


def all_hosts() -> list[str]:
    return sorted(p.stem for p in HOST_VARS.glob("*.yml"))


def host_job_pairs(scheduler: str | None = None) -> list[tuple[str, dict]]:
    pairs = []
    for name in all_hosts():
        for job in jobs_of(name):
            if scheduler is None or scheduler_of(name, job) == scheduler:
                pairs.append((name, job))
    return pairs


def storage_place(name: str, job: dict) -> tuple[str, str]:
    """(host that holds the job's backups, directory of the job's backups there)."""
    if "sftp" in str(job["storage"]):
        return SFTP_HOST, f"{SFTP_PATH}/{job['name']}"
    return name, f"{LOCAL_STORAGE}/{job['name']}"


def manifests(host, job_dir: str) -> list[str]:
    """Manifest paths below job_dir on host, oldest first (the names sort by time)."""
    out = host.run(f"find {shlex.quote(job_dir)} -name '*.manifest.json' -type f 2>/dev/null | sort")
    return [line for line in out.stdout.splitlines() if line]


def read_json(host, path: str) -> dict:
    return json.loads(host.file(path).content_string)


@pytest.fixture(scope="session")
def servers() -> dict:
    """Ports, users and passwords of the database servers create.yml started."""
    return json.loads((STATE_DIR / "servers.json").read_text())


@pytest.fixture(scope="session")
def testinfra_host_of():
    """testinfra host object of an inventory host by name (for storage on another host)."""
    import testinfra

    inventory = os.path.dirname(os.environ["MOLECULE_INVENTORY_FILE"])  # with host_vars/group_vars
    cache = {}

    def get(name: str):
        if name not in cache:
            cache[name] = testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")
        return cache[name]

    return get
