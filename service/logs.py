"""Refused requests in the server log: one WARNING line each, `POST /classify_array: 400 <the error
the client got>`, never an ERROR with a traceback (the server is fine; the request was not).

BentoML 1.4 (>=1.4.30,<1.5, checked up to 1.4.40) logs every exception an API raises as
`Exception on <path> [<method>]` at ERROR with its traceback, from the logger named in
`BENTOML_ERRORS`: request bodies that fail validation (`service/inputs.py`), 4xx BentoMLExceptions
(a pickle body: 415) and BentoML's own 503s (an overloaded process). A filter on that logger
rewrites those records; any other exception keeps its ERROR and traceback.
"""

from __future__ import annotations

import logging

from bentoml.exceptions import BentoMLException, ServiceUnavailable
from pydantic import ValidationError
from starlette.requests import Request

from service.errors import problems_message

LOG = logging.getLogger("bentoml.service.ser")
BENTOML_ERRORS = "bentoml._internal.server.http_app"
REFUSAL = "%s %s: %d %s"  # method, path, status, the error answered


def log_refusal(request: Request, status: int, message: str) -> None:
    """One warning line for a request answered with `status` and `message`."""
    LOG.warning(REFUSAL, request.method, request.url.path, status, message)


def _refusal(exc: BaseException | None) -> tuple[int, str] | None:
    """(status, message) of an exception that refuses a request, None for any other."""
    if isinstance(exc, ValidationError):
        return 400, problems_message(exc.errors(include_context=False, include_input=False))
    if isinstance(exc, ServiceUnavailable) or (
        isinstance(exc, BentoMLException) and exc.error_code.value < 500
    ):
        return exc.error_code.value, str(exc)
    return None


class RefusalsAsWarnings(logging.Filter):
    """Turns BentoML's `Exception on <path> [<method>]` record of a refusal into one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        refusal = _refusal(record.exc_info[1] if record.exc_info else None)
        if refusal is not None and isinstance(record.args, tuple) and len(record.args) == 2:
            path, method = record.args
            record.msg, record.args = REFUSAL, (method, path, *refusal)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def log_refusals_as_warnings() -> None:
    """Install the filter (once per process)."""
    logger = logging.getLogger(BENTOML_ERRORS)
    if not any(isinstance(f, RefusalsAsWarnings) for f in logger.filters):
        logger.addFilter(RefusalsAsWarnings())
