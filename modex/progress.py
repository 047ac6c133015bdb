"""Progress bars for the commands that move model bytes (`modex publish`, `modex fetch`)."""

from __future__ import annotations

from typing import ClassVar, Self

from tqdm import tqdm


class ProgressBars:
    """``progress(stage, n, total)`` callbacks as one tqdm bar per stage (hash, seal, pin, fetch).

    Bars go to stderr and switch themselves off when stderr is not a terminal.
    """

    # publish hashes each file while sealing it (one pass), so its "seal" bar is the hashing too
    LABELS: ClassVar[dict[str, str]] = {
        "hash": "hashing",
        "seal": "hashing+sealing",
        "pin": "pinning",
        "fetch": "fetching",
    }

    def __init__(self, disable: bool | None = None):
        self._bars: dict[str, tqdm] = {}
        self._disable = disable

    def __call__(self, stage: str, n: int, total: int | None) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            bar = self._bars[stage] = tqdm(
                total=total,
                desc=self.LABELS.get(stage, stage),
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=self._disable,
                leave=True,
            )
        bar.update(n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
