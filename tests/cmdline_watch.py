"""CmdlineWatch: samples every process's argv (/proc/*/cmdline) while a test runs something; a
secret must never show up there."""

import glob
import threading


class CmdlineWatch:
    """``with CmdlineWatch(secret, ...) as watch:`` ... then ``watch.seen`` (argv holding a secret)
    must be empty and ``watch.samples`` large enough to mean something."""

    def __init__(self, *secrets):
        self.secrets = [s.encode() for s in secrets if s]
        self.seen = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for path in glob.glob("/proc/[0-9]*/cmdline"):
                try:
                    with open(path, "rb") as handle:
                        argv = handle.read()
                except OSError:
                    continue
                if any(s in argv for s in self.secrets):
                    self.seen.append(argv)
            self.samples += 1
            self._stop.wait(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
