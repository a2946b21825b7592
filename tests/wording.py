"""A check on the wording of messages: no word or short phrase said twice in a row ("lut lut",
"got 9 (got 9)"). Repeats of numbers alone (shapes such as ``(1, 1, 28, 28)``) are not words."""

from __future__ import annotations

import re

#: A unit of one to three words, then the same unit again after spaces or punctuation only.
_REPEAT = re.compile(r"(?<![\w-])((?:[\w.]+[^\w\n]+){0,2}[\w.]+)[^\w\n]+(?<!-)\1(?![\w-])", re.I)


def doubled(text: str) -> list[str]:
    """Every word or phrase of ``text`` said twice in a row that holds a word of two or more letters.

    >>> doubled("exceeds tiny's caps on lut lut 2,621 > 700")
    ['lut']
    >>> doubled("bit width must be between 1 and 8, got 9 (got 9)")
    ['got 9']
    >>> doubled("input shape (1, 1, 28, 28), 28 x 28 pixels; Thresholding_rtl_0 and MVAU_hls_0; auto (--auto)")
    []
    """
    return [m.group(1) for m in _REPEAT.finditer(text) if re.search(r"[A-Za-z]{2}", m.group(1))]
