"""The parts of MicroPython's `machine` the companion uses, recording what happens to the pins."""


class Pin:
    OUT = 1
    IN = 0
    PULL_UP = 2
    PULL_DOWN = 3
    pins = {}  # number -> Pin (the last one made)

    def __init__(self, number, mode=IN, pull=None):
        self.number = number
        self.mode = mode
        self.pull = pull
        self._value = 1 if pull == self.PULL_UP else 0
        self.history = []
        Pin.pins[number] = self

    def value(self, v=None):
        if v is None:
            return self._value
        self._value = 1 if v else 0
        self.history.append(self._value)
        return None

    def drive(self, v):  # the outside world changes an input
        self._value = 1 if v else 0


class WDT:
    last = None

    def __init__(self, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDT.last = self

    def feed(self):
        self.feeds += 1


class ADC:
    def __init__(self, pin):
        self.pin = pin
        self.raw = 32768

    def read_u16(self):
        return self.raw


def reset():
    raise SystemExit("machine.reset()")
