"""/metrics of `captionbot serve` in the Prometheus text format (no client library needed)."""

from __future__ import annotations

import time

from bot.asr.engine import Engine
from bot.serve.hub import HubSnapshot


def prometheus_text(snapshot: HubSnapshot, engine_obj: Engine, started_at: float) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP captionbot_{name} {help_text}")
        lines.append(f"# TYPE captionbot_{name} {kind}")
        for labels, value in samples:
            lines.append(f"captionbot_{name}{labels} {value:.6g}")

    sessions = snapshot.sessions
    engine = engine_obj.info
    model = f'{{engine="{engine.name}",model="{engine.model}",device="{engine.device}"}}'
    metric("engine_info", "gauge", "The engine serving every session.", [(model, 1)])
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the service started.",
        [("", time.time() - started_at)],
    )
    metric("sessions", "gauge", "Sessions being served.", [("", len(sessions))])
    metric(
        "sessions_max",
        "gauge",
        "Sessions admitted at most (capacity).",
        [("", snapshot.max_sessions)],
    )
    metric("draining", "gauge", "1 while the service shuts down.", [("", int(snapshot.draining))])
    metric(
        "queue_seconds",
        "gauge",
        "Audio waiting for the engine, all sessions.",
        [("", sum(s.queued_s for s in sessions))],
    )
    metric("engine_rounds_total", "counter", "Batched engine calls.", [("", snapshot.rounds)])
    metric(
        "engine_seconds_total", "counter", "Seconds spent in the engine.", [("", snapshot.decode_s)]
    )
    metric(
        "engine_round_seconds",
        "gauge",
        "Smoothed duration of one scheduling round.",
        [("", snapshot.round_s)],
    )
    metric(
        "batch_size_total",
        "counter",
        "Engine calls by batch size (windows per call).",
        [(f'{{size="{size}"}}', count) for size, count in sorted(snapshot.batch_sizes.items())],
    )
    resends = getattr(engine_obj, "resends", None)
    if resends is not None:
        metric(
            "engine_resends_total",
            "counter",
            "Windows sent again because the ASR replica decoding them died (Ray).",
            [("", resends)],
        )
    metric(
        "dropped_audio_seconds_total",
        "counter",
        "Audio dropped because a session fell behind (all sessions, ever).",
        [("", snapshot.dropped_s)],
    )
    per_session = [s for s in sessions if s.latency_p50 is not None]
    metric(
        "session_audio_seconds",
        "counter",
        "Audio received by a session.",
        [(f'{{session="{s.name}"}}', s.audio_s) for s in sessions],
    )
    metric(
        "session_dropped_audio_seconds",
        "counter",
        "Audio a session lost by falling behind.",
        [(f'{{session="{s.name}"}}', s.dropped_s) for s in sessions],
    )
    metric(
        "session_commit_latency_seconds",
        "gauge",
        "Commit latency of a session's words (caption frozen minus word end), by quantile.",
        [(f'{{session="{s.name}",quantile="0.5"}}', s.latency_p50 or 0.0) for s in per_session]
        + [(f'{{session="{s.name}",quantile="0.9"}}', s.latency_p90 or 0.0) for s in per_session],
    )
    return "\n".join(lines) + "\n"
