"""Command line: `captionbot run | demo | transcribe | eval | overlay | devices`, and the
subcommands of other packages (`PACKAGE_COMMANDS`).

Each subcommand here is an `_add_<name>(commands, defaults)` that adds its parser and sets
`handler`; a package's subcommand is a module with `add_parser(commands, add_model_options)`
returning its parser and `run(args, load_config) -> int` (or `run(args)`), listed once in
`PACKAGE_COMMANDS`; `load_config(args, overrides)` is the configuration the command line names
with the model options and `overrides` applied. Every subcommand gets
`-v`/`-q` (they work before and after its name), and its `--config` is found (flag,
`$CAPTIONBOT_CONFIG`, the user config) before its handler runs.

Why one ~900-line module: most of it is the argument grammar and help text (descriptions,
examples and a default on every option), kept together so the conventions stay uniform across
commands; each handler is a short function over the packages that do the work. Split the
handlers of `run`/`demo` into a module of their own before adding another bot mode here.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from bot import __version__
from bot.errors import CaptionbotError, ConfigError, ModelNotAvailableError

if TYPE_CHECKING:
    from bot.asr.engine import EngineInfo
    from bot.config import Config
    from bot.console import StartupStatus

logger = logging.getLogger("bot")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Subcommands of other packages: modules with add_parser(commands, add_model_options) -> parser
# and run(args, load_config) -> int. A new one is one more name here; -v/-q are added to it.
PACKAGE_COMMANDS: tuple[str, ...] = ("bot.serve.command", "bot.join.command")
# The null sink `run --headless` creates in its private PulseAudio.
HEADLESS_SINK = "captionbot"

Commands = argparse._SubParsersAction

EXIT_STATUS = """\
exit status:
  0    done: every file transcribed, the bot stopped cleanly
  1    failed: a file could not be read (the others still ran), a device is missing or
       busy, or the bot stopped on an error
  2    usage: a bad option, configuration file or key, model or language
  3-6  join: the meeting is unreachable (3), did not admit the bot (4), kept it in the
       lobby too long (5), or the browser failed (6)
  130  transcribe or eval interrupted (Ctrl-C): what was transcribed so far is written;
       run and demo stop on Ctrl-C or SIGTERM by design, with 0"""

CONFIG_LOOKUP = """\
configuration: --config FILE, else the file $CAPTIONBOT_CONFIG names, else
~/.config/captionbot/config.yaml when it exists, else the defaults; config.example.yaml
documents every key, flags override them. The file in use is named at start (on a
terminal, or with -v)."""

TOP_EXAMPLES = """\
examples:
  captionbot demo                            the bundled sample, captioned live (no devices)
  captionbot devices                         audio inputs, loopback monitors, cameras
  captionbot run                             caption what this machine plays, in English
  captionbot run --headless                  the same on a server without a sound server
  captionbot transcribe talk.wav --out out/  a recording, as fast as the CPU decodes
  captionbot eval data/manifest.jsonl        WER and latency of the defaults on a dataset
  captionbot COMMAND --help                  the options of a command"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line naming it and the help to read (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see {self.prog} --help)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; option help wrapped to the terminal."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def build_parser() -> argparse.ArgumentParser:
    from bot.config import Config

    defaults = Config()
    parser = _Parser(
        prog="captionbot",
        description=(
            "Real-time meeting captions and translation with Whisper, offline on a CPU: live\n"
            "tentative words, committed ones within about a second, on video, in OBS, in files."
        ),
        epilog=f"{TOP_EXAMPLES}\n\n{CONFIG_LOOKUP}\n\n{EXIT_STATUS}",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"captionbot {__version__}")
    _add_verbosity(parser, dest_suffix="_before")
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", parser_class=_Parser
    )
    for add in (_add_run, _add_demo, _add_transcribe, _add_eval, _add_overlay, _add_devices):
        add(commands, defaults)
    for name in PACKAGE_COMMANDS:
        module = importlib.import_module(name)
        command = module.add_parser(commands, _add_model_options)
        command.set_defaults(handler=_package_handler(module.run))
    for command in commands.choices.values():
        command.formatter_class = _Formatter
        if command.epilog is None:
            command.epilog = EXIT_STATUS
        _add_verbosity(command)
    return parser


