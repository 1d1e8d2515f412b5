"""The package as users get it: the sdist and the wheel built from a copy of the checkout, installed into
fresh virtual environments by the commands README.rst gives, and the editable install ``./dev`` makes.

Each fresh environment installs rolo's dependencies from the package index (pip's cache makes that quick).
"""

from __future__ import annotations

import email
import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest
import twisted.plugins

import rolo
from tests.documented import README, REPO, Command, documented_commands, file_commands


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the checkout as a fresh clone has it, for the test to build in: the files git tracks, and
    those it would that are not committed yet (what .gitignore names stays behind)."""
    copy = tmp_path / "checkout" / "rolo"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():  # a file deleted but not yet committed is listed too
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name, follow_symlinks=False)
    return copy


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


class Environment:
    """A fresh virtual environment at ``path``, and commands run in it as in a shell where it is active."""

    def __init__(self, path: Path) -> None:
        venv.create(path, with_pip=True)
        self.path = path
        self.bin = path / "bin"
        self.env = dict(os.environ, VIRTUAL_ENV=str(path), PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}")
        self.env.pop("PYTHONPATH", None)

    def run(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        program = shutil.which(argv[0], path=self.env["PATH"]) or argv[0]
        done = subprocess.run(
            [program, *argv[1:]], check=False, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def python(self, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return self.run(["python", "-c", code], cwd=cwd)


# run in the environment under test: what it imports, and what it cannot
_CHECKS = """
import importlib.metadata, json, sysconfig
import rolo, twisted, twisted.plugins
refused = []
for name in ("tests", "bench", "examples"):
    try:
        __import__(name)
    except ModuleNotFoundError as error:
        refused.append(error.name)
