"""The compositor stage: caption updates → captioned video frames → the configured sinks."""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event

from bot.config import Config
from bot.messages import CaptionsDrawn, CaptionUpdate, StageError, StageReport

# Caption updates waiting for the next frame; beyond, the router drops updates (counted).
CAPTION_QUEUE = 512


@dataclass(frozen=True)
class CompositorStageArgs:
    """Everything the compositor process is started with."""

    config: Config
    captions: Queue[CaptionUpdate]
    """In: every caption update, from the caption router (bounded: `CAPTION_QUEUE`)."""
    events: Queue[StageReport | StageError | CaptionsDrawn]
    stop: Event
    """Set once the last captions were routed (the video lingers on them briefly)."""


def wants_video(config: Config) -> bool:
    """Does the configuration name any video sink (so the compositor runs at all)?"""
    s = config.sinks
    return bool(s.virtual_camera or s.stream_url or s.file or s.preview or s.meeting)


def compositor_stage_main(args: CompositorStageArgs) -> None:  # pragma: no cover - child
    """Process entry of the compositor process."""
    from bot.video.compositor import compositor_main

    compositor_main(args.config, args.captions, args.stop, args.events)
