"""The running bot: the supervisor and its stages (one child process each).

- `supervisor.py` — `Supervisor`: starts the stages, relays audio, routes captions, restarts.
- `stage.py` — `Stage`: a process started from one frozen dataclass of arguments.
- `restart.py` — `RestartPolicy`: how often a failing stage is started again.
- `capture_stage.py`, `asr_stage.py`, `compositor_stage.py` — each stage's arguments and entry
  (`asr_stage.py` also holds `AsrWorker`, the streaming policy over a queue).
- `audio_relay.py` — capture → ASR stage, the one place where audio is dropped.
- `caption_router.py`, `caption_outputs.py` — caption updates → each stream's outputs.

Nothing is imported here, so a child process loads only its own stage's modules.
"""
