"""Logging for every TuneForge process: level from TUNEFORGE_LOG_LEVEL, quiet libraries.

- the Azure SDK logs every request's and response's headers at INFO: it is held at WARNING
  (unless TUNEFORGE_LOG_LEVEL=DEBUG);
- while NATS is unreachable, nats-py reports every reconnect attempt (twice a second), and its
  default error callback with a full traceback: those records become one line each, and the
  same message is let through once per `REPEAT_WINDOW_S` with a count of those held back.
"""

from __future__ import annotations

import logging
import os
import time

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REPEAT_WINDOW_S = 30.0
QUIET_LOGGERS = ("azure",)  # azure.core.pipeline.policies.http_logging_policy and the rest
# Where the NATS client's reports come from: nats-py's logger (its default error callback, with
# a traceback), and the actors' own callbacks ("nats: …").
NATS_CLIENT_LOGGER = "nats.aio.client"
NATS_CALLBACK_LOGGERS = ("tuneforge.actors.runtime", "tuneforge.api.backend")


def log_level() -> str:
    """TUNEFORGE_LOG_LEVEL, upper-cased (default INFO); SystemExit when it is not a level."""
    level = os.environ.get("TUNEFORGE_LOG_LEVEL", "").strip().upper() or "INFO"
    if level == "WARN":
        level = "WARNING"
    if level not in LEVELS:
        raise SystemExit(
            f"tuneforge: TUNEFORGE_LOG_LEVEL={os.environ.get('TUNEFORGE_LOG_LEVEL')!r} is not a log level "
            f"(one of {', '.join(LEVELS)})"
        )
    return level


class NatsNoise(logging.Filter):
    """One line per NATS client error, and a repeated one once per window (with a count)."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        # (logger, text): (when last shown, how many held back since)
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != NATS_CLIENT_LOGGER and not str(record.msg).startswith("nats:"):
            return True  # the rest of what the actors log
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
            record.msg = f"{record.getMessage()}: {type(error).__name__}" + (f": {detail}" if detail else "")
            record.args = None
            record.exc_info = None
            record.exc_text = None
        key = (record.name, record.getMessage())
        now = time.monotonic()
        shown_at, held = self._last.get(key, (now, 0))
        if key in self._last and now - shown_at < self.window_s:
            self._last[key] = (shown_at, held + 1)
            return False
        if held:
            record.msg = f"{record.getMessage()} (and {held} more like it in the last {now - shown_at:.0f} s)"
            record.args = None
        if len(self._last) > 1000:  # messages that vary (addresses, ids) must not grow this forever
            self._last.clear()
        self._last[key] = (now, 0)
        return True


def configure_logging() -> str:
    """Set up the root logger from TUNEFORGE_LOG_LEVEL; the level name, for uvicorn."""
    level = log_level()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "DEBUG":  # at DEBUG an operator asked for everything, tracebacks and headers included
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # On the loggers, not the root's handlers: the API's Litestar replaces those on start.
        noise = NatsNoise()
        for name in (NATS_CLIENT_LOGGER, *NATS_CALLBACK_LOGGERS):
            logging.getLogger(name).addFilter(noise)
    return level
