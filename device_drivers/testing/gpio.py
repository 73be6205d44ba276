"""gpiozero mock pins for tests: inject `pin_factory=mock_factory()` into the gpio driver.

`WiredPin` is a MockPWMPin with the outside world wired to it: `pin.wire(False)` ties it low (a
closed reed switch to GND), `pin.wire(True)` high, `pin.wire(None)` lets it float back to its
pull. Unlike `drive_low()`, a wired level survives the driver's later pull-up set-up, as on real
hardware (gpiozero's plain mock pin jumps to its pull level when the pull is set).
"""

from __future__ import annotations

from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin


class WiredPin(MockPWMPin):  # type: ignore[misc]
    _wired: bool | None = None

    def wire(self, level: bool | None) -> None:
        self._wired = level
        if self._function != "input":
            return
        target = (self._pull == "up") if level is None else level
        if target:
            self.drive_high()
        else:
            self.drive_low()

    def _set_pull(self, value: str) -> None:
        super()._set_pull(value)
        if self._wired is not None:
            self.wire(self._wired)


def mock_factory() -> Any:
    """A fresh MockFactory; its pins do PWM and can be wired (`factory.pin(4).wire(False)`)."""
    return MockFactory(pin_class=WiredPin)


def level(factory: Any, pin: int | str) -> bool:
    """The electrical level (True = high) an output pin drives now."""
    return bool(factory.pin(pin).state)
