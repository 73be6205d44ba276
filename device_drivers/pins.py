"""Raspberry Pi header pin names, checked against gpiozero's board pin map.

A pin may be given as a BCM number (17), or any name gpiozero knows: "GPIO17", "BCM17",
"BOARD11", "J8:11", "WPI0". It is normalised to "GPIO17", so the same pin written two ways is
still one pin when the gateway checks for pins used twice.
"""

from __future__ import annotations

from typing import Any

STANDARD_REVISION = 0xA02082  # a Pi 3 B: its 40-pin J8 header is the same on every 40-pin Pi


def board_info(factory: Any = None) -> Any:
    """The board pin map: the factory's own when one exists, else the standard 40-pin header."""
    if factory is not None:
        return factory.board_info
    from gpiozero.pins.pi import PiBoardInfo

    return PiBoardInfo.from_revision(STANDARD_REVISION)


def normalize_pin(spec: object, info: Any) -> str:
    """'GPIO17' for 17, 'BCM17', 'BOARD11', 'J8:11'...; ValueError saying why it is unusable."""
    from gpiozero.exc import PinInvalidPin

    if isinstance(spec, bool) or not isinstance(spec, (int, str)) or spec == "":
        raise ValueError('a pin is a BCM number (17) or a name ("GPIO17", "BOARD11")')
    try:
        name = info.to_gpio(spec)
    except PinInvalidPin as exc:
        header = ", ".join(sorted(info.headers)) or "none"
        raise ValueError(
            f"{spec!r} is not a GPIO pin of this board (headers: {header}): {exc}"
        ) from None
    return str(name)
