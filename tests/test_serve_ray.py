"""`captionbot serve --ray`: a local Ray cluster on loopback, two ASR replicas, one killed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from bot.config import Config, EngineConfig, RayServeConfig, ServeConfig
from tests.conftest import english_wer
from tests.test_serve import stream, transcribe_reference

pytest.importorskip("ray.serve", reason="the cluster extra (pip install -e '.[cluster]')")

# Items tiny.en hears alike at any decode schedule, as test_serve.FILES says.
FILES = ("fleurs_en_000", "fleurs_en_005", "fleurs_en_002")


@pytest.fixture
def ray_env(monkeypatch):
    # A scratch temp dir short enough for Ray's socket paths, no auth token in ~/.ray, no usage
    # reporting: nothing leaves loopback and nothing outlives the test.
    scratch = Path(tempfile.mkdtemp(prefix="cbray"))
    (scratch / "ray").mkdir()
    monkeypatch.setenv("RAY_TMPDIR", str(scratch))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield scratch
    shutil.rmtree(scratch, ignore_errors=True)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def busy(pid: int, within_s: float) -> None:
    """Return as soon as the process burns 20 ms of CPU within 60 ms of wall time."""
    deadline = time.monotonic() + within_s
    before, since = _cpu_ticks(pid), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.03)
        now, at = _cpu_ticks(pid), time.monotonic()
        # A late wake-up (a busy test process) measures a longer span, which a decode that
        # already ended could fill: only a short span says the process is decoding now.
        if now - before >= 2 and at - since <= 0.06:
            return
        before, since = now, at


async def kill_while_decoding(
    service, victim: int, sessions: list[asyncio.Future], tries: int = 3
) -> list[int]:
    """SIGKILL ASR replicas while they decode until one took windows with it (a resend).

    A replica killed between two batches has nothing to resend, so then another is killed,
    once Serve has two replicas again. Returns the killed pids."""
    killed = []
    for _ in range(tries):
        await busy(victim, within_s=5.0)
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
        for _ in range(30):
            await asyncio.sleep(0.1)
            if await asyncio.to_thread(service.resends):
                return killed
        live: set[int] = set()
        deadline = time.monotonic() + 20
        while len(live) < 2 and time.monotonic() < deadline:
            live = await asyncio.to_thread(service.replica_pids) - set(killed)
        if len(live) < 2 or all(session.done() for session in sessions):
            break
        victim = min(live)
    return killed


def test_sessions_survive_an_asr_replica_killed_mid_stream(
    ray_env, load_item, tiny_engine, tmp_path
):
    from bot.serve.ray_app import RayService

    config = Config(
        task="transcribe",
        language="en",
        engine=EngineConfig(model="tiny.en", name="ctranslate2", cpu_threads=1),
        serve=ServeConfig(
            port=0,
            max_sessions=4,
            out_dir=str(tmp_path / "serve-out"),
            ray=RayServeConfig(replicas=2, replica_cpus=0.5, health_check_period_s=1.0),
        ),
    )
    items = {item_id: load_item(item_id) for item_id in FILES}
    service = RayService(config, num_cpus=4)
    try:
        pids = service.replica_pids()
        assert len(pids) == 2

        async def sessions_with_a_kill() -> tuple[list[dict], list[int]]:
            running = [
                asyncio.ensure_future(stream(service.url, item_id, audio, speed=1.0))
                for item_id, (audio, _) in items.items()
            ]
            await asyncio.sleep(2.0)
            killed = await kill_while_decoding(service, min(pids), running)
            return await asyncio.gather(*running), killed

        sessions, killed = asyncio.run(sessions_with_a_kill())
        results = dict(zip(items, sessions))
        resends = service.resends()
        deadline = time.monotonic() + 60
        pids_after = service.replica_pids()
        while len(pids_after) < 2 and time.monotonic() < deadline:
            time.sleep(1.0)
            pids_after = service.replica_pids()
    finally:
        service.stop()
    assert resends >= 1  # windows of the killed replica's batch were decoded again
    assert not set(killed) & pids_after and len(pids_after) == 2  # Serve replaced them
    for item_id, (audio, row) in items.items():
        text = results[item_id]["text"]
        assert results[item_id]["close"][0] == 1000
        served = english_wer(row["text"], text)
        alone = english_wer(row["text"], transcribe_reference(tiny_engine, audio))
        assert served <= alone + 0.15, (item_id, served, alone, text)
    print(f"killed {len(killed)} replica(s) for {resends} resent window(s)")


def test_a_cpu_replica_sizes_its_engine_by_its_own_cpus_not_the_machines() -> None:
    from bot.asr.factory import ct2_parallelism
    from bot.serve.ray_app import replica_engine_config

    def parallelism(engine: EngineConfig, cpus: float, gpus: float = 0.0) -> tuple[int, int]:
        sized = replica_engine_config(engine, cpus, gpus)
        found = ct2_parallelism(sized, "cuda" if gpus else "cpu", cores=16)
        return found.workers, found.threads

    auto = EngineConfig(model="tiny.en")
    assert parallelism(auto, 0.5) == (1, 1)  # on 16 cores, auto alone would give 8 workers
    assert parallelism(auto, 2.0) == (2, 1)
    assert parallelism(EngineConfig(model="tiny.en", workers=3, cpu_threads=2), 1.0) == (3, 2)
    assert parallelism(auto, 1.0, gpus=1.0) == (1, 0)  # a GPU takes its batch whole
    jax = EngineConfig(model="tiny.en", name="jax")
    assert replica_engine_config(jax, 0.5, 0.0) == jax
