"""The exception root of the whole product, and the driver layer's errors.

`device_drivers` is the lowest layer (it never imports `gateway`), so the single
exception root lives here; `gateway.errors` re-exports it and adds one subclass
per gateway layer.
"""

from __future__ import annotations


class StreembitError(Exception):
    """Root of every error this product raises on purpose.

    `code` is a short, stable, machine-readable reason (used in HTTP replies,
    sealed replies and the audit log); the message is for people.
    """

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def reason(self) -> str:
        return str(self)


class DriverError(StreembitError):
    """A device driver failed: hardware absent, I/O error, stale or corrupt reading."""

    code = "driver_fault"


class DriverConfigError(DriverError):
    """A driver was configured wrongly (unknown backend, bad pin, missing device file)."""

    code = "driver_config"
