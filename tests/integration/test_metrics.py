"""The metrics module: a node_exporter textfile, read back with prometheus_client's own parser."""

import os
import stat

from prometheus_client.parser import text_string_to_metric_families

T1 = 1795399200  # 2026-11-23T02:00:00Z
P = "songmetrix_backup_"


def parse(path):
    """{metric name: (labels, value)} of a file that must parse as the text exposition format."""
    out = {}
    for family in text_string_to_metric_families(open(path, encoding="utf-8").read()):
        assert family.type == "gauge" and family.documentation, family
        assert len(family.samples) == 1, family
        sample = family.samples[0]
        assert sample.name == family.name
        out[family.name] = (sample.labels, sample.value)
    return out


def values(path):
    return {name: value for name, (_, value) in parse(path).items()}


def metrics(run_module, args, **kw):
    return run_module("metrics", args, timeout=120, **kw)


def test_success_writes_every_metric_with_labels(run_module, tmp_path):
    res = metrics(run_module, dict(textfile_dir=str(tmp_path), job="orders-db", status="success",
                                   started="2026-11-23T01:55:49Z", finished="2026-11-23T02:00:00Z",
                                   raw_bytes=1073741824, stored_bytes=215000000, verify_status="ok", backups_kept=14,
                                   labels=dict(engine="postgresql", database="orders", storage="s3")))
    assert res.rc == 0 and res.result["changed"] is True, res.describe()
    path = tmp_path / "songmetrix_backup_orders-db.prom"
    assert res.result["path"] == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(os.listdir(tmp_path)) == ["songmetrix_backup_orders-db.prom"]  # no temp file left
    parsed = parse(path)
    assert set(parsed) == {P + n for n in ("last_success_timestamp_seconds", "last_attempt_timestamp_seconds",
                                           "last_status", "duration_seconds", "raw_bytes", "stored_bytes",
                                           "verify_status", "backups_kept")}
    for labels, _ in parsed.values():
        assert labels == dict(job="orders-db", engine="postgresql", database="orders", storage="s3")
    assert values(path) == {P + "last_success_timestamp_seconds": T1, P + "last_attempt_timestamp_seconds": T1,
                            P + "last_status": 1, P + "duration_seconds": 251, P + "raw_bytes": 1073741824,
                            P + "stored_bytes": 215000000, P + "verify_status": 1, P + "backups_kept": 14}
    assert res.result["metrics"][P + "last_success_timestamp_seconds"] == T1
    text = path.read_text()
    assert "# TYPE songmetrix_backup_last_status gauge\n" in text and text.endswith("\n")


def test_failure_keeps_last_success_and_last_backup_sizes(run_module, tmp_path):
    base = dict(textfile_dir=str(tmp_path), job="j1", labels=dict(engine="mysql"))
    res = metrics(run_module, dict(base, status="success", finished=str(T1), duration_seconds=12.5, raw_bytes=1000,
                                   stored_bytes=400, backups_kept=3, verify_status="skipped"))
    assert res.rc == 0, res.describe()
    path = tmp_path / "songmetrix_backup_j1.prom"
    assert values(path)[P + "verify_status"] == -1

    res = metrics(run_module, dict(base, status="failure", finished="2026-11-24T02:00:07+00:00", duration_seconds=3))
    assert res.rc == 0 and res.result["changed"] is True, res.describe()
    after = values(path)
    assert after[P + "last_success_timestamp_seconds"] == T1
    assert after[P + "last_attempt_timestamp_seconds"] == T1 + 86407
    assert after[P + "last_status"] == 0 and after[P + "duration_seconds"] == 3
    assert after[P + "raw_bytes"] == 1000 and after[P + "stored_bytes"] == 400 and after[P + "backups_kept"] == 3
    assert P + "verify_status" not in after  # this run verified nothing

    # A second failure still remembers the success; a later success replaces it.
    metrics(run_module, dict(base, status="failure", finished=str(T1 + 2 * 86400)))
    assert values(path)[P + "last_success_timestamp_seconds"] == T1
    metrics(run_module, dict(base, status="success", finished=str(T1 + 3 * 86400), raw_bytes=5))
    assert values(path)[P + "last_success_timestamp_seconds"] == T1 + 3 * 86400
    assert values(path)[P + "raw_bytes"] == 5 and P + "stored_bytes" not in values(path)


