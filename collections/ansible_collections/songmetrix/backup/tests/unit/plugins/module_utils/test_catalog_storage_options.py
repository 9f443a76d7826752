import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import catalog, storage
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import ValidationError
from ansible_collections.songmetrix.backup.plugins.module_utils.storage_local import LocalStorage

STEM = "p/db.main/2026/01/02/db.main-20260102T030405Z"
STEMS = {STEM}


@pytest.mark.parametrize("key,stem", [
    (STEM + ".dump.zst", STEM),
    (STEM + ".dump.zst.part0002", STEM),
    ("p/db.main/2026/01/02/.db.main-20260102T030405Z.dump.zst.partial-12", None),
    ("p/db.main/2026/01/02/db.main-20260102T030406Z.dump.zst", None),
    ("p/db.main/2026/01/02/notes.txt", None),
])
def test_objects_belong_to_the_stem_before_their_extension(key, stem):
    assert catalog._stem_of(key, STEMS) == stem


def params(**given):
    base = {name: None for name in storage.COMMON_OPTIONS + storage.TYPE_OPTIONS["s3"] + storage.TYPE_OPTIONS["sftp"]}
    base.update(type="local", prefix="", retries=3, timeout=60)
    base.update(given)
    return base


def test_options_of_another_type_are_refused():
    with pytest.raises(ValidationError, match="bucket, host do not apply to storage.type local"):
        storage.check_options(params(path="/srv", bucket="b", host="h"))
    with pytest.raises(ValidationError, match="password do not apply to storage.type s3"):
        storage.check_options(params(type="s3", bucket="b", password="x"))
    assert storage.check_options(params(type="sftp", host="h", path="p", port=22)) == "sftp"


@pytest.mark.parametrize("name,value,message", [("retries", 21, "retries"), ("timeout", 0, "timeout")])
def test_common_option_ranges(name, value, message):
    with pytest.raises(ValidationError, match=message):
        storage.check_options(params(path="/srv", **{name: value}))


def test_make_storage_local(tmp_path):
    made = storage.make_storage(params(path=str(tmp_path)))
    assert isinstance(made, LocalStorage) and made.describe() == {"type": "local", "path": str(tmp_path)}


def test_local_list_keys_is_recursive_and_prefix_filtered(tmp_path):
    local = LocalStorage(str(tmp_path))
    for key in ("a/1/x.bin", "a/2/y.bin", "ab/z.bin", "b/w.bin"):
        local.put_small(key, b"12345")
    assert [info.key for info in local.list_keys("a/")] == ["a/1/x.bin", "a/2/y.bin"]
    assert [info.key for info in local.list_keys("a")] == ["a/1/x.bin", "a/2/y.bin", "ab/z.bin"]
    assert [info.size for info in local.list_keys("")] == [5, 5, 5, 5]
    assert list(local.list_keys("missing/")) == []
    assert local.get_small("b/w.bin") == b"12345"
