"""install.yml: client tools of each host's jobs, the runner, the jobs file and its permissions."""

from __future__ import annotations

import re
import stat

import pytest
from conftest import BIN_DIR, CONFIG_DIR, CRON_DIR, UNIT_DIR, all_hosts, jobs_of

testinfra_hosts = all_hosts()


def engines(host) -> set[str]:
    """Engines of the host's jobs (a source is a dict, or a reference to a group_vars source)."""
    found = set()
    for job in jobs_of(host.backend.host):
        source = job["source"]
        if isinstance(source, dict):
            found.add(source["engine"])
        else:
            found.add("postgresql" if "pg_source" in source else "mariadb")
    return found


def test_common_packages(host):
    for pkg in ("zstd", "util-linux"):
        assert host.package(pkg).is_installed, pkg
    assert host.exists("flock")


def test_postgresql_client_not_older_than_server(host, servers):
    if "postgresql" not in engines(host):
        pytest.skip("no PostgreSQL job on this host")
    out = host.check_output("pg_dump --version")
    client_major = int(re.search(r"(\d+)(?:\.\d+)?", out).group(1))
    server_major = int(servers["postgresql"]["version"].split(".")[0])
    assert client_major >= server_major, out
    installed = host.check_output(
        "dpkg-query -W -f '${Package} ${Status}\\n' 'postgresql-client-[0-9]*' | grep 'install ok installed' || true")
    assert installed, "no postgresql-client-<major> package installed"


def test_mariadb_client(host):
    if "mariadb" not in engines(host):
        pytest.skip("no MariaDB job on this host")
    assert host.exists("mariadb-dump") or host.exists("mysqldump")
    assert host.package("mariadb-client").is_installed or host.package("default-mysql-client").is_installed


def test_only_needed_clients(host):
    """backup_client installs what the host's jobs need and nothing else."""
    if "postgresql" not in engines(host):
        assert not host.exists("pg_dump"), "PostgreSQL client on a host without PostgreSQL jobs"
    if "mariadb" not in engines(host):
        assert not host.exists("mariadb-dump"), "MariaDB client on a host without MariaDB jobs"


def test_runner_venv(host):
    out = host.check_output("/opt/songmetrix-backup/venv/bin/ansible-playbook --version")
    assert out.startswith("ansible-playbook [core 2."), out


def test_jobs_file_is_private(host):
    jobs = host.file(f"{CONFIG_DIR}/jobs.yml")
    assert jobs.is_file
    assert (jobs.user, jobs.group, jobs.mode) == ("root", "root", 0o600)
    assert host.file(CONFIG_DIR).mode & 0o077 == 0


def test_secrets_only_in_private_files(host, servers):
    """Every file the roles wrote that holds a database password is 0600 (only the jobs file should)."""
    secrets = [servers["postgresql"]["password"], servers["mariadb"]["password"]]
    places = [CONFIG_DIR, BIN_DIR, "/opt/songmetrix-backup/ansible.cfg", "/var/log/songmetrix-backup"]
    places += [f"{UNIT_DIR}/songmetrix-backup-*", f"{CRON_DIR}/songmetrix-backup-*"]
    files = host.check_output(f"find {' '.join(places)} -type f 2>/dev/null || true").split()
    assert files
    holders = []
    for path in files:
        content = host.file(path).content_string
        if any(s in content for s in secrets):
            holders.append(path)
            assert stat.S_IMODE(host.file(path).mode) == 0o600, f"{path} holds a password but is not 0600"
    if engines(host) & {"postgresql", "mariadb"}:
        assert f"{CONFIG_DIR}/jobs.yml" in holders


def test_wrappers(host):
    for job in jobs_of(host.backend.host):
        wrapper = host.file(f"{BIN_DIR}/songmetrix-backup-{job['name']}")
        assert wrapper.is_file
        assert wrapper.mode == 0o750
        assert "flock -n" in wrapper.content_string
        assert f"-e job={job['name']}" in wrapper.content_string
