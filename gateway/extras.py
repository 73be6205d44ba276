"""The optional parts of the distribution (pyproject.toml's extras) and what to say when one is
missing.

    qr-images      zxing-cpp, Pillow   reading QR codes from photos, screenshots and the camera
    flash          esptool, mpremote   `companion flash|pair`: writing ESP32 boards
    td-validation  jsonschema          `gateway.wot.validate_td` (the TD 1.1 JSON Schema)

A code path that needs one imports it on first use through `require`, which raises
`MissingExtraError` naming the pip extra and the install.sh flag: one line from the commands,
exit status 1 (the command is right; this installation lacks a part).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from gateway.errors import StreembitError

#: extra -> (what it is for, {import name: the package pip installs})
EXTRAS: Final[dict[str, tuple[str, dict[str, str]]]] = {
    "qr-images": (
        "reading QR codes from images and the camera",
        {"zxingcpp": "zxing-cpp", "PIL": "Pillow"},
    ),
    "flash": ("flashing and pairing ESP32 boards", {"esptool": "esptool", "mpremote": "mpremote"}),
    "td-validation": ("validating Thing Descriptions", {"jsonschema": "jsonschema"}),
}
DIST: Final = "streembit-gateway"


class MissingExtraError(StreembitError, ImportError):
    """An optional part is not installed (also an ImportError, for Python API callers)."""

    code = "missing_extra"

    def __init__(self, extra: str, modules: list[str]) -> None:
        self.extra = extra
        super().__init__(install_hint(extra, modules))


def install_hint(extra: str, modules: list[str]) -> str:
    """One line: what is missing and the two ways to install it."""
    what, dists = EXTRAS[extra]
    names = " and ".join(dists.get(m, m) for m in modules)
    return (
        f"{what} needs {names} (not installed): pip install '{DIST}[{extra}]', "
        f"or on an installed gateway: sudo deploy/install.sh --with {extra}"
    )


def require(extra: str, module: str) -> ModuleType:
    """Import MODULE, one of EXTRA's; MissingExtraError when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(extra, [module.split(".")[0]]) from None


def missing(extra: str) -> list[str]:
    """The import names of EXTRA that cannot be imported here."""
    from importlib.util import find_spec

    out = []
    for name in EXTRAS[extra][1]:
        try:
            found = find_spec(name) is not None
        except (ImportError, ValueError):  # sys.modules[name] = None, or a broken package
            found = False
        if not found:
            out.append(name)
    return out


def need(extra: str) -> None:
    """MissingExtraError naming every package of EXTRA that is not installed here."""
    absent = missing(extra)
    if absent:
        raise MissingExtraError(extra, absent)
