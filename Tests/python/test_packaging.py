"""How the package finds the library, what it exports, and the example that uses it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import directline
from directline import _native
from support import BINDINGS, REPO_ROOT, SECRET, python_env

PACKAGE = BINDINGS / "directline"
VERSION_SOURCE = REPO_ROOT / "Sources" / "DirectLine" / "Support" / "LibraryVersion.swift"


def import_directline(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Imports the package, which loads no library, then makes the first call, which loads it."""
    return subprocess.run([sys.executable, "-c", "import directline; print(directline.__version__); "
                           "print(directline._native.version())"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def copy_package(root: Path) -> Path:
    """The package alone under root/bindings/python, with the version source at
    root/Sources as in a checkout: no library next to it or in a build folder."""
    copy = root / "bindings" / "python" / "directline"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    version_source = root / VERSION_SOURCE.relative_to(REPO_ROOT)
    version_source.parent.mkdir(parents=True)
    shutil.copyfile(VERSION_SOURCE, version_source)
    return copy


def test_a_missing_DIRECTLINE_LIBRARY_is_reported_by_path_at_the_first_call(tmp_path):
    missing = tmp_path / "nowhere" / "libdirectline.so"
    result = import_directline(python_env(DIRECTLINE_LIBRARY=str(missing)), tmp_path)
    assert result.returncode != 0
    assert result.stdout == f"{directline.__version__}\n", "the import itself succeeds"
    assert "LibraryNotFoundError" in result.stderr
    assert f"{missing}: no such file" in result.stderr
    assert "DIRECTLINE_LIBRARY is set" in result.stderr


def test_a_DIRECTLINE_LIBRARY_that_is_not_a_library_is_reported_with_the_reason(tmp_path):
    bogus = tmp_path / "libdirectline.so"
    bogus.write_text("not an ELF file")
    result = import_directline(python_env(DIRECTLINE_LIBRARY=str(bogus)), tmp_path)
    assert result.returncode != 0
    assert f"{bogus}: " in result.stderr
    assert "no such file" not in result.stderr


def test_without_DIRECTLINE_LIBRARY_every_place_looked_is_listed(tmp_path):
    copy_package(tmp_path)
    env = python_env(PYTHONPATH=str(tmp_path / "bindings" / "python"))
    result = import_directline(env, tmp_path)
    assert result.returncode != 0
    assert "LibraryNotFoundError" in result.stderr
    for place in (tmp_path / "bindings" / "python" / "directline" / "libdirectline.so",
                  tmp_path / ".build" / "release" / "libdirectline.so",
                  tmp_path / ".build" / "debug" / "libdirectline.so"):
        assert f"{place}: no such file" in result.stderr


def test_a_library_next_to_the_package_is_found(tmp_path):
    copy = copy_package(tmp_path)
    (copy / "libdirectline.so").symlink_to(Path(_native.lib._name).resolve())
    result = import_directline(python_env(PYTHONPATH=str(tmp_path / "bindings" / "python")), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [directline.__version__, _native.version()]


def test_DIRECTLINE_LIBRARY_is_used_when_set(tmp_path):
    library = tmp_path / "custom" / "libdirectline.so"
    library.parent.mkdir()
    shutil.copy(_native.lib._name, library)
    result = subprocess.run(
        [sys.executable, "-c", "from directline import _native; print(_native.lib._name)"],
        env=python_env(DIRECTLINE_LIBRARY=str(library)), cwd=tmp_path, capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(library)


LOADS = """
import pathlib, sys
def mapped():
    return "libdirectline" in pathlib.Path("/proc/self/maps").read_text()
import directline, directline.aio, directline.cli
from directline import _native
print(mapped(), _native.lib.is_loaded)
try:
    directline.cli.main(["--help"])
except SystemExit:
    pass
print(mapped(), _native.lib.is_loaded, file=sys.stderr)
_native.lib.dl_version_number()
print(mapped(), _native.lib.is_loaded, file=sys.stderr)
"""


def test_importing_the_package_and_the_commands_help_load_no_library_the_first_call_does(tmp_path):
    result = subprocess.run([sys.executable, "-c", LOADS], env=python_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "False False"
    assert "usage: directline" in result.stdout
    assert result.stderr.splitlines() == ["False False", "True True"]


RACE = """
import threading
from directline import _native
start = threading.Barrier(16)
seen = []
def first_call():
    start.wait()
    seen.append(_native.lib.loaded())
threads = [threading.Thread(target=first_call) for _ in range(16)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(len(seen), len({id(library) for library in seen}), _native.lib.dl_version.restype is not None)
"""


def test_threads_racing_to_the_first_call_load_and_declare_the_library_once(tmp_path):
    result = subprocess.run([sys.executable, "-c", RACE], env=python_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["16", "1", "True"]


def test_a_built_package_takes_its_version_from_the_written_version_file(tmp_path):
    copy = copy_package(tmp_path)
    (copy / "_version.py").write_text('version = "9.8.7"\n')
    result = subprocess.run([sys.executable, "-c", "import directline; print(directline.__version__)"],
                            env=python_env(PYTHONPATH=str(tmp_path / "bindings" / "python")), cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "9.8.7"


def test_LibraryNotFoundError_is_an_ImportError():
    assert issubclass(directline.LibraryNotFoundError, ImportError)


def test_version_is_the_librarys():
    assert directline.__version__ == _native.lib.dl_version().decode()


def test_in_a_checkout_the_version_is_read_from_the_version_source():
    text = VERSION_SOURCE.read_text()
    parts = [re.search(rf"static let {name} = (\d+)", text) for name in ("major", "minor", "patch")]
    assert directline.__version__ == ".".join(part.group(1) for part in parts if part)


def test_public_names_are_exported_documented_and_typed():
    assert (PACKAGE / "py.typed").is_file()
    for name in directline.__all__:
        assert hasattr(directline, name), name
        value = getattr(directline, name)
        if isinstance(value, type) or callable(value):
            assert value.__doc__, f"{name} has no docstring"
    for cls in (directline.Client, directline.Conversation):
        for attribute, member in vars(cls).items():
            if not attribute.startswith("_") and callable(member):
                assert member.__doc__, f"{cls.__name__}.{attribute} has no docstring"
                assert "return" in member.__annotations__, f"{cls.__name__}.{attribute} has no return type"


def test_every_declared_function_is_in_the_header():
    header = (REPO_ROOT / "include" / "directline.h").read_text()
    for name, _, _ in _native._DECLARATIONS:
        assert f" {name}(" in header or f"*{name}(" in header, name


def test_the_quickstart_example_talks_to_the_bot(emulator):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "python" / "quickstart.py")],
        env=python_env(DIRECTLINE_ENDPOINT=emulator.url, DIRECTLINE_SECRET=SECRET),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    listening, first, *rest = result.stdout.splitlines()
    assert listening == "listening: websocket", "auto streams on 3.0"
    assert first.startswith("sent 'hello' to conversation ")
    assert rest == ["bot: echo: hello",
                    "uploaded hello.txt",
                    "bot: received 1 attachment(s): hello.txt (text/plain, 19 bytes)"]
    assert SECRET not in result.stdout + result.stderr
    requests = emulator.requests()
    methods = [request["method"] for request in requests if not request["path"].endswith("/stream")]
    # The start first; the listener's catch-up and reconnect GETs run alongside the sends.
    assert methods[0] == "POST" and methods.count("GET") >= 2, methods
    (upload,) = [request for request in requests if request["path"].endswith("/upload")]
    assert upload["headers"]["content-disposition"] == 'name="file"; filename="hello.txt"'


def test_the_quickstart_example_explains_a_missing_secret():
    env = python_env()
    env.pop("DIRECTLINE_SECRET", None)
    result = subprocess.run([sys.executable, str(REPO_ROOT / "examples" / "python" / "quickstart.py")],
                            env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "DIRECTLINE_SECRET" in result.stderr


EXAMPLES = sorted((REPO_ROOT / "examples" / "python").glob("*.py"))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_every_python_example_runs_against_the_emulator(emulator, example):
    token_endpoint = f"{emulator.url}/powervirtualagents/botsbyschema/cr1_example/directline/token?api-version=1"
    result = subprocess.run([sys.executable, str(example)],
                            env=python_env(DIRECTLINE_ENDPOINT=emulator.url, DIRECTLINE_SECRET=SECRET,
                                           DIRECTLINE_TOKEN_ENDPOINT=token_endpoint),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bot: echo: " in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_mypy_strict_passes_on_the_package_and_the_examples():
    # scripts/common.sh installs mypy, so that this runs in CI.
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                             str(BINDINGS / "directline"), *map(str, EXAMPLES),
                             str(REPO_ROOT / "examples" / "locust" / "locustfile.py")],
                            env=python_env(MYPYPATH=str(BINDINGS)), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
