"""`captionbot run --headless`: on a machine without a sound server the bot starts its own
PulseAudio, announces the sink and PULSE_SERVER for the meeting client, captions what is played
there, and stops the server when it ends. A real bot process, a real paplay, real speech."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import english_wer

ITEM = "ljspeech_LJ001-0102"  # 5.2 s of English
START_LIMIT_S = 120  # loading tiny.en and three processes on 2 busy cores


def _lines(stream) -> queue.Queue:
    """The lines of a pipe, read by a thread (so a silent bot cannot hang the test)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue, marker: str, limit_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"no {marker!r} from the bot; it printed: {seen}")


def _wait_for_recording(env: dict[str, str], limit_s: float = 60) -> None:
    """Until the bot's capture records from the server (its parec is a source output there)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        listed = subprocess.run(
            ["pactl", "list", "short", "source-outputs"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if listed.stdout.strip():
            return
        time.sleep(0.2)
    raise AssertionError("the bot never started recording from its sink's monitor")


@pytest.fixture
def headless_tools():
    for tool in ("pulseaudio", "pactl", "parec", "paplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt install pulseaudio pulseaudio-utils)")


def test_headless_run_captions_what_the_meeting_client_plays_into_its_sink(
    headless_tools, tmp_path, shared_data, manifest
) -> None:
    row = manifest[ITEM]
    script = Path(sys.executable).with_name("captionbot")
    # No sound server reachable: whatever this machine has, the bot must not use it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-user-config")
    out = tmp_path / "out"
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr:
        bot = subprocess.Popen(
            [str(script), "run", "--headless", "--model", "tiny.en", "--no-overlay"]
            + ["--task", "transcribe", "--language", "en", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        try:
            lines = _lines(bot.stdout)
            started = _until(lines, "captioning; Ctrl-C stops", START_LIMIT_S)
            announced = "\n".join(started)
            (sink,) = re.findall(r"play the meeting into the sink '([^']+)'", announced)
            (server,) = re.findall(r"^  PULSE_SERVER=(\S+)$", announced, re.MULTILINE)
            # The meeting client: another program, pointed at the server by what was printed.
            client = {**env, "PULSE_SERVER": server}
            _wait_for_recording(client)
            played = subprocess.run(
                ["paplay", f"--device={sink}", str(shared_data / row["audio"])],
                env=client,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert played.returncode == 0, played.stderr
            time.sleep(3.0)  # the pause after the speech commits its last words
            bot.send_signal(signal.SIGINT)
            bot.wait(timeout=30)
        finally:
            if bot.poll() is None:
                bot.kill()
                bot.wait()
    errors = stderr_path.read_text()

    assert bot.returncode == 0, errors
    assert "Traceback" not in errors
    (transcript,) = out.glob("meeting-*.json")
    text = json.loads(transcript.read_text(encoding="utf-8"))["text"]
    assert english_wer(row["text"], text) <= 0.3, text
    # The server stopped with the bot and its folder is gone.
    check = subprocess.run(
        ["pactl", "info"], env={**env, "PULSE_SERVER": server}, capture_output=True, timeout=10
    )
    assert check.returncode != 0
    assert not Path(server.removeprefix("unix:")).parent.exists()
