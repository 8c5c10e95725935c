"""A stage is a child process started from one frozen dataclass, watched, restarted, stopped."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnContext
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from bot.messages import StageReport
from bot.runtime.restart import RestartPolicy
from bot.runtime.stage import Stage


@dataclass(frozen=True)
class EchoArgs:
    numbers: Queue[int]
    events: Queue[object]
    stop: Event
    fail_with: int


def echo_main(args: EchoArgs) -> None:  # runs in the child process
    """Reports its pid, echoes numbers as reports until stopped, or exits with `fail_with`."""
    args.events.put(StageReport("echo", time.time(), {"pid": float(os.getpid())}))
    if args.fail_with:
        raise SystemExit(args.fail_with)
    while not args.stop.is_set():
        try:
            number = args.numbers.get(timeout=0.05)
        except queue.Empty:
            continue
        args.events.put(StageReport("echo", time.time(), {"echo": float(number)}))


def _wait_events(stage: Stage, count: int, timeout: float = 30.0) -> list[StageReport]:
    seen: list[StageReport] = []
    deadline = time.monotonic() + timeout
    while len(seen) < count and time.monotonic() < deadline:
        seen += stage.events()  # type: ignore[arg-type]
        time.sleep(0.02)
    return seen


def test_a_stage_runs_from_its_arguments_and_stops_with_its_stop_event() -> None:
    context: SpawnContext = mp.get_context("spawn")
    stop = context.Event()
    stage = Stage(
        "echo",
        echo_main,
        lambda ctx: EchoArgs(ctx.Queue(), ctx.Queue(), stop, fail_with=0),
        context,
    )
    stage.start()
    assert stage.args is not None
    stage.args.numbers.put(7)
    events = _wait_events(stage, 2)
    assert [e.counters.get("echo") for e in events] == [None, 7.0]
    assert not stage.exited
    stop.set()
    stage.join(time.monotonic() + 10)
    assert stage.exited and stage.exitcode == 0 and not stage.failed
    stage.close_queues()
    assert stage.args is None


def test_a_failing_stage_restarts_with_fresh_queues_until_the_policy_gives_up() -> None:
    context: SpawnContext = mp.get_context("spawn")
    stop = context.Event()
    policy = RestartPolicy(window_s=60.0, max_restarts=2)
    stage = Stage(
        "echo",
        echo_main,
        lambda ctx: EchoArgs(ctx.Queue(), ctx.Queue(), stop, fail_with=3),
        context,
        policy=policy,
    )
    stage.start()
    pids, queues = [], []
    while True:
        (report,) = _wait_events(stage, 1)
        pids.append(report.counters["pid"])
        queues.append(stage.args.events)  # type: ignore[union-attr]
        stage.join(time.monotonic() + 10)
        assert stage.failed and stage.exitcode == 3
        if not policy.may_restart():
            break
        stage.start()
    stage.close_queues()
    assert stage.restarts == 2
    assert len(set(pids)) == 3, "a new process each time"
    assert len({id(q) for q in queues}) == 3, "with new queues each time"


def test_the_restart_policy_forgets_failures_older_than_its_window() -> None:
    policy = RestartPolicy(window_s=60.0, max_restarts=2)
    for now in (0.0, 1.0, 2.0):
        policy.started(now)
    assert policy.restarts == 2
    assert not policy.may_restart(3.0)
    assert policy.may_restart(61.5), "the first start left the window"
