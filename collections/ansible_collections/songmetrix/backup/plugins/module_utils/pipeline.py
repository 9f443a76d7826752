"""The streaming path every backup takes: producer -> transforms -> sha256 -> writer.

Nothing here holds more than a few chunks in memory and nothing spools to disk. The raw stream
is relayed by a thread (to count it and run stream checks) into the first transform; the last
transform's output is hashed and handed to the storage writer. Every stage's exit status is
checked after the stream ends: a dump tool that died mid-stream fails the run even though the
compressor behind it exited 0.
"""

import hashlib
import os
import subprocess
import threading

from ansible_collections.songmetrix.backup.plugins.module_utils.compression import SECRET_FD
from ansible_collections.songmetrix.backup.plugins.module_utils.errors import BackupError, StorageError
from ansible_collections.songmetrix.backup.plugins.module_utils.procs import Child, enlarge_pipe, secret_pipe

CHUNK_SIZE = 1024 * 1024
HEAD_BYTES = 64 * 1024  # what head-only stream checks get to see


def with_first_cause(message, cause):
    """A tool's failure message, led by what failed before it and caused it (if anything did)."""
    return "%s; then %s" % (cause, message) if cause else message


class ProcessProducer(object):
    """Raw bytes from a dump tool's stdout.

    ``first_cause``: a callable naming a failure elsewhere that makes the tool fail (or None), put
    before the tool's own message.
    """

    def __init__(self, child, stderr_check=None, first_cause=None):
        self.child = child
        self.stream = child.stdout
        self._stderr_check = stderr_check
        self._first_cause = first_cause

    def abort(self):
        self.child.kill()

    def ended_badly(self, grace=5):
        """At the end of its output: did the tool exit non-zero (or die)? Waits ``grace`` seconds for it."""
        try:
            return self.child.proc.wait(timeout=grace) != 0
        except subprocess.TimeoutExpired:
            return False  # still running after closing stdout: judged by failure() later

    def failure(self):
        rc = self.child.wait()
        if self.child.killed:
            return None
        message = self.child.failure(rc)
        if message is None and self._stderr_check is not None:
            # Some tools exit 0 after printing an error (pg_dump on some auth failures).
            message = self._stderr_check(self.child.stderr_text())
        if message and self._first_cause is not None:
            message = with_first_cause(message, self._first_cause())
        return message


class ThreadProducer(object):
    """Raw bytes written by Python code (tar, SQLite copy) into a pipe from a worker thread."""

    def __init__(self, name, write_fn):
        self.name = name
        self._write_fn = write_fn
        self._error = None
        self._aborted = False
        read_fd, write_fd = os.pipe()
        enlarge_pipe(write_fd)
        self.stream = os.fdopen(read_fd, "rb", buffering=0)
        self._sink = os.fdopen(write_fd, "wb", buffering=CHUNK_SIZE)
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            self._write_fn(self._sink)
            self._sink.flush()
        except BaseException as exc:  # reported by failure(), never lost in the thread
            self._error = exc
        finally:
            try:
                self._sink.close()
            except OSError:
                pass

    def abort(self):
        self._aborted = True
        try:
            self.stream.close()  # the writer then fails with EPIPE and stops
        except OSError:
            pass

    def ended_badly(self, grace=5):
        self._thread.join(grace)
        return self._error is not None

    def failure(self):
        self._thread.join()
        if self._error is None or self._aborted:
            return None
        if isinstance(self._error, BackupError):
            return str(self._error)
        return "%s failed: %s" % (self.name, self._error)


class StreamCheck(object):
    """Looks at the raw stream as it passes; ``finish`` returns an error message or None.

    A check that sees only the head of the stream (``needs_whole_stream = False``) lets the relay
    move the rest with splice(2), without copying it through Python.
    """

    needs_whole_stream = False

    def feed(self, chunk):
        pass

    def finish(self, raw_size):
        return None


class NonEmptyCheck(StreamCheck):
    def __init__(self, what):
        self.what = what

    def finish(self, raw_size):
        if raw_size == 0:
            return "%s produced no data: an empty dump is not a backup" % self.what
        return None


