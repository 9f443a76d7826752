"""Confined tar extraction (restore_tar, confined_fs): each escape an archive can try, with the kernel's openat2
and with the O_NOFOLLOW walk that replaces it where the kernel has none."""

import io
import os
import stat
import tarfile

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils import confined_fs
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.restore_tar import check_symlink, extract_stream


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Run each test with openat2 (when this kernel has it) and with the fallback walk."""
    if request.param == "openat2":
        if not confined_fs.have_openat2():
            pytest.skip("this kernel has no openat2")
    else:
        monkeypatch.setitem(confined_fs._state, "checked", True)
        monkeypatch.setitem(confined_fs._state, "syscall", None)
    return request.param


def archive(*members):
    """members: (name, kind, data) with kind file | dir | symlink | hardlink | fifo | chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, *mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode[0] if mode else (0o755 if kind == "dir" else 0o644)
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            info.linkname = data or ""
            tar.addfile(info)
    buf.seek(0)
    return buf


@pytest.fixture
def world(tmp_path):
    """(root to extract into, an outside folder with a secret, the escape text of a late link)."""
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret\n")
    depth = len(root.parts) - 1
    return root, outside, "/".join(["a"] * depth + [".."] * depth) + str(outside)


def listing(folder):
    return sorted((str(p.relative_to(folder)), p.is_symlink()) for p in folder.rglob("*"))


def test_an_ordinary_tree_is_restored_exactly(tmp_path, resolver):
    root = tmp_path / "root"
    root.mkdir()
    entries, warnings = extract_stream(archive(
        ("d", "dir", None, 0o750), ("d/f", "file", b"hello", 0o640), ("d/sub/g", "file", b"g"),
        ("d/l", "symlink", "f"), ("top", "symlink", "d/sub/g"), ("d/sub/up", "symlink", "../f"),
        ("hl", "hardlink", "d/f"), ("pipe", "fifo", None), ("d/f2", "file", b"replaced"), ("d/f2", "file", b"2"),
        ("dev", "chr", None)), str(root))
    assert entries == 10 and warnings == ["tar member dev is a device or special file and was skipped"]
    assert (root / "d/f").read_bytes() == b"hello" and (root / "d/f2").read_bytes() == b"2"
    assert os.readlink(root / "d/l") == "f" and (root / "top").read_bytes() == b"g"
    assert (root / "d/sub/up").read_bytes() == b"hello"
    assert os.stat(root / "hl").st_ino == os.stat(root / "d/f").st_ino
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)
    assert stat.S_IMODE(os.stat(root / "d").st_mode) == 0o750 and stat.S_IMODE(os.stat(root / "d/f").st_mode) == 0o640
    assert os.stat(root / "d/f").st_mtime == 1700000000 and os.stat(root / "d").st_mtime == 1700000000
    assert stat.S_IMODE(os.stat(root / "d/sub").st_mode) == 0o700  # implied folders stay private


@pytest.mark.parametrize("members,message", [
    ([("../x", "file", b"x")], "'..' component"),
    ([("/tmp/x", "file", b"x")], "absolute path"),
    ([("l", "symlink", "/etc")], "absolute path"),
    ([("d/l", "symlink", "../../x")], "outside the restored tree"),
    ([("l", "symlink", "x/../..")], "a '..' after a name"),
    ([("l", "symlink", "")], "empty or absolute"),
])
def test_unsafe_names_and_links_are_refused(world, resolver, members, message):
    root = world[0]
    with pytest.raises(BackupError, match=message):
        extract_stream(archive(*members), str(root))


@pytest.mark.parametrize("attack", ["late-link", "hard-link-through-late-link", "write-through-late-link",
                                    "write-through-earlier-link", "hard-link-to-link", "hard-link-missing"])
def test_nothing_resolves_outside_at_any_point(world, resolver, attack):
    root, outside, esc = world
    members = {
        "late-link": [("esc", "symlink", esc), ("a", "symlink", ".")],
        "hard-link-through-late-link": [("a", "symlink", "."), ("stolen", "hardlink", "a/a/x")],
        "write-through-late-link": [("a", "symlink", "."), ("a/pwned", "file", b"x")],
        "write-through-earlier-link": [("d", "dir", None), ("d/up", "symlink", ".."), ("d/up/x", "file", b"x")],
        "hard-link-to-link": [("l", "symlink", "x"), ("h", "hardlink", "l")],
        "hard-link-missing": [("h", "hardlink", "nothing")],
    }[attack]
    with pytest.raises(BackupError, match="refused"):
        extract_stream(archive(*members), str(root))
    assert sorted(os.listdir(outside)) == ["secret"]
    for path in root.rglob("*"):
        assert path.is_symlink() or os.stat(path).st_ino != os.stat(outside / "secret").st_ino


