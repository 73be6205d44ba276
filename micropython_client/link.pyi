# Type stub for the parts of link.py the gateway uses (serial line framing).
SERIAL_PREFIX: bytes
MAX_LINE: int

def encode_line(frame: bytes) -> bytes: ...

class LineSplitter:
    dropped: int
    def __init__(self) -> None: ...
    def feed(self, data: bytes) -> list[bytes]: ...