def test_first_run_failing_reports_no_success_as_zero(run_module, tmp_path):
    res = metrics(run_module, dict(textfile_dir=str(tmp_path), job="new-job", status="failure", finished=str(T1)))
    assert res.rc == 0, res.describe()
    after = values(tmp_path / "songmetrix_backup_new-job.prom")
    assert after == {P + "last_success_timestamp_seconds": 0, P + "last_attempt_timestamp_seconds": T1,
                     P + "last_status": 0}


def test_same_input_is_not_a_change(run_module, tmp_path):
    args = dict(textfile_dir=str(tmp_path), job="j", status="success", started=str(T1 - 60), finished=str(T1),
                raw_bytes=10, labels=dict(database="db"))
    assert metrics(run_module, args).result["changed"] is True
    path = tmp_path / "songmetrix_backup_j.prom"
    before = path.stat()
    res = metrics(run_module, args)
    assert res.rc == 0 and res.result["changed"] is False, res.describe()
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # The same failure twice is idempotent too (the carried values are read back unchanged).
    failed = dict(args, status="failure", finished=str(T1 + 100))
    assert metrics(run_module, failed).result["changed"] is True
    assert metrics(run_module, failed).result["changed"] is False


def test_check_mode_writes_nothing_and_diff_shows_the_change(run_module, tmp_path):
    args = dict(textfile_dir=str(tmp_path), job="j", status="success", finished=str(T1))
    res = metrics(run_module, args, check_mode=True, extra_internal_args={"_ansible_diff": True})
    assert res.rc == 0 and res.result["changed"] is True, res.describe()
    assert os.listdir(tmp_path) == []
    assert res.result["diff"]["before"] == "" and "songmetrix_backup_last_status{job=\"j\"} 1\n" in \
        res.result["diff"]["after"]

    metrics(run_module, args)
    path = tmp_path / "songmetrix_backup_j.prom"
    content = path.read_text()
    res = metrics(run_module, dict(args, status="failure", finished=str(T1 + 5)), check_mode=True,
                  extra_internal_args={"_ansible_diff": True})
    assert res.result["changed"] is True and path.read_text() == content
    assert res.result["diff"]["before"] == content and "last_status{job=\"j\"} 0\n" in res.result["diff"]["after"]
    assert sorted(os.listdir(tmp_path)) == ["songmetrix_backup_j.prom"]


def test_label_values_are_escaped(run_module, tmp_path):
    nasty = 'say "hi"\\ then\nnew line } , x="y"'
    res = metrics(run_module, dict(textfile_dir=str(tmp_path), job="j", status="success", finished=str(T1),
                                   labels=dict(database=nasty, storage="C:\\backups", engine="")))
    assert res.rc == 0, res.describe()
    path = tmp_path / "songmetrix_backup_j.prom"
    for labels, _ in parse(path).values():
        assert labels == dict(job="j", database=nasty, storage="C:\\backups", engine="")
    assert "\n" not in path.read_text().splitlines()[2]  # one sample per line
    assert 'database="say \\"hi\\"\\\\ then\\nnew line } , x=\\"y\\""' in path.read_text()
    # The escaped file is read back correctly when the job fails next.
    metrics(run_module, dict(textfile_dir=str(tmp_path), job="j", status="failure", finished=str(T1 + 1),
                             labels=dict(database=nasty)))
    assert values(path)[P + "last_success_timestamp_seconds"] == T1


def test_bad_input_is_refused(run_module, tmp_path):
    base = dict(textfile_dir=str(tmp_path), job="j", status="success")
    for args, message in ((dict(base, labels={"job": "x"}), "label 'job'"),
                          (dict(base, labels={"bad-name": "x"}), "label name 'bad-name'"),
                          (dict(base, labels={"__meta": "x"}), "label name '__meta'"),
                          (dict(base, job="../etc"), "job name"),
                          (dict(base, finished="yesterday"), "ISO 8601"),
                          (dict(base, raw_bytes=-1), "must not be negative"),
                          (dict(base, textfile_dir=str(tmp_path / "missing")), "is not a directory")):
        res = metrics(run_module, args)
        assert res.failed and message in res.msg, res.describe()
    assert os.listdir(tmp_path) == []