class HeadCheck(StreamCheck):
    """The stream must start with ``magic`` (e.g. pg_dump's custom format header)."""

    def __init__(self, magic, what):
        self.magic = magic
        self.what = what
        self._head = b""

    def feed(self, chunk):
        if len(self._head) < len(self.magic):
            self._head += chunk[: len(self.magic) - len(self._head)]

    def finish(self, raw_size):
        if raw_size and not self._head.startswith(self.magic):
            return "%s output does not start with %r: not a valid dump" % (self.what, self.magic)
        return None


class TailCheck(StreamCheck):
    """The stream must end with ``marker`` near its end (mysqldump's '-- Dump completed')."""

    needs_whole_stream = True

    def __init__(self, marker, what, window=512):
        self.marker = marker
        self.what = what
        self.window = window
        self._tail = b""

    def feed(self, chunk):
        self._tail = (self._tail + chunk[-self.window:])[-self.window:]

    def finish(self, raw_size):
        if raw_size and self.marker not in self._tail:
            return "%s output does not end with %r: the dump is incomplete" % (
                self.what,
                self.marker.decode("ascii", "replace"),
            )
        return None


class StreamResult(object):
    def __init__(self, raw_size, stored_size, sha256, taps=None):
        self.raw_size = raw_size
        self.stored_size = stored_size
        self.sha256 = sha256
        self.taps = taps or {}  # Tap name -> (size, sha256) of the bytes that passed it


class Tap(object):
    """A point between two transforms where the stream is counted and hashed on its way through
    (the plaintext that enters an encryptor, or leaves a decryptor)."""

    def __init__(self, name):
        self.name = name


class _TapStage(object):
    """A thread in place of a child process: copies one stage's output into the next one's input,
    hashing it. Quacks like procs.Child (stdin, stdout, wait, kill, failure) for stream()."""

    def __init__(self, name, upstream):
        self.name = "%s checksum" % name
        self.tap_name = name
        self.killed = False
        self.size = 0
        self._digest = hashlib.sha256()
        self._error = None
        self.stdin = None
        if upstream is None:  # first stage: the relay writes into our own pipe
            read_fd, write_fd = os.pipe()
            enlarge_pipe(write_fd)
            self.stdin = os.fdopen(write_fd, "wb")
            upstream = os.fdopen(read_fd, "rb")
        self._upstream = upstream
        read_fd, write_fd = os.pipe()
        enlarge_pipe(write_fd)
        self.stdout = os.fdopen(read_fd, "rb")
        self._out_fd = write_fd
        self._thread = threading.Thread(target=self._run, name=self.name)
        self._thread.daemon = True
        self._thread.start()

    def _run(self):
        try:
            while True:
                chunk = self._upstream.read1(CHUNK_SIZE)
                if not chunk:
                    break
                self._digest.update(chunk)
                self.size += len(chunk)
                _write_all(self._out_fd, chunk)
        except (OSError, ValueError) as exc:
            self._error = exc
        finally:
            os.close(self._out_fd)
            self._upstream.close()  # an upstream child still writing gets EPIPE and stops

    @property
    def sha256(self):
        return self._digest.hexdigest()

    def kill(self):
        self.killed = True
        try:
            self.stdout.close()  # unblocks our write when nobody reads downstream any more
        except OSError:
            pass

    def wait(self, timeout=None):
        self._thread.join(timeout)
        return 1 if self._error is not None else 0

    def failure(self, rc=None):
        if rc is None:
            rc = self.wait()
        if rc == 0:
            return None
        return "%s failed: %s" % (self.name, getattr(self._error, "strerror", None) or self._error)


class StopsEarly(object):
    """A transform whose tool may stop reading before its input ends: ``tar -t`` exits at the
    end-of-archive blocks, and the zero padding after them stays unread.

    What the tool leaves is read by a thread of ours instead, from its own end of the tool's input
    pipe, so the stages in front run to their end (no EPIPE in the relay, no SIGPIPE for a
    decompressor) and the artifact is hashed whole. The tool's exit status decides; when it exits 0,
    what it left must be zero bytes, else the stage fails: data after the end of an archive means a
    damaged archive (a header zeroed in the middle ends it early) or something appended to it.
    """

    def __init__(self, transform, stops_at):
        self.transform = transform
        self.name = transform.name
        self.stops_at = stops_at  # where the tool stops, for messages: "the end-of-archive blocks"


