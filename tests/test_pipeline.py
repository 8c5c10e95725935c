"""The meeting bot end to end: capture, ASR worker and compositor processes under the supervisor."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import english_wer

from bot.audio.samples import bundled_sample
from bot.config import load_config
from bot.console import print_bot_summary
from bot.messages import SAMPLE_RATE
from bot.runtime.supervisor import PipelineResult, Supervisor
from bot.streaming.agreement import normalized

JFK = (
    "And so my fellow Americans, ask not what your country can do for you,"
    " ask what you can do for your country."
)
LJ_ITEMS = [f"ljspeech_LJ001-{n:04d}" for n in (100, 101, 102, 103)]
BOT = [sys.executable, "-m", "bot"]


def _config(out: Path, **overrides: object):
    values: dict[str, object] = {
        "engine.model": "tiny.en",
        "task": "transcribe",
        "language": "en",
        "overlay.enabled": False,
        "outputs.dir": str(out),
    }
    values.update({key.replace("__", "."): value for key, value in overrides.items()})
    return load_config(None, values)


def _text(result: PipelineResult, stream_id: str) -> str:
    return "".join(w.text for w in result.streams[stream_id].words).strip()


def _duration(path: Path) -> float:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(probe.stdout.strip())


@pytest.fixture(scope="module")
def lj_meeting(tmp_path_factory, load_item) -> tuple[Path, str]:
    """About 27 s of speech: four LJ Speech sentences with short pauses, as one recording."""
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    parts, texts = [], []
    for item_id in LJ_ITEMS:
        audio, row = load_item(item_id)
        parts += [audio, pause]
        texts.append(row["text"])
    path = tmp_path_factory.mktemp("meeting") / "meeting.wav"
    soundfile.write(path, np.concatenate(parts), SAMPLE_RATE)
    return path, " ".join(texts)


class _ZoomEndpoint(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        _ZoomEndpoint.received.append(body)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[PipelineResult, Path]:
    out = tmp_path_factory.mktemp("demo")
    zoom = ThreadingHTTPServer(("127.0.0.1", 0), _ZoomEndpoint)
    threading.Thread(target=zoom.serve_forever, daemon=True).start()
    config = _config(
        out,
        audio__source="sample",
        sinks__file=str(out / "jfk.mp4"),
        overlay__enabled=True,
        overlay__port=0,
        outputs__zoom_cc_url=f"http://127.0.0.1:{zoom.server_address[1]}/cc?id=1",
    )
    try:
        return Supervisor(config, out, stem="jfk").run(), out
    finally:
        zoom.shutdown()


def test_the_bot_captions_the_sample_through_all_three_processes(demo_run) -> None:
    result, _ = demo_run
    assert result.ok, result.error
    assert english_wer(JFK, _text(result, "meeting")) < 0.15
    assert {"capture", "asr", "compositor"} <= result.reports.keys()
    assert result.restarts == {"asr": 0, "capture": 0, "compositor": 0}


def test_caption_files_hold_the_committed_words(demo_run) -> None:
    result, out = demo_run
    words = [w.text.strip() for w in result.streams["meeting"].words]
    transcript = json.loads((out / "jfk.json").read_text())
    assert [w["text"].strip() for w in transcript["words"]] == words
    assert "country" in (out / "jfk.srt").read_text()
    assert (out / "jfk.vtt").read_text().startswith("WEBVTT")


def test_the_video_file_covers_the_audio_and_shows_when_captions_were_drawn(demo_run) -> None:
    result, out = demo_run
    audio_s = soundfile.info(bundled_sample()).duration
    assert audio_s - 0.5 <= _duration(out / "jfk.mp4") <= audio_s + 10
    drawn = result.latency()["drawn"]
    assert drawn.words == len(result.streams["meeting"].words)
    assert 0 < drawn.p50 < 10


def test_the_overlay_server_and_the_zoom_captions_ran_beside_the_bot(demo_run) -> None:
    result, _ = demo_run
    assert result.overlay_url is not None and result.overlay_url.startswith("http://127.0.0.1:")
    # Every committed word went out, in order; a full stop held for the next word is lost
    # only where a pause already sent the line it closes, and no line opens with one.
    sent = " ".join(_ZoomEndpoint.received)
    words = [normalized(w) for w in _text(result, "meeting").split()]
    assert [normalized(w) for w in sent.split() if normalized(w)] == words
    assert not any(line.lstrip()[:1] in ".,;:?!" for line in _ZoomEndpoint.received)


def test_a_killed_worker_is_restarted_and_nothing_committed_is_lost(tmp_path, lj_meeting) -> None:
    path, reference = lj_meeting
    config = _config(tmp_path, audio__source="file", audio__file=str(path))
    before_kill: list = []

    def kill_worker_after_some_words(supervisor: Supervisor) -> None:
        def watch() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                record = supervisor.streams.get("meeting")
                if record is not None and len(record.words) >= 8:
                    before_kill.extend(record.words)
                    os.kill(supervisor.stages["asr"].process.pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()

    supervisor = Supervisor(config, tmp_path, stem="meeting", on_start=kill_worker_after_some_words)
    result = supervisor.run()
    assert result.ok, result.error
    assert result.restarts["asr"] == 1
    words = result.streams["meeting"].words
    assert words[: len(before_kill)] == before_kill
    assert len(words) > len(before_kill) + 10, "the restarted worker captioned the rest"
    on_disk = json.loads((tmp_path / "meeting.json").read_text())["words"]
    assert len(on_disk) == len(words)
    assert english_wer(reference, _text(result, "meeting")) < 0.35


def test_audio_dropped_while_the_asr_stage_is_behind_is_counted_exactly_and_reported(
    tmp_path,
) -> None:
    """Once captions flow, the ASR process is frozen (SIGSTOP) for 6 s of the sample: with
    `audio.queue_s` 1 s the relay keeps the newest second, the stage's own queue 2 s, and drops
    the rest."""
    config = _config(tmp_path, audio__source="sample", audio__queue_s=1.0)
    captions_flow = threading.Event()

    def freeze_the_asr_stage(supervisor: Supervisor) -> None:
        def freeze() -> None:
            pid = supervisor.stages["asr"].process.pid
            captions_flow.wait(60)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(6.0)
            os.kill(pid, signal.SIGCONT)

        threading.Thread(target=freeze, daemon=True).start()

    supervisor = Supervisor(
        config,
        tmp_path,
        stem="jfk",
        on_update=lambda update: captions_flow.set(),
        on_start=freeze_the_asr_stage,
    )
    result = supervisor.run()
    assert result.ok, result.error
    dropped = result.dropped_audio["meeting"]
    assert dropped.seconds > 1.5
    captured_s = result.reports["capture"].counters["seconds"]
    asr = result.reports["asr"].counters
    assert dropped.seconds == pytest.approx(captured_s - asr["audio_s"], abs=0.005)
    # the hole is on the stream clock: the stage filled it with silence, words kept their times
    assert asr["gaps_filled_s"] == pytest.approx(dropped.seconds, abs=0.05)
    stats = json.loads((tmp_path / "jfk.json").read_text())["stats"]
    assert stats["dropped_audio_s"] == round(dropped.seconds, 3)
    assert stats["dropped_audio_chunks"] == dropped.chunks
    summary = io.StringIO()
    print_bot_summary(result, config, summary)
    assert f"{dropped.seconds:.1f} s of audio dropped" in summary.getvalue()
    assert "country" in _text(result, "meeting"), "the newest audio was kept and captioned"


def test_ctrl_c_stops_the_bot_and_keeps_the_captions(tmp_path, lj_meeting) -> None:
    path, _ = lj_meeting
    bot = subprocess.Popen(
        [*BOT, "run", "--source", "file", "--file", str(path), "--model", "tiny.en"]
        + ["--task", "transcribe", "--language", "en", "--no-overlay", "--out", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert bot.stdout is not None
    seen = ""
    while "." not in seen.partition("Ctrl-C stops")[2]:
        line = bot.stdout.readline()
        assert line, f"bot ended early: {bot.stderr.read() if bot.stderr else ''}"
        seen += line
    bot.send_signal(signal.SIGINT)
    out, err = bot.communicate(timeout=20)
    assert bot.returncode == 0, err
    assert "Traceback" not in err
    (transcript,) = tmp_path.glob("meeting-*.json")
    words = json.loads(transcript.read_text())["words"]
    assert len(words) >= 5


def test_a_missing_audio_device_is_one_line_naming_it(tmp_path) -> None:
    bot = subprocess.run(
        [*BOT, "run", "--source", "microphone", "--device", "no-such-mic", "--model", "tiny.en"]
        + ["--task", "transcribe", "--no-overlay", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bot.returncode == 1
    errors = [line for line in bot.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, bot.stderr
    assert "no-such-mic" in errors[0] and "captionbot devices" in errors[0]


def test_a_bad_config_value_is_one_line_naming_the_key(tmp_path) -> None:
    config = tmp_path / "bot.yaml"
    config.write_text("video:\n  fps: -3\n")
    bot = subprocess.run(
        [*BOT, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert bot.returncode == 2
    assert bot.stderr.count("\n") == 1 and "video.fps" in bot.stderr
