# A strictly increasing frame counter that survives reboots without wearing out the flash.
#
# The counter is persisted by reservation: the file holds a high-water mark H, and every value
# below H may already have been used. At start-up the counter continues from H and at once
# reserves H + BLOCK (one write); after that it writes again only when BLOCK values have been
# used. A reboot skips at most BLOCK values, which never breaks monotonicity.
#
# Two slot files (PATH.a, PATH.b) are written alternately, each line "H CHECK" where
# CHECK = H ^ MASK, so a write torn by a power cut leaves the other slot intact; the larger valid
# slot wins. With BLOCK = 256 and a frame every 5 s that is about 70 small writes a day, spread by
# LittleFS's wear levelling over the whole file system: negligible against the flash's
# 100 000 erase cycles per sector. Used by the board and by the gateway (one counter per device).

MASK = 0x5BD1E995
DEFAULT_BLOCK = 256


class CounterLost(Exception):
    pass


class Counter:
    def __init__(self, path, block=DEFAULT_BLOCK, fs=None, start=1):
        if block < 1:
            raise ValueError("block must be >= 1")
        self.path = path
        self.block = block
        self.fs = fs  # an object with write(path, text) and read(path) -> text or None; default: files
        self.writes = 0
        high, slot = self._load()
        self._slot = slot
        self._next = max(high, start)
        self._limit = self._next
        self._reserve()

    def _read(self, path):
        if self.fs is not None:
            return self.fs.read(path)
        try:
            with open(path) as fh:
                return fh.read()
        except OSError:
            return None

    def _write(self, path, text):
        if self.fs is not None:
            self.fs.write(path, text)
            return
        with open(path, "w") as fh:
            fh.write(text)
            try:  # CPython: on the disk before any reserved value is used (MicroPython: close)
                import os

                fh.flush()
                os.fsync(fh.fileno())
            except (ImportError, AttributeError, OSError):
                pass

    def _load(self):
        best, slot = 0, 0
        for i, suffix in ((0, ".a"), (1, ".b")):
            text = self._read(self.path + suffix)
            if not text:
                continue
            parts = text.split()
            try:
                high, check = int(parts[0]), int(parts[1])
            except (ValueError, IndexError):
                continue
            if high ^ MASK == check and high > best:
                best, slot = high, i
        return best, slot

    def _reserve(self):
        limit = self._next + self.block
        self._slot ^= 1  # overwrite the older slot; the newer one stays valid meanwhile
        self._write(self.path + (".a", ".b")[self._slot], "%d %d\n" % (limit, limit ^ MASK))
        self._limit = limit
        self.writes += 1

    def next(self):
        if self._next >= self._limit:
            self._reserve()
        value = self._next
        self._next += 1
        return value

    def peek(self):
        """The value next() returns next."""
        return self._next
