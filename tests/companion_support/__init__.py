"""CPython stand-ins for what a MicroPython board has (machine, usocket, ssl, umqtt.simple), so
the companion's own modules run unchanged in the tests (docs/companion.md, section 8)."""
