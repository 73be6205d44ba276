"""The WoT HTTP binding (aiohttp): TDs, directory, properties, actions, events, SSE, long-poll."""

from gateway.bindings.http.server import HttpBinding

__all__ = ["HttpBinding"]
