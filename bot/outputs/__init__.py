"""Caption outputs: record a stream's caption updates and write them as JSON, SRT, VTT and text."""

from bot.outputs.transcript import CaptionState, Transcript, TranscriptRecorder
from bot.outputs.writers import (
    Cue,
    caption_cues,
    write_all,
    write_json,
    write_srt,
    write_txt,
    write_vtt,
)

__all__ = [
    "CaptionState",
    "Cue",
    "Transcript",
    "TranscriptRecorder",
    "caption_cues",
    "write_all",
    "write_json",
    "write_srt",
    "write_txt",
    "write_vtt",
]
