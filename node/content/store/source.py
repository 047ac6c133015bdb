"""What a store reads from: a path or an open binary stream (the stores' one input type)."""

from __future__ import annotations

import os
from typing import BinaryIO

Source = str | os.PathLike | BinaryIO


def open_source(source: Source):
    """(stream, close_it) for a path or an already open binary stream."""
    if isinstance(source, (str, os.PathLike)):
        return open(source, "rb", buffering=0), True
    if not hasattr(source, "read"):
        raise TypeError(f"expected a path or a binary stream, got {type(source).__name__}")
    return source, False
