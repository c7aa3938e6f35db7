"""An event loop whose clock jumps to the next timer instead of sleeping (cf. aiolimiter's MockLoopTime)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0
        real_select = self._selector.select

        def select(timeout: float | None = None) -> Any:
            # like a real clock, every loop iteration takes a little time (1 us); without it a
            # timer that float rounding leaves a hair short would spin forever
            self._now += max(timeout or 0.0, 1e-6)
            return real_select(0)

        self._selector.select = select  # type: ignore[method-assign]  # replacing it is the point

    def time(self) -> float:
        return self._now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
