"""Benchmark of `captionbot join`: real Chromium, real WebRTC, on loopback, tiny.en.

For N = 1, 2, ... bots at once (each in its own test meeting with one speaker whose microphone
is an LJ Speech item), reported per N:

- delay from a word spoken in the meeting (its end, in the speaker's microphone file, from the
  moment the speaker's page opened the microphone) to the first frame *received by the speaker*
  from the bot's camera that shows it (p50/p90; the speaker page samples the received video
  every 100 ms, and each sample is matched to the caption states the bot recorded by rendering
  them with the compositor's renderer);
- CPU (cores) and memory (PSS) of one joined bot: captionbot's processes plus its Chromium;
- audio the bot dropped (behind real time) and the WER of what it captioned.

A bot "holds real time" when it dropped no audio and its p90 delay stays under 5 s.
The speakers' browsers run on the same machine and compete for the same cores.

Needs root (a loopback-only network namespace, `unshare -n`, keeps media on 127.0.0.1):

    python bench/join.py                 # N = 1, 2
    python bench/join.py --bots 1 2 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64decode
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.config import CaptionStyle  # noqa: E402
from bot.eval.metrics import word_error  # noqa: E402
from bot.video.captions import CaptionRenderer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ITEM = "ljspeech_LJ001-0100"
SAMPLE_JS = """
(() => {
  window.samples = [];
  const canvas = document.createElement("canvas");
  canvas.width = 1280; canvas.height = 240;
  const paint = canvas.getContext("2d");
  setInterval(() => {
    const video = meeting.videoOf("Captions");
    if (!video || video.videoWidth < 1280) return;
    paint.drawImage(video, 0, 480, 1280, 240, 0, 0, 1280, 240);
    window.samples.push([Date.now(), canvas.toDataURL("image/png")]);
  }, 100);
})()
"""


ISOLATED = "CAPTIONBOT_BENCH_NETNS"


def process_tree(root: int) -> list[int]:
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


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Meeting:
    """One room: a bot (captionbot join) and a speaker page."""

    def __init__(self, playwright, base_url: str, index: int, wav: Path, work: Path) -> None:
        self.url = f"{base_url}?room=bench{index}"
        self.out = work / f"bot{index}"
        self.out.mkdir(parents=True)
        config = self.out / "bot.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "join": {
                        "platform": "generic",
                        "participant_tile": ".tile",
                        "participant_name": ".name",
                        "alone_timeout_s": 5,
                        "browser_args": ["--allow-loopback-in-peer-connection"],
                    },
                    "overlay": {"enabled": False},
                }
            )
        )
        self.bot = subprocess.Popen(
            [sys.executable, "-m", "bot", "join", self.url, "--config", str(config),
             "--out", str(self.out), "--model", "tiny.en"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--allow-loopback-in-peer-connection",
            ],
        )
        self.page = self.browser.new_page()
        self.page.goto(self.url + "&video=0")

    def _read(self) -> None:
        assert self.bot.stderr is not None
        for line in self.bot.stderr:
            self.lines.append(line.rstrip())

    def joined(self) -> bool:
        return any("joined as" in line for line in self.lines)

    def speak(self) -> None:
        self.page.fill("#name", "Alice")
        self.page.click("#join")
        self.page.wait_for_function("() => document.getElementById('meeting').hidden === false")
        self.mic_open = time.time()  # the fake microphone starts its file when opened
        self.page.evaluate(SAMPLE_JS)

    def samples(self) -> list[tuple[float, np.ndarray]]:
        out = []
        for stamp, url in self.page.evaluate("window.samples"):
            png = np.frombuffer(b64decode(url.split(",", 1)[1]), np.uint8)
            out.append((stamp / 1000, cv2.imdecode(png, cv2.IMREAD_COLOR)))
        return out


def caption_states(data: dict) -> list[tuple[int, np.ndarray]]:
    """(words shown, the strip's text pixels in rows 480..720) for every caption state."""
    renderer = CaptionRenderer(CaptionStyle(), 1280, 720)
    committed, states = "", []
    for update in data["caption_updates"]:
        committed = (committed + " " + update["committed"]).strip()
        canvas = np.zeros((720, 1280, 3), np.uint8)
        renderer.set_text(committed, update["tentative"], "Alice")
        renderer.draw(canvas)
        shown = len(committed.split()) + len(update["tentative"].split())
        states.append((shown, canvas[480:].max(axis=2) > 128))
    return states


def words_visible(samples, states) -> list[tuple[float, int]]:
    """(time, words shown) of every received sample, by the best-matching caption state."""
    visible = []
    for stamp, frame in samples:
        bright = frame.max(axis=2) > 128
        if not bright.any():
            visible.append((stamp, 0))
            continue
        scores = [(m & bright).sum() / max((m | bright).sum(), 1) for _, m in states]
        best = int(np.argmax(scores))
        visible.append((stamp, states[best][0] if scores[best] > 0.5 else 0))
    return visible


def file_word_ends(wav: Path, work: Path) -> list[float]:
    """Word end times in the speaker's file (captionbot transcribe, same model)."""
    out = work / "reference"
    subprocess.run(
        [sys.executable, "-m", "bot", "transcribe", str(wav), "--out", str(out),
         "--model", "tiny.en", "--fast", "--no-progress"],
        check=True, capture_output=True,
    )  # fmt: skip
    return [w["end"] for w in json.loads((out / f"{wav.stem}.json").read_text())["words"]]


def run_round(count: int, base_url: str, wav: Path, reference: str, ends, work: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        meetings = [Meeting(playwright, base_url, i, wav, work) for i in range(count)]
        deadline = time.monotonic() + 180
        waiting = list(meetings)
        while waiting:  # each speaker speaks as soon as its bot is in (it would leave alone)
            if time.monotonic() > deadline:
                raise SystemExit("bots did not join: " + "\n".join(waiting[0].lines[-5:]))
            for meeting in [m for m in waiting if m.joined()]:
                meeting.speak()
                waiting.remove(meeting)
            time.sleep(0.2)
        trees = [process_tree(m.bot.pid) for m in meetings]
        cpu_start = [cpu_seconds(t) for t in trees]
        started = time.monotonic()
        meetings[0].page.wait_for_timeout(8000)
        memory = [pss_mb(process_tree(m.bot.pid)) for m in meetings]
        meetings[0].page.wait_for_timeout(9000)
        elapsed = time.monotonic() - started
        cpu = [
            (cpu_seconds(process_tree(m.bot.pid)) - c) / elapsed
            for m, c in zip(meetings, cpu_start)
        ]
        samples = [m.samples() for m in meetings]
        for meeting in meetings:
            meeting.browser.close()
        for meeting in meetings:
            try:
                meeting.bot.wait(timeout=60)
            except subprocess.TimeoutExpired:  # still there: stop it (it finalizes its files)
                meeting.bot.terminate()
                meeting.bot.wait(timeout=30)
    delays, dropped, wers, failed = [], [], [], 0
    for meeting, received in zip(meetings, samples):
        files = [json.loads(p.read_text()) for p in meeting.out.glob("*.json")]
        if len(files) != 1:  # it captioned nothing (or not one stream): it did not keep up
            failed += 1
            print("a bot captioned nothing:", *meeting.lines[-4:], sep="\n  ", file=sys.stderr)
            continue
        data = files[0]
        dropped.append(data["stats"]["dropped_audio_s"])
        wers.append(word_error(reference, data["text"], "en").wer)
        visible = words_visible(received, caption_states(data))
        for k, end in enumerate(ends[: len(data["text"].split())]):
            seen = next((t for t, shown in visible if shown > k), None)
            if seen is not None:
                delays.append(seen - (meeting.mic_open + end))
    delays_arr = np.array(delays) if delays else np.array([np.nan])
    return {
        "bots": count,
        "delay_p50": float(np.percentile(delays_arr, 50)),
        "delay_p90": float(np.percentile(delays_arr, 90)),
        "cpu_cores": float(np.mean(cpu)),
        "pss_mb": float(np.mean(memory)),
        "dropped_s": float(max(dropped, default=0.0)),
        "wer": float(np.mean(wers)) if wers else float("nan"),
        "failed": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bots", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if not os.environ.get(ISOLATED):
        command = " ".join([sys.executable, *map(str, sys.argv)])
        os.environ[ISOLATED] = "1"
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {command}"])
    import soundfile as sf

    from bot.audio.decode import load_audio

    rows = {json.loads(l)["id"]: json.loads(l) for l in (DATA / "manifest.jsonl").open()}  # noqa: E741
    row = rows[ITEM]
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        wav = work / "speaker.wav"
        audio = load_audio(DATA / row["audio"])
        sf.write(wav, np.concatenate([np.zeros(16000), audio, np.zeros(16000 * 60)]), 16000)
        ends = file_word_ends(wav, work)
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "meeting" / "server.py")],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert server.stdout is not None
        base_url = f"http://127.0.0.1:{server.stdout.readline().split()[1]}/"
        print(f"captionbot join, tiny.en, {os.cpu_count()} cores, {ITEM} ({row['duration_s']} s)")
        print(
            "bots  delay p50  delay p90  CPU/bot (cores)  PSS/bot (MB)  dropped audio  WER   "
            "real time",
            flush=True,
        )
        try:
            for count in args.bots:
                round_dir = work / f"round{count}"
                round_dir.mkdir()
                print_row(run_round(count, base_url, wav, row["text"], ends, round_dir))
        finally:
            server.kill()


def print_row(r: dict) -> None:
    holds = r["dropped_s"] == 0 and r["delay_p90"] < 5 and not r["failed"]
    print(
        f"{r['bots']:>4}  {r['delay_p50']:>8.2f}s  {r['delay_p90']:>8.2f}s  "
        f"{r['cpu_cores']:>15.2f}  {r['pss_mb']:>12.0f}  {r['dropped_s']:>12.1f}s  "
        f"{r['wer']:.3f}  {'yes' if holds else 'no'}"
        + (f" ({r['failed']} captioned nothing)" if r["failed"] else ""),
        flush=True,
    )


if __name__ == "__main__":
    main()
