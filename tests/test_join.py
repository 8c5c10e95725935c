"""`captionbot join` in a real meeting: real Chromium, real WebRTC, real speech, nothing mocked.

The meeting is tests/meeting (an aiohttp signalling server and a mesh-WebRTC page). Speakers
are Chromium pages whose microphone is a file of ../shared/data (padded with silence, since
Chromium loops the file). Everything runs in a network namespace with only loopback up, so media
stays on 127.0.0.1: the bot and the server inside it through `nsenter`, the speakers' browsers
through a wrapper executable (Playwright talks to them over pipes, which cross namespaces).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from base64 import b64decode
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from bot.config import CaptionStyle

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "meeting" / "server.py"
ALICE_ITEM, BOB_ITEM = "ljspeech_LJ001-0100", "ljspeech_LJ001-0105"
ALONE_S = 8

needs_meeting = [
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium package"),
    pytest.mark.skipif(
        os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
        reason="needs root with unshare/nsenter for a loopback-only network namespace",
    ),
]


# -- the meeting ------------------------------------------------------------------------------


class Namespace:
    """A network namespace with only `lo` up, held by a sleeping process."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", "ip link set lo up && echo up && exec sleep 100000"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None and self.holder.stdout.readline().strip() == "up"

    def command(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *args]

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


@pytest.fixture(scope="module")
def netns():
    for mark in needs_meeting:
        if mark.args[0]:
            pytest.skip(mark.kwargs["reason"])
    namespace = Namespace()
    yield namespace
    namespace.close()


