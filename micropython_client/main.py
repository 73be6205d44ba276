# Board entry point: MicroPython runs main.py after boot.py. The companion's outputs are driven
# to their safe state before anything else (board.Board), and the watchdog resets a hung board.
import app

try:
    app.main()
except Exception as exc:  # a bug or a bad config: say so, then reset (outputs safe at boot)
    import sys
    import time

    sys.print_exception(exc)
    if isinstance(exc, (ValueError, OSError)) and "config" in str(exc):
        raise  # a bad companion.json: stay in the REPL so it can be fixed with mpremote
    time.sleep(5)
    import machine

    machine.reset()
