"""When a crashed stage may be started again: a few times a minute, then the bot gives up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

RESTART_WINDOW_S = 60.0
MAX_RESTARTS_PER_WINDOW = 5


@dataclass
class RestartPolicy:
    """The start history of one stage. A stage that needed more than `max_restarts` restarts
    within `window_s` keeps failing, and starting it again would only hide that."""

    window_s: float = RESTART_WINDOW_S
    max_restarts: int = MAX_RESTARTS_PER_WINDOW
    restarts: int = 0
    """Restarts since the bot started (the run summary reports them)."""
    _starts: list[float] = field(default_factory=list, repr=False)

    def started(self, now: float | None = None) -> None:
        """Record a start (the first one or a restart)."""
        now = time.monotonic() if now is None else now
        if self._starts:
            self.restarts += 1
        self._starts = [t for t in self._starts if now - t < self.window_s] + [now]

    def may_restart(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._starts if now - t < self.window_s]
        return len(recent) <= self.max_restarts