print(json.dumps({
    "versions": [rolo.__version__, importlib.metadata.version("txrolo")],
    "rolo": rolo.__file__,
    "twisted": twisted.__version__,
    "twisted.plugins": twisted.plugins.__file__,
    "site-packages": sysconfig.get_path("purelib"),
    "refused": refused,
}))
"""


def assert_installed_as_users_need(environment: Environment, elsewhere: Path) -> dict[str, Any]:
    """In ``environment``, from the directory ``elsewhere``: rolo imports, at its version; ``twistd`` finds
    the plugin and prints the versions; the checkout's other directories are no packages; ``twisted`` is
    Twisted. Returns what the environment said of itself."""
    found = json.loads(environment.python(_CHECKS, elsewhere).stdout)
    assert found["versions"] == [rolo.__version__, rolo.__version__]
    assert found["refused"] == ["tests", "bench", "examples"]
    assert Path(found["twisted.plugins"]).is_relative_to(Path(found["site-packages"]) / "twisted")
    # twistd knows the subcommand only if its plugin loader found the plugin
    printed = environment.run(["twistd", "rolo", "--version"], elsewhere).stdout.splitlines()
    assert printed[:2] == [f"rolo {rolo.__version__}", f"Twisted {found['twisted']}"]
    return found


def from_the_checkout(command: Command) -> bool:
    """Whether ``command`` installs from the checkout (``pip install '.[tls]'``), not editable: the README
    also names what not to run (``pip install rolo``, a plain ``pip install -e .``)."""
    argv = command.argv[2:] if command.argv[:2] == ["python", "-m"] else command.argv
    return argv[:2] == ["pip", "install"] and "-e" not in argv and any(arg.startswith(".") for arg in argv)


def extras(command: Command) -> set[str]:
    """The extras a ``pip install '.[a,b]'`` asks for."""
    return {name for arg in command.argv if arg.startswith(".[") for name in arg[2:-1].split(",")}


@pytest.mark.slow
def test_the_install_commands_of_the_readme_as_written(checkout, tmp_path):
    installs = [c for c in file_commands(README, "Installing") if from_the_checkout(c)]
    assert installs, "README.rst's Installing section gives no pip install"
    environment = Environment(tmp_path / "venv")
    for command in installs:
        environment.run(command.argv, cwd=checkout)
    assert_installed_as_users_need(environment, tmp_path)
    # the extras the README names: pyOpenSSL (tls), websocket-client (testing), prometheus-client (metrics)
    environment.python("import OpenSSL, websocket, rolo.metrics", tmp_path)
    # the README's other sections and the docs' pages name the same install with one of those extras
    # (pip install '.[tls]')
    installed = set().union(*map(extras, installs))
    for command in documented_commands():
        if from_the_checkout(command) and command not in installs:
            assert extras(command) <= installed, f"{command.where}: {command.text} is not tested"


@pytest.mark.slow
def test_the_wheel_the_readme_builds_installs_elsewhere(checkout, tmp_path):
    (build,) = [c for c in file_commands(README, "Installing") if c.argv[:4] == ["python", "-m", "pip", "wheel"]]
    subprocess.run([sys.executable, *build.argv[1:]], cwd=checkout, check=True, capture_output=True, timeout=300)
    (wheel,) = (checkout / "dist").glob("*.whl")
    assert wheel.name == f"txrolo-{rolo.__version__}-py3-none-any.whl"

    environment = Environment(tmp_path / "venv")
    environment.run(["python", "-m", "pip", "install", str(wheel)], cwd=tmp_path)
    assert_installed_as_users_need(environment, tmp_path)


@pytest.mark.slow
def test_an_editable_install_as_dev_makes_it_shows_only_rolo_and_the_plugin(checkout, tmp_path):
    # the install ./dev makes, without the test dependencies
    environment = Environment(tmp_path / "venv")
    environment.run(
        ["python", "-m", "pip", "install", "--config-settings", "editable_mode=strict", "-e", "."], cwd=checkout
    )
    found = assert_installed_as_users_need(environment, tmp_path)
    assert Path(found["rolo"]).resolve() == checkout / "rolo" / "__init__.py"  # editable: the checkout's own file
    # the plugin's editable link tree is where twistd looks, so twistd --help lists rolo
    listed = environment.run(["twistd", "--help"], tmp_path).stdout
    assert any(line.split()[:1] == ["rolo"] for line in listed.splitlines()), listed
    # and ./dev installs just so
    assert '--config-settings editable_mode=strict -e ".[test]"' in (REPO / "dev").read_text()


@pytest.mark.slow
def test_the_sdist_holds_the_checkout_and_the_wheel_rolo_the_plugin_and_the_license(checkout, tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(checkout)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # the sdist, then the wheel built from the sdist
    (sdist,) = tmp_path.glob("*.tar.gz")
    (wheel,) = tmp_path.glob("*.whl")
    assert sdist.name == f"txrolo-{rolo.__version__}.tar.gz"

    with tarfile.open(sdist) as archive:
        top = f"txrolo-{rolo.__version__}/"
        in_sdist = {member.name.removeprefix(top) for member in archive.getmembers() if member.isfile()}
    # everything that builds, tests and documents the package: the checkout, conftest and examples included
    # (not git's own .gitignore)
    missing = files_under(checkout) - in_sdist - {".gitignore"}
    assert not missing, f"not in the sdist: {sorted(missing)}"
    for needed in ("LICENSE", "CHANGELOG.rst", "tests/conftest.py", "examples/chat.html", "dev"):
        assert needed in in_sdist

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = f"txrolo-{rolo.__version__}.dist-info/"
        metadata = email.message_from_bytes(archive.read(info + "METADATA"))
        (license_file,) = [name for name in names if name.startswith(info) and name.endswith("LICENSE")]
        shipped_license = archive.read(license_file)
    assert {name.split("/")[0] for name in names} == {"rolo", "twisted", info.rstrip("/")}
    assert [name for name in names if name.startswith("twisted/")] == ["twisted/plugins/rolo_plugin.py"]
    assert (metadata["Name"], metadata["Version"], metadata["License"]) == ("txrolo", rolo.__version__, "Apache-2.0")
    assert shipped_license == (REPO / "LICENSE").read_bytes()
    assert b"Apache License\n                           Version 2.0, January 2004" in shipped_license


def test_the_checkout_has_no_twisted_package_to_shadow_twisted():
    # a regular package named twisted in the checkout would win over Twisted whenever the current directory
    # is on sys.path (python -c, python -m, pytest); a directory without __init__.py never does
    assert not (REPO / "twisted" / "__init__.py").exists()
    assert not (REPO / "twisted" / "plugins" / "__init__.py").exists()
    found = subprocess.run(
        [sys.executable, "-c", "import twisted, twisted.plugins; print(twisted.__file__, twisted.plugins.__file__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert found == [twisted.__file__, twisted.plugins.__file__]  # the installed Twisted's
    assert not Path(found[0]).is_relative_to(REPO / "twisted")
