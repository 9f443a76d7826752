"""The stream's failure semantics, with real child processes standing in for dump tools."""

import hashlib
import io
import sys

import pytest

from ansible_collections.songmetrix.backup.plugins.module_utils.compression import Transform
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError
from ansible_collections.songmetrix.backup.plugins.module_utils.pipeline import (
    HeadCheck,
    NonEmptyCheck,
    ProcessProducer,
    StopsEarly,
    TailCheck,
    ThreadProducer,
    stream,
)
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import Child


def py_child(name, code):
    return Child(name, [sys.executable, "-c", code])


def cat():
    return Transform("cat", ["cat"], {})


class Collect(io.BytesIO):
    pass


def test_stream_through_transform_hashes_stored_bytes():
    producer = ProcessProducer(py_child("gen", "import sys; sys.stdout.buffer.write(b'x' * 3000000)"))
    gz = Transform("gzip", ["gzip", "-c", "-1"], {})
    out = Collect()
    result = stream(producer, [gz], out, [NonEmptyCheck("gen")])
    assert result.raw_size == 3000000
    assert result.stored_size == len(out.getvalue()) < 3000000
    assert result.sha256 == hashlib.sha256(out.getvalue()).hexdigest()


def test_dump_tool_dying_mid_stream_fails_although_compressor_exits_zero():
    code = "import os, sys; sys.stdout.buffer.write(b'y' * 500000); sys.stdout.flush(); os.kill(os.getpid(), 9)"
    producer = ProcessProducer(py_child("dumper", code))
    with pytest.raises(BackupError, match="dumper was killed by signal 9"):
        stream(producer, [cat()], Collect(), [])


def test_nonzero_exit_names_stderr():
    code = "import sys; sys.stdout.write('partial'); sys.stderr.write('dumper: error: disk on fire\\n'); sys.exit(2)"
    with pytest.raises(BackupError, match="dumper exited with status 2: dumper: error: disk on fire"):
        stream(ProcessProducer(py_child("dumper", code)), [cat()], Collect(), [])


def test_stderr_check_catches_exit_zero_errors():
    code = "import sys; sys.stdout.write('data'); sys.stderr.write('FATAL: no pg_hba.conf entry\\n')"

    def check(text):
        return "reported: " + text if "FATAL" in text else None

    with pytest.raises(BackupError, match="reported: FATAL: no pg_hba.conf entry"):
        stream(ProcessProducer(py_child("dumper", code), stderr_check=check), [], Collect(), [])


def test_a_first_cause_leads_the_tools_message_and_only_when_the_tool_failed():
    # pg_dump's "invalid snapshot identifier" after the session exporting the snapshot died.
    code = "import sys; sys.stdout.write('x'); sys.stderr.write('dumper: error: invalid snapshot\\n'); sys.exit(1)"
    producer = ProcessProducer(py_child("dumper", code), first_cause=lambda: "the session ended first: timeout")
    with pytest.raises(BackupError) as caught:
        stream(producer, [], Collect(), [])
    assert str(caught.value) == ("the session ended first: timeout; then dumper exited with status 1: "
                                 "dumper: error: invalid snapshot")
    ok = ProcessProducer(py_child("dumper", "print('data')"), first_cause=lambda: "never asked")
    assert stream(ok, [], Collect(), []).raw_size == 5


def test_failing_compressor_is_the_named_cause_and_producer_is_stopped():
    producer = ProcessProducer(py_child("dumper", "import sys\nwhile True: sys.stdout.buffer.write(b'z' * 65536)"))
    broken = Transform("zstd", [sys.executable, "-c", "import sys; sys.stderr.write('zstd: boom'); sys.exit(1)"], {})
    with pytest.raises(BackupError) as info:
        stream(producer, [broken], Collect(), [])
    assert "zstd exited with status 1: zstd: boom" in str(info.value)
    assert "dumper" not in str(info.value)  # killed by us, not a cause
    assert producer.child.proc.poll() is not None


def test_writer_failure_stops_everything():
    class Full(object):
        def write(self, data):
            raise OSError(28, "No space left on device")

    producer = ProcessProducer(py_child("dumper", "import sys\nwhile True: sys.stdout.buffer.write(b'z' * 65536)"))
    with pytest.raises(BackupError, match="No space left on device"):
        stream(producer, [cat()], Full(), [])
    assert producer.child.proc.poll() is not None


def test_empty_dump_is_a_failure():
    with pytest.raises(BackupError, match="empty dump"):
        stream(ProcessProducer(py_child("dumper", "pass")), [cat()], Collect(), [NonEmptyCheck("dumper")])


def test_tail_check_needs_footer():
    def footer_check():
        return [TailCheck(b"-- Dump completed", "mysqldump")]

    code = "import sys; sys.stdout.write('CREATE TABLE t;\\n')"
    with pytest.raises(BackupError, match="Dump completed"):
        stream(ProcessProducer(py_child("mysqldump", code)), [], Collect(), footer_check())
    code = "import sys; sys.stdout.write('CREATE TABLE t;\\n-- Dump completed on 2026-01-01\\n')"
    stream(ProcessProducer(py_child("mysqldump", code)), [], Collect(), footer_check())