@pytest.fixture(scope="module")
def meeting_url(netns: Namespace):
    server = subprocess.Popen(
        netns.command(sys.executable, str(SERVER), "--port", "0"),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    yield f"http://127.0.0.1:{port}/"
    server.kill()
    server.wait()


@pytest.fixture(scope="module")
def chromium_in_netns(netns: Namespace, tmp_path_factory) -> Path:
    wrapper = tmp_path_factory.mktemp("chromium") / "chromium"
    wrapper.write_text(
        f'#!/bin/sh\nexec nsenter --net=/proc/{netns.holder.pid}/ns/net -- {CHROMIUM} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.fixture(scope="module")
def playwright():
    api = pytest.importorskip("playwright.sync_api")
    with api.sync_playwright() as instance:
        yield instance


@pytest.fixture(scope="module")
def speech(load_item, tmp_path_factory):
    """A speaker's microphone file: 1 s of silence, the item, then silence (no loop)."""
    import soundfile as sf

    folder = tmp_path_factory.mktemp("speech")

    def make(item_id: str) -> tuple[Path, dict]:
        audio, row = load_item(item_id)
        padded = np.concatenate([np.zeros(16000), audio, np.zeros(16000 * 120)])
        path = folder / f"{item_id}.wav"
        sf.write(path, padded.astype(np.float32), 16000, subtype="PCM_16")
        return path, row

    return make


class Speaker:
    """A participant: a Chromium page whose microphone is a file."""

    def __init__(self, playwright, executable: Path, url: str, name: str, wav: Path) -> None:
        self.name = name
        self.browser = playwright.chromium.launch(
            executable_path=str(executable),
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--allow-loopback-in-peer-connection",
            ],
        )
        self.page = self.browser.new_page()
        self.page.goto(url + "&video=0")
        self.joined_at = 0.0

    def join(self) -> None:
        self.page.fill("#name", self.name)
        self.page.click("#join")
        self.joined_at = time.monotonic()

    def participants(self) -> list[str]:
        return self.page.evaluate("meeting.participants()")

    def wait_for_participant(self, name: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if name in self.participants():
                return True
            self.page.wait_for_timeout(200)
        return False

    def frame_of(self, name: str) -> np.ndarray | None:
        """The latest frame of `name`'s video as this participant receives it (BGR)."""
        grabbed = self.page.evaluate(f"meeting.grab({json.dumps(name)})")
        if grabbed is None:
            return None
        png = b64decode(grabbed["png"].split(",", 1)[1])
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)

    def leave(self) -> None:
        self.page.evaluate("meeting.leave()")
        self.browser.close()


class Bot:
    """`captionbot join` in the namespace, its stderr collected line by line."""

    def __init__(self, netns: Namespace, url: str, out: Path, *extra: str, **join) -> None:
        out.mkdir(parents=True, exist_ok=True)
        config = out / "bot.yaml"
        settings = {
            "platform": "generic",
            "participant_tile": ".tile",
            "participant_name": ".name",
            "alone_timeout_s": ALONE_S,
            "join_timeout_s": 10,
            "browser_args": ["--allow-loopback-in-peer-connection"],
            **join,
        }
        config.write_text(
            yaml.safe_dump({"join": settings, "overlay": {"enabled": False}}), encoding="utf-8"
        )
        command = [
            sys.executable, "-m", "bot", "join", url, "--config", str(config), "--out", str(out),
            "--model", "tiny.en", *extra,
        ]  # fmt: skip
        self.out = out
        self.process = subprocess.Popen(
            netns.command(*command), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.process.poll() is not None:
                self._reader.join(2)
                return any(text in line for line in self.lines)
            time.sleep(0.2)
        return False

    def wait(self, timeout_s: float) -> int:
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        """SIGTERM (the bot stops and finalizes its files), then SIGKILL of what is left."""
        if self.process.poll() is not None:
            return
        family = process_tree(self.process.pid)
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()

    def live_captions(self) -> dict[str, tuple[str, str]]:
        """Stream id → (committed text, tentative tail) from the live JSON files."""
        state = {}
        for stream_id, data in self.transcripts().items():
            updates = data.get("caption_updates") or [{}]
            state[stream_id] = (data["text"], updates[-1].get("tentative", ""))
        return state

    def wait_until_captions_settle(self, timeout_s: float, still_s: float = 3.0) -> bool:
        """Every stream has text, and nothing changed lately."""
        deadline = time.monotonic() + timeout_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            try:
                state = self.live_captions()
            except (ValueError, KeyError):  # a file being rewritten
                state = None
            if state != last:
                last, since = state, time.monotonic()
            settled = state and all(c or t for c, t in state.values())
            if settled and time.monotonic() - since >= still_s:
                return True
            time.sleep(0.5)
        return False

    def transcripts(self) -> dict[str, dict]:
        """Stream id → the JSON caption file of that stream."""
        files = [json.loads(p.read_text()) for p in self.out.glob("*.json")]
        return {data["stream_id"]: data for data in files}


def wer(hypothesis: str, reference: str) -> float:
    from bot.eval.metrics import word_error

    return word_error(reference, hypothesis, "en").wer


def transcribe_texts(paths: list[Path], out: Path) -> list[str]:
    """`captionbot transcribe` of the same files with the same model (the reference path)."""
    subprocess.run(
        [sys.executable, "-m", "bot", "transcribe", *map(str, paths), "--out", str(out),
         "--model", "tiny.en", "--fast", "--no-progress"],
        check=True, capture_output=True,
    )  # fmt: skip
    return [json.loads((out / f"{path.stem}.json").read_text())["text"] for path in paths]


def caption_pixels(committed: str, tentative: str, speaker: str) -> np.ndarray:
    """The text pixels of the compositor's caption strip showing `speaker: text`."""
    from bot.video.captions import CaptionRenderer

    canvas = np.zeros((720, 1280, 3), np.uint8)
    renderer = CaptionRenderer(CaptionStyle(), 1280, 720)
    renderer.set_text(committed, tentative, speaker)
    renderer.draw(canvas)
    return canvas.max(axis=2) > 128


def match_scores(frame: np.ndarray, shown: dict[str, tuple[str, str]]) -> dict[str, float]:
    """Speaker → how closely the frame's text pixels match that speaker's caption, drawn."""
    bright = frame.max(axis=2) > 128
    scores = {}
    for speaker, stream in (("Alice", "meeting-alice"), ("Bob", "meeting-bob")):
        drawn = caption_pixels(*shown[stream], speaker)
        scores[speaker] = float((drawn & bright).sum() / max((drawn | bright).sum(), 1))
    return scores


# -- tests ------------------------------------------------------------------------------------


def test_bot_captions_each_speaker_under_their_name_as_its_camera_and_leaves_when_alone(
    netns, meeting_url, chromium_in_netns, playwright, speech, tmp_path
):
    alice_wav, alice_row = speech(ALICE_ITEM)
    bob_wav, bob_row = speech(BOB_ITEM)
    url = meeting_url + "?room=duo"
    bot = Bot(netns, url, tmp_path / "bot")
    alice = Speaker(playwright, chromium_in_netns, url, "Alice", alice_wav)
    bob = Speaker(playwright, chromium_in_netns, url, "Bob", bob_wav)
    speakers = [alice, bob]
    try:
        assert bot.wait_for("joined as Captions", 90), "\n".join(bot.lines)
        alice.join()
        bob.join()
        assert alice.wait_for_participant("Captions", 15), "\n".join(bot.lines)

        # The bot's camera as Alice receives it, from the first frames on.
        first = None
        while first is None and time.monotonic() - alice.joined_at < 15:
            first = alice.frame_of("Captions")
            alice.page.wait_for_timeout(200)
        assert first is not None, alice.page.evaluate(
            "(() => { const v = meeting.videoOf('Captions'); return v && {ready: v.readyState, "
            "w: v.videoWidth, tracks: v.srcObject && v.srcObject.getTracks().map(t => t.kind + "
            "t.readyState + t.muted)} })()"
        )
        first_after_s = time.monotonic() - alice.joined_at
        assert first.shape[:2] == (720, 1280), f"sent at {first.shape[1]}x{first.shape[0]}"
        strips = []
        speech_s = max(alice_row["duration_s"], bob_row["duration_s"]) + 1.0
        while time.monotonic() - alice.joined_at < speech_s + 4:
            frame = alice.frame_of("Captions")
            strips.append(frame[540:, :].max(axis=2) > 128)
            alice.page.wait_for_timeout(700)
        # the caption area changes with the text while they speak
        distinct = {s.tobytes() for s in strips if s.any()}
        assert len(distinct) >= 3, f"caption strip changed {len(distinct)} times"
        # once the captions stay still, the strip shows the last speaker's current text
        assert bot.wait_until_captions_settle(30), bot.live_captions()
        shown = bot.live_captions()
        # The encoder sharpens a still picture over a few frames: the best frame within 10 s
        # counts. On a machine busy with the whole suite WebRTC sends a softer picture (best
        # frames 0.847-0.848 in three full-suite runs, 0.98 alone).
        best_scores: dict[str, float] = {}
        best_until = time.monotonic() + 10
        while time.monotonic() < best_until and max(best_scores.values(), default=0) <= 0.9:
            alice.page.wait_for_timeout(500)
            last_frame = alice.frame_of("Captions")
            if last_frame is None:
                continue
            scores = match_scores(last_frame, shown)
            if max(scores.values()) > max(best_scores.values(), default=-1):
                best_scores = scores
                cv2.imwrite(str(tmp_path / "received-last.png"), last_frame)
        for speaker in speakers:
            speaker.leave()
        speakers = []
        assert bot.wait(ALONE_S + 30) == 0, "\n".join(bot.lines)
    finally:
        for speaker in speakers:
            speaker.browser.close()
        bot.stop()

    assert any("alone in the meeting" in line for line in bot.lines), bot.lines
    files = bot.transcripts()
    assert set(files) == {"meeting-alice", "meeting-bob"}, set(files)
    assert all(data["final"] for data in files.values())
    assert [files[f"meeting-{n}"]["speaker"] for n in ("alice", "bob")] == ["Alice", "Bob"]
    alice_text, bob_text = files["meeting-alice"]["text"], files["meeting-bob"]["text"]
    # each stream holds its own speaker's words
    assert wer(alice_text, alice_row["text"]) < wer(alice_text, bob_row["text"])
    assert wer(bob_text, bob_row["text"]) < wer(bob_text, alice_row["text"])
    # as accurate as `captionbot transcribe` of the same files, within 10 points of WER
    offline = transcribe_texts([alice_wav, bob_wav], tmp_path / "transcribe")
    measured = {}
    for name, row, text, reference_text in (
        ("alice", alice_row, alice_text, offline[0]),
        ("bob", bob_row, bob_text, offline[1]),
    ):
        measured[name] = (wer(text, row["text"]), wer(reference_text, row["text"]))
        assert measured[name][0] <= measured[name][1] + 0.10, measured
    print(f"WER joined vs transcribe: {measured}; first video frame after {first_after_s:.1f} s")

    # The frame Alice received shows the caption of whoever spoke last exactly as the
    # compositor draws it: its text pixels match that rendering (measured 0.98 alone, 0.85
    # under load), and not the other speaker's (0.13-0.17).
    assert max(best_scores.values()) > 0.75, best_scores
    assert min(best_scores.values()) < 0.5, best_scores
    print(f"caption pixels matched: {best_scores}")


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grew = bool(children)
    return sorted(family)


API_CALL = """
import json, sys, urllib.error, urllib.request
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
request = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=30) as reply:
        print(json.dumps([reply.status, reply.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.read().decode()]))
"""


def call_api(netns: Namespace, method: str, url: str, body: dict | None = None) -> tuple[int, str]:
    """An HTTP request from inside the namespace (where the service's loopback is)."""
    data = json.dumps(body) if body else ""
    done = subprocess.run(
        netns.command(sys.executable, "-c", API_CALL, method, url, data),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    status, text = json.loads(done.stdout)
    return status, text


def test_a_meeting_bot_started_through_the_serve_api_is_captioned_by_the_service(
    netns, meeting_url, chromium_in_netns, playwright, speech, tmp_path
):
    wav, row = speech(ALICE_ITEM)
    url = meeting_url + "?room=api"
    out = tmp_path / "serve-out"
    config = tmp_path / "serve.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "task": "transcribe",
                "language": "en",
                "join": {
                    "platform": "generic",
                    "participant_tile": ".tile",
                    "participant_name": ".name",
                    "join_timeout_s": 10,
                    "browser_args": ["--allow-loopback-in-peer-connection"],
                },
                "serve": {"max_meeting_bots": 1},
            }
        ),
        encoding="utf-8",
    )
    service = subprocess.Popen(
        netns.command(
            sys.executable, "-m", "bot", "serve", "--config", str(config), "--model", "tiny.en",
            "--engine", "ctranslate2", "--port", "0", "--out", str(out),
        ),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    speaker = None
    try:
        assert service.stdout is not None
        base = re.search(r"ws://(\S+)/ws", service.stdout.readline()).group(1)
        api = f"http://{base}/api/sessions"
        status, text = call_api(netns, "POST", api, {"session": "standup", "url": "ftp://x/"})
        assert status == 400 and "http(s) address" in text
        status, text = call_api(netns, "POST", api, {"session": "standup", "url": url})
        assert status == 201, text
        assert json.loads(text)["state"] == "joining"
        status, text = call_api(netns, "POST", api, {"session": "other", "url": url})
        assert status == 503 and "all 1 meeting bots in use" in text

        speaker = Speaker(playwright, chromium_in_netns, url, "Alice", wav)
        deadline = time.monotonic() + 90
        while json.loads(call_api(netns, "GET", api)[1])["meetings"][0]["state"] != "in meeting":
            assert time.monotonic() < deadline, call_api(netns, "GET", api)
            time.sleep(0.5)
        speaker.join()
        assert speaker.wait_for_participant("Captions", 15), call_api(netns, "GET", api)
        # The meeting's participant is a session of the service, recognized by its engine.
        deadline = time.monotonic() + row["duration_s"] + 30
        words = 0
        while time.monotonic() < deadline and words < len(row["text"].split()) // 2:
            listed = json.loads(call_api(netns, "GET", api)[1])
            by_name = {s["session"]: s for s in listed["sessions"]}
            words = by_name.get("standup-meeting-alice", {}).get("words", 0)
            time.sleep(1.0)
        assert words >= len(row["text"].split()) // 2, listed
        time.sleep(row["duration_s"] / 2 + 4)  # the rest of what Alice says

        status, _ = call_api(netns, "DELETE", f"{api}/standup")
        assert status == 200
        deadline = time.monotonic() + 40
        while (state := json.loads(call_api(netns, "GET", api)[1])["meetings"][0]["state"]) != (
            "left"
        ):
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
    finally:
        if speaker is not None:
            speaker.browser.close()
        service.terminate()
        code = service.wait(60)
    assert code == 0, service.stderr.read()[-2000:]
    [path] = (out / "standup").glob("*.json")
    transcript = json.loads(path.read_text())
    assert transcript["final"] and transcript["speaker"] == "Alice"
    assert transcript["stream_id"] == "meeting-alice"
    assert wer(transcript["text"], row["text"]) < 0.15, transcript["text"]


def kill_pages_of(bot: Bot) -> int:
    """SIGKILL the renderer processes of the bot's Chromium (its meeting page crashes)."""
    killed = 0
    for pid in process_tree(bot.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"chromium" in command and b"--type=renderer" in command:
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def test_mixed_audio_is_one_stream_and_a_crashed_browser_rejoins_keeping_its_captions(
    netns, meeting_url, chromium_in_netns, playwright, speech, tmp_path
):
    wav, row = speech(ALICE_ITEM)
    url = meeting_url + "?room=mixed"
    bot = Bot(netns, url, tmp_path / "bot", "--mixed")
    speaker = Speaker(playwright, chromium_in_netns, url, "Alice", wav)
    try:
        assert bot.wait_for("joined as Captions", 90), "\n".join(bot.lines)
        speaker.join()
        before = ""
        while len(before.split()) < 4 and time.monotonic() - speaker.joined_at < 30:
            time.sleep(0.5)
            before = bot.live_captions().get("meeting", ("", ""))[0]
        assert len(before.split()) >= 4, bot.lines
        assert kill_pages_of(bot) > 0
        assert bot.wait_for("restarted it", 20), "\n".join(bot.lines)
        deadline = time.monotonic() + 40
        while sum("joined as Captions" in line for line in bot.lines) < 2:
            assert time.monotonic() < deadline, "\n".join(bot.lines)
            time.sleep(0.5)
        assert speaker.wait_for_participant("Captions", 15)
        speaker.leave()
        speaker = None
        assert bot.wait(ALONE_S + 30) == 0, "\n".join(bot.lines)
    finally:
        if speaker is not None:
            speaker.browser.close()
        bot.stop()
    files = bot.transcripts()
    assert set(files) == {"meeting"}
    final = files["meeting"]
    assert final["final"] and final["text"].startswith(before), (before, final["text"])
    spoken = " ".join(row["text"].split()[: len(before.split())])
    assert wer(before, spoken) < 0.35, (before, spoken)


FAILURES = {
    # where, join settings, exit code, the one error line says
    "unreachable": ("http://127.0.0.1:47999/", {}, 3, "cannot reach the meeting"),
    "no-join-button": ("?room=x&nojoin=1", {"join_timeout_s": 3}, 4, "no join button"),
    "lobby-never-opens": ("?room=x&lobby=1", {"lobby_timeout_s": 3}, 5, "still waiting"),
}


def test_join_failures_are_one_line_with_their_exit_code(netns, meeting_url, tmp_path):
    # all at once: each bot mostly waits (for its model, its browser, a timeout)
    bots = {
        name: Bot(
            netns,
            where if where.startswith("http") else meeting_url + where,
            tmp_path / name,
            *(["-v"] if name == "no-join-button" else []),
            **settings,
        )
        for name, (where, settings, _, _) in FAILURES.items()
    }
    try:
        codes = {name: bot.wait(120) for name, bot in bots.items()}
    finally:
        for bot in bots.values():
            bot.stop()
    for name, (_, _, code, message) in FAILURES.items():
        lines = bots[name].lines
        assert codes[name] == code, (name, lines)
        errors = [line for line in lines if "error" in line.lower() or "Traceback" in line]
        assert len(errors) == 1 and message in errors[0], (name, lines)
    # with -v, a screenshot of the page is saved next to the transcripts
    assert list((tmp_path / "no-join-button").glob("join-failure-*.png"))


def test_a_bad_url_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bot", "join", "meet.example/abc", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [
        "captionbot: error: 'meet.example/abc' is not a meeting URL: give an http:// or "
        "https:// address"
    ]


# -- the pieces, without a browser --------------------------------------------------------------


def test_platform_is_detected_from_the_url_and_config_selectors_override_the_profile():
    from bot.config import JoinConfig
    from bot.join.platforms import load_profiles, resolve_profile

    profiles = load_profiles()
    assert {"generic", "jitsi", "meet", "zoom", "teams"} <= profiles.keys()
    assert resolve_profile(JoinConfig(), "https://meet.jit.si/Standup").name == "jitsi"
    assert resolve_profile(JoinConfig(), "https://meet.google.com/abc-defg-hij").name == "meet"
    assert resolve_profile(JoinConfig(), "http://127.0.0.1:8000/call").name == "generic"
    custom = resolve_profile(JoinConfig(join_button="#go", per_participant=False), "http://x/")
    assert (custom.join_button, custom.per_participant) == ("#go", False)
    jitsi = profiles["jitsi"].meeting_url("https://meet.jit.si/Standup", "Live Captions")
    assert "userInfo.displayName=%22Live%20Captions%22" in jitsi
    assert "config.prejoinConfig.enabled=false" in jitsi


def test_a_profile_file_with_an_unknown_key_is_one_line(tmp_path):
    from bot.errors import ConfigError
    from bot.join.platforms import load_profiles

    path = tmp_path / "profiles.yaml"
    path.write_text("mine:\n  join_buton: '#go'\n")
    with pytest.raises(ConfigError, match="unknown key 'join_buton' in platform profile 'mine'"):
        load_profiles(path)


def test_page_audio_arrives_as_one_stream_per_named_participant():
    """The capture side of page_bot.js's protocol, over a real loopback WebSocket."""
    import asyncio
    import struct

    import aiohttp

    from bot.audio.meeting import MeetingAudioSource
    from bot.join.session import free_port

    port = free_port()
    source = MeetingAudioSource(port, 0.1, "meeting")
    source.open()

    async def page() -> None:
        url = f"http://127.0.0.1:{port}/audio"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"type": "track", "key": 1, "name": "Bob Smith"}))
            await ws.send_str(json.dumps({"type": "track", "key": 2, "name": "Alice"}))
            for key, level in ((1, 0.25), (2, -0.5)):
                block = np.full(1600, level, np.float32)
                await ws.send_bytes(struct.pack("<I", key) + block.tobytes())
            await asyncio.sleep(0.3)

    try:
        # in a thread of its own: Playwright's sync API may hold this thread's event loop
        client = threading.Thread(target=asyncio.run, args=(page(),))
        client.start()
        client.join(10)
        got: dict[tuple[str, str | None], list[float]] = {}
        deadline = time.monotonic() + 3
        while sum(len(v) for v in got.values()) < 3200 and time.monotonic() < deadline:
            for part in source.read() or []:
                got.setdefault((part.stream_id, part.speaker), []).extend(part.samples)
    finally:
        source.close()
    assert set(got) == {("meeting-bob-smith", "Bob Smith"), ("meeting-alice", "Alice")}
    assert np.allclose(got[("meeting-bob-smith", "Bob Smith")], 0.25)
    assert np.allclose(got[("meeting-alice", "Alice")], -0.5)
