"""Stopping a training run cleanly: SIGINT/SIGTERM ask it to finish the step, checkpoint and exit.

    with StopFlag() as stop:
        while step < num_steps:
            ...                        # one step
            if stop.signum:            # a signal came: checkpoint, then return
                break

The run then exits with status 130 and resumes from that checkpoint when started again.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("xvjax")


class StopFlag:
    """SIGINT/SIGTERM -> finish the current step, checkpoint, exit; a second signal stops at once.

    Handlers are installed only in the main thread (Python allows no other); elsewhere the flag
    stays down.
    """

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("Got signal %d: saving a checkpoint after this step, then stopping", signum)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
