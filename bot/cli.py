"""Command line: `captionbot run | demo | devices | transcribe | eval`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot import __version__
from bot.errors import CaptionbotError, ConfigError, ModelNotAvailableError

logger = logging.getLogger("bot")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming it (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see captionbot {self.prog.split()[-1]} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="captionbot", description="Real-time meeting captions with Whisper.")
    parser.add_argument("--version", action="version", version=f"captionbot {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    transcribe = commands.add_parser(
        "transcribe", help="stream audio files through the live captioning path"
    )
    transcribe.add_argument("files", nargs="*", help="audio or video files")
    transcribe.add_argument("--audio-folder", type=Path, help="also every audio file in DIR")
    transcribe.add_argument("--out", type=Path, required=True, help="folder for the transcripts")
    _add_model_options(transcribe)
    _add_pace_options(transcribe, realtime_default=True)
    transcribe.add_argument("--streams", type=int, default=1, help="files run concurrently (1)")
    transcribe.add_argument("--no-progress", action="store_true", help="no progress bars")

    evaluate = commands.add_parser(
        "eval", help="WER, latency, stability and speed of configurations on a dataset"
    )
    evaluate.add_argument("dataset", type=Path, help="manifest.jsonl, CSV/TSV, or a dataset folder")
    evaluate.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="a configuration to compare (repeat for several; default: the defaults)",
    )
    evaluate.add_argument("--out", type=Path, default=Path("eval-report"), help="(eval-report)")
    evaluate.add_argument("--model", help="override engine.model in every configuration")
    evaluate.add_argument("--language", help="only items in this language")
    evaluate.add_argument("--limit", type=int, help="at most N items")
    evaluate.add_argument("--ids", nargs="+", help="only these item ids")
    _add_pace_options(evaluate, realtime_default=False)
    evaluate.add_argument("--streams", type=int, default=1, help="items run concurrently (1)")
    evaluate.add_argument("--no-offline", action="store_true", help="skip the offline reference")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("-v", "--verbose", action="count", default=0, help="more logging")

    run = commands.add_parser(
        "run", help="the meeting bot: capture audio, caption it live, draw it on video"
    )
    run.add_argument("--out", type=Path, help="folder for caption files (outputs.dir)")
    _add_model_options(run)
    _add_bot_options(run)

    demo = commands.add_parser(
        "demo",
        help="the whole bot on the bundled speech sample: live captions, MP4 + SRT/VTT/JSON",
    )
    demo.add_argument("--out", type=Path, default=Path("captions-out"), help="(captions-out)")
    _add_model_options(demo)
    _add_bot_options(demo, audio=False)

    overlay = commands.add_parser(
        "overlay", help="serve the overlay pages alone, following a live caption JSON file"
    )
    overlay.add_argument("--follow", type=Path, required=True, help="<stem>.json of a bot")
    overlay.add_argument("--config", type=Path, help="YAML configuration (overlay keys)")
    overlay.add_argument(
        "--host", help="address to bind (overlay.host; beyond 127.0.0.1 needs --token)"
    )
    overlay.add_argument("--port", type=int, help="port (overlay.port)")
    overlay.add_argument("--token", help="token every page and socket must carry")
    overlay.add_argument("-v", "--verbose", action="count", default=0, help="more logging")

    devices = commands.add_parser(
        "devices", help="list audio inputs (with monitors) and video devices"
    )
    devices.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return parser


def _add_bot_options(parser: argparse.ArgumentParser, audio: bool = True) -> None:
    if audio:
        group = parser.add_argument_group("audio")
        group.add_argument(
            "--source",
            choices=["sample", "file", "loopback", "microphone", "stdin"],
            help="audio source (audio.source)",
        )
        group.add_argument("--device", help="audio device name or index (captionbot devices)")
        group.add_argument("--file", help="audio/video file played in real time (--source file)")
    video = parser.add_argument_group("video")
    video.add_argument(
        "--video", choices=["background", "screen", "camera", "file"], help="video.source"
    )
    video.add_argument("--virtual-camera", action="store_true", default=None, help="v4l2loopback")
    video.add_argument("--stream", dest="stream_url", help="udp://, srt:// or rtmp:// URL")
    video.add_argument("--record", help="MP4 file of the captioned video")
    video.add_argument("--preview", action="store_true", default=None, help="preview window")
    web = parser.add_argument_group("overlay")
    web.add_argument(
        "--no-overlay", dest="overlay", action="store_false", default=None, help="no web overlay"
    )
    web.add_argument("--overlay-port", type=int, help="overlay server port (overlay.port)")
    cc = parser.add_argument_group("closed captions")
    cc.add_argument("--zoom-url", help="Zoom API token URL for closed captions")
    cc.add_argument("--youtube-url", help="YouTube Live caption ingestion URL")


def _add_pace_options(parser: argparse.ArgumentParser, realtime_default: bool) -> None:
    pace = parser.add_mutually_exclusive_group()
    default = " (default)"
    pace.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=realtime_default,
        help="play audio at real-time speed, computation counted, as live"
        + (default if realtime_default else ""),
    )
    pace.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="feed audio as fast as the engine decodes; the stream clock is audio time"
        + ("" if realtime_default else default),
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML configuration (config.example.yaml)")
    parser.add_argument("--model", help="base (default), tiny.en, a hub name, or a model folder")
    parser.add_argument("--engine", choices=["auto", "ctranslate2", "jax"])
    parser.add_argument("--task", choices=["transcribe", "translate"])
    parser.add_argument("--language", help="auto (default) or a Whisper code such as en, de")
    parser.add_argument("--cpu-threads", type=int, help="CTranslate2 threads (0: all cores)")
    parser.add_argument("--beam-size", type=int, help="beam size of streaming updates (1)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ConfigError as error:
        print(f"captionbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(args.verbose)
    try:
        if args.command == "transcribe":
            return _transcribe(args)
        if args.command == "eval":
            return _evaluate(args)
        if args.command == "devices":
            return _devices()
        if args.command == "overlay":
            return _overlay(args)
        if args.command == "run":
            return _run(args)
        return _demo(args)
    except CaptionbotError as error:
        print(f"captionbot: error: {error}", file=sys.stderr)
        usage = isinstance(error, ConfigError | ModelNotAvailableError)
        return EXIT_USAGE if usage else EXIT_FAILED
    except KeyboardInterrupt:
        print("captionbot: interrupted; transcripts so far were written", file=sys.stderr)
        return EXIT_INTERRUPTED


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faster_whisper").setLevel(max(level, logging.WARNING))


def _config(args: argparse.Namespace, extra: dict[str, object] | None = None):
    from bot.config import load_config

    overrides = {
        "engine.model": args.model,
        "engine.name": args.engine,
        "task": args.task,
        "language": args.language,
        "engine.cpu_threads": args.cpu_threads,
        "engine.beam_size": args.beam_size,
    }
    return load_config(args.config, overrides | (extra or {}))


def _transcribe(args: argparse.Namespace) -> int:
    from bot.asr.factory import create_engine_for
    from bot.console import ProgressBoard, print_summary
    from bot.transcribe import TranscriptionJob, collect_inputs

    if args.streams < 1:
        raise ConfigError(f"--streams must be at least 1 (got {args.streams})")
    config = _config(args)
    paths = collect_inputs(args.files, args.audio_folder)
    if not paths:
        raise ConfigError("no input files: name audio files or use --audio-folder DIR")
    _check_out_dir(args.out)
    engine = create_engine_for(config)
    board = ProgressBoard(enabled=not args.no_progress)
    job = TranscriptionJob(
        engine,
        config,
        args.out,
        realtime=args.realtime,
        streams=args.streams,
        on_update=board.update,
        on_progress=board.progress,
    )
    board.start(paths)
    try:
        results = job.run(paths)
    finally:
        board.close()
    print_summary(results, realtime=args.realtime)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.config import load_config
    from bot.eval.datasets import load_dataset
    from bot.eval.report import summary_rows, terminal_table, write_report
    from bot.eval.runner import EvalRunner, NamedConfig

    if args.streams < 1:
        raise ConfigError(f"--streams must be at least 1 (got {args.streams})")
    dataset = load_dataset(args.dataset, language=args.language, limit=args.limit, ids=args.ids)
    if not dataset.items:
        raise ConfigError(f"dataset {args.dataset} has no usable items")
    for row in dataset.skipped:
        print(f"captionbot: skipped {row.source}: {row.reason}", file=sys.stderr)
    overrides = {"engine.model": args.model}
    configs = [
        NamedConfig(path.stem, load_config(path, overrides), str(path)) for path in args.config
    ] or [NamedConfig("default", load_config(None, overrides))]
    if len({c.name for c in configs}) < len(configs):
        raise ConfigError("two --config files share a name: give them different file names")
    _check_out_dir(args.out)
    total = sum(i.duration_s or 0.0 for i in dataset.items) * len(configs)
    bar = tqdm(
        total=round(total),
        unit="s",
        desc="eval",
        disable=args.no_progress or not total,
        file=sys.stderr,
    )
    delivered: dict[tuple[int, str], float] = {}
    config_index = [0]

    def progress(stream_id: str, seconds: float) -> None:
        key = (config_index[0], stream_id)
        bar.update(max(seconds - delivered.get(key, 0.0), 0.0))
        delivered[key] = seconds

    runner = EvalRunner(
        dataset,
        configs,
        args.out,
        realtime=args.realtime,
        streams=args.streams,
        offline=not args.no_offline,
        on_progress=progress,
    )
    runs = []
    try:
        for named in configs:
            runs.append(runner.run_config(named))
            config_index[0] += 1
    finally:
        bar.close()
    settings = {
        "mode": "realtime" if args.realtime else "fast",
        "streams": args.streams,
        "language": args.language,
        "limit": args.limit,
        "ids": args.ids,
    }
    paths = write_report(args.out, runs, dataset, settings)
    print(terminal_table(summary_rows(runs)))
    print(f"Report: {paths['html']} ({paths['md'].name}, {paths['json'].name})")
    return EXIT_OK if not any(run.failures for run in runs) else EXIT_FAILED


def _bot_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {
        "video.source": args.video,
        "sinks.virtual_camera": args.virtual_camera,
        "sinks.stream_url": args.stream_url,
        "sinks.file": args.record,
        "sinks.preview": args.preview,
        "overlay.enabled": args.overlay,
        "overlay.port": args.overlay_port,
        "outputs.zoom_cc_url": args.zoom_url,
        "outputs.youtube_cc_url": args.youtube_url,
    }
    if getattr(args, "file", None):
        overrides["audio.source"] = args.source or "file"
        overrides["audio.file"] = args.file
    else:
        overrides["audio.source"] = getattr(args, "source", None)
    device = getattr(args, "device", None)
    if device is not None:
        overrides["audio.device"] = int(device) if device.isdigit() else device
    return overrides


def _run(args: argparse.Namespace) -> int:
    overrides = _bot_overrides(args)
    if args.out is not None:
        _check_out_dir(args.out)
        overrides["outputs.dir"] = str(args.out)
    config = _config(args, overrides)
    return _run_bot(config, Path(config.outputs.dir), stem=None)


def _demo(args: argparse.Namespace) -> int:
    from bot.audio.samples import bundled_sample

    _check_out_dir(args.out)
    sample = bundled_sample()
    overrides = _bot_overrides(args)
    overrides["audio.source"] = "sample"
    if args.record is None:
        overrides["sinks.file"] = str(args.out / f"{sample.stem}.mp4")
    config = _config(args, overrides)
    print(f"captionbot demo: captioning {sample.name} live (model {config.engine.model})")
    return _run_bot(config, args.out, stem=sample.stem)


def _run_bot(config, out_dir: Path, stem: str | None) -> int:
    from bot.console import LiveCaptions, print_bot_summary
    from bot.pipeline import Supervisor

    live = LiveCaptions()

    def started(supervisor: Supervisor) -> None:
        if supervisor.overlay_url:
            print(f"OBS browser source: {supervisor.overlay_page('captions.html')}")
            print(f"live transcript:    {supervisor.overlay_page('live.html')}")
        print("captioning; Ctrl-C stops", flush=True)

    supervisor = Supervisor(config, out_dir, stem=stem, on_update=live.update, on_start=started)
    try:
        result = supervisor.run()
    finally:
        live.close()
    print_bot_summary(result, config)
    if result.error:
        raise CaptionbotError(result.error)
    return EXIT_OK


def _overlay(args: argparse.Namespace) -> int:
    import signal
    import threading

    from bot.config import load_config
    from bot.overlay.follow import follow
    from bot.overlay.server import OverlayServer

    config = load_config(
        args.config,
        {"overlay.host": args.host, "overlay.port": args.port, "overlay.token": args.token},
    )
    server = OverlayServer(config.overlay)
    server.start()
    print(f"OBS browser source: {server.page_url('captions.html')}")
    print(f"live transcript:    {server.page_url('live.html')}")
    print(f"following {args.follow}; Ctrl-C stops", flush=True)
    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    try:
        follow(args.follow, server.publish, stop)
    finally:
        server.stop()
    return EXIT_OK


def _devices() -> int:
    from bot.audio.devices import format_devices

    print(format_devices())
    return EXIT_OK


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create --out folder {out}: {error.strerror}") from None
