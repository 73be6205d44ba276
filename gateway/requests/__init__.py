"""The one request path shared by every binding: verify -> decide -> dispatch -> audit."""

from gateway.requests.model import OPS, Outcome, Request
from gateway.requests.processor import RequestProcessor

__all__ = ["OPS", "Outcome", "Request", "RequestProcessor"]
