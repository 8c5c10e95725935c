"""User-facing errors: one line that names the problem and what to do about it."""


class CaptionbotError(Exception):
    """An error the user can fix; the CLI prints its message alone and exits non-zero."""


class AudioInputError(CaptionbotError):
    """An audio file or device that cannot be read as speech."""


class CaptionFileError(CaptionbotError):
    """A caption file (e.g. the JSON `captionbot overlay --follow` reads) that is not ours."""


class ModelNotAvailableError(CaptionbotError):
    """A Whisper model that cannot be found or loaded."""


class ConfigError(CaptionbotError):
    """An invalid option or configuration value."""


class DeviceError(CaptionbotError):
    """An audio or video device that is missing, busy or cannot be opened."""


class OutputError(CaptionbotError):
    """A sink (virtual camera, stream, file, caption API) that cannot take the output."""
