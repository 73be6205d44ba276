# The board's configured channels: relays (outputs with a safe state), digital inputs, DS18B20,
# DHT11/DHT22 and ADC sensors. Pins come from the config written by `companion pair`:
#
#   "channels": {
#     "relay": {"kind": "relay", "pin": 5, "active_low": false, "safe": false},
#     "door":  {"kind": "input", "pin": 12, "pull": "up", "invert": false},
#     "temp":  {"kind": "ds18b20", "pin": 4},
#     "hum":   {"kind": "dht22", "pin": 15, "value": "humidity"},
#     "light": {"kind": "adc", "pin": 34, "scale": 1.0, "offset": 0.0}
#   }
#
# `machine` (and the sensor modules) are passed in, so the same code runs on CPython with shims.
# Every output is driven to its safe state when the board is built, before any link exists.

KINDS = ("relay", "input", "ds18b20", "dht11", "dht22", "adc")
MAX_CHANNELS = 16
NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


class ConfigError(Exception):
    pass


def _check_name(name):
    if not name or len(name) > 24 or any(c not in NAME_CHARS for c in name):
        raise ConfigError("bad channel name " + repr(name))


class Relay:
    writable = True

    def __init__(self, machine, spec):
        self.active_low = bool(spec.get("active_low", False))
        self.safe = bool(spec.get("safe", False))
        self.pin = machine.Pin(int(spec["pin"]), machine.Pin.OUT)
        self.state = None
        self.write(self.safe)

    def write(self, on):
        on = bool(on)
        self.pin.value(1 if on != self.active_low else 0)
        self.state = on

    def read(self):
        return self.state

    def to_safe(self):
        if self.state != self.safe:
            self.write(self.safe)
            return True
        return False


class Input:
    writable = False

    def __init__(self, machine, spec):
        pull = spec.get("pull")
        args = [int(spec["pin"]), machine.Pin.IN]
        if pull == "up":
            args.append(machine.Pin.PULL_UP)
        elif pull == "down":
            args.append(machine.Pin.PULL_DOWN)
        self.pin = machine.Pin(*args)
        self.invert = bool(spec.get("invert", False))

    def read(self):
        return bool(self.pin.value()) != self.invert


class DS18B20:
    """Non-blocking: each read returns the conversion started by the previous one (750 ms)."""

    writable = False

    def __init__(self, machine, spec, modules):
        onewire, ds18x20 = modules["onewire"], modules["ds18x20"]
        self.sensor = ds18x20.DS18X20(onewire.OneWire(machine.Pin(int(spec["pin"]))))
        self.rom = None
        self.started = False

    def read(self):
        if self.rom is None:
            roms = self.sensor.scan()
            if not roms:
                raise OSError("no DS18B20 on the bus")
            self.rom = roms[0]
        if not self.started:
            self.sensor.convert_temp()
            self.started = True
            raise OSError("first conversion running")
        value = self.sensor.read_temp(self.rom)
        self.sensor.convert_temp()
        if value is None or value == 85.0 or value < -55 or value > 125:
            raise OSError("implausible reading " + str(value))
        return value


class DHT:
    writable = False

    def __init__(self, machine, spec, modules, kind):
        dht = modules["dht"]
        cls = dht.DHT22 if kind == "dht22" else dht.DHT11
        self.sensor = cls(machine.Pin(int(spec["pin"])))
        self.value = spec.get("value", "temperature")
        if self.value not in ("temperature", "humidity"):
            raise ConfigError("dht value must be temperature or humidity")

    def read(self):
        self.sensor.measure()
        if self.value == "humidity":
            return float(self.sensor.humidity())
        return float(self.sensor.temperature())


class Adc:
    writable = False

    def __init__(self, machine, spec):
        self.adc = machine.ADC(machine.Pin(int(spec["pin"])))
        self.scale = float(spec.get("scale", 1.0))
        self.offset = float(spec.get("offset", 0.0))

    def read(self):
        return self.adc.read_u16() * self.scale + self.offset


class Board:
    def __init__(self, channels, machine, modules=None):
        if not isinstance(channels, dict) or not channels or len(channels) > MAX_CHANNELS:
            raise ConfigError("channels: 1 to %d entries" % MAX_CHANNELS)
        self.machine = machine
        self.modules = modules or {}
        self.channels = {}
        self.kinds = {}
        for name in channels:
            _check_name(name)
            spec = channels[name]
            kind = spec.get("kind")
            if kind not in KINDS or "pin" not in spec:
                raise ConfigError("channel " + name + ": kind and pin needed")
            if kind == "relay":
                ch = Relay(machine, spec)
            elif kind == "input":
                ch = Input(machine, spec)
            elif kind == "ds18b20":
                ch = DS18B20(machine, spec, self._mods("onewire", "ds18x20"))
            elif kind in ("dht11", "dht22"):
                ch = DHT(machine, spec, self._mods("dht"), kind)
            else:
                ch = Adc(machine, spec)
            self.channels[name] = ch
            self.kinds[name] = kind

    def _mods(self, *names):
        out = {}
        for name in names:
            mod = self.modules.get(name)
            if mod is None:
                mod = __import__(name)
            out[name] = mod
        return out

    def describe(self):
        return dict(self.kinds)

    def snapshot(self):
        """(values, errors) of every channel; a failing sensor is an error, never a value."""
        values, errors = {}, {}
        for name in self.channels:
            try:
                values[name] = self.channels[name].read()
            except Exception as exc:  # a sensor fault must not stop the loop
                errors[name] = str(exc)[:60] or type(exc).__name__
        return values, errors

    def set(self, name, value):
        ch = self.channels.get(name)
        if ch is None:
            raise KeyError("no channel " + str(name))
        if not ch.writable:
            raise ValueError(name + " is read-only")
        if not isinstance(value, bool):
            raise ValueError(name + " takes true or false")
        ch.write(value)
        return ch.read()

    def to_safe(self):
        """Every output to its safe state; True if anything changed."""
        changed = False
        for name in self.channels:
            ch = self.channels[name]
            if ch.writable and ch.to_safe():
                changed = True
        return changed
