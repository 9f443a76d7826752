"""backup.yml (the converge's second playbook): a backup of every job in its storage, with a manifest."""

from __future__ import annotations

import posixpath

import pytest
from conftest import all_hosts, host_job_pairs, manifests, read_json, storage_place



@pytest.mark.parametrize(("name", "job"), host_job_pairs(), ids=lambda v: v if isinstance(v, str) else v["name"])
def test_backup_with_manifest(name, job, testinfra_host_of):
    holder_name, job_dir = storage_place(name, job)
    holder = testinfra_host_of(holder_name)
    found = manifests(holder, job_dir)
    assert found, f"no backup of {job['name']} in {holder_name}:{job_dir}"
    manifest = read_json(holder, found[-1])
    assert manifest["job"] == job["name"]
    assert manifest["host"] == name
    artifact = posixpath.join(posixpath.dirname(job_dir), manifest["artifact"])
    stored = holder.file(artifact)
    assert stored.is_file
    assert stored.size == manifest["stored_size"]
    assert stored.mode == 0o600
    assert holder.check_output(f"sha256sum {artifact}").split()[0] == manifest["sha256"]
    if manifest["engine"] in ("postgresql", "mariadb"):
        assert manifest["server_version"]
        assert manifest["raw_size"] > 10_000
        assert all(count > 0 for count in manifest["table_counts"].values()), manifest["table_counts"]
    if job.get("timezone"):
        assert manifest["timezone"] == job["timezone"]


def test_every_host_has_a_job():
    assert {name for name, _job in host_job_pairs()} == set(all_hosts())
