"""A dependency-free progress bar for the command line (stderr), quiet when not a terminal."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", stream=None, enabled: bool = True,
                 min_interval: float = 0.2):
        self.total, self.desc, self.n = max(total, 1), desc, 0
        self.stream = stream or sys.stderr
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = enabled
        self.start = self._last = time.perf_counter()
        self.min_interval = min_interval if self.tty else 10.0
        self.postfix = ""

    def update(self, k: int = 1, postfix: str | None = None) -> None:
        self.n += k
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.enabled and (now - self._last >= self.min_interval or self.n >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(self.n / self.total, 1.0)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        bar = "#" * int(frac * 24)
        line = (f"{self.desc} [{bar:<24}] {self.n}/{self.total} {elapsed:5.0f}s "
                f"eta {eta:4.0f}s {self.postfix}")
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(100))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