class _EarlyStopStage(object):
    """A StopsEarly transform's child, and the thread that reads what it leaves. Quacks like procs.Child."""

    def __init__(self, early, upstream):
        self.name = early.name
        self._stops_at = early.stops_at
        self.stdin = None
        if upstream is subprocess.PIPE:  # first stage: the relay writes into a pipe we keep a read end of
            read_fd, write_fd = os.pipe()
            enlarge_pipe(write_fd)
            self.stdin = os.fdopen(write_fd, "wb")
            child_stdin = read_fd
        else:
            read_fd = os.dup(upstream.fileno())
            child_stdin = upstream
        try:
            self._child = _start_transform(early.transform, child_stdin)
        except BaseException:
            os.close(read_fd)
            if self.stdin is not None:
                self.stdin.close()
            raise
        self._leftover = os.fdopen(read_fd, "rb", buffering=0)
        self.unread = 0  # bytes the tool did not read
        self.unread_data = False  # whether any of them is not zero
        self._error = None
        self._thread = threading.Thread(target=self._read_leftover, name="%s-leftover" % self.name)
        self._thread.daemon = True
        self._thread.start()

    def _read_leftover(self):
        """Once the tool has exited, read the rest of its input (until every writer has closed it)."""
        try:
            self._child.proc.wait()
            while True:
                chunk = self._leftover.read(CHUNK_SIZE)
                if not chunk:
                    break
                self.unread += len(chunk)
                self.unread_data = self.unread_data or chunk.count(0) != len(chunk)
        except (OSError, ValueError) as exc:
            self._error = exc
        finally:
            self._leftover.close()

    @property
    def stdout(self):
        return self._child.stdout

    @property
    def killed(self):
        return self._child.killed

    def kill(self):
        self._child.kill()

    def wait(self, timeout=None):
        rc = self._child.wait(timeout)
        self._thread.join(timeout)
        return rc

    def failure(self, rc=None):
        if rc is None:
            rc = self.wait()
        message = self._child.failure(rc)
        if message:
            return message
        if self._error is not None:
            return "reading what %s left unread failed: %s" % (
                self.name, getattr(self._error, "strerror", None) or self._error)
        if self.unread_data:
            return (
                "%s stopped at %s with %d bytes left, and they are not all zero padding: the archive is "
                "damaged (it ends early) or has data appended" % (self.name, self._stops_at, self.unread)
            )
        return None


def _spawn_chain(transforms):
    """Start the transforms connected stdout->stdin; returns the stages (the first takes our input)."""
    children = []
    try:
        upstream = subprocess.PIPE
        for transform in transforms:
            if isinstance(transform, Tap):
                child = _TapStage(transform.name, None if upstream is subprocess.PIPE else upstream)
            else:
                if isinstance(transform, StopsEarly):
                    child = _EarlyStopStage(transform, upstream)
                else:
                    child = _start_transform(transform, upstream)
                if children:
                    children[-1].stdout.close()  # the next child (and a leftover reader) holds it now
            children.append(child)
            upstream = child.stdout
    except Exception:
        for child in children:
            child.kill()
        raise
    return children


def _start_transform(transform, stdin):
    if transform.secret is None:
        return Child(transform.name, transform.argv, stdin=stdin)
    if transform.secret_prompts:
        answers = (transform.secret + "\n") * transform.secret_prompts
        return Child(transform.name, transform.argv, stdin=stdin, terminal_input=answers.encode("utf-8"))
    fd = secret_pipe(transform.secret)
    try:
        argv = [arg.replace(SECRET_FD, str(fd)) for arg in transform.argv]
        return Child(transform.name, argv, stdin=stdin, pass_fds=(fd,))
    finally:
        os.close(fd)  # the child has its own copy


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _splice_after_head(source_fd, target_fd, checks):
    """Pass the head through ``checks``, then move the rest pipe-to-pipe in the kernel.

    Works on the raw descriptors: nothing may have been read through a buffered wrapper before.
    Returns the number of bytes moved.
    """
    head = b""
    while len(head) < HEAD_BYTES:
        data = os.read(source_fd, HEAD_BYTES - len(head))
        if not data:
            break
        head += data
    for check in checks:
        check.feed(head)
    _write_all(target_fd, head)
    moved = len(head)
    if len(head) < HEAD_BYTES:
        return moved  # the stream ended within its head
    while True:
        count = os.splice(source_fd, target_fd, CHUNK_SIZE)
        if count == 0:
            return moved
        moved += count


