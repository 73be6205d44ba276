"""A fake sysfs tree for the 1-wire (DS18B20) and IIO (DHT22) sources.

    tree = SysfsTree(tmp_path / "sys")
    dev = tree.add_ds18b20(celsius=21.5)          # 28-000000000001/w1_slave with a real CRC
    tree.set_ds18b20(dev, 18.0)
    tree.ds18b20_crc_error(dev)                   # "... crc=xx NO"
    tree.unplug(dev); tree.replug(dev)            # the kernel removes the folder of a lost sensor
    with tree.hung(dev): ...                      # reads block (a hung bus) until the block ends
    iio = tree.add_dht22(celsius=20.0, humidity=40.0)
    tree.dht22_error(iio)                         # reads fail with an OSError, as on EIO

Point the driver at it with the driver setting `sysfs_root = str(tree.root)`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

W1 = "bus/w1/devices"
IIO = "bus/iio/devices"


def dallas_crc8(data: bytes) -> int:
    """The DS18B20 scratchpad CRC (polynomial x^8 + x^5 + x^4 + 1, reflected)."""
    crc = 0
    for byte in data:
        for _ in range(8):
            mix = (crc ^ byte) & 1
            crc >>= 1
            if mix:
                crc ^= 0x8C
            byte >>= 1
    return crc


def w1_slave_text(celsius: float, *, crc_ok: bool = True, raw: int | None = None) -> str:
    """The two lines the kernel's w1_therm driver writes for a DS18B20 reading CELSIUS."""
    value = round(celsius * 16) if raw is None else raw
    pad = bytearray((value & 0xFFFF).to_bytes(2, "little") + bytes([0x4B, 0x46, 0x7F, 0xFF]))
    pad += bytes([0x0C, 0x10])
    crc = dallas_crc8(bytes(pad))
    pad.append(crc if crc_ok else crc ^ 0x5A)
    hexes = " ".join(f"{b:02x}" for b in pad)
    good = crc_ok and dallas_crc8(bytes(pad[:8])) == pad[8]
    raw16 = value & 0xFFFF
    signed = raw16 - 0x10000 if raw16 & 0x8000 else raw16
    milli = int(signed * 1000 / 16)  # the kernel's C division truncates toward zero
    return f"{hexes} : crc={pad[8]:02x} {'YES' if good else 'NO'}\n{hexes} t={milli}\n"


class SysfsTree:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / W1).mkdir(parents=True, exist_ok=True)
        (self.root / IIO).mkdir(parents=True, exist_ok=True)
        self._unplugged: dict[str, Path] = {}
        self._count = 0

    # -- DS18B20
    def add_ds18b20(self, device: str | None = None, celsius: float = 21.0) -> str:
        self._count += 1
        device = device or f"28-{self._count:012x}"
        (self.root / W1 / device).mkdir(parents=True, exist_ok=True)
        self.set_ds18b20(device, celsius)
        return device

    def _w1(self, device: str) -> Path:
        return self.root / W1 / device / "w1_slave"

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic, like a sysfs read: never half a file

    def set_ds18b20(self, device: str, celsius: float) -> None:
        self._write(self._w1(device), w1_slave_text(celsius))

    def ds18b20_crc_error(self, device: str, celsius: float = 21.0) -> None:
        self._write(self._w1(device), w1_slave_text(celsius, crc_ok=False))

    def ds18b20_power_on_value(self, device: str) -> None:
        """85.000 °C with a good CRC: the power-on reset value of a sensor that never converted."""
        self._write(self._w1(device), w1_slave_text(85.0))

    def ds18b20_raw(self, device: str, text: str) -> None:
        self._write(self._w1(device), text)

    @contextlib.contextmanager
    def hung(self, device: str) -> Iterator[None]:
        """Reads of DEVICE block (a hung bus) inside the block; released at its end."""
        path = self._w1(device)
        text = path.read_text()
        path.unlink()
        os.mkfifo(path)
        try:
            yield
        finally:
            self._release_fifo(path, text)

    def _release_fifo(self, path: Path, text: str) -> None:
        for _ in range(50):  # feed every blocked reader, then put the regular file back
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no reader waiting
                    break
                raise
            with contextlib.suppress(OSError):
                os.write(fd, text.encode())
            os.close(fd)
            threading.Event().wait(0.01)
        if path.exists() and stat.S_ISFIFO(path.stat().st_mode):
            path.unlink()
        self._write(path, text)

    # -- DHT22 (kernel IIO driver)
    def add_dht22(
        self, device: str = "iio:device0", celsius: float = 21.0, humidity: float = 45.0
    ) -> str:
        folder = self.root / IIO / device
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "name").write_text("dht11\n")
        self.set_dht22(device, celsius, humidity)
        return device

    def set_dht22(
        self, device: str, celsius: float | None = None, humidity: float | None = None
    ) -> None:
        folder = self.root / IIO / device
        for name, value in (("in_temp_input", celsius), ("in_humidityrelative_input", humidity)):
            if value is not None:
                path = folder / name
                if path.is_dir():
                    path.rmdir()
                self._write(path, f"{round(value * 1000)}\n")

    def dht22_error(self, device: str) -> None:
        """Reads fail with an OSError, as the kernel driver's EIO on a checksum / timing error."""
        folder = self.root / IIO / device
        for name in ("in_temp_input", "in_humidityrelative_input"):
            path = folder / name
            if path.exists() and not path.is_dir():
                path.unlink()
            path.mkdir(exist_ok=True)  # read_text() on a folder: IsADirectoryError (an OSError)

    # -- both
    def unplug(self, device: str) -> None:
        """The sensor is gone: the kernel removes its folder."""
        bus = W1 if device.startswith("28-") else IIO
        folder = self.root / bus / device
        keep = self.root / ".unplugged" / device
        keep.parent.mkdir(exist_ok=True)
        shutil.move(str(folder), str(keep))
        self._unplugged[device] = folder

    def replug(self, device: str) -> None:
        folder = self._unplugged.pop(device)
        shutil.move(str(self.root / ".unplugged" / device), str(folder))
