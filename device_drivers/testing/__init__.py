"""Test doubles for every backend, shipped with the package so users and third parties can test
their configs, Things and drivers without hardware:

- `sysfs.SysfsTree`: a fake /sys with DS18B20 (w1) and DHT22 (IIO) sensors and their faults;
- `gpio.mock_factory()`: gpiozero's MockFactory with PWM-capable mock pins;
- `serial_device.FakeController` / `FakeModbusDevice` on a `PtyPair`: a fake Arduino-class board
  speaking the line protocol, and a fake XY-MD02 Modbus RTU sensor with a relay module, behind a
  real pseudo-terminal (unplug and replug included);
- `bluez.FakeBluez`: a fake BlueZ (org.bluez on a private dbus-daemon) with one BLE peripheral,
  so the real bleak BlueZ backend runs unmodified.
"""