def _package_handler(run: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
    if len(inspect.signature(run).parameters) > 1:
        return lambda args: run(args, _config)
    return run


def _command(commands: Commands, name: str, summary: str, about: str, examples: str):
    """A subcommand parser: `summary` for the command list, `about` and `examples` for its help."""
    return commands.add_parser(
        name,
        help=summary,
        description=about,
        epilog=f"examples:\n{examples}\n\n{CONFIG_LOOKUP}\n\n{EXIT_STATUS}",
    )


def _add_run(commands: Commands, defaults: Config) -> None:
    run = _command(
        commands,
        "run",
        "the meeting bot: capture audio, caption it live, draw it on video",
        "The meeting bot. Captures what the meeting app plays (the loopback of the default\n"
        "output through PulseAudio/PipeWire) or another source, captions it live, prints the\n"
        "captions, serves them to OBS and browsers, writes SRT/VTT/JSON/TXT while it runs and,\n"
        "if asked, draws them on video (virtual camera, stream, MP4). The audio device is\n"
        "checked before the model loads. Ctrl-C or SIGTERM stops it and finalizes the files.",
        "  captionbot run\n"
        "  captionbot run --device alsa_output.usb-Jabra.analog-stereo.monitor --task transcribe\n"
        "  captionbot run --source microphone --device 3\n"
        "  captionbot run --virtual-camera\n"
        "  captionbot run --headless --no-overlay --out captions/\n"
        "  ffmpeg -i rtsp://cam/audio -f s16le -ac 1 -ar 16000 - | captionbot run --source stdin",
    )
    run.add_argument(
        "--out",
        type=Path,
        help=f"folder for the caption files (default: {defaults.outputs.dir}; outputs.dir)",
    )
    _add_model_options(run)
    _add_bot_options(run, defaults)
    run.set_defaults(handler=_run)


def _add_demo(commands: Commands, defaults: Config) -> None:
    demo = _command(
        commands,
        "demo",
        "the whole bot on the bundled speech sample: live captions, MP4 + SRT/VTT/JSON",
        "The whole meeting bot with no device: the bundled 11 s speech sample played in real\n"
        "time as its audio and a plain background as its video. Prints the captions as they\n"
        "appear and the overlay URLs (on a free port when the usual one is taken), and writes\n"
        "the captioned MP4 and the transcripts.",
        "  captionbot demo\n"
        "  captionbot demo --out /tmp/demo --model tiny.en\n"
        "  captionbot demo --task transcribe --no-overlay",
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("captions-out"),
        help="output folder (default: %(default)s)",
    )
    _add_model_options(demo)
    _add_bot_options(demo, defaults, audio=False)
    demo.set_defaults(handler=_demo)


def _add_transcribe(commands: Commands, defaults: Config) -> None:
    transcribe = _command(
        commands,
        "transcribe",
        "transcribe or translate audio files through the live captioning path",
        "Runs recordings through exactly what live audio goes through (streaming policy, VAD,\n"
        "batched engine) and writes <stem>.json/.srt/.vtt/.txt per file. By default as fast as\n"
        "the machine decodes (--fast); --realtime plays each file at speech speed with the\n"
        "computation counted, to measure live latency. A file that cannot be read fails alone;\n"
        "a truncated WAV is captioned as far as it goes, with a warning.",
        "  captionbot transcribe talk.wav --out transcripts/\n"
        "  captionbot transcribe a.wav b.mp3 --out out/ --streams 2\n"
        "  captionbot transcribe --audio-folder recordings/ --out out/\n"
        "  captionbot transcribe interview_de.wav --task transcribe --language de --out out/\n"
        "  captionbot transcribe talk.wav --realtime --out out/   # latency as in a meeting",
    )
    transcribe.add_argument("files", nargs="*", help="audio or video files (anything ffmpeg reads)")
    transcribe.add_argument(
        "--audio-folder",
        type=Path,
        metavar="DIR",
        help="also every audio file in DIR (default: none)",
    )
    transcribe.add_argument("--out", type=Path, required=True, help="folder for the transcripts")
    _add_model_options(transcribe)
    _add_pace_options(transcribe, realtime_default=False)
    transcribe.add_argument(
        "--streams", type=int, default=1, help="files run at once, batched (default: 1)"
    )
    transcribe.add_argument(
        "--no-progress", action="store_true", help="no progress bars (default: one per file)"
    )
    transcribe.set_defaults(handler=_transcribe)


def _add_eval(commands: Commands, defaults: Config) -> None:
    evaluate = _command(
        commands,
        "eval",
        "WER, latency, stability and speed of configurations on a dataset",
        "Compares configurations side by side on a dataset (a JSONL manifest, CSV/TSV, a folder\n"
        "of audio with .txt references, Kaldi, LibriSpeech or a saved Hugging Face dataset),\n"
        "each followed by the offline transcription of the same model as a reference, and\n"
        "writes report.html, report.md and results.json.",
        "  captionbot eval ../shared/data/manifest.jsonl --language en\n"
        "  captionbot eval data/manifest.jsonl --config a.yaml --config b.yaml\n"
        "  captionbot eval my-corpus/ --limit 50 --streams 4 --realtime --out eval-report/\n"
        "  captionbot eval data/manifest.jsonl --ids fw_jfk,ljspeech_LJ001-0102",
    )
    evaluate.add_argument("dataset", type=Path, help="manifest.jsonl, CSV/TSV, or a dataset folder")
    evaluate.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        help="a configuration to compare; repeat for several (default: the configuration in "
        "use, found as for run)",
    )
    evaluate.add_argument(
        "--out", type=Path, default=Path("eval-report"), help="report folder (default: %(default)s)"
    )
    evaluate.add_argument(
        "--model", help="engine.model for every configuration (default: each one's own)"
    )
    evaluate.add_argument("--language", help="only items in this language (default: all)")
    evaluate.add_argument("--limit", type=int, help="at most N items (default: all)")
    evaluate.add_argument(
        "--ids",
        nargs="+",
        metavar="ID",
        help="only these items, by spaces or commas (default: all)",
    )
    _add_pace_options(evaluate, realtime_default=False)
    evaluate.add_argument(
        "--streams", type=int, default=1, help="items run at once, batched (default: 1)"
    )
    evaluate.add_argument(
        "--no-offline",
        action="store_true",
        help="skip the offline reference transcription (default: run it)",
    )
    evaluate.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: one on stderr)"
    )
    evaluate.set_defaults(handler=_evaluate)


