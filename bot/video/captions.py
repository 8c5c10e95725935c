"""Caption rendering: the newest lines of text in a translucent box, blended onto each frame.

The strip is drawn with Pillow and a TrueType font (full Unicode; a CJK font is used for
text that needs it) only when the text changes; each frame then costs one alpha blend of the
strip's rectangle. Committed words are drawn in the main colour, tentative words greyed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bot.config import CaptionStyle
from bot.errors import ConfigError

logger = logging.getLogger(__name__)

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
CJK_FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
)
# Scripts DejaVu Sans lacks: CJK, kana, hangul, and the full-width forms.
CJK_RANGES = ((0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))
LINE_SPACING = 1.25
PADDING = 0.4  # of the font size, around the text inside the box


def parse_colour(value: str, key: str) -> tuple[int, int, int]:
    """'#rrggbb' (or 'rrggbb') → (r, g, b); a bad value is a ConfigError naming the key."""
    text = value.strip().lstrip("#")
    if len(text) != 6:
        raise ConfigError(f"invalid config key '{key}': colour '{value}' is not #rrggbb")
    try:
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    except ValueError:
        raise ConfigError(f"invalid config key '{key}': colour '{value}' is not #rrggbb") from None


def needs_cjk_font(text: str) -> bool:
    return any(lo <= ord(ch) <= hi for ch in text for lo, hi in CJK_RANGES)


@lru_cache(maxsize=8)
def load_font(path: str | None, size: int, cjk: bool) -> ImageFont.FreeTypeFont:
    """The configured font, else DejaVu Sans (or a CJK font when the text needs one)."""
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            raise ConfigError(
                f"invalid config key 'captions.font': cannot load font {path}"
            ) from None
    candidates = (CJK_FONT_CANDIDATES if cjk else ()) + FONT_CANDIDATES
    for candidate in candidates:
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    logger.warning("no TrueType font found (install fonts-dejavu-core); using Pillow's default")
    return ImageFont.load_default(size)


@dataclass(frozen=True)
class _Token:
    text: str
    committed: bool


class CaptionRenderer:
    """Draws the newest `style.lines` lines of caption text onto BGR frames of one size."""

    def __init__(self, style: CaptionStyle, width: int, height: int) -> None:
        self.style = style
        self.width = width
        self.height = height
        self.colour = parse_colour(style.color, "captions.color")
        self.tentative_colour = parse_colour(style.tentative_color, "captions.tentative_color")
        self.box_colour = parse_colour(style.box_color, "captions.box_color")
        load_font(style.font, style.font_size, False)  # a bad font path fails at start
        self._text: tuple[str, str] | None = None
        self._strip: tuple[int, int, np.ndarray, np.ndarray] | None = None
        self.lines: list[str] = []  # the lines drawn now
        self.renders = 0

    def set_text(self, committed: str, tentative: str, speaker: str | None = None) -> bool:
        """Change the text (with the speaker's name before it, when known); returns True if the
        drawn strip changed (and was re-rendered)."""
        text = (committed.strip(), tentative.strip(), (speaker or "").strip())
        if text == self._text:
            return False
        self._text = text
        self._strip = self._render(*text)
        self.renders += 1
        return True

    def draw(self, frame: np.ndarray) -> None:
        """Blend the caption strip into `frame` (BGR uint8, this renderer's size) in place."""
        if self._strip is None:
            return
        x, y, weight, premultiplied = self._strip
        h, w = weight.shape[:2]
        region = frame[y : y + h, x : x + w]
        blended = region.astype(np.uint16) * weight + premultiplied
        region[:] = (blended >> 8).astype(np.uint8)

    # -- layout -----------------------------------------------------------------------------------

    def _render(
        self, committed: str, tentative: str, speaker: str = ""
    ) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        tokens = [_Token(t, True) for t in committed.split()]
        tokens += [_Token(t, False) for t in tentative.split()]
        if not tokens:
            self.lines = []
            return None
        style = self.style
        font = load_font(style.font, style.font_size, needs_cjk_font(committed + tentative))
        pad = round(style.font_size * PADDING)
        max_text_w = max(int(self.width * style.max_width) - 2 * pad, style.font_size)
        label = _Token(f"{speaker}:", True) if speaker else None
        if label is not None:
            # the name leads the first visible line: every line leaves room for it
            reserved = font.getlength(label.text + " ")
            max_text_w = max(int(max_text_w - reserved), style.font_size)
        lines = self._wrap(tokens, font, max_text_w)[-style.lines :]
        if label is not None:
            lines[0] = [label, *lines[0]]
        self.lines = [" ".join(t.text for t in line) for line in lines]
        line_h = round(style.font_size * LINE_SPACING)
        space = font.getlength(" ")
        text_w = max(
            sum(font.getlength(t.text) for t in line) + space * (len(line) - 1) for line in lines
        )
        box_w = min(int(text_w) + 2 * pad, self.width)
        box_h = min(line_h * len(lines) + 2 * pad, self.height)
        image = Image.new(
            "RGBA", (box_w, box_h), (*self.box_colour, round(255 * style.box_opacity))
        )
        draw = ImageDraw.Draw(image)
        ascent = font.getmetrics()[0]
        for row, line in enumerate(lines):
            x = pad
            baseline = pad + row * line_h + (line_h - style.font_size) // 2 + ascent
            for token in line:
                colour = self.colour if token.committed else self.tentative_colour
                draw.text((x, baseline), token.text, font=font, fill=(*colour, 255), anchor="ls")
                x += font.getlength(token.text) + space
        rgba = np.asarray(image, dtype=np.uint16)
        alpha = rgba[:, :, 3:4]
        bgr = rgba[:, :, 2::-1]
        weight = (256 - alpha - (alpha > 0)).astype(np.uint16)  # 256 - a', a' in 0..256
        premultiplied = (bgr * (alpha + (alpha > 0))).astype(np.uint16)
        x0 = (self.width - box_w) // 2
        y0 = self.height - box_h - style.margin if style.position == "bottom" else style.margin
        y0 = min(max(y0, 0), self.height - box_h)
        return x0, y0, weight, premultiplied

    @staticmethod
    def _wrap(tokens: list[_Token], font: ImageFont.FreeTypeFont, max_w: int) -> list[list[_Token]]:
        space = font.getlength(" ")
        lines: list[list[_Token]] = [[]]
        used = 0.0
        for token in _split_wide(tokens, font, max_w):
            width = font.getlength(token.text)
            if lines[-1] and used + space + width > max_w:
                lines.append([])
                used = 0.0
            if lines[-1]:
                used += space
            lines[-1].append(token)
            used += width
        return lines


def _split_wide(tokens: list[_Token], font: ImageFont.FreeTypeFont, max_w: int) -> list[_Token]:
    """Tokens wider than a line (CJK text has no spaces) cut into pieces that fit."""
    out: list[_Token] = []
    for token in tokens:
        if font.getlength(token.text) <= max_w:
            out.append(token)
            continue
        piece = ""
        for ch in token.text:
            if piece and font.getlength(piece + ch) > max_w:
                out.append(_Token(piece, token.committed))
                piece = ""
            piece += ch
        if piece:
            out.append(_Token(piece, token.committed))
    return out
