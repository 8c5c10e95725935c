"""A stage of the bot: one child process, started from one frozen dataclass of arguments.

Each stage module (capture_stage, asr_stage, compositor_stage; later the meeting browser or a
remote ASR client) defines its arguments as a frozen dataclass holding the queues the process
talks through, named for what flows in them (`chunks`, `updates`, `captions`), plus `events`
(StageReport, StageError, CaptionsDrawn back to the supervisor), and one entry function taking
that dataclass. `Stage` starts it, tells when it exited, restarts it and stops it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import signal
import time
from collections.abc import Callable
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.queues import Queue
from typing import Any, Generic, Protocol, TypeVar

from bot.runtime.restart import RestartPolicy

logger = logging.getLogger(__name__)


class StageArgs(Protocol):
    """What every stage's argument dataclass holds: the queue its events go back on."""

    @property
    def events(self) -> Queue[Any]: ...


ArgsT = TypeVar("ArgsT", bound=StageArgs)


def run_child(
    entry: Callable[[ArgsT], None], log_level: int, args: ArgsT
) -> None:  # pragma: no cover - runs in the child process
    """Entry of every child process: Ctrl-C is the supervisor's business, not the child's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faster_whisper").setLevel(max(log_level, logging.WARNING))
    entry(args)


class Stage(Generic[ArgsT]):
    """One child process of the bot, its arguments of the current start, its restart history.

    `make_args(context)` builds the arguments of each start with fresh queues: a process killed
    while it held a queue's lock would otherwise leave that queue blocked for its successor.
    `restart_on_clean_exit`: a stage that is meant to run until stopped (the compositor) is
    restarted whatever its exit code; one that ends on its own (capture at the end of a file)
    only after a failure.
    """

    def __init__(
        self,
        name: str,
        entry: Callable[[ArgsT], None],
        make_args: Callable[[SpawnContext], ArgsT],
        context: SpawnContext,
        restart_on_clean_exit: bool = False,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.name = name
        self.entry = entry
        self.make_args = make_args
        self.context = context
        self.restart_on_clean_exit = restart_on_clean_exit
        self.policy = policy or RestartPolicy()
        self.args: ArgsT | None = None
        self.process: SpawnProcess | None = None

    @property
    def restarts(self) -> int:
        return self.policy.restarts

    def start(self) -> None:
        """Start the process (again), with fresh queues."""
        self.close_queues()
        self.policy.started()
        self.args = self.make_args(self.context)
        process = self.context.Process(
            target=run_child,
            args=(self.entry, logging.getLogger().getEffectiveLevel(), self.args),
            name=f"captionbot-{self.name}",
            daemon=True,
        )
        process.start()
        self.process = process

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.exitcode is not None

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode if self.process is not None else None

    @property
    def failed(self) -> bool:
        """Exited, and wants a restart by its kind (see `restart_on_clean_exit`)."""
        return self.exited and (self.restart_on_clean_exit or self.exitcode != 0)

    def events(self) -> list[object]:
        """The events the process sent since the last call."""
        taken: list[object] = []
        events = self.args.events if self.args is not None else None
        while events is not None:
            try:
                taken.append(events.get_nowait())
            except (queue.Empty, OSError, ValueError):  # ValueError, OSError: a closed queue
                break
        return taken

    def join(self, deadline: float) -> None:
        """Wait until `deadline` (monotonic) for the process to end, then terminate it."""
        if self.process is None:
            return
        self.process.join(max(deadline - time.monotonic(), 0.0))
        if self.process.is_alive():
            logger.warning("%s process did not stop in time; terminating it", self.name)
            self.process.terminate()
            self.process.join(0.5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(0.5)

    def close_queues(self) -> None:
        """Close every queue of the current start (the process is gone or being replaced)."""
        if self.args is None:
            return
        for field in dataclasses.fields(self.args):  # type: ignore[arg-type]
            value = getattr(self.args, field.name)
            if isinstance(value, Queue):
                value.cancel_join_thread()
                value.close()
        self.args = None
