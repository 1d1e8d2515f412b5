"""Settings: declared once, validated when a server is made, and turned into twistd's options."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from rolo.gateway import Gateway
from rolo.gateway.asgi import AsgiGateway
from rolo.serving.twisted import TwistedGateway, TwistedSettings
from rolo.serving.twisted.tap import Options
from rolo.settings import ServerSettings


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("max_queue", 0, "max_queue must be at least 1, not 0"),
        ("http_threads", 0, "http_threads must be at least 1, not 0"),
        ("max_connections", "10", "max_connections must be an integer, not '10'"),
        ("open_timeout", -1, "open_timeout must not be negative, not -1"),
        ("compression", "yes", "compression must be True or False, not 'yes'"),
        ("allowed_origins", "https://a.example", "allowed_origins must be a list of origin patterns"),
    ],
)
def test_a_bad_setting_is_refused_when_the_server_is_made_naming_it(setting, value, problem):
    with pytest.raises(ValueError, match=problem):
        TwistedGateway(Gateway(), **{setting: value})
    if setting in {declared.name for declared in fields(ServerSettings)}:
        with pytest.raises(ValueError, match=problem):
            AsgiGateway(Gateway(), **{setting: value})


def test_an_unknown_setting_is_a_type_error_that_names_it_and_where_the_settings_are_listed():
    # it was the dataclass's "TwistedSettings.__init__() got an unexpected keyword argument 'max_queues'"
    with pytest.raises(
        TypeError,
        match=r"^max_queues is not a setting of TwistedGateway: the settings are the fields of "
        r"rolo\.serving\.twisted\.settings\.TwistedSettings, listed in rolo's documentation "
        r"\(docs/serving\.rst, Settings\)$",
    ):
        TwistedGateway(Gateway(), max_queues=3)


def test_a_twisted_only_setting_given_to_asgigateway_is_a_type_error_that_says_so():
    # it was the dataclass's "ServerSettings.__init__() got an unexpected keyword argument"
    with pytest.raises(TypeError, match=r"^AsgiGateway does not take max_message_size: it is a TwistedGateway-only "):
        AsgiGateway(Gateway(), max_message_size=1024)
    with pytest.raises(TypeError, match=r"^max_queues is not a setting of AsgiGateway: .*docs/serving\.rst"):
        AsgiGateway(Gateway(), max_queues=3)


def test_none_means_no_limit_only_where_a_setting_allows_it():
    assert TwistedSettings(header_timeout=None, write_timeout=None).header_timeout is None
    with pytest.raises(ValueError, match="close_timeout"):
        TwistedSettings(close_timeout=None)


def test_every_setting_is_a_twistd_option_with_its_help_and_unit():
    options = Options()
    helps = {parameter[0]: parameter[3] for parameter in options.optParameters}
    helps.update({flag[0]: flag[2] for flag in options.optFlags})
    helps["allowed-origin"] = options.opt_allowed_origin.__doc__
    for declared in fields(TwistedSettings):
        option = declared.metadata["option"] or declared.name.replace("_", "-")
        if isinstance(declared.default, bool):  # a flag that turns it off: its help says what it turns off
            assert helps[option] == declared.metadata["off_help"], option
            continue
        assert declared.metadata["help"].split(".")[0] in helps[option], option
        if declared.metadata["unit"]:
            assert helps[option].endswith(f"({declared.metadata['unit']})"), option


def test_twistd_options_give_the_settings():
    options = Options()
    options.parseOptions(
        [
            "--app", "m:a", "--max-queue", "3", "--no-compression", "--header-timeout", "0",
            "--allowed-origin", "https://a.example", "--allowed-origin", "https://*.b.example",
        ]
    )
    settings = TwistedSettings(**options.settings())
    assert settings.max_queue == 3
    assert settings.compression is False
    assert settings.header_timeout is None
    assert settings.allowed_origins == ("https://a.example", "https://*.b.example")
    assert settings.write_timeout == TwistedSettings().write_timeout


def test_a_bad_option_value_ends_twistd_with_a_line_saying_why():
    with pytest.raises(SystemExit, match=r"^rolo: --max-queue must be at least 1, not 0"):
        Options().parseOptions(["--app", "m:a", "--max-queue", "0"])


_YOUNG_THRESHOLD = """
import gc, sys

from rolo.gateway import Gateway
from rolo.gateway.asgi import AsgiGateway

settings = {"gc_threshold": int(sys.argv[1])} if sys.argv[1] != "-" else {}
before = gc.get_threshold()
AsgiGateway(Gateway(), **settings)
print(*before, *gc.get_threshold())
"""


@pytest.mark.parametrize(("given", "young"), [("50000", 50_000), ("-", None)])
def test_gc_threshold_sets_the_young_generation_threshold_of_the_process_as_the_server_is_made(given, young):
    # a burst of messages on 10,000 ASGI connections kept enough short-lived objects alive through two
    # young collections to set off full ones (0.6-0.9 s each); the older generations' thresholds stay.
    # A fresh process: the threshold is the whole process's
    done = subprocess.run([sys.executable, "-c", _YOUNG_THRESHOLD, given], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before_young, before_older, before_oldest, young_now, older, oldest = map(int, done.stdout.split())
    assert (young_now, older, oldest) == (young or before_young, before_older, before_oldest)


def test_gc_threshold_is_a_twistd_option_where_0_leaves_the_interpreters():
    options = Options()
    options.parseOptions(["--app", "m:a", "--gc-threshold", "20000"])
    assert options.settings()["gc_threshold"] == 20_000
    options = Options()
    options.parseOptions(["--app", "m:a", "--gc-threshold", "0"])
    assert options.settings()["gc_threshold"] is None


@pytest.mark.parametrize(
    ("text", "says"),
    [("3000000000", "must be at most 2147483647, not 3000000000"), ("abc", "must be an integer, not 'abc'")],
)
def test_a_gc_threshold_gc_cannot_take_is_refused_in_one_line_before_anything_starts(text, says):
    # gc.set_threshold takes a C int: a larger one raised OverflowError as the server was made, in every worker
    with pytest.raises(SystemExit, match=rf"^rolo: --gc-threshold {says} \("):
        Options().parseOptions(["--app", "m:a", "--gc-threshold", text])
    with pytest.raises(ValueError, match="gc_threshold must be at most 2147483647"):
        ServerSettings(gc_threshold=3_000_000_000)


def test_the_help_of_an_option_says_what_0_means_where_the_setting_says_what_none_means():
    assert "0: the interpreter's, left as it is" in " ".join(str(Options()).split())
