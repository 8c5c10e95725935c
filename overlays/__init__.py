"""The overlay pages, installed as the package `bot.overlay.pages` (see setup.py)."""