def _add_overlay(commands: Commands, defaults: Config) -> None:
    overlay = _command(
        commands,
        "overlay",
        "serve the overlay pages alone, following a live caption JSON file",
        "Serves the OBS browser source (captions.html) and the live transcript (live.html) for\n"
        "the live caption file another bot is writing, e.g. to share them from another port.",
        "  captionbot overlay --follow captions-out/meeting-20260101-120000.json\n"
        "  captionbot overlay --follow meeting.json --host 0.0.0.0 --token s3cret --port 8766",
    )
    overlay.add_argument("--follow", type=Path, required=True, help="the <stem>.json of a bot")
    overlay.add_argument(
        "--config", type=Path, help="YAML configuration, overlay keys (default: found as for run)"
    )
    overlay.add_argument(
        "--host",
        help=f"address to bind; beyond 127.0.0.1 needs --token (default: {defaults.overlay.host})",
    )
    overlay.add_argument("--port", type=int, help=f"port (default: {defaults.overlay.port})")
    overlay.add_argument("--token", help="token every page and socket must carry (default: none)")
    overlay.set_defaults(handler=_overlay)


def _add_devices(commands: Commands, defaults: Config) -> None:
    devices = _command(
        commands,
        "devices",
        "list audio inputs (with monitors) and video devices",
        "Lists the sound server's sources by name and description, marking the monitor that\n"
        "`captionbot run` captures by default, PortAudio inputs (with the portaudio extra) and\n"
        "video devices with their names, v4l2loopback virtual cameras marked.",
        "  captionbot devices\n  captionbot run --device NAME_FROM_THE_LIST",
    )
    devices.set_defaults(handler=_devices)


