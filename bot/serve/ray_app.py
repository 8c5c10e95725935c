"""`captionbot serve --ray`: the same service with its engine on Ray Serve (the cluster extra).

Two deployments:
- `AsrReplica`, stateless, one replica per GPU (or per CPU box): windows in, hypotheses out;
  its `@serve.batch` method decodes windows from any session and any ingress in one call.
- `Ingress`, holding the WebSockets and every session's streaming state: the single-box
  server and hub (bot/serve/server.py, hub.py) over a `RayEngine`, an Engine whose
  `transcribe` sends each window to the ASR deployment. Routing is not sticky, and need not be.

A replica that dies takes its in-flight batch with it: Ray raises (ActorDiedError) and does
not retry, so `RayEngine` sends those windows again, and the sessions see a latency bump, not
a hole. Everything binds 127.0.0.1 for a local cluster; the Serve HTTP proxy is not used (the
ingress listens itself), so no other port is opened.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bot.asr.engine import EngineInfo, Hypothesis, Task, Window
from bot.config import Config, EngineConfig
from bot.errors import ConfigError

logger = logging.getLogger(__name__)

APP_NAME = "captionbot"
RESENDS = 8
RESEND_WAIT_S = 0.5
CALL_TIMEOUT_S = 120.0


try:
    from ray import serve as _ray_serve
except ImportError:  # the cluster extra is not installed
    _ray_serve = None


def _serve():  # noqa: ANN202 - ray.serve, only with the cluster extra
    if _ray_serve is None:
        raise ConfigError("serve --ray needs Ray Serve: pip install 'captionbot[cluster]'")
    return _ray_serve


def _batched(method):  # noqa: ANN001, ANN202 - @serve.batch where Ray is installed
    return _ray_serve.batch(method) if _ray_serve is not None else method


def replica_engine_config(
    engine: EngineConfig, replica_cpus: float, replica_gpus: float
) -> EngineConfig:
    """The engine a replica builds. Left on auto, a CPU replica sizes its CTranslate2 workers by
    its own share of CPUs, not the machine's cores: Ray packs replicas side by side, and two
    replicas of 0.5 CPU each spreading over every core would fight for them."""
    if replica_gpus > 0 or engine.name == "jax":
        return engine
    workers = engine.workers or max(1, int(replica_cpus))
    return engine.model_copy(update={"workers": workers, "cpu_threads": engine.cpu_threads or 1})


class AsrReplica:
    """Stateless ASR: one engine per replica, batched over every caller."""

    def __init__(self, engine_config: dict[str, Any], max_batch: int, batch_wait_s: float) -> None:
        from bot.asr.factory import create_engine

        self.engine = create_engine(
            EngineConfig.model_validate(engine_config), many_sessions=True, max_batch=max_batch
        )
        self.transcribe.set_max_batch_size(max_batch)
        self.transcribe.set_batch_wait_timeout_s(batch_wait_s)

    @_batched
    async def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        # Ray hands arrays over read-only.
        writable = [replace(w, audio=np.array(w.audio, dtype=np.float32)) for w in windows]
        return self.engine.transcribe(writable)

    def describe(self) -> tuple[EngineInfo, bool, tuple[str, ...]]:
        e = self.engine
        return e.info, e.is_multilingual, tuple(e.supported_languages)

    def check_task(self, task: Task, language: str | None) -> str | None:
        try:
            self.engine.check_task(task, language)
        except ConfigError as error:
            return str(error)
        return None

    def pid(self) -> int:
        return os.getpid()


class RayEngine:
    """An Engine whose windows are decoded by the ASR deployment, resent if a replica dies."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        info, multilingual, languages = handle.describe.remote().result(timeout_s=CALL_TIMEOUT_S)
        self.info = replace(info, details={**info.details, "serving": "ray"})
        self.is_multilingual = multilingual
        self.supported_languages = languages
        self.resends = 0

    def check_task(self, task: Task, language: str | None) -> None:
        problem = self._handle.check_task.remote(task, language).result(timeout_s=CALL_TIMEOUT_S)
        if problem:
            raise ConfigError(problem)

    def transcribe(self, windows: list[Window]) -> list[Hypothesis]:
        from ray.exceptions import RayActorError

        calls = [self._handle.transcribe.remote(w) for w in windows]
        results: list[Hypothesis] = []
        for window, call in zip(windows, calls):
            for attempt in range(RESENDS + 1):
                try:
                    results.append(call.result(timeout_s=CALL_TIMEOUT_S))
                    break
                except RayActorError as error:
                    if attempt == RESENDS:
                        raise
                    self.resends += 1
                    logger.warning(
                        "ASR replica lost (%s); sending the window again", type(error).__name__
                    )
                    time.sleep(RESEND_WAIT_S * attempt)
                    call = self._handle.transcribe.remote(window)
        return results

    def transcribe_offline(
        self, audio: np.ndarray, task: Task, language: str | None, beam_size: int = 5
    ):  # noqa: ANN201
        raise NotImplementedError("offline transcription is not served on Ray")