def stream(producer, transforms, writer, checks=()):
    """Run one backup stream to ``writer``; returns a StreamResult or raises BackupError.

    ``writer`` has write(bytes); committing or aborting it is the caller's job, so the caller
    decides when a stored artifact becomes visible.
    """
    transforms = [t for t in transforms if t is not None]
    end_taps = []
    while transforms and isinstance(transforms[-1], Tap):
        end_taps.append(transforms.pop().name)  # at the end, a tap sees what the main loop hashes anyway
    checks = list(checks)
    children = []
    raw_size = [0]
    relay_error = []
    relay = None
    digest = hashlib.sha256()
    stored_size = 0
    main_error = None
    writer_error = None

    def feed_checks(chunk):
        raw_size[0] += len(chunk)
        for check in checks:
            check.feed(chunk)

    try:
        children = _spawn_chain(transforms)
    except BackupError:
        producer.abort()
        producer.failure()
        raise

    def relay_raw():
        target = children[0].stdin
        try:
            if hasattr(os, "splice") and not any(c.needs_whole_stream for c in checks):
                raw_size[0] += _splice_after_head(producer.stream.fileno(), target.fileno(), checks)
            else:
                while True:
                    chunk = producer.stream.read(CHUNK_SIZE)
                    if not chunk:
                        break
                    feed_checks(chunk)
                    target.write(chunk)
        except (OSError, ValueError) as exc:
            # The transform went away; stop the producer so it does not block on a full pipe.
            relay_error.append(exc)
            producer.abort()
        else:
            ended_badly = getattr(producer, "ended_badly", None)  # producers that cannot fail late lack it
            if ended_badly is not None and ended_badly():
                # The dump failed: the stages behind it must not finish (a zstd -19 would compress
                # the tens of MiB it buffered before the failure is reported). Killed by us, they
                # are not named as a cause.
                for child in children:
                    child.kill()
        finally:
            try:
                target.close()
            except OSError:
                pass

    try:
        if children:
            relay = threading.Thread(target=relay_raw, name="relay")
            relay.daemon = True
            relay.start()
            out = children[-1].stdout
        else:
            out = producer.stream
        while True:
            chunk = out.read(CHUNK_SIZE)
            if not chunk:
                break
            if not children:
                feed_checks(chunk)
            digest.update(chunk)
            try:
                writer.write(chunk)
            except BackupError as exc:
                writer_error = exc
                raise
            stored_size += len(chunk)
    except BackupError as exc:
        main_error = str(exc)
    except (OSError, ValueError) as exc:
        main_error = "writing the backup failed: %s" % (getattr(exc, "strerror", None) or exc)
    except BaseException:
        # The module was stopped (a signal, module_base.Stopped): the tools stop with it.
        producer.abort()
        for child in children:
            child.kill()
        raise
    if main_error is not None:
        producer.abort()
        for child in children:
            child.kill()

    if relay is not None:
        relay.join()
    problems = []
    source_problem = producer.failure()
    if source_problem:
        problems.append(source_problem)
    tap_problems = []
    for child in children:
        rc = child.wait()
        if not child.killed:
            message = child.failure(rc)
            if message:
                (tap_problems if isinstance(child, _TapStage) else problems).append(message)
    if tap_problems and not problems:
        problems.extend(tap_problems)  # a tap fails when a neighbour did: name it only when nothing else is
    if main_error:
        problems.append(main_error)
    if relay_error and not problems:
        # Normally the transform's own failure explains a broken relay; never let it pass silently.
        problems.append("passing the dump to %s failed: %s" % (children[0].name, relay_error[0]))
    if not problems:
        for check in checks:
            message = check.finish(raw_size[0])
            if message:
                problems.append(message)
                break
    if problems == [main_error] and writer_error is not None:
        raise StorageError(main_error, **writer_error.details)
    if problems:
        raise BackupError("; ".join(problems))
    sha256 = digest.hexdigest()
    taps = dict((c.tap_name, (c.size, c.sha256)) for c in children if isinstance(c, _TapStage))
    taps.update((name, (stored_size, sha256)) for name in end_taps)
    return StreamResult(raw_size[0], stored_size, sha256, taps)
