"""The example inventory (inventories/example) is checked before anyone rolls it out.

playbooks/backup.yml and playbooks/prune.yml run against it for real (Ansible loads the inventory, decrypts its
vault with the example-only password, runs the backup_run role, which validates its variables against
meta/argument_specs.yml, and templates every task), with two changes: each host is reached over the local
connection, and the songmetrix.backup collection is a stand-in whose modules are the real modules' argument
specs (AnsibleModule checks each task's arguments against them, as the real module does) and return a
plausible result without connecting anywhere. So every job passes the role's validation and every module
task it leads to passes the module's argument spec, or the test names the task that does not.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.songmetrix.backup.tests.unit.module_specs import module_arguments, module_names
from tests.modrun import ansible_playbook

REPO = Path(__file__).resolve().parents[2]
INVENTORY = REPO / "inventories" / "example"
VAULT_PASSWORD = INVENTORY / "vault-password.EXAMPLE-ONLY.txt"
COLLECTION = REPO / "collections" / "ansible_collections" / "songmetrix" / "backup"

pytestmark = pytest.mark.slow

STAND_IN = '''#!/usr/bin/python
# A stand-in for songmetrix.backup.{name} made by tests/playbook/test_example_inventory.py: the real module's
# argument spec, checked by AnsibleModule; a plausible result; nothing else.
import json

from ansible.module_utils.basic import AnsibleModule

ARGUMENTS = json.loads({arguments!r})
RESULT = {{
    "changed": False,
    "manifest": {{"job": "stand-in", "raw_size": 2, "stored_size": 1, "sha256": "0" * 64, "duration_seconds": 0.1,
                  "started": "2026-01-01T00:00:00Z", "finished": "2026-01-01T00:00:01Z", "kind": "scheduled"}},
    "manifest_key": "stand-in/2026/01/01/stand-in-20260101T000000Z.manifest.json",
    "path": "stand-in",
    "kept": [], "deleted": [], "bytes_freed": 0, "stopped": None,
    "status": "healthy", "msg": "stand-in",
}}


def main():
    module = AnsibleModule(**ARGUMENTS)
    module.exit_json(**RESULT)


if __name__ == "__main__":
    main()
'''


def stand_in_collection(root):
    """A songmetrix.backup collection under ``root`` whose modules only check their arguments."""
    base = root / "ansible_collections" / "songmetrix" / "backup"
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "runtime.yml").write_text((COLLECTION / "meta" / "runtime.yml").read_text())
    (base / "galaxy.yml").write_text((COLLECTION / "galaxy.yml").read_text())
    modules = base / "plugins" / "modules"
    modules.mkdir(parents=True)
    for name in module_names():
        arguments = json.dumps(module_arguments(name))
        (modules / ("%s.py" % name)).write_text(STAND_IN.format(name=name, arguments=arguments))
    return root


def inventory_jobs():
    """{job name: group} of the example inventory's group_vars (songmetrix_backup_<engine>_jobs)."""
    jobs = {}
    for path in sorted((INVENTORY / "group_vars").glob("*/main.yml")):
        data = yaml.safe_load(path.read_text()) or {}
        for key, value in data.items():
            if key.endswith("_jobs") and isinstance(value, list):
                jobs.update({job["name"]: path.parent.name for job in value})
    return jobs


def run_playbook(tmp_path, playbook, collections):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SONGMETRIX_BACKUP_"))}
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(collections),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_NOCOLOR="1",
        PATH=str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
    )
    reach_locally = {"ansible_connection": "local", "ansible_become": False,
                     "ansible_python_interpreter": sys.executable}
    argv = [ansible_playbook(), "-i", str(INVENTORY), "--vault-password-file", str(VAULT_PASSWORD),
            "-e", json.dumps(reach_locally), str(REPO / "playbooks" / playbook)]
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    return stand_in_collection(tmp_path_factory.mktemp("stand-in"))


def test_every_job_passes_the_role_validation_and_the_module_argument_specs(tmp_path, collections):
    jobs = inventory_jobs()
    assert len(jobs) >= 5, jobs
    proc = run_playbook(tmp_path, "backup.yml", collections)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "\n".join(line for line in output.splitlines() if "[ERROR]" in line) or output
    # Every job went through each step with arguments its module accepted (the role would have recorded a
    # failure otherwise), and the role validated its variables.
    assert "Validating arguments against arg spec 'main'" in output
    # The health check's failure does not stop a job (failed_when: false): it would show as a "health" line.
    assert not re.search(r"^ +health +", output, re.M), output
    for job in jobs:
        for step in ("Notify the start of", "Check the source and storage of", "Dump", "Notify the success of",
                     "Write the metrics of"):
            assert re.search(r"TASK \[backup_run : %s %s\]" % (re.escape(step), re.escape(job)), output), (step, job)
        assert "%s: ok" % job in output, job
    for job in jobs:  # each has a retention
        assert re.search(r"TASK \[backup_run : Prune old backups of %s\]" % re.escape(job), output), job


def test_every_job_passes_the_prune_entry_point(tmp_path, collections):
    proc = run_playbook(tmp_path, "prune.yml", collections)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "\n".join(line for line in output.splitlines() if "[ERROR]" in line) or output
    assert "Validating arguments against arg spec 'prune'" in output
    for job in inventory_jobs():
        assert "%s: prune ok" % job in output, job
