"""rolo's stdlib log records reach twisted.logger when the application has not configured logging."""

from __future__ import annotations

import logging

from twisted.logger import LogLevel, globalLogPublisher

from rolo.serving.twisted import logs


def test_a_record_with_a_traceback_becomes_one_twisted_event_with_its_failure(monkeypatch):
    events = []
    globalLogPublisher.addObserver(events.append)
    # pytest gives the root logger handlers of its own: pretend the application configured nothing
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    rolo_logger = logging.getLogger("rolo")
    monkeypatch.setattr(rolo_logger, "handlers", [])
    monkeypatch.setattr(rolo_logger, "level", logging.NOTSET)
    try:
        logs.forward_rolo_logs()
        logs.forward_rolo_logs()  # once only
        assert len(rolo_logger.handlers) == 1
        try:
            raise RuntimeError("kaboom")
        except RuntimeError:
            logging.getLogger("rolo.gateway").exception("while handling %s", "/boom")
        logging.getLogger("rolo.gateway").info("just saying")
    finally:
        globalLogPublisher.removeObserver(events.append)

    ours = [e for e in events if e.get("log_namespace") == "rolo.gateway"]
    assert [(e["log_level"], e["message"]) for e in ours] == [
        (LogLevel.error, "while handling /boom"),
        (LogLevel.info, "just saying"),
    ]
    assert ours[0]["log_failure"].check(RuntimeError)


def test_configured_stdlib_logging_is_left_alone(monkeypatch):
    rolo_logger = logging.getLogger("rolo")
    monkeypatch.setattr(rolo_logger, "handlers", [])
    assert logging.getLogger().handlers  # pytest's, standing in for the application's
    logs.forward_rolo_logs()
    assert rolo_logger.handlers == []
