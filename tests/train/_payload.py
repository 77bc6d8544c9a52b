"""A pickle payload for the tests that check checkpoint files are never unpickled."""

from __future__ import annotations

import pathlib


class TouchOnLoad:
    """Unpickling this calls ``pathlib.Path(marker).touch()``: arbitrary code from a file."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))
