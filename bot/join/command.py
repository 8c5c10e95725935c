"""`captionbot join URL`: join a meeting as a caption participant (registered by bot/cli.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.errors import CaptionbotError

PLATFORMS = ["auto", "jitsi", "meet", "zoom", "teams", "generic"]


def add_parser(
    commands: argparse._SubParsersAction,
    add_model_options: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    join = commands.add_parser(
        "join",
        help="join a meeting in a headless browser: its audio captioned, captions as its camera",
        description=(
            "Join a meeting by itself in a headless Chromium (Debian's chromium, driven by "
            "Playwright) as a participant whose camera shows the live captions of what the "
            "others say, each speaker under their own name; leave when alone or when the "
            "meeting ends. Platforms: generic (any WebRTC page, selectors in the config), "
            "jitsi, and untested profiles for meet, zoom and teams (bot/join/platforms.yaml)."
        ),
        epilog=(
            "examples:\n"
            "  captionbot join https://meet.jit.si/OurStandup --name Captions\n"
            "  captionbot join https://example.org/call/42 --platform generic --config join.yaml"
            "\n\nexit status: 0 left the meeting, 2 bad URL or option, 3 meeting unreachable, "
            "4 not let in (no join button, refused), 5 lobby timeout, 6 no browser"
        ),
    )
    join.add_argument("url", help="the meeting's web address")
    join.add_argument("--name", help="display name in the meeting (join.name; default Captions)")
    join.add_argument(
        "--platform", choices=PLATFORMS, help="join.platform (default auto: from the URL)"
    )
    join.add_argument(
        "--out", type=Path, help="folder for caption files (outputs.dir; default captions-out)"
    )
    join.add_argument(
        "--mixed",
        dest="per_participant",
        action="store_false",
        default=None,
        help="one caption stream of everybody (default: one per participant)",
    )
    join.add_argument("--alone-timeout", type=float, help="join.alone_timeout_s (default 60)")
    join.add_argument("--lobby-timeout", type=float, help="join.lobby_timeout_s (default 600)")
    join.add_argument(
        "--no-overlay",
        dest="overlay",
        action="store_false",
        default=None,
        help="no web overlay (default: served on 127.0.0.1)",
    )
    join.add_argument(
        "--server",
        metavar="URL",
        help="recognize on a captionbot serve at ws://HOST:PORT/ws (default: here; server.url)",
    )
    add_model_options(join)
    return join


def run(args: argparse.Namespace, config_loader: Callable[..., Any]) -> int:
    """Join, caption until the bot leaves; the exit code (a MeetingError's own code)."""
    overrides: dict[str, object] = {
        "join.url": args.url,
        "join.name": args.name,
        "join.platform": args.platform,
        "join.per_participant": args.per_participant,
        "join.alone_timeout_s": args.alone_timeout,
        "join.lobby_timeout_s": args.lobby_timeout,
        "overlay.enabled": args.overlay,
        "server.url": args.server,
        "audio.source": "meeting",
        "sinks.meeting": True,
    }
    if args.out is not None:
        overrides["outputs.dir"] = str(args.out)
    return run_config(config_loader(args, overrides), verbose=bool(args.verbose))


def run_config(config: Any, verbose: bool) -> int:
    """The bot in the meeting `config.join.url` (also `captionbot run` with a meeting source or
    camera); a failure to join is one line and its own exit code."""
    from bot.join.browser import MeetingError

    try:
        return run_session(config, Path(config.outputs.dir), verbose=verbose)
    except MeetingError as error:
        print(f"captionbot: error: {error}", file=sys.stderr)
        return error.exit_code


def run_session(config: Any, out_dir: Path, verbose: bool) -> int:
    """Join, caption until the bot leaves, print the summary; MeetingError if it failed."""
    from bot.console import LiveCaptions, print_bot_summary
    from bot.join.browser import MeetingError
    from bot.join.session import MeetingSession

    out_dir.mkdir(parents=True, exist_ok=True)
    live = LiveCaptions()

    def tell(event: Any) -> None:
        if event.kind in ("waiting", "joined", "left"):
            print(f"captionbot: {event.message}", file=sys.stderr, flush=True)

    session = MeetingSession(
        config, out_dir, on_update=live.update, on_event=tell, screenshots=verbose
    )
    try:
        result = session.run()
    finally:
        live.close()
    print_bot_summary(result, session.config)
    if session.failure is not None:
        raise MeetingError(session.failure.message, session.failure.exit_code)
    if result.error:
        raise CaptionbotError(result.error)
    return 0