def test_the_kernel_check_catches_a_link_out_even_without_the_text_rule(world, monkeypatch):
    """Second line of defence: with the text rule switched off, openat2(RESOLVE_BENEATH) still refuses the late
    link once the extraction is over."""
    if not confined_fs.have_openat2():
        pytest.skip("this kernel has no openat2")
    root, _outside, esc = world
    from ansible_collections.songmetrix.backup.plugins.module_utils import restore_tar
    monkeypatch.setattr(restore_tar, "check_symlink", lambda parts, target, name: None)
    with pytest.raises(BackupError, match="resolves outside the restored tree"):
        extract_stream(archive(("esc", "symlink", esc), ("a", "symlink", ".")), str(root))


def test_files_only_refuses_links_fifos_and_devices(tmp_path, resolver):
    for kind, data in (("symlink", "toc.dat"), ("hardlink", "toc.dat"), ("fifo", None), ("chr", None)):
        root = tmp_path / kind
        root.mkdir()
        with pytest.raises(BackupError, match="not a regular file or folder: a PostgreSQL directory"):
            extract_stream(archive(("toc.dat", "file", b"toc"), ("3456.dat", kind, data)), str(root),
                           files_only="a PostgreSQL directory-format archive")


def test_max_bytes_stops_a_bomb_and_counts_every_member(tmp_path, resolver):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(BackupError, match=r"more than max_restore_size \(1000 bytes\)"):
        extract_stream(archive(("a", "file", b"x" * 600), ("b", "file", b"x" * 600)), str(root), max_bytes=1000)
    assert extract_stream(archive(("a", "file", b"x" * 500), ("b", "file", b"x" * 500)), str(tmp_path / "root"),
                          max_bytes=1000)[0] == 2


def test_setid_bits_dropped_without_owners_and_named(tmp_path, resolver):
    root = tmp_path / "root"
    root.mkdir()
    _entries, warnings = extract_stream(archive(("tool", "file", b"x", 0o4755), ("grp", "dir", None, 0o2775),
                                                ("tmp", "dir", None, 0o1777)), str(root))
    assert stat.S_IMODE(os.stat(root / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(root / "grp").st_mode) == 0o775
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777  # sticky is no privilege
    assert warnings == ["setuid/setgid bits dropped (owners not restored): tool, grp"]


@pytest.mark.skipif(os.geteuid() != 0, reason="restoring owners needs root")
def test_owners_restored_numerically_as_root(tmp_path, resolver):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, uid in (("f", tarfile.REGTYPE, 1234), ("d", tarfile.DIRTYPE, 2345),
                                ("l", tarfile.SYMTYPE, 3456)):
            info = tarfile.TarInfo(name)
            info.type, info.uid, info.gid, info.uname, info.linkname = kind, uid, uid + 1, "root", "f"
            info.mode = 0o4755 if name == "f" else 0o755
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    buf.seek(0)
    root = tmp_path / "root"
    root.mkdir()
    data = buf.getvalue()
    _entries, warnings = extract_stream(io.BytesIO(data), str(root), preserve_owner=True, keep_setid=True)
    assert [(os.lstat(root / n).st_uid, os.lstat(root / n).st_gid) for n in "fdl"] == [(1234, 1235), (2345, 2346),
                                                                                       (3456, 3457)]
    assert stat.S_IMODE(os.stat(root / "f").st_mode) == 0o4755  # chown first, then the mode
    assert warnings == ["restored with their setuid/setgid bits (owners restored): f"]
    # From a backup the job's key did not sign: owners yes, setuid/setgid bits no.
    other = tmp_path / "unsigned"
    other.mkdir()
    _entries, warnings = extract_stream(io.BytesIO(data), str(other), preserve_owner=True)
    assert os.lstat(other / "f").st_uid == 1234 and stat.S_IMODE(os.stat(other / "f").st_mode) == 0o755
    assert warnings == ["setuid/setgid bits dropped (the backup is not signed by the job's key): f"]


def test_check_symlink_rule():
    check_symlink(["d", "l"], "../x/y", "d/l")
    check_symlink(["l"], ".", "l")
    check_symlink(["a", "b", "l"], "../../a/./b", "a/b/l")
    for parts, target in ((["l"], "../x"), (["d", "l"], "x/../y"), (["d", "l"], "../x/.."), (["l"], "/x")):
        with pytest.raises(BackupError):
            check_symlink(parts, target, "/".join(parts))


def test_open_folder_refuses_links_and_creates_folders(tmp_path, resolver):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "link").symlink_to("real")
    (root / "file").write_text("x")
    fd = os.open(str(root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(confined_fs.LinkInPath):
            confined_fs.open_folder(fd, ["link", "x"], create=True)
        with pytest.raises(confined_fs.LinkInPath):
            confined_fs.open_folder(fd, ["file"])
        os.close(confined_fs.open_folder(fd, ["new", "deeper"], create=True))
        os.close(confined_fs.open_folder(fd, ["file", "inside"], create=True))  # a file in the way becomes a folder
        assert (root / "new/deeper").is_dir() and (root / "file/inside").is_dir()
        if resolver == "openat2":
            assert confined_fs.resolves_beneath(fd, "link") is True
    finally:
        os.close(fd)
