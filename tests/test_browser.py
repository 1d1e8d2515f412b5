"""The chat example with the client most WebSocket users have: a browser.

Headless Chromium (Debian's ``chromium``, driven by Selenium through Debian's ``chromium-driver``; ``./dev
test`` installs both) opens the room's page twice, as the example's docstring says, and the two pages talk:
over ``ws://`` from ``python examples/chat.py``, and over ``wss://`` from ``twistd rolo`` on a TLS endpoint.
Chromium offers permessage-deflate; over ``ws://`` a relay between browser and server reads the handshakes
and frames, and shows that the extension was offered, accepted and used for the messages both ways.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.documented import EXAMPLES, Running
from tests.helpers import self_signed_certificate

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

# as root Chromium needs --no-sandbox; the rest keep it from calling home, which this machine refuses
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",  # the test's self-signed certificate
]


def page_url() -> str:
    """The URL the chat example's docstring tells a user to open, for alice."""
    found = re.search(r"http://localhost:8000/rooms/\S+\?name=alice", (EXAMPLES / "chat.py").read_text())
    assert found, "examples/chat.py no longer says which page to open"
    return found.group(0)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    for part in (CHROMIUM, CHROMEDRIVER):
        if not part.exists():
            pytest.fail(f"{part} is missing: ./dev test installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    # the given driver: Selenium looks for (and downloads) none of its own
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield driver
    driver.quit()


class Page:
    """One tab of the browser, showing the chat page at ``url``."""

    def __init__(self, browser: WebDriver, url: str) -> None:
        self.browser = browser
        browser.switch_to.new_window("tab")
        self.handle = browser.current_window_handle
        browser.get(url)

    def _focus(self) -> None:
        if self.browser.current_window_handle != self.handle:
            self.browser.switch_to.window(self.handle)

    def wait_until(self, what: str, condition, timeout: float = 10.0) -> None:
        self._focus()
        WebDriverWait(self.browser, timeout).until(lambda _: condition(), message=f"{what}; page: {self.text()}")

    def status(self) -> str:
        self._focus()
        return self.browser.find_element(By.ID, "status").text

    def log(self) -> list[str]:
        self._focus()
        return [item.text for item in self.browser.find_elements(By.CSS_SELECTOR, "#log li")]

    def text(self) -> str:
        self._focus()
        return self.browser.find_element(By.TAG_NAME, "body").text

    def say(self, text: str) -> None:
        """Type ``text`` into the message box and press Enter, as a person would."""
        self._focus()
        self.browser.find_element(By.ID, "message").send_keys(text + "\n")

    def close(self) -> None:
        self._focus()
        self.browser.close()
        self.browser.switch_to.window(self.browser.window_handles[0])


def two_pages_talk(browser: WebDriver, alice_url: str) -> tuple[Page, Page]:
    """alice's and bob's pages join the room, and each reads what the other says."""
    alice = Page(browser, alice_url)
    alice.wait_until("alice connects", lambda: alice.status().startswith("connected"))
    bob = Page(browser, alice_url.replace("name=alice", "name=bob"))
    bob.wait_until("bob connects", lambda: bob.status().startswith("connected"))
    alice.wait_until("alice sees bob join", lambda: alice.log() == ["welcome to lobby, alice", "bob joined"])

    alice.say("hello bob")
    bob.wait_until("bob reads alice", lambda: bob.log() == ["welcome to lobby, bob", "alice: hello bob"])
    assert alice.log()[-1] == "alice: hello bob"  # what she sent, shown on her page
    bob.say("hi alice, " + "la " * 200)
    alice.wait_until("alice reads bob", lambda: alice.log()[-1:] == ["bob: hi alice, " + "la " * 199 + "la"])

    bob.close()
    alice.wait_until("alice sees bob leave", lambda: alice.log()[-1:] == ["bob left"])
    return alice, bob


@dataclass
class Connection:
    """What the relay saw on one connection: the request and response heads (header names lowercased), and
    each WebSocket frame after a 101 as (direction, opcode, RSV1 set)."""

    request: dict[str, str] = field(default_factory=dict)
    response: dict[str, str] = field(default_factory=dict)
    status: int = 0
    frames: list[tuple[str, int, bool]] = field(default_factory=list)


class FrameRelay:
    """A TCP relay on a loopback port in front of ``target``: it forwards every byte unchanged, and reads the
    HTTP heads and, after a 101, the WebSocket frame headers going each way (RFC 6455 section 5.2)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.connections: list[Connection] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.target)
            connection = Connection()
            self.connections.append(connection)
            upgraded = threading.Event()
            for ends, direction in (((client, server), "to server"), ((server, client), "to browser")):
                pump = threading.Thread(target=self._pump, args=(*ends, connection, direction, upgraded), daemon=True)
                pump.start()

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        connection: Connection,
        direction: str,
        upgraded: threading.Event,
    ) -> None:
        buffer = b""
        head_done = False
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                buffer += data
                if not head_done and b"\r\n\r\n" in buffer:
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    head_done = True
                    self._read_head(head.decode("latin-1"), connection, direction, upgraded)
                if head_done and direction == "to server":
                    # the browser's frames follow its request only once the server switched protocols
                    upgraded.wait(10)
                if head_done and connection.status == 101:
                    buffer = self._read_frames(buffer, connection, direction)
                elif head_done:
                    buffer = b""  # plain HTTP: nothing more to read
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @staticmethod
    def _read_head(head: str, connection: Connection, direction: str, upgraded: threading.Event) -> None:
        first, *lines = head.split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        if direction == "to server":
            connection.request = headers
        else:
            connection.response = headers
            connection.status = int(first.split()[1])
            upgraded.set()

    @staticmethod
    def _read_frames(buffer: bytes, connection: Connection, direction: str) -> bytes:
        """Record each whole frame in ``buffer``; return what remains of a frame not yet whole."""
        while len(buffer) >= 2:
            rsv1, opcode = bool(buffer[0] & 0x40), buffer[0] & 0x0F
            masked, length = buffer[1] & 0x80, buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    break
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    break
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            end = offset + (4 if masked else 0) + length
            if len(buffer) < end:
                break
            connection.frames.append((direction, opcode, rsv1))
            buffer = buffer[end:]
        return buffer

    def close(self) -> None:
        self.listener.close()


def test_two_browser_pages_chat_over_ws_with_permessage_deflate(browser):
    server = Running(["python", "examples/chat.py", "0"])
    try:
        port = int(server.wait_for(r"ws://localhost:(\d+)/").group(1))
        relay = FrameRelay(("127.0.0.1", port))
        alice, _ = two_pages_talk(browser, page_url().replace("localhost:8000", f"localhost:{relay.port}"))
        assert "permessage-deflate" in alice.status()
        alice.close()
        relay.close()
    finally:
        assert server.stop() == 0

    websockets = [c for c in relay.connections if c.status == 101]
    assert len(websockets) == 2, relay.connections
    for connection in websockets:
        # the browser offered the extension, and the server accepted it
        assert "permessage-deflate" in connection.request["sec-websocket-extensions"]
        assert connection.response["sec-websocket-extensions"].startswith("permessage-deflate")
    # and used it: every text message crossed the wire compressed (RSV1 set, RFC 7692 section 6), each way
    texts = [(direction, rsv1) for c in websockets for direction, opcode, rsv1 in c.frames if opcode == 1]
    assert {direction for direction, _ in texts} == {"to server", "to browser"}
    assert all(rsv1 for _, rsv1 in texts), texts


def test_two_browser_pages_chat_over_wss(browser, tmp_path):
    key, certificate = self_signed_certificate(tmp_path)
    # the example's router under twistd, on a TLS endpoint: the page comes over https:, and joins over wss:
    server = Running(
        [
            "twistd", "-n", "--pidfile=", "rolo", "--app", "chat:router",
            "--listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}",
        ],
        cwd=EXAMPLES,
    )
    try:
        port = int(server.wait_for(r"rolo listening at 127\.0\.0\.1:(\d+)").group(1))
        url = page_url().replace("http://localhost:8000", f"https://localhost:{port}")
        alice, _ = two_pages_talk(browser, url)
        # what the server answered to the browser's offer, as the page's WebSocket reports it
        assert "permessage-deflate" in alice.status()
        alice.close()
    finally:
        assert server.stop() == 0
    # both pages' WebSockets were the server's, over TLS
    assert sum("WebSocket open /rooms/lobby" in line for line in server.rest()) == 2