def _add_verbosity(parser: argparse.ArgumentParser, dest_suffix: str = "") -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        dest=f"verbose{dest_suffix}",
        action="count",
        default=0,
        help="say what starts and why (config file, engine, timings); -vv: debug "
        "(default: warnings and errors only)",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        dest=f"quiet{dest_suffix}",
        action="count",
        default=0,
        help="errors only: no start-up lines, warnings or progress bars (default: off)",
    )


def _add_bot_options(parser: argparse.ArgumentParser, defaults: Config, audio: bool = True) -> None:
    parser.add_argument(
        "--server",
        metavar="URL",
        help="recognize on a captionbot serve at ws://HOST:PORT/ws (default: here, with the "
        "local model; server.url)",
    )
    if audio:
        group = parser.add_argument_group("audio")
        group.add_argument(
            "--source",
            choices=["sample", "file", "loopback", "microphone", "stdin", "meeting"],
            help=f"where the audio comes from (default: {defaults.audio.source}, what this "
            "machine plays; meeting: the page of join.url, as captionbot join; audio.source)",
        )
        group.add_argument(
            "--device",
            help="audio device name or PortAudio index, see `captionbot devices` (default: the "
            "default sink's monitor, or the default input for --source microphone)",
        )
        group.add_argument(
            "--file",
            help="audio/video file played in real time, sets --source file (default: none)",
        )
        group.add_argument(
            "--headless",
            action="store_true",
            default=None,
            help="no sound server here: start a private PulseAudio with a null sink "
            "'captionbot' for the meeting client, capture its monitor, stop it on exit "
            "(default: off; audio.headless)",
        )
    video = parser.add_argument_group("video")
    video.add_argument(
        "--video",
        choices=["background", "screen", "camera", "file"],
        help=f"what the captions are drawn on (default: {defaults.video.source}; video.source)",
    )
    video.add_argument(
        "--virtual-camera",
        action="store_true",
        default=None,
        help="publish the captioned video as a webcam, needs v4l2loopback (default: off)",
    )
    video.add_argument(
        "--stream",
        dest="stream_url",
        metavar="URL",
        help="send the captioned video to a udp://, srt:// or rtmp:// URL (default: none)",
    )
    record_default = "OUT/jfk.mp4" if not audio else "none"
    video.add_argument(
        "--record",
        metavar="MP4",
        help=f"MP4 file of the captioned video (default: {record_default})",
    )
    video.add_argument(
        "--preview", action="store_true", default=None, help="a preview window (default: off)"
    )
    web = parser.add_argument_group("overlay")
    web.add_argument(
        "--no-overlay",
        dest="overlay",
        action="store_false",
        default=None,
        help=f"no web overlay (default: served on {defaults.overlay.host}:{defaults.overlay.port})",
    )
    busy = "; taken, demo uses a free one" if not audio else "; taken, run fails"
    web.add_argument(
        "--overlay-port",
        type=int,
        metavar="PORT",
        help=f"overlay port (default: {defaults.overlay.port}{busy}; 0 = any free port)",
    )
    cc = parser.add_argument_group("closed captions")
    cc.add_argument("--zoom-url", help="Zoom API token URL for closed captions (default: none)")
    cc.add_argument("--youtube-url", help="YouTube Live caption ingestion URL (default: none)")