def test_thread_producer_error_is_reported():
    def write(out):
        out.write(b"a" * 1000)
        raise BackupError("cannot read /data/x: Permission denied")

    with pytest.raises(BackupError, match="Permission denied"):
        stream(ThreadProducer("tar", write), [cat()], Collect(), [])


@pytest.mark.parametrize("head,ok", [(b"PGDMP", True), (b"NOPE!", False)])
def test_head_check_on_a_long_spliced_stream(head, ok):
    code = "import sys; sys.stdout.buffer.write(%r + b'q' * 5000000)" % head
    out = Collect()
    checks = [NonEmptyCheck("pg_dump"), HeadCheck(b"PGDMP", "pg_dump")]
    if ok:
        result = stream(ProcessProducer(py_child("pg_dump", code)), [cat()], out, checks)
        assert result.raw_size == 5000005 and out.getvalue()[:5] == b"PGDMP"
    else:
        with pytest.raises(BackupError, match="does not start with"):
            stream(ProcessProducer(py_child("pg_dump", code)), [cat()], out, checks)


def test_tail_check_through_a_transform_sees_the_end():
    code = "import sys; sys.stdout.write('x' * 3000000 + '\\n-- Dump completed on 2026-01-01\\n')"
    out = Collect()
    result = stream(ProcessProducer(py_child("mysqldump", code)), [cat()], out,
                    [TailCheck(b"-- Dump completed", "mysqldump")])
    assert result.raw_size == len(out.getvalue()) == 3000000 + 33


def test_a_failed_dump_stops_the_compressor_instead_of_letting_it_finish():
    # 40 MiB of random data, then exit 3: zstd -19 -T1 takes it in (a 32 MiB job and its buffer)
    # long before it could compress it. The stages are killed at the end of the dump's output, so
    # almost nothing reaches the writer; without that, all ~40 MiB would be compressed and written.
    code = "import os, sys; sys.stdout.buffer.write(os.urandom(40 << 20)); sys.stdout.flush(); sys.exit(3)"
    zstd = Transform("zstd", ["zstd", "-q", "-c", "-19", "-T1"], {})
    out = Collect()
    with pytest.raises(BackupError) as failure:
        stream(ProcessProducer(py_child("dumper", code)), [zstd], out, [])
    assert str(failure.value) == "dumper exited with status 3"
    assert len(out.getvalue()) < 20 << 20


# A checker that reads the first 512 bytes of its input, writes them out and exits (as tar -t does at
# its end-of-archive blocks); 'code' is its exit status.
def early_reader(code=0):
    reader = "import os, sys; sys.stdout.buffer.write(os.read(0, 512)); sys.exit(%d)" % code
    return StopsEarly(Transform("reader", [sys.executable, "-c", reader], {}), "its first block")


def thread_writing(*parts):
    written = []

    def write(out):
        for part in parts:
            out.write(part)
            written.append(len(part))

    return ThreadProducer("read artifact", write), written


@pytest.mark.parametrize("in_front", [[], [cat()]], ids=["relay", "behind a transform"])
def test_what_an_early_stopping_checker_leaves_is_read_and_may_be_zeros(in_front):
    """8 MiB after what the checker reads: more than the pipes hold, so the relay (or cat) would get EPIPE."""
    producer, written = thread_writing(b"x" * 512, bytes(8 << 20))
    out = Collect()
    result = stream(producer, in_front + [early_reader()], out, [])
    assert out.getvalue() == b"x" * 512
    assert result.raw_size == 512 + (8 << 20) and sum(written) == result.raw_size  # the producer wrote it all


@pytest.mark.parametrize("in_front", [[], [cat()]], ids=["relay", "behind a transform"])
def test_data_an_early_stopping_checker_left_fails_the_stream(in_front):
    producer, _written = thread_writing(b"x" * 512, bytes(2 << 20), b"data", bytes(100))
    with pytest.raises(BackupError, match=r"reader stopped at its first block with \d+ bytes left, and they are "
                                          "not all zero padding"):
        stream(producer, in_front + [early_reader()], Collect(), [])


def test_an_early_stopping_checker_that_fails_is_judged_by_its_exit_status():
    producer, _written = thread_writing(b"x" * 512, bytes(2 << 20))
    with pytest.raises(BackupError, match="reader exited with status 3") as failure:
        stream(producer, [early_reader(code=3)], Collect(), [])
    assert "Broken pipe" not in str(failure.value) and "zero padding" not in str(failure.value)


def test_a_plain_transform_that_stops_early_still_breaks_the_pipe():
    """Only a StopsEarly stage has its leftovers read: elsewhere stopping early is a failure, as before."""
    producer, _written = thread_writing(b"x" * 512, bytes(8 << 20))
    with pytest.raises(BackupError, match="Broken pipe"):
        stream(producer, [early_reader().transform], Collect(), [])
