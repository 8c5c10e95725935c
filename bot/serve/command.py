"""`captionbot serve`: the command (registered by bot/cli.py)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import ConfigError

if TYPE_CHECKING:
    from bot.config import Config

logger = logging.getLogger(__name__)

NO_ADDRESS = "local"


EXAMPLES = """\
examples:
  captionbot serve --model base                  sessions on ws://127.0.0.1:8780/ws
  captionbot serve --max-sessions 0              admit what the engine serves in real time
  captionbot serve --host 0.0.0.0 --token S3CRET other machines' bots, with the token
  captionbot serve --ray                         the engine on a new local Ray cluster
  captionbot run --server ws://BOX:8780/ws       a bot here, recognized on the box"""

ConfigLoader = Callable[[argparse.Namespace, dict[str, object]], "Config"]


def add_parser(
    commands: argparse._SubParsersAction,
    add_model_options: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    serve = commands.add_parser(
        "serve",
        help="one engine for many meetings: sessions over WebSocket, health, metrics",
        description=(
            "Run the caption service: one engine whose batches serve many meeting sessions at "
            "once, over the WebSocket protocol of the README (remote `captionbot run --server` "
            "bots, or any client), with admission, /healthz, /metrics and a drain on SIGTERM."
        ),
        epilog=EXAMPLES,
    )
    add_model_options(serve)
    serve.add_argument(
        "--host", help="address to bind (default: 127.0.0.1; any other needs --token; serve.host)"
    )
    serve.add_argument("--port", type=int, help="port (default: 8780; 0 = a free one; serve.port)")
    serve.add_argument("--token", help="token every client must send (default: none; serve.token)")
    serve.add_argument(
        "--max-sessions",
        type=int,
        help="real-time sessions at once (default: 4; 0 = measure; serve.max_sessions)",
    )
    serve.add_argument(
        "--out", type=Path, help="session caption files (default: serve-out; serve.out_dir)"
    )
    serve.add_argument(
        "--ray",
        nargs="?",
        const=NO_ADDRESS,
        metavar="ADDRESS",
        help="decode on Ray Serve: a new local cluster, or the cluster at ADDRESS (default: "
        "no Ray; needs the cluster extra)",
    )
    return serve


def run(args: argparse.Namespace, load_config: ConfigLoader) -> int:
    overrides: dict[str, object] = {
        "serve.host": args.host,
        "serve.port": args.port,
        "serve.token": args.token,
        "serve.max_sessions": args.max_sessions,
        "serve.out_dir": str(args.out) if args.out is not None else None,
    }
    config = load_config(args, overrides)
    if args.ray is not None:
        from bot.serve.ray_app import serve_on_ray

        address = None if args.ray == NO_ADDRESS else args.ray
        return serve_on_ray(config, address)
    return serve_local(config)


def serve_local(config: Config) -> int:
    from bot.asr.factory import create_engine
    from bot.serve.capacity import measure_capacity
    from bot.serve.hub import HubLimits, SessionHub
    from bot.serve.memory import HeapReleaser
    from bot.serve.server import ServeServer

    heap = HeapReleaser()  # before the engine starts its threads
    options = config.streaming.options()
    engine = create_engine(config.engine, many_sessions=True, max_batch=options.max_batch)
    max_sessions = config.serve.max_sessions or measure_capacity(engine, options.max_batch)
    hub = SessionHub(engine, options, HubLimits.of(config.serve, max_sessions), heap)
    out_dir = Path(config.serve.out_dir) if config.serve.out_dir else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"cannot create serve.out_dir {out_dir}: {error.strerror}") from None
    meetings = None
    if config.serve.max_meeting_bots:
        from bot.serve.meetings import MeetingBots

        bots_dir = out_dir or Path(config.outputs.dir)
        meetings = MeetingBots(config, bots_dir, config.serve.max_meeting_bots)
    server = ServeServer(config.serve, hub, out_dir, config.outputs.formats, meetings)
    hub.start()

    def ready(server: ServeServer) -> None:
        print(
            f"captionbot serve: {server.url} ({engine.info.name} {engine.info.model}, "
            f"{max_sessions} sessions); SIGTERM or Ctrl-C drains and stops",
            flush=True,
        )

    try:
        server.run(on_ready=ready)
    finally:
        hub.stop()
    return 0