class Ingress:
    """The WebSockets and the sessions' streaming state, listening on serve.host:serve.port."""

    def __init__(self, config: dict[str, Any], asr: Any) -> None:
        from bot.serve.hub import HubLimits, SessionHub
        from bot.serve.server import ServeServer

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        self.config = Config.model_validate(config)
        serve_config = self.config.serve
        # Handle calls block, which Serve forbids on the replica's event loop thread.
        with ThreadPoolExecutor(1) as pool:
            self.engine = pool.submit(RayEngine, asr).result()
        max_sessions = serve_config.max_sessions or 4
        self.hub = SessionHub(
            self.engine,
            self.config.streaming.options(),
            HubLimits.of(serve_config, max_sessions),
        )
        out_dir = Path(serve_config.out_dir) if serve_config.out_dir else None
        self.server = ServeServer(serve_config, self.hub, out_dir, self.config.outputs.formats)
        self.hub.start()
        self.server.start()

    def url(self) -> str:
        return self.server.url

    def resends(self) -> int:
        return self.engine.resends

    def drain(self) -> None:
        self.server.stop(drain=True)
        self.hub.stop()


class RayService:
    """The two deployments on a Ray cluster; `stop()` drains and shuts them down."""

    def __init__(
        self, config: Config, address: str | None = None, num_cpus: float | None = None
    ) -> None:
        import ray

        serve = _serve()
        self._own_cluster = address is None
        if not ray.is_initialized():
            if address is None:
                _loopback_only()
                ray.init(
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    logging_level=logging.WARNING,
                )
            else:
                ray.init(address=address, logging_level=logging.WARNING)
        serve.start(
            proxy_location="Disabled",
            http_options={"host": "127.0.0.1", "port": 0},
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )
        ray_config = config.serve.ray
        max_batch = config.streaming.max_batch
        options: dict[str, Any] = {
            "ray_actor_options": {
                "num_cpus": ray_config.replica_cpus,
                "num_gpus": ray_config.replica_gpus,
            },
            # Serve caps a replica's batch at its ongoing requests (default 5).
            "max_ongoing_requests": max(2 * max_batch, 8),
            "health_check_period_s": ray_config.health_check_period_s,
            "health_check_timeout_s": max(ray_config.health_check_period_s * 3, 5.0),
        }
        if ray_config.autoscale_max_replicas > ray_config.replicas:
            options["autoscaling_config"] = {
                "min_replicas": ray_config.replicas,
                "max_replicas": ray_config.autoscale_max_replicas,
                "target_ongoing_requests": ray_config.target_ongoing_requests,
            }
        else:
            options["num_replicas"] = ray_config.replicas
        asr = (
            serve.deployment(AsrReplica, name="asr")
            .options(**options)
            .bind(
                replica_engine_config(
                    config.engine, ray_config.replica_cpus, ray_config.replica_gpus
                ).model_dump(),
                max_batch,
                ray_config.batch_wait_s,
            )
        )
        ingress = serve.deployment(Ingress, name="ingress").options(
            num_replicas=1, ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=100
        )
        self.handle = serve.run(
            ingress.bind(config.model_dump(), asr),
            name=APP_NAME,
            route_prefix=None,
            logging_config={"enable_access_log": False, "log_level": "WARNING"},
        )
        self.url = self.handle.url.remote().result(timeout_s=CALL_TIMEOUT_S)
        self._asr = serve.get_deployment_handle("asr", app_name=APP_NAME)

    def replica_pids(self, tries: int = 30) -> set[int]:
        """The process ids of the ASR replicas (asked until every replica answered)."""
        pids = {self._asr.pid.remote().result(timeout_s=CALL_TIMEOUT_S) for _ in range(tries)}
        return pids

    def resends(self) -> int:
        return self.handle.resends.remote().result(timeout_s=CALL_TIMEOUT_S)

    def stop(self) -> None:
        import ray

        serve = _serve()
        try:
            self.handle.drain.remote().result(timeout_s=CALL_TIMEOUT_S)
        finally:
            serve.delete(APP_NAME)
            if self._own_cluster:
                serve.shutdown()
                ray.shutdown()


def _loopback_only() -> None:
    """Keep a new local cluster on 127.0.0.1. Ray turns `_node_ip_address="127.0.0.1"` into
    the machine's own address (`resolve_ip_for_localhost`) unless multi-node clusters are off,
    which is what this switch does (for this process and the processes Ray starts)."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def serve_on_ray(config: Config, address: str | None) -> int:
    """The CLI: start, print the URL, run until SIGTERM or SIGINT, drain."""
    service = RayService(config, address)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    print(
        f"captionbot serve: {service.url} (Ray Serve, {config.serve.ray.replicas} ASR replicas); "
        "SIGTERM or Ctrl-C drains and stops",
        flush=True,
    )
    stop.wait()
    service.stop()
    return 0
