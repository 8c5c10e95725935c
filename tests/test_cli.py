"""The command line end to end: `captionbot transcribe` (real speech in, transcript files and
one-line errors out), then the conventions of every command: help, usage errors, -v/-q,
configuration discovery, devices, overlay ports.

Most runs call `bot.cli.main` in-process; the real console script runs as a subprocess where its
exit code or its stderr (log lines, tracebacks) is the behaviour under test. Tests that only need
*a* model use `--model tiny.en --fast`; translation needs the multilingual `base`. No test here
sees the user's own configuration: $CAPTIONBOT_CONFIG and the user config folder are emptied.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import english_wer

from bot.audio.pulse import PulseServer
from bot.audio.samples import bundled_sample
from bot.cli import build_parser, main

soundfile = pytest.importorskip("soundfile")

TINY = ["--model", "tiny.en", "--no-progress"]
TINY_FAST = [*TINY, "--fast"]
FORMATS = ("json", "srt", "vtt", "txt")
JSON_KEYS = {
    "audio",
    "duration_s",
    "model",
    "engine",
    "task",
    "language",
    "text",
    "words",
    "updates",
}
WORD_KEYS = {"text", "start", "end", "emitted_s", "first_seen_s"}
UPDATE_KEYS = {"t_s", "committed", "tentative"}
SR = 16_000


@dataclass(frozen=True)
class CliRun:
    code: int
    stdout: str
    stderr: str
    wall_s: float

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


IN_PROCESS_LIMIT_S = 120  # every in-process run here takes under 10 s on 2 cores


class CliHung(Exception):
    pass


@contextmanager
def time_limit(seconds: int):
    """Turn a run that never ends (a streaming loop that spins) into a failure, not a hang."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise CliHung(f"captionbot transcribe still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def no_user_configuration(tmp_path_factory):
    """Every run here sees the defaults unless a test names a configuration."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("CAPTIONBOT_CONFIG", raising=False)
        patch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("no-user-config")))
        yield


def run_command(*args: object) -> CliRun:
    """`captionbot ARGS` in this process, its stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with time_limit(IN_PROCESS_LIMIT_S), redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return CliRun(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


def run_main(*args: object) -> CliRun:
    """`captionbot transcribe ARGS` in this process, its stdout and stderr captured."""
    return run_command("transcribe", *args)


def console_script() -> Path:
    script = Path(sys.executable).with_name("captionbot")
    if not script.is_file():
        found = shutil.which("captionbot")
        if found is None:
            pytest.skip("the captionbot console script is not installed (pip install -e .)")
        script = Path(found)
    return script


def run_script(*args: object, cwd: Path, timeout: float = 120) -> CliRun:
    """The installed `captionbot ARGS` as a user runs it (its own process)."""
    started = time.monotonic()
    done = subprocess.run(
        [str(console_script()), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return CliRun(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def run_console_script(*args: object, cwd: Path, timeout: float = 120) -> CliRun:
    """The installed `captionbot transcribe ARGS` as a user runs it (its own process)."""
    return run_script("transcribe", *args, cwd=cwd, timeout=timeout)


def load_transcript(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON (RFC 8259 has no NaN or Infinity)")


def load_strict_json(path: Path) -> dict:
    """Parse as a strict JSON reader (a browser, jq) would: NaN and Infinity are errors."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)


def outputs_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def expected_outputs(*stems: str) -> set[str]:
    return {f"{stem}.{fmt}" for stem in stems for fmt in FORMATS}


def srt_cue_texts(srt: str) -> list[str]:
    """The text lines of every SubRip cue (numbers and time lines dropped)."""
    texts = []
    for block in srt.strip().split("\n\n"):
        lines = block.splitlines()
        assert lines[0].strip().isdigit(), block
        assert re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", lines[1]), block
        texts += lines[2:]
    return texts


def write_wav(path: Path, samples: np.ndarray) -> Path:
    soundfile.write(path, samples.astype(np.float32), SR, subtype="PCM_16")
    return path


def wav_header(data_bytes: int) -> bytes:
    """A 16 kHz 16-bit mono PCM WAV header that declares `data_bytes` of samples."""
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16)
    riff = struct.pack("<I", 36 + data_bytes)
    return b"RIFF" + riff + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", data_bytes)


def summary_row(stdout: str, stem: str) -> list[str]:
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] == [stem]]
    assert len(rows) == 1, f"no single summary row for {stem} in:\n{stdout}"
    return rows[0]


# ---- happy path: one English file, tiny.en, at the default pace (fast) ------------------------


@pytest.fixture(scope="module")
def jfk_run(tmp_path_factory, shared_data: Path, manifest: dict[str, dict]):
    row = manifest["fw_jfk"]
    audio = shared_data / row["audio"]
    out = tmp_path_factory.mktemp("jfk-out")
    run = run_main(audio, "--out", out, *TINY)  # neither --fast nor --realtime
    return run, out, audio, row


def test_transcribe_writes_json_srt_vtt_txt_named_after_the_input(jfk_run) -> None:
    run, out, audio, _ = jfk_run

    assert run.code == 0, run.stderr
    assert outputs_in(out) == expected_outputs(audio.stem)


def test_json_holds_metadata_words_and_caption_updates(jfk_run) -> None:
    _, out, audio, row = jfk_run
    transcript = load_transcript(out / f"{audio.stem}.json")

    assert transcript.keys() >= JSON_KEYS
    assert transcript["audio"] == str(audio)
    assert transcript["duration_s"] == pytest.approx(row["duration_s"], abs=0.05)
    assert transcript["model"] == "tiny.en"
    assert transcript["engine"] == "ctranslate2"
    assert transcript["task"] == "translate"  # the default; English-only = transcribe
    assert transcript["language"] == "en"
    assert transcript["words"] and transcript["updates"]
    assert transcript["stats"]["mode"] == "fast"  # a file is transcribed as fast as possible
    assert all(word.keys() >= WORD_KEYS for word in transcript["words"])
    assert all(update.keys() >= UPDATE_KEYS for update in transcript["updates"])
    assert [w["text"] for w in transcript["words"]] == transcript["text"].split()
    times = [update["t_s"] for update in transcript["updates"]]
    assert times == sorted(times)
    assert transcript["updates"][-1]["committed"] == transcript["text"]


def test_json_of_a_transcript_is_strict_json(jfk_run) -> None:
    _, out, audio, _ = jfk_run

    load_strict_json(out / f"{audio.stem}.json")


def test_transcript_text_is_close_to_the_reference(jfk_run) -> None:
    _, out, audio, row = jfk_run
    text = load_transcript(out / f"{audio.stem}.json")["text"]

    # measured: WER 0.045 ("asked not"); one repeated clause of 5 words would cost 0.23
    assert english_wer(row["text"], text) <= 0.15, text


def test_words_are_emitted_after_they_end_and_seen_before_they_are_emitted(jfk_run) -> None:
    _, out, audio, row = jfk_run
    words = load_transcript(out / f"{audio.stem}.json")["words"]

    for word in words:
        assert word["start"] <= word["end"], word
        assert word["emitted_s"] >= word["end"], word
        assert word["first_seen_s"] <= word["emitted_s"], word
    # fast (the default): the stream clock is audio time, so nothing is emitted after the end.
    assert max(w["emitted_s"] for w in words) <= row["duration_s"] + 0.01


def test_subtitles_and_text_hold_the_transcript_words(jfk_run) -> None:
    _, out, audio, _ = jfk_run
    words = load_transcript(out / f"{audio.stem}.json")["text"].split()
    srt = (out / f"{audio.stem}.srt").read_text(encoding="utf-8")
    vtt = (out / f"{audio.stem}.vtt").read_text(encoding="utf-8")
    txt = (out / f"{audio.stem}.txt").read_text(encoding="utf-8")

    assert " ".join(srt_cue_texts(srt)).split() == words
    assert vtt.startswith("WEBVTT\n\n")
    assert vtt.count(" --> ") == srt.count(" --> ") > 0
    assert txt.split() == words


def test_summary_table_lists_the_file_with_its_word_count(jfk_run) -> None:
    run, out, audio, _ = jfk_run
    words = load_transcript(out / f"{audio.stem}.json")["words"]

    assert "Summary (fast" in run.stdout
    row = summary_row(run.stdout, audio.stem)
    assert row[1] == "11.0" and row[2] == str(len(words)) and row[-1] == "ok"
    assert f"Transcripts in {out}" in run.stdout


# ---- --realtime (for measuring live latency), through the installed console script ------------


@pytest.fixture(scope="module")
def realtime_run(tmp_path_factory):
    sample = bundled_sample()
    out = tmp_path_factory.mktemp("realtime-out")
    run = run_console_script(sample, "--out", out, *TINY, "--realtime", cwd=out)
    return run, load_transcript(out / f"{sample.stem}.json")


def test_realtime_takes_about_the_audio_duration(realtime_run) -> None:
    run, transcript = realtime_run

    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "Summary (real time" in run.stdout
    assert transcript["stats"]["mode"] == "realtime"
    assert transcript["duration_s"] == pytest.approx(11.0, abs=0.05)
    assert run.wall_s >= 9.0  # 11 s of audio delivered at speech speed
    assert "country" in transcript["text"].lower()


def test_realtime_words_are_emitted_on_the_wall_clock(realtime_run) -> None:
    run, transcript = realtime_run
    words = transcript["words"]
    emitted = [w["emitted_s"] for w in words]

    assert words
    assert emitted == sorted(emitted)
    for word in words:
        assert word["emitted_s"] >= word["end"], word
        assert word["first_seen_s"] <= word["emitted_s"], word
    # The last words are committed once the audio has played out, no earlier, and within the run.
    assert transcript["duration_s"] - 1.0 <= emitted[-1] <= run.wall_s


# ---- several files ---------------------------------------------------------------------------


def test_two_streams_each_get_their_own_transcript(tmp_path, shared_data, manifest) -> None:
    items = ["ljspeech_LJ001-0102", "ljspeech_LJ001-0107"]  # 5.2 s and 3.7 s
    paths = [shared_data / manifest[i]["audio"] for i in items]

    run = run_main(*paths, "--out", tmp_path, "--streams", "2", *TINY_FAST)

    assert run.code == 0, run.stderr
    assert outputs_in(tmp_path) == expected_outputs(*(p.stem for p in paths))
    texts = {
        item: load_transcript(tmp_path / f"{path.stem}.json")["text"]
        for item, path in zip(items, paths, strict=True)
    }
    for item, other in [items, items[::-1]]:
        assert english_wer(manifest[item]["text"], texts[item]) <= 0.3, (item, texts[item])
        assert english_wer(manifest[other]["text"], texts[item]) >= 0.8, (item, texts[item])


def test_audio_folder_picks_up_its_audio_files_and_ignores_the_rest(
    tmp_path, shared_data, manifest
) -> None:
    folder = tmp_path / "meeting"
    folder.mkdir()
    (folder / "first.wav").symlink_to(shared_data / manifest["ljspeech_LJ001-0107"]["audio"])
    shutil.copy(shared_data / manifest["pocketsphinx_cards_003"]["audio"], folder / "second.WAV")
    (folder / "notes.txt").write_text("agenda: not audio\n", encoding="utf-8")
    out = tmp_path / "out"

    run = run_main("--audio-folder", folder, "--out", out, *TINY_FAST)

    assert run.code == 0, run.stderr
    assert outputs_in(out) == expected_outputs("first", "second")
    for stem, item in [("first", "ljspeech_LJ001-0107"), ("second", "pocketsphinx_cards_003")]:
        text = load_transcript(out / f"{stem}.json")["text"]
        assert english_wer(manifest[item]["text"], text) <= 0.34, (stem, text)


# ---- bad input files in a batch ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, shared_data, manifest):
    folder = tmp_path_factory.mktemp("bad-batch")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("minutes of the meeting, not audio\n", encoding="utf-8")
    whole = (shared_data / manifest["ljspeech_LJ001-0102"]["audio"]).read_bytes()
    (folder / "cut.wav").write_bytes(whole[: len(whole) // 2])  # header promises 5.2 s
    claims = wav_header(data_bytes=100_000_000)  # 100 MB of 16 kHz audio, in a 200-byte file
    (folder / "claims.wav").write_bytes(claims + bytes(200 - len(claims)))
    good = shared_data / manifest["pocketsphinx_cards_003"]["audio"]
    out = folder / "out"
    run = run_console_script(
        "empty.wav",
        "notes.wav",
        "cut.wav",
        "missing.wav",
        "claims.wav",
        good,
        "--out",
        out,
        *TINY_FAST,
        cwd=folder,
    )
    return run, out, good


def test_bad_files_fail_alone_with_one_line_each_and_exit_code_1(bad_batch) -> None:
    run, out, _ = bad_batch

    assert run.code == 1
    assert "Traceback" not in run.stderr
    for name in ["empty.wav", "notes.wav", "missing.wav", "claims.wav"]:
        lines = [line for line in run.stderr_lines if name in line]
        assert len(lines) == 1, (name, run.stderr)
        assert lines[0].startswith("captionbot: error: "), lines
        assert not (out / f"{Path(name).stem}.json").exists()
    assert "empty" in next(line for line in run.stderr_lines if "empty.wav" in line)
    assert "does not exist" in next(line for line in run.stderr_lines if "missing.wav" in line)
    # four errors and the truncation warning: nothing else on stderr
    assert len(run.stderr_lines) == 5, run.stderr
    for stem in ["empty", "notes", "missing", "claims"]:
        assert "FAILED" in " ".join(summary_row(run.stdout, stem))
    assert "4 of 6 file(s) failed" in run.stdout


def test_the_good_file_of_a_failing_batch_is_transcribed(bad_batch, manifest) -> None:
    _, out, good = bad_batch
    transcript = load_transcript(out / f"{good.stem}.json")

    assert outputs_in(out) >= expected_outputs(good.stem)
    reference = manifest["pocketsphinx_cards_003"]["text"]
    assert english_wer(reference, transcript["text"]) <= 0.34, transcript["text"]


def test_a_truncated_wav_warns_once_and_keeps_the_audio_that_decodes(bad_batch) -> None:
    run, out, _ = bad_batch
    lines = [line for line in run.stderr_lines if "cut.wav" in line]
    transcript = load_transcript(out / "cut.json")

    assert len(lines) == 1 and lines[0].startswith("captionbot: warning: "), run.stderr
    declared_and_present = (
        r"truncated: its header declares 5\.1\d s of audio, the file holds 2\.5\d s"
    )
    assert re.search(declared_and_present, lines[0]), lines[0]
    assert 2.0 < transcript["duration_s"] < 3.0  # about half of the 5.2 s the header declares
    assert transcript["words"]
    status = " ".join(summary_row(run.stdout, "cut")[7:])
    assert re.fullmatch(r"truncated: 2\.6 of 5\.\d s", status), status


def test_a_wav_whose_header_promises_far_more_than_it_holds_fails(bad_batch) -> None:
    run, out, _ = bad_batch
    (line,) = [line for line in run.stderr_lines if "claims.wav" in line]

    assert "is truncated: its header declares 3125.00 s" in line  # 100 MB of 16 kHz 16-bit
    assert "nothing to caption" in line
    assert not (out / "claims.json").exists()


def test_a_truncated_file_alone_is_captioned_and_exits_0_and_q_silences_the_warning(
    tmp_path, shared_data, manifest
) -> None:
    whole = (shared_data / manifest["ljspeech_LJ001-0102"]["audio"]).read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[: len(whole) // 2])

    before = run_command("-q", "transcribe", cut, "--out", tmp_path / "a", *TINY)
    after = run_command("transcribe", cut, "--out", tmp_path / "b", *TINY, "--quiet")

    for run in (before, after):
        assert run.code == 0 and run.stderr == "", run.stderr
        assert " ".join(summary_row(run.stdout, "cut")[7:]).startswith("truncated: 2.")
    assert load_transcript(tmp_path / "a" / "cut.json")["words"]


def test_summary_says_where_transcripts_are_when_the_first_file_failed(bad_batch) -> None:
    run, out, _ = bad_batch

    assert f"Transcripts in {out}" in run.stdout


# ---- bad options: one line, no traceback, nothing transcribed ---------------------------------


BAD_CONFIGS = {
    "unknown-key.yaml": "engine:\n  modle: base\n",
    "wrong-type.yaml": "engine:\n  beam_size: many\n",
}


@pytest.mark.parametrize(
    ("options", "code", "names"),
    [
        (["--language", "xx"], 2, ["'xx'", "language"]),
        (["--model", "nonexistent-model-name"], 2, ["nonexistent-model-name"]),
        (["--model", "/nonexistent/dir"], None, ["/nonexistent/dir"]),
        (["--streams", "0"], 2, ["--streams"]),
        (["--language", "de", "--model", "tiny.en"], 2, ["tiny.en", "'de'"]),
        (["--config", "{dir}/unknown-key.yaml"], 2, ["engine.modle", "unknown-key.yaml"]),
        (["--config", "{dir}/wrong-type.yaml"], 2, ["engine.beam_size", "wrong-type.yaml"]),
        (["--config", "{dir}/absent.yaml"], 2, ["absent.yaml"]),
        (["--audio-folder", "{dir}/no-such-folder"], None, ["no-such-folder"]),
    ],
    ids=[
        "unknown-language",
        "unknown-model",
        "missing-model-dir",
        "zero-streams",
        "language-english-only",
        "config-unknown-key",
        "config-wrong-type",
        "config-missing",
        "audio-folder-missing",
    ],
)
def test_bad_option_is_one_line_naming_it(
    tmp_path, shared_data, manifest, options, code, names
) -> None:
    for name, text in BAD_CONFIGS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    options = [option.format(dir=tmp_path) for option in options]
    audio = shared_data / manifest["pocketsphinx_cards_003"]["audio"]
    out = tmp_path / "out"

    run = run_main(audio, "--out", out, "--fast", "--no-progress", *options)

    assert run.code == code if code is not None else run.code != 0
    assert len(run.stderr_lines) == 1, run.stderr
    line = run.stderr_lines[0]
    assert line.startswith("captionbot: error: ")
    assert all(name in line for name in names), line
    assert "Traceback" not in run.stderr
    assert "Summary" not in run.stdout
    assert not out.exists() or not list(out.iterdir())


@pytest.mark.parametrize(
    ("arguments", "names"),
    [
        (["{audio}", "--model", "tiny.en"], ["--out"]),
        (["--out", "{dir}/out", "--model", "tiny.en"], ["no input files"]),
        (["{audio}", "--out", "{audio}", "--model", "tiny.en"], ["is a file, not a folder"]),
    ],
    ids=["missing-out", "no-inputs", "out-is-a-file"],
)
def test_missing_or_wrong_arguments_are_one_line_and_exit_code_2(
    tmp_path, shared_data, manifest, arguments, names
) -> None:
    audio = shared_data / manifest["pocketsphinx_cards_003"]["audio"]
    arguments = [a.format(dir=tmp_path, audio=audio) for a in arguments]

    run = run_main(*arguments)

    assert run.code == 2
    assert len(run.stderr_lines) == 1, run.stderr
    assert run.stderr_lines[0].startswith("captionbot: error: ")
    assert all(name in run.stderr_lines[0] for name in names), run.stderr
    assert "Summary" not in run.stdout


def test_console_script_exits_2_with_one_line_for_an_unknown_language(tmp_path) -> None:
    run = run_console_script(
        bundled_sample(), "--out", tmp_path / "out", "--language", "xx", cwd=tmp_path, timeout=60
    )

    assert run.code == 2
    assert run.stderr_lines == [run.stderr_lines[0]] and "'xx'" in run.stderr_lines[0]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists()


# ---- silence ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silence_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("silence")
    zeros = write_wav(folder / "zeros.wav", np.zeros(5 * SR))
    noise = write_wav(folder / "noise.wav", np.random.default_rng(0).normal(0, 0.003, 5 * SR))
    out = folder / "out"
    return run_main(zeros, noise, "--out", out, *TINY_FAST), out


def test_silence_and_faint_noise_give_empty_but_valid_transcripts(silence_run) -> None:
    run, out = silence_run

    assert run.code == 0, run.stderr
    assert outputs_in(out) == expected_outputs("zeros", "noise")
    for stem in ["zeros", "noise"]:
        transcript = load_transcript(out / f"{stem}.json")
        assert transcript["duration_s"] == pytest.approx(5.0)
        assert transcript["words"] == [] and transcript["text"] == ""
        assert all(not u["committed"] and not u["tentative"] for u in transcript["updates"])
        assert (out / f"{stem}.srt").read_text(encoding="utf-8") == ""
        assert (out / f"{stem}.vtt").read_text(encoding="utf-8") == "WEBVTT\n\n"
        assert (out / f"{stem}.txt").read_text(encoding="utf-8") == ""
        assert summary_row(run.stdout, stem)[2] == "0"


def test_json_of_an_empty_transcript_is_strict_json(silence_run) -> None:
    _, out = silence_run

    for stem in ["zeros", "noise"]:
        stats = load_strict_json(out / f"{stem}.json")["stats"]
        assert stats["commit_latency_s"]["words"] == 0


# ---- translation -----------------------------------------------------------------------------

_FUNCTION_WORDS = (
    "a an the of to in on at by for from with and or but is are was were be been it its this that "
    "they them their he she you your we our i as so not no do does can could should would will "
    "have has had there here which who what"
)
STOPWORDS = frozenset(_FUNCTION_WORDS.split())


def content_words(text: str) -> set[str]:
    """Lower-case words minus function words, with a plural or third-person -s dropped."""
    words = re.findall(r"[a-zäöüß']+", text.lower())
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words} - STOPWORDS


def test_translate_turns_german_speech_into_english_text(tmp_path, shared_data, manifest) -> None:
    row = manifest["fleurs_de_000"]
    audio = shared_data / row["audio"]

    run = run_main(
        audio,
        "--out",
        tmp_path,
        "--model",
        "base",
        "--task",
        "translate",
        "--fast",
        "--no-progress",
    )

    assert run.code == 0, run.stderr
    transcript = load_transcript(tmp_path / f"{audio.stem}.json")
    text = transcript["text"]
    assert transcript["task"] == "translate" and transcript["language"] == "de"
    assert sum(c.isascii() for c in text) / len(text) >= 0.97, text
    english, german = content_words(text), content_words(row["text"]) - {"hongkong", "kowloon"}
    reference = content_words(row["translation"])
    # measured: 6 of the reference's 11 content words (best, view, hong, kong, leave, island)
    assert len(english & reference) / len(reference) >= 0.3, (text, row["translation"])
    assert len(english & german) <= 1, (text, row["text"])


# ---- help and usage errors: every command ----------------------------------------------------

OWN_COMMANDS = ("run", "demo", "transcribe", "eval", "overlay", "devices")


def test_captionbot_alone_prints_the_help_with_the_commands_and_exit_status() -> None:
    run = run_command()

    assert run.code == 0 and run.stderr == ""
    assert run.stdout.startswith("usage: captionbot")
    for command in OWN_COMMANDS:
        assert re.search(rf"^    {command} ", run.stdout, re.MULTILINE), command
    assert "exit status:" in run.stdout
    for code in ("0", "1", "2", "130"):
        assert re.search(rf"^  {code} +\w", run.stdout, re.MULTILINE), code


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices)


@pytest.mark.parametrize("command", OWN_COMMANDS)
def test_every_command_has_a_description_examples_and_defaults_in_its_help(command) -> None:
    parser = _subcommands()[command]
    text = parser.format_help()

    assert len(parser.description.split()) >= 15, parser.description
    assert f"examples:\n  captionbot {command}" in text
    assert "exit status:" in text
    for group in parser._mutually_exclusive_groups:  # --realtime | --fast: one is the default
        assert sum("(default)" in a.help for a in group._group_actions) == 1
    alternatives = {id(a) for g in parser._mutually_exclusive_groups for a in g._group_actions}
    for action in parser._actions:
        if not action.option_strings or action.required or action.dest in ("help",):
            continue
        if id(action) not in alternatives:
            assert action.help and "default" in action.help, (command, action.option_strings)


def test_task_and_engine_help_say_what_the_defaults_do() -> None:
    from bot.config import Config

    run = run_command("transcribe", "--help")
    text = " ".join(run.stdout.split())

    assert Config().task == "translate" and Config().engine.name == "auto"
    assert "translate (default): English text whatever is spoken" in text
    assert "auto (default): ctranslate2, on CUDA when ctranslate2.get_cuda_device_count() > 0" in (
        text
    )
    assert "jax only when asked for" in text


@pytest.mark.parametrize(
    ("args", "help_of"),
    [
        (["transcribe", "x.wav", "--out", "o", "--bogus"], "captionbot transcribe"),
        (["transcribe", "x.wav"], "captionbot transcribe"),
        (["eval", "--limit", "many", "d.jsonl"], "captionbot eval"),
        (["teleport"], "captionbot"),
    ],
    ids=["unknown-option", "missing-required", "bad-value", "unknown-command"],
)
def test_usage_errors_are_one_line_naming_the_program_once(args, help_of) -> None:
    run = run_command(*args)

    assert run.code == 2 and run.stdout == ""
    (line,) = run.stderr_lines
    assert line.startswith("captionbot: error: ")
    assert line.endswith(f"(see {help_of} --help)"), line
    assert line.count("captionbot") == 2, line  # the prefix, and the help to read


# ---- -v / -q, before or after the command -----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["-v", "transcribe", "--out", "{dir}"], ["transcribe", "--out", "{dir}", "--verbose"]],
    ids=["before", "after"],
)
def test_verbose_works_before_and_after_the_command_and_names_the_config(tmp_path, args) -> None:
    run = run_command(*(a.format(dir=tmp_path) for a in args))

    user_config = Path(os.environ["XDG_CONFIG_HOME"]) / "captionbot" / "config.yaml"
    assert run.code == 2
    assert run.stderr_lines[0] == (
        f"captionbot: config: no config file (none at {user_config}): the defaults"
    )
    assert run.stderr_lines[-1] == (
        "captionbot: error: no input files: name audio files or use --audio-folder DIR"
    )


def test_without_v_a_failing_command_prints_its_error_alone(tmp_path) -> None:
    run = run_command("transcribe", "--out", tmp_path)

    assert run.code == 2
    assert run.stderr_lines == [
        "captionbot: error: no input files: name audio files or use --audio-folder DIR"
    ]


# ---- configuration found without flags ----------------------------------------------------------


@pytest.fixture
def config_homes(tmp_path, monkeypatch):
    """A user config folder and a file for $CAPTIONBOT_CONFIG, each with its own bad key, so the
    error says which file was read."""
    user = tmp_path / "xdg" / "captionbot" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("engine:\n  from_user_config: 1\n", encoding="utf-8")
    named = tmp_path / "named.yaml"
    named.write_text("engine:\n  from_env: 1\n", encoding="utf-8")
    flag = tmp_path / "flag.yaml"
    flag.write_text("engine:\n  from_flag: 1\n", encoding="utf-8")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CAPTIONBOT_CONFIG", raising=False)
    return user, named, flag


def _transcribe_sample(tmp_path: Path, *extra: object) -> CliRun:
    return run_main(bundled_sample(), "--out", tmp_path / "out", *TINY, *extra)


def test_the_user_config_is_read_when_nothing_else_names_one(tmp_path, config_homes) -> None:
    user, _, _ = config_homes

    run = _transcribe_sample(tmp_path)

    assert run.code == 2
    (line,) = run.stderr_lines
    assert f"unknown config key 'engine.from_user_config' in {user}" in line


def test_captionbot_config_variable_wins_over_the_user_config(
    tmp_path, config_homes, monkeypatch
) -> None:
    _, named, _ = config_homes
    monkeypatch.setenv("CAPTIONBOT_CONFIG", str(named))

    run = _transcribe_sample(tmp_path)

    (line,) = run.stderr_lines
    assert f"unknown config key 'engine.from_env' in {named}" in line


def test_config_flag_wins_over_the_variable(tmp_path, config_homes, monkeypatch) -> None:
    _, named, flag = config_homes
    monkeypatch.setenv("CAPTIONBOT_CONFIG", str(named))

    run = _transcribe_sample(tmp_path, "--config", flag)

    (line,) = run.stderr_lines
    assert f"unknown config key 'engine.from_flag' in {flag}" in line


def test_a_variable_naming_a_missing_file_is_one_line(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAPTIONBOT_CONFIG", str(tmp_path / "gone.yaml"))

    run = _transcribe_sample(tmp_path)

    assert run.code == 2
    assert run.stderr_lines == [
        f"captionbot: error: CAPTIONBOT_CONFIG names {tmp_path / 'gone.yaml'}, which is not a "
        "file: fix the path or unset it"
    ]


def test_the_config_in_use_is_named_at_start(tmp_path, monkeypatch) -> None:
    user = tmp_path / "xdg" / "captionbot" / "config.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("streaming:\n  pause_s: 0.6\n", encoding="utf-8")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))

    run = run_command("-v", "transcribe", "--out", tmp_path / "out")

    assert run.stderr_lines[0] == f"captionbot: config: {user} (from the user config)"


def test_eval_ids_take_commas_as_well_as_spaces(tmp_path, shared_data) -> None:
    manifest_path = shared_data / "manifest.jsonl"

    run = run_command(
        "eval",
        manifest_path,
        "--ids",
        "fw_jfk,no_such_item",
        "ljspeech_LJ001-0102",
        "--out",
        tmp_path,
    )

    assert run.code == 2
    (line,) = run.stderr_lines
    assert line.endswith("has no item with id no_such_item; check the ids against the dataset")


# ---- devices -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def meeting_pulse(tmp_path_factory):
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils)")
    with PulseServer(tmp_path_factory.mktemp("pulse"), ["meeting_app"], "Meeting App") as pulse:
        yield pulse


def test_devices_shows_human_names_and_marks_the_monitor_run_captures(meeting_pulse) -> None:
    meeting_pulse.pactl("load-module", "module-null-sink", "sink_name=speakers")
    meeting_pulse.pactl("set-default-sink", "meeting_app")

    run = run_command("devices")

    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    (meeting,) = [line for line in lines if "meeting_app.monitor" in line]
    (speakers,) = [line for line in lines if "speakers.monitor" in line]
    assert "[loopback]" in meeting and "Monitor of Meeting App" in meeting
    assert meeting.endswith("<- captionbot run captures this by default")
    assert "captures this by default" not in speakers


def test_devices_says_how_to_get_portaudio_inputs_without_pyaudio(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyaudio", None)  # import pyaudio now fails

    run = run_command("devices")

    assert run.code == 0, run.stderr
    lines = run.stdout.splitlines()
    heading = lines.index("Audio, PortAudio inputs (use --device INDEX):")
    assert lines[heading + 1].startswith("  (PyAudio is not installed; to list and use them: ")
    assert "pip install 'captionbot[portaudio]'" in lines[heading + 1]
    assert lines[heading + 2].startswith("Video devices")


def test_video_devices_are_named_and_loopback_devices_marked(tmp_path) -> None:
    """The layout of /sys/class/video4linux (this machine has no V4L2 devices): a camera with a
    hardware parent, and a v4l2loopback device, which lives under /sys/devices/virtual."""
    from bot.audio.devices import list_video_devices

    camera = tmp_path / "devices" / "pci0000:00" / "usb1" / "video4linux" / "video0"
    loopback = tmp_path / "devices" / "virtual" / "video4linux" / "video10"
    classes = tmp_path / "class" / "video4linux"
    classes.mkdir(parents=True)
    for device, name in [(camera, "Integrated Camera"), (loopback, "captionbot")]:
        device.mkdir(parents=True)
        (device / "name").write_text(f"{name}\n", encoding="utf-8")
        (classes / device.name).symlink_to(device)

    devices = list_video_devices(classes)

    found = {d.path: (d.name, d.is_loopback) for d in devices}
    assert found["/dev/video0"] == ("Integrated Camera", False)
    assert found["/dev/video10"] == ("captionbot", True)


# ---- run and demo: devices checked first, overlay ports ----------------------------------------


def test_a_wrong_device_fails_before_the_model_is_looked_at(tmp_path) -> None:
    run = run_command(
        "run",
        "--device",
        "no_such_device.monitor",
        "--model",
        tmp_path / "no-model",
        "--out",
        tmp_path,
    )

    assert run.code == 1
    (line,) = run.stderr_lines
    assert "'no_such_device.monitor' not found" in line and "captionbot devices" in line


def test_run_from_a_meeting_without_its_url_says_how_to_name_one(tmp_path) -> None:
    run = run_command("run", "--source", "meeting", "--out", tmp_path)

    assert run.code == 2
    (line,) = run.stderr_lines
    assert "no meeting URL" in line and "join.url" in line


@pytest.fixture
def busy_port():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_run_fails_loudly_on_a_busy_overlay_port(tmp_path, busy_port) -> None:
    run = run_command(
        "run",
        "--file",
        bundled_sample(),
        "--overlay-port",
        busy_port,
        "--out",
        tmp_path,
        *TINY[:2],
    )

    assert run.code == 1
    (line,) = run.stderr_lines
    assert f"127.0.0.1:{busy_port}" in line and "--overlay-port" in line


def test_demo_takes_a_free_port_when_the_configured_one_is_busy(tmp_path, busy_port) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text(f"overlay:\n  port: {busy_port}\n", encoding="utf-8")

    run = run_script("demo", "--config", config, "--out", tmp_path / "out", *TINY[:2], cwd=tmp_path)

    assert run.code == 0, run.stderr
    assert f"port {busy_port} is taken; the overlay takes a free one" in run.stdout
    (url,) = re.findall(r"^OBS browser source: (\S+)$", run.stdout, re.MULTILINE)
    port = int(re.fullmatch(r"http://127\.0\.0\.1:(\d+)/captions\.html", url).group(1))
    assert port != busy_port
    assert "country" in load_transcript(tmp_path / "out" / "jfk.json")["text"].lower()


# ---- start-up on a terminal ----------------------------------------------------------------------


def run_on_a_terminal(*args: object, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """The console script with its stderr on a pseudo-terminal (as a user sees it); what the
    terminal received."""
    import pty

    master, terminal = pty.openpty()
    done = subprocess.Popen(
        [str(console_script()), *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
    )
    os.close(terminal)
    received = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        received += chunk
    os.close(master)
    return done.wait(timeout=120), received.decode(errors="replace")


def test_start_up_on_a_terminal_says_what_it_does_and_assembles_base_once(
    tmp_path, shared_data, manifest
) -> None:
    audio = shared_data / manifest["ljspeech_LJ001-0107"]["audio"]
    env = {**os.environ, "CAPTIONBOT_CACHE": str(tmp_path / "cache")}
    args = (audio, "--out", tmp_path / "out", "--model", "base", "--no-progress")

    code, first = run_on_a_terminal("transcribe", *args, cwd=tmp_path, env=env)
    _, second = run_on_a_terminal("transcribe", *args, cwd=tmp_path, env=env)

    assert code == 0, first
    lines = [line.split("\r")[-1].replace("\x1b[K", "") for line in first.splitlines()]
    assert lines[0].startswith("captionbot: config: no config file")
    assert "  assembling the bundled base model into " in first  # first use only
    assert re.search(r"captionbot: preparing model base… done in \d+\.\d s", first), lines
    assert re.search(r"captionbot: loading the engine… done in \d+\.\d s", first), lines
    (engine,) = [line for line in lines if line.startswith("captionbot: engine: ")]
    assert engine.startswith("captionbot: engine: ctranslate2 on cpu"), engine
    assert "assembling" not in second and "preparing model base… done" in second
