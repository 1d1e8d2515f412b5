"""rolo's log lines on Twisted: records of the standard logging module, shown in Twisted's log or on
standard error when the application configured no logging."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from twisted.logger import LogLevel, STDLibLogObserver, formatEvent, globalLogPublisher

from rolo.serving.twisted import _twisted, logs


def test_a_twisted_side_event_is_a_stdlib_record_with_its_traceback(caplog):
    log = logs.logger("rolo.serving.twisted.example")
    with caplog.at_level(logging.INFO, logger="rolo"):
        try:
            raise RuntimeError("kaboom")
        except RuntimeError:
            log.failure("while handling {path}", path="/boom")
        log.info("GET {path}: {status}", path="/ok", status=200)
        log.debug("not {shown}", shown="shown")  # below the logger's level: never formatted
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("rolo.serving.twisted.example", logging.CRITICAL, "while handling /boom"),
        ("rolo.serving.twisted.example", logging.INFO, "GET /ok: 200"),
    ]
    kind, error, traceback = caplog.records[0].exc_info
    assert kind is RuntimeError and str(error) == "kaboom" and traceback is not None


@contextmanager
def nothing_configured(monkeypatch):
    """Logging as in a program that configured none (pytest gives the root logger handlers of its own, in
    each phase of a test: they are put back when the block ends), with rolo's sink installed; yields the
    Twisted events and the records logging's last resort shows."""
    root, rolo_logger = logging.getLogger(), logging.getLogger("rolo")
    saved = root.handlers[:], rolo_logger.handlers[:], rolo_logger.level
    root.handlers.clear()
    rolo_logger.handlers.clear()
    rolo_logger.setLevel(logging.NOTSET)
    events, shown = [], []
    last_resort = logging.Handler(logging.WARNING)
    last_resort.emit = shown.append
    monkeypatch.setattr(logging, "lastResort", last_resort)
    globalLogPublisher.addObserver(events.append)
    try:
        logs.show_rolo_logs()
        logs.show_rolo_logs()  # once only
        assert rolo_logger.handlers == [logs._sink]
        assert rolo_logger.level == logging.INFO
        yield events, shown
    finally:
        globalLogPublisher.removeObserver(events.append)
        root.handlers[:], rolo_logger.handlers[:] = saved[0], saved[1]
        rolo_logger.setLevel(saved[2])


def log_an_error_and_an_info():
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        logging.getLogger("rolo.gateway").exception("while handling %s", "/boom")
    logging.getLogger("rolo.serving.twisted.http").info("GET /ok: 200")


def ours(events):
    return [(e["log_namespace"], e["log_level"], e["message"]) for e in events if e["log_namespace"].startswith("rolo")]


def test_once_twisted_logging_began_every_record_goes_there(monkeypatch):
    monkeypatch.setattr(logs, "logging_began", lambda: True)
    with nothing_configured(monkeypatch) as (events, shown):
        log_an_error_and_an_info()
    assert ours(events) == [
        ("rolo.gateway", LogLevel.error, "while handling /boom"),
        ("rolo.serving.twisted.http", LogLevel.info, "GET /ok: 200"),
    ]
    assert next(e for e in events if "log_failure" in e)["log_failure"].check(RuntimeError)
    assert shown == []


def test_a_twisted_side_event_goes_back_into_twisted_s_log_as_it_was(monkeypatch):
    monkeypatch.setattr(logs, "logging_began", lambda: True)
    with nothing_configured(monkeypatch) as (events, _shown):
        logs.logger("rolo.serving.twisted.example").info("GET {path}: {status}", path="/ok", status=200)
    [event] = [e for e in events if e["log_namespace"] == "rolo.serving.twisted.example"]
    assert (event["log_format"], event["path"], event["status"]) == ("GET {path}: {status}", "/ok", 200)


def test_before_twisted_logging_begins_warnings_and_errors_go_to_the_last_resort(monkeypatch):
    monkeypatch.setattr(logs, "logging_began", lambda: False)
    with nothing_configured(monkeypatch) as (events, shown):
        log_an_error_and_an_info()
    assert ours(events) == []
    assert [(r.name, r.getMessage(), r.exc_info[0]) for r in shown] == [
        ("rolo.gateway", "while handling /boom", RuntimeError)
    ]


def test_where_it_is_unknown_whether_twisted_logging_began_errors_go_both_ways(monkeypatch):
    monkeypatch.setattr(logs, "logging_began", lambda: None)
    with nothing_configured(monkeypatch) as (events, shown):
        log_an_error_and_an_info()
    assert [message for _, _, message in ours(events)] == ["while handling /boom", "GET /ok: 200"]
    assert [r.getMessage() for r in shown] == ["while handling /boom"]


def test_a_handler_the_application_added_takes_the_records_it_sees(monkeypatch):
    monkeypatch.setattr(logs, "logging_began", lambda: True)
    taken = []
    handler = logging.Handler()
    handler.emit = taken.append
    with nothing_configured(monkeypatch) as (events, _shown):
        logging.getLogger("rolo.gateway").addHandler(handler)
        try:
            log_an_error_and_an_info()
        finally:
            logging.getLogger("rolo.gateway").removeHandler(handler)
    assert [r.getMessage() for r in taken] == ["while handling /boom"]
    # the record no handler of the application sees is still shown
    assert [message for _, _, message in ours(events)] == ["GET /ok: 200"]


def test_configured_stdlib_logging_keeps_its_level(monkeypatch):
    rolo_logger = logging.getLogger("rolo")
    monkeypatch.setattr(rolo_logger, "handlers", [])
    monkeypatch.setattr(rolo_logger, "level", logging.NOTSET)
    assert logging.getLogger().handlers  # pytest's, standing in for the application's
    logs.show_rolo_logs()
    assert rolo_logger.level == logging.NOTSET


def test_the_fence_knows_whether_twisted_logging_began():
    # pytest-twisted's reactor runs with no Twisted log observer begun by anyone but (perhaps) a test
    assert _twisted.logging_began() in (True, False)


def test_under_twistd_rolo_a_record_nobody_takes_is_a_line_of_twisted_s_log_and_never_loops(monkeypatch):
    with nothing_configured(monkeypatch) as (events, shown):
        python_s = logging.lastResort
        monkeypatch.setattr(logs, "logging_began", lambda: True)
        logs.show_unhandled_logs()
        logs.show_unhandled_logs()  # once only
        assert logging.lastResort.python_s is python_s
        logging.getLogger("app.quiet").info("not shown: below WARNING, as Python's last resort")
        logging.getLogger("app.note").warning("to Twisted's log")
        assert [(e["log_namespace"], e["log_level"], formatEvent(e)) for e in events] == [
            ("app.note", LogLevel.warn, "to Twisted's log")
        ]
        assert shown == []
        # twistd --logger twisted.logger.STDLibLogObserver: Twisted's log hands each event to logging
        back = STDLibLogObserver()
        globalLogPublisher.addObserver(back)
        try:
            logging.getLogger("app.loop").warning("around once")
        finally:
            globalLogPublisher.removeObserver(back)
        assert [record.getMessage() for record in shown] == ["around once"]