def _add_pace_options(parser: argparse.ArgumentParser, realtime_default: bool) -> None:
    pace = parser.add_mutually_exclusive_group()
    default = " (default)"
    pace.add_argument(
        "--realtime",
        dest="realtime",
        action="store_true",
        default=realtime_default,
        help="play audio at speech speed with the computation counted, as a live meeting: "
        "to measure latency" + (default if realtime_default else ""),
    )
    pace.add_argument(
        "--fast",
        dest="realtime",
        action="store_false",
        help="feed audio as fast as the engine decodes; the stream clock is audio time"
        + ("" if realtime_default else default),
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    from bot.config import Config

    engine = Config().engine
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML configuration, keys as in config.example.yaml (default: $CAPTIONBOT_CONFIG, "
        "else ~/.config/captionbot/config.yaml if present)",
    )
    parser.add_argument(
        "--model",
        help="base (multilingual), tiny.en (English only, fastest), another faster-whisper "
        f"name, or a model folder (default: {engine.model}; engine.model)",
    )
    parser.add_argument(
        "--engine",
        choices=["auto", "ctranslate2", "jax"],
        help="auto (default): ctranslate2, on CUDA when ctranslate2.get_cuda_device_count() "
        "> 0, else on CPU; jax only when asked for (--engine jax). The choice is printed at start",
    )
    parser.add_argument(
        "--task",
        choices=["transcribe", "translate"],
        help="translate (default): English text whatever is spoken; transcribe: text in the "
        "spoken language",
    )
    parser.add_argument(
        "--language",
        help="spoken language: auto (default, detected per stream) or a Whisper code such as "
        "en, de",
    )
    parser.add_argument(
        "--cpu-threads",
        type=int,
        metavar="N",
        help="CTranslate2 threads per worker (default: auto, on a CPU one worker per core "
        "with one thread each)",
    )
    parser.add_argument(
        "--beam-size",
        type=int,
        metavar="N",
        help=f"beam size of streaming updates (default: {engine.beam_size}, greedy); "
        "translated windows use engine.translate_beam_size",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            prog = f"captionbot {args.command}" if args.command else "captionbot"
            raise ConfigError(f"unrecognized arguments: {' '.join(unknown)} (see {prog} --help)")
    except ConfigError as error:
        print(f"captionbot: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as done:  # --help, --version
        return int(done.code or 0)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return EXIT_OK
    args.verbose = args.verbose + args.verbose_before
    args.quiet = args.quiet + args.quiet_before
    handler = _setup_logging(args.verbose, args.quiet)
    try:
        _find_config(args)
        return args.handler(args)
    except CaptionbotError as error:
        print(f"captionbot: error: {error}", file=sys.stderr)
        usage = isinstance(error, ConfigError | ModelNotAvailableError)
        return EXIT_USAGE if usage else EXIT_FAILED
    except KeyboardInterrupt:
        print("captionbot: interrupted; what was captioned so far is written", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        logging.getLogger().removeHandler(handler)


class _LogFormatter(logging.Formatter):
    """`captionbot: warning: ...` for people; level and logger name with -v."""

    def __init__(self, verbose: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s" if verbose else None)
        self._verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self._verbose:
            return super().format(record)
        return f"captionbot: {record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(verbose: int, quiet: int) -> logging.Handler:
    """A handler on stderr for this run (removed when `main` returns); its level from -v/-q."""
    if quiet:
        level = logging.ERROR
    else:
        level = [logging.WARNING, logging.INFO][verbose] if verbose < 2 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter(verbose > 0))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("faster_whisper").setLevel(max(level, logging.WARNING))
    return handler


def _startup(args: argparse.Namespace) -> StartupStatus:
    """Start-up lines: on a terminal unless -q; elsewhere with -v (see StartupStatus)."""
    from bot.console import StartupStatus

    enabled = not args.quiet and (sys.stderr.isatty() or args.verbose > 0)
    # With -v the models' INFO lines reach the log handler already.
    forward = ("bot.asr.models",) if not args.verbose else ()
    return StartupStatus(enabled, forward=forward)


def _find_config(args: argparse.Namespace) -> None:
    """Replace a command's --config with the file found (flag, $CAPTIONBOT_CONFIG, user config),
    so every handler loads what it names, and say which file is in use."""
    from bot.config import find_config

    if not hasattr(args, "config"):
        return
    status = _startup(args)
    if isinstance(args.config, list):  # eval: configurations to compare
        if args.config:
            for path in args.config:
                status.note(f"config: {path} (from --config)")
            return
        location = find_config(None)
        args.config = [location.path] if location.path else []
    else:
        location = find_config(args.config)
        args.config = location.path
    status.note(f"config: {location.describe()}")


def _config(args: argparse.Namespace, extra: dict[str, object] | None = None) -> Config:
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
    from bot.asr.models import resolve_model
    from bot.console import ProgressBoard, print_summary
    from bot.transcribe import TranscriptionJob, collect_inputs

    if args.streams < 1:
        raise ConfigError(f"--streams must be at least 1 (got {args.streams})")
    config = _config(args)
    paths = collect_inputs(args.files, args.audio_folder)
    if not paths:
        raise ConfigError("no input files: name audio files or use --audio-folder DIR")
    _check_out_dir(args.out)
    status = _startup(args)
    with status.begin(f"preparing model {config.engine.model}"):
        resolve_model(config.engine.model)  # assembles `base` into the cache on first use
    compiles = config.engine.name == "jax"  # auto picks jax only for safetensors checkpoints
    with status.begin("loading the engine" + (" and compiling it" if compiles else "")):
        engine = create_engine_for(config)
    status.note(f"engine: {_describe_engine(engine.info)}")
    board = ProgressBoard(enabled=not (args.no_progress or args.quiet))
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


def _describe_engine(info: EngineInfo) -> str:
    text = f"{info.name} on {info.device}, {info.compute_type}, model {info.model}"
    reason = getattr(info, "reason", "")  # why `auto` chose it, when the factory says
    return f"{text}: {reason}" if reason else text


def _evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from bot.config import load_config
    from bot.eval.datasets import load_dataset
    from bot.eval.report import (
        LANGUAGE_COLUMNS,
        language_rows,
        summary_rows,
        terminal_table,
        write_report,
    )
    from bot.eval.runner import EvalRunner, NamedConfig

    if args.streams < 1:
        raise ConfigError(f"--streams must be at least 1 (got {args.streams})")
    ids = _split_list(args.ids)
    dataset = load_dataset(args.dataset, language=args.language, limit=args.limit, ids=ids)
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
        disable=args.no_progress or args.quiet or not total,
        file=sys.stderr,
    )
    delivered: dict[tuple[str, str], float] = {}

    def progress(config: str, stream_id: str, seconds: float) -> None:
        key = (config, stream_id)
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
    try:
        runs = runner.run()
    finally:
        bar.close()
    settings = {
        "mode": "realtime" if args.realtime else "fast",
        "streams": args.streams,
        "language": args.language,
        "limit": args.limit,
        "ids": ids,
    }
    paths = write_report(args.out, runs, dataset, settings)
    print(terminal_table(summary_rows(runs)))
    print()
    print(terminal_table(language_rows(runs), LANGUAGE_COLUMNS))
    print(f"Report: {paths['html']} ({paths['md'].name}, {paths['json'].name})")
    return EXIT_OK if not any(run.failures for run in runs) else EXIT_FAILED


def _split_list(values: list[str] | None) -> list[str] | None:
    """`--ids a,b c` → [a, b, c]: lists take commas as well as spaces."""
    if values is None:
        return None
    return [part for value in values for part in value.split(",") if part.strip()]


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
        "audio.headless": getattr(args, "headless", None),
        "server.url": args.server,
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
    status = _startup(args)
    if config.audio.headless:
        return _run_headless(config, status)
    if config.audio.source == "meeting" or config.sinks.meeting:  # joins join.url
        from bot.join.command import run_config

        return run_config(config, verbose=bool(args.verbose))
    return _run_bot(config, Path(config.outputs.dir), stem=None, status=status)


def _run_headless(config: Config, status: StartupStatus) -> int:
    """The bot inside a private PulseAudio: the meeting client plays into its null sink."""
    import shutil
    import tempfile

    from bot.audio.pulse import PulseServer

    audio = config.audio
    if audio.source != "loopback":
        raise ConfigError(
            f"--headless captures the monitor of the sink it starts: it needs --source "
            f"loopback (got {audio.source})"
        )
    monitor = f"{HEADLESS_SINK}.monitor"
    if audio.device not in (None, monitor):
        raise ConfigError(
            f"--headless captures {monitor}, the sink it starts: drop --device {audio.device}"
        )
    runtime = Path(tempfile.mkdtemp(prefix="captionbot-pulse-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, runtime, ignore_errors=True)
        with status.begin("starting a private PulseAudio"):
            sink = PulseServer(runtime, [HEADLESS_SINK], "captionbot meeting audio")
            pulse = stack.enter_context(sink)
        print(f"headless sound: play the meeting into the sink '{HEADLESS_SINK}' (the default)")
        print(f"  PULSE_SERVER={pulse.server_address}", flush=True)
        config = config.model_copy(update={"audio": audio.model_copy(update={"device": monitor})})
        return _run_bot(config, Path(config.outputs.dir), stem=None, status=status)


def _demo(args: argparse.Namespace) -> int:
    from bot.audio.samples import bundled_sample

    _check_out_dir(args.out)
    sample = bundled_sample()
    overrides = _bot_overrides(args)
    overrides["audio.source"] = "sample"
    if args.record is None:
        overrides["sinks.file"] = str(args.out / f"{sample.stem}.mp4")
    config = _config(args, overrides)
    overlay = config.overlay
    if args.overlay_port is None and overlay.enabled and not _port_free(overlay.host, overlay.port):
        # Only a port chosen on the command line is worth failing for in a demo.
        print(f"captionbot demo: port {overlay.port} is taken; the overlay takes a free one")
        config = _config(args, overrides | {"overlay.port": 0})
    print(f"captionbot demo: captioning {sample.name} live (model {config.engine.model})")
    return _run_bot(config, args.out, stem=sample.stem, status=_startup(args))


def _port_free(host: str, port: int) -> bool:
    """Whether the overlay could listen on host:port now (bound as aiohttp binds it)."""
    import socket

    if port == 0:
        return True
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return True  # the overlay server names the problem with the host
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def _run_bot(config: Config, out_dir: Path, stem: str | None, status: StartupStatus) -> int:
    from bot.audio.devices import check_audio_source

    # Everything that can be checked here fails now, before a process starts or a model loads.
    status.note(f"audio: {check_audio_source(config.audio)}")
    _check_video_devices(config)

    from bot.asr.factory import choose_engine
    from bot.asr.models import resolve_model
    from bot.console import LiveCaptions, print_bot_summary
    from bot.runtime.supervisor import Supervisor

    loads = "starting: the ASR process loads the engine"
    if config.server.url is None:
        with status.begin(f"preparing model {config.engine.model}"):
            resolved = resolve_model(config.engine.model)  # assembles `base` on first use
        choice = choose_engine(config.engine, resolved.format)
        status.note(f"engine: {choice.describe()}")
        loads += " and compiles it" if choice.engine == "jax" else ""
    else:
        status.note(f"engine: the captionbot serve at {config.server.url}")
        loads = "starting: connecting to the captionbot serve"

    live = LiveCaptions()
    loading = status.begin(loads)

    def started(supervisor: Supervisor) -> None:
        loading.done()
        if supervisor.overlay_url:
            print(f"OBS browser source: {supervisor.overlay_page('captions.html')}")
            print(f"live transcript:    {supervisor.overlay_page('live.html')}")
        print("captioning; Ctrl-C stops", flush=True)

    from bot.serve.client import remote_asr_stage_main  # the ASR stage, on a captionbot serve

    remote = {"asr_entry": remote_asr_stage_main} if config.server.url else {}
    supervisor = Supervisor(
        config, out_dir, stem=stem, on_update=live.update, on_start=started, **remote
    )
    try:
        result = supervisor.run()
    finally:
        loading.failed()  # no-op once started
        live.close()
    print_bot_summary(result, config)
    if result.error:
        raise CaptionbotError(result.error)
    return EXIT_OK


def _check_video_devices(config: Config) -> None:
    from bot.errors import DeviceError

    if config.video.source == "camera" and not Path(config.video.camera).exists():
        raise DeviceError(
            f"camera {config.video.camera} not found: `captionbot devices` lists video devices"
        )
    device = config.sinks.virtual_camera_device
    if config.sinks.virtual_camera and device and not Path(device).exists():
        raise DeviceError(
            f"virtual camera device {device} not found: `captionbot devices` lists them "
            "(create one with `sudo modprobe v4l2loopback exclusive_caps=1 card_label=captionbot`)"
        )


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


def _devices(args: argparse.Namespace) -> int:
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
