"""captionbot: real-time meeting captions and translation with Whisper."""

__version__ = "0.1.0"
