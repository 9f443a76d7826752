"""Background watches that sample the machine while a test runs something:

- CmdlineWatch: every process's argv (/proc/*/cmdline); a secret must never show up there.
- Sampler: the base, for watches of other things (tests/playbook/test_sec_playbook_secrets.py
  walks temp directories with it).
"""

import glob
import threading


class Sampler:
    """``with watch:`` calls ``sample()`` every ``interval`` seconds in a thread until the block
    ends; ``samples`` counts the rounds (a test asserts enough of them to mean something)."""

    interval = 0.01

    def __init__(self):
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self):
        raise NotImplementedError

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class CmdlineWatch(Sampler):
    """``with CmdlineWatch(secret, ..., markers=[...]) as watch:`` ... then ``watch.seen`` (argv holding a
    secret) must be empty. ``watch.tool_samples[marker]`` counts the rounds in which a process whose
    argv holds the marker ran: proof that /proc was read while that tool held its secrets."""

    def __init__(self, *secrets, markers=()):
        Sampler.__init__(self)
        self.secrets = [s.encode() for s in secrets if s]
        self.seen = []
        self.tool_samples = {marker: 0 for marker in markers}

    def sample(self):
        running = set()
        for path in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(path, "rb") as handle:
                    argv = handle.read()
            except OSError:
                continue
            if any(s in argv for s in self.secrets):
                self.seen.append(argv)
            running.update(marker for marker in self.tool_samples if marker.encode() in argv)
        for marker in running:
            self.tool_samples[marker] += 1
