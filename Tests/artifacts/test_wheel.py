"""The Python package as it ships: `make wheel`'s manylinux wheel and
`make sdist`'s source distribution.

The wheel carries libcurl and the libraries libcurl needs, so an installed
copy runs where neither Swift nor the system's libcurl can be seen (a mount
namespace hides both) and still streams over WebSocket: the library finds
libcurl's WebSocket functions through the copy it was loaded with, renamed
by auditwheel. Importing the package loads no library; the first call does.
The sdist builds the library with Swift, and without Swift it stops and
names the wheel.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VERSION_SOURCE = ROOT / "Sources" / "DirectLine" / "Support" / "LibraryVersion.swift"
PLATFORM = "manylinux_2_36_x86_64"
SECRET = "emulator-secret"  # the conftest emulator's
# What the manylinux policies let a wheel take from the system (PEP 600's
# libraries that glibc and the compiler runtime provide, and zlib) and the
# two entries ldd prints for the kernel's vDSO and the dynamic loader.
SYSTEM_LIBRARIES = {
    "libc.so.6", "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libresolv.so.2",
    "libutil.so.1", "libanl.so.1", "libnsl.so.1", "libmvec.so.1", "libgcc_s.so.1", "libstdc++.so.6",
    "libatomic.so.1", "libz.so.1", "linux-vdso.so.1", "ld-linux-x86-64.so.2",
}


def run(command, **options):
    options.setdefault("capture_output", True)
    options.setdefault("text", True)
    options.setdefault("timeout", 600)
    return subprocess.run(command, **options)


def library_version():
    text = VERSION_SOURCE.read_text()
    return ".".join(re.search(rf"static let {name} = (\d+)", text).group(1) for name in ("major", "minor", "patch"))


def clean_env(**extra):
    """This environment without anything that would point Python at the checkout or a library."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DIRECTLINE_LIBRARY", "PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")}
    env.update(extra)
    return env


def fresh_venv(folder):
    venv.create(folder, with_pip=True)
    return folder / "bin" / "python"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """`scripts/wheel.sh` (what `make wheel` runs) into a folder of its own."""
    out = tmp_path_factory.mktemp("wheel")
    result = run([str(ROOT / "scripts" / "wheel.sh"), str(out)], timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.whl")
    assert result.stdout.strip().splitlines()[-1] == str(built)
    return built


@pytest.fixture(scope="module")
def unpacked(wheel, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unpacked")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder)
    return folder


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """The wheel installed into a fresh venv, from the file alone (no index)."""
    python = fresh_venv(tmp_path_factory.mktemp("venv"))
    result = run([str(python), "-m", "pip", "install", "-q", "--no-index", str(wheel)],
                 cwd=wheel.parent, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return python


def test_the_wheel_is_tagged_manylinux_2_36_for_every_python_3(wheel):
    assert wheel.name == f"directline-{library_version()}-py3-none-{PLATFORM}.whl"


def test_auditwheel_finds_nothing_outside_the_wheel_and_the_policy(wheel):
    result = run([sys.executable, "-m", "auditwheel", "show", str(wheel)])
    assert result.returncode == 0, result.stdout + result.stderr
    report = " ".join(result.stdout.split())
    tag = re.search(r'consistent with the following platform tag: "manylinux_2_(\d+)_x86_64"', report)
    assert tag, report
    # It names the oldest glibc the symbols allow, which may be below the tag the wheel claims.
    assert int(tag.group(1)) <= 36, report
    assert "external shared libraries are required" not in report, report
    assert re.search(r"libcurl-[0-9a-f]+\.so\.4", report), "libcurl is not bundled"


def ldd(library):
    """{soname: resolved path or 'not found'} of the library's whole dependency tree."""
    result = run(["ldd", str(library)], env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    found = {}
    for line in result.stdout.splitlines():
        resolved = re.match(r"\s*(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$", line)
        direct = re.match(r"\s*(\S+) \(0x[0-9a-f]+\)$", line)
        if resolved:
            found[resolved.group(1)] = resolved.group(2)
        elif direct:
            found[Path(direct.group(1)).name] = direct.group(1)
    return found


def test_the_bundled_library_needs_only_the_wheel_and_the_system_libraries_the_policy_allows(unpacked):
    library = unpacked / "directline" / "libdirectline.so"
    bundled = unpacked / "directline.libs"
    dependencies = ldd(library)
    assert any(name.startswith("libcurl-") for name in dependencies), dependencies
    for name, path in dependencies.items():
        assert path != "not found", f"{name} is not found"
        if Path(path).parent.resolve() == bundled.resolve():
            continue
        assert name in SYSTEM_LIBRARIES, f"{name} comes from the system ({path})"
        assert "libcurl" not in path


def test_the_bundled_library_is_stripped_keeps_its_c_abi_and_looks_in_directline_libs(unpacked):
    library = unpacked / "directline" / "libdirectline.so"
    sections = run(["readelf", "-S", "-W", str(library)])
    assert ".symtab" not in sections.stdout, "the local symbol table was not stripped"
    exported = run(["nm", "-D", "--defined-only", str(library)]).stdout
    assert re.search(r" T dl_version$", exported, re.MULTILINE), exported
    dynamic = run(["readelf", "-d", str(library)]).stdout
    search_path = re.search(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*)\]", dynamic)
    assert search_path, dynamic
    assert "$ORIGIN/../directline.libs" in search_path.group(1).split(":"), search_path.group(1)


def test_the_wheel_carries_the_version_without_needing_the_library(unpacked):
    written = (unpacked / "directline" / "_version.py").read_text()
    assert f'version = "{library_version()}"' in written


def test_the_wheel_carries_the_license(unpacked):
    assert (unpacked / "directline" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()


# Run by the venv's Python from an empty folder: nothing of the checkout is visible.
TALK = """
import ctypes, pathlib, shutil, sys
import directline

assert shutil.which("swift") is None, shutil.which("swift")
try:
    ctypes.CDLL("libcurl.so.4")
except OSError:
    pass
else:
    raise AssertionError("the system's libcurl is visible")
package = pathlib.Path(directline.__file__).parent
with directline.Client(sys.argv[1], secret=sys.argv[2]) as client:
    with client.start_conversation() as conversation:
        print("mode", conversation.listen()["mode"])
        conversation.send_text("user1", "hello")
        replies = conversation.wait(timeout=10)
        print("reply", replies[0]["text"])
print("version", directline.__version__)
maps = pathlib.Path("/proc/self/maps").read_text().split()
for path in sorted({word for word in maps if "libcurl" in word or "libdirectline" in word}):
    inside = pathlib.Path(path).is_relative_to(package.parent)
    print("mapped", "inside" if inside else "outside", path)
"""


def hidden_environment_prefix(tmp_path):
    """The command prefix that runs a command in a private mount namespace where
    the Swift toolchain's folder is an empty tmpfs and every libcurl the dynamic
    loader knows of is /dev/null. Skips unless this is root with unshare."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("hiding Swift and libcurl needs a mount namespace: root and unshare(1)")
    hide = []
    swift = shutil.which("swift")
    if swift:
        toolchain = Path(os.path.realpath(swift)).parents[2]  # TOOLCHAIN/usr/bin/swift-driver
        if toolchain in (Path("/"), Path("/usr")) or len(toolchain.parts) < 2:
            pytest.skip(f"Swift is installed in {toolchain}, which cannot be hidden on its own")
        hide.append(f"mount -t tmpfs none {toolchain}")
    cache = run(["/sbin/ldconfig", "-p"] if Path("/sbin/ldconfig").exists() else ["ldconfig", "-p"]).stdout
    curls = sorted({os.path.realpath(path) for path in re.findall(r"=> (\S*/libcurl\S*)", cache)})
    hide += [f"mount --bind /dev/null {path}" for path in curls]
    script = tmp_path / "hide.sh"
    script.write_text("set -e\n" + "\n".join(hide) + '\nexec "$@"\n')
    return ["unshare", "--mount", "--propagation", "private", "sh", str(script)]


def test_the_installed_wheel_streams_and_talks_where_swift_and_the_systems_libcurl_are_hidden(
        installed, emulator, tmp_path):
    prefix = hidden_environment_prefix(tmp_path)
    script = tmp_path / "talk.py"
    script.write_text(TALK)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    result = run([*prefix, str(installed), str(script), emulator.url, SECRET], cwd=workdir,
                 env=clean_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "mode websocket" in lines, "the bundled, renamed libcurl's WebSocket functions were not found"
    assert "reply echo: hello" in lines
    assert f"version {library_version()}" in lines
    mapped = [line for line in lines if line.startswith("mapped ")]
    assert any("libcurl-" in line for line in mapped), mapped
    assert all(line.startswith("mapped inside ") for line in mapped), mapped


def test_the_installed_command_runs_where_swift_and_the_systems_libcurl_are_hidden(installed, emulator, tmp_path):
    prefix = hidden_environment_prefix(tmp_path)
    command = installed.parent / "directline"
    workdir = tmp_path / "empty"
    workdir.mkdir()
    help_text = run([*prefix, str(command), "--help"], cwd=workdir, env=clean_env())
    assert help_text.returncode == 0, help_text.stderr
    assert "usage: directline" in help_text.stdout
    sent = run([*prefix, str(command), "send", "--endpoint", emulator.url, "hi there"], cwd=workdir,
               env=clean_env(DIRECTLINE_SECRET=SECRET), timeout=120)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "bot: echo: hi there" in sent.stdout


LOAD_ON_FIRST_USE = """
import pathlib
import directline, directline.aio, directline.cli

def mapped():
    return "libdirectline" in pathlib.Path("/proc/self/maps").read_text()

print("after import", mapped(), directline.__version__)
print("library", directline._native.version())
print("after call", mapped())
"""


def test_importing_the_installed_package_loads_no_library_until_the_first_call(installed, tmp_path):
    script = tmp_path / "load.py"
    script.write_text(LOAD_ON_FIRST_USE)
    result = run([str(installed), str(script)], cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    version = library_version()
    assert result.stdout.splitlines() == [f"after import False {version}", f"library {version}", "after call True"]


MISSING_LIBRARY = """
import directline
print("imported", directline.__version__)
try:
    directline.Client("http://127.0.0.1:9", secret="s")
except directline.LibraryNotFoundError as error:
    print("raised", str(error).splitlines()[1].strip())
"""


def test_without_its_library_the_package_imports_helps_and_raises_LibraryNotFoundError_at_the_first_call(
        installed, tmp_path):
    missing = tmp_path / "nowhere" / "libdirectline.so"
    env = clean_env(DIRECTLINE_LIBRARY=str(missing))
    script = tmp_path / "missing.py"
    script.write_text(MISSING_LIBRARY)
    result = run([str(installed), str(script)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"imported {library_version()}", f"raised {missing}: no such file"]
    help_text = run([str(installed.parent / "directline"), "--help"], cwd=tmp_path, env=env)
    assert help_text.returncode == 0, help_text.stderr
    version = run([str(installed.parent / "directline"), "--version"], cwd=tmp_path, env=env)
    assert version.stdout.strip() == f"directline {library_version()}", version.stdout + version.stderr


@pytest.fixture(scope="module")
def sdist(tmp_path_factory):
    """`scripts/sdist.sh` (what `make sdist` runs) into a folder of its own."""
    out = tmp_path_factory.mktemp("sdist")
    result = run([str(ROOT / "scripts" / "sdist.sh"), str(out)])
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("*.tar.gz")
    return built


def test_the_sdist_carries_the_swift_package_the_library_builds_from(sdist):
    top = f"directline-{library_version()}"
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
    for path in ("setup.py", "pyproject.toml", "directline/_native.py", "directline/py.typed",
                 "libdirectline/Package.swift", "libdirectline/Sources/DirectLine/exports.map",
                 "libdirectline/Sources/DirectLine/Support/LibraryVersion.swift",
                 "libdirectline/Sources/CCurl/module.modulemap", "libdirectline/Sources/CSystem/csystem.c",
                 "libdirectline/Sources/CWipe/wipe.c", "libdirectline/LICENSE"):
        assert f"{top}/{path}" in names, path
    assert not any(name.endswith(".so") or "/.build" in name for name in names), "a build product was packed"


def test_the_sdist_builds_the_library_with_swift_and_the_package_talks(sdist, emulator, tmp_path):
    if not shutil.which("swift"):
        pytest.skip("Swift is not installed")
    python = fresh_venv(tmp_path / "venv")
    installed = run([str(python), "-m", "pip", "install", "-q", str(sdist)], cwd=tmp_path, env=clean_env(),
                    timeout=1800)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    script = tmp_path / "talk.py"
    script.write_text(
        "import pathlib, sys, directline\n"
        "with directline.Client(sys.argv[1], secret=sys.argv[2]) as client:\n"
        "    with client.start_conversation() as conversation:\n"
        "        conversation.send_text('user1', 'hello')\n"
        "        print(conversation.wait(timeout=10)[0]['text'])\n"
        "print(pathlib.Path(directline._native.lib._name).parent == pathlib.Path(directline.__file__).parent)\n")
    workdir = tmp_path / "empty"
    workdir.mkdir()
    result = run([str(python), str(script), emulator.url, SECRET], cwd=workdir, env=clean_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == ["echo: hello", "True"]


def test_without_swift_installing_the_sdist_fails_and_names_the_wheel(sdist, tmp_path):
    python = fresh_venv(tmp_path / "venv")
    path = os.pathsep.join(folder for folder in os.environ.get("PATH", "").split(os.pathsep)
                           if folder and not (Path(folder) / "swift").exists())
    result = run([str(python), "-m", "pip", "install", str(sdist)], cwd=tmp_path, env=clean_env(PATH=path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "no `swift` was found" in output, output
    assert "manylinux_2_36_x86_64.whl" in output and "make wheel" in output, output


def test_the_wheel_declares_the_locust_extra(unpacked):
    (metadata,) = unpacked.glob("directline-*.dist-info/METADATA")
    lines = metadata.read_text().splitlines()
    assert "Provides-Extra: locust" in lines
    assert any(line.startswith("Requires-Dist: locust") and 'extra == "locust"' in line for line in lines), lines


def test_the_wheel_installs_with_its_locust_extra_and_runs_the_example_locustfile(wheel, emulator, tmp_path):
    # `pip install 'WHEEL[locust]'` with no index: Locust comes from this
    # machine's site-packages, which the venv sees (scripts/common.sh
    # installed it); the package and its library only from the wheel.
    if importlib.util.find_spec("locust") is None:  # never imported: it would patch this process for gevent
        pytest.skip("scripts/common.sh installs locust")
    folder = tmp_path / "venv"
    venv.create(folder, with_pip=True, system_site_packages=True)
    python = folder / "bin" / "python"
    result = run([str(python), "-m", "pip", "install", "-q", "--no-index", f"{wheel}[locust]"],
                 cwd=wheel.parent, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    workdir = tmp_path / "empty"
    workdir.mkdir()
    locustfile = workdir / "locustfile.py"
    shutil.copy(ROOT / "examples" / "locust" / "locustfile.py", locustfile)
    result = run([str(python), "-c", "import directline, sys; print(directline.__file__)"], cwd=workdir,
                 env=clean_env())
    assert str(folder) in result.stdout, result.stdout + result.stderr
    result = run([str(python), "-m", "locust", "-f", str(locustfile), "--host", emulator.url, "--headless",
                  "--users", "3", "--spawn-rate", "3", "--run-time", "4s", "--csv", "report",
                  "--loglevel", "WARNING"], cwd=workdir, env=clean_env(DIRECTLINE_SECRET=SECRET), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    with open(workdir / "report_stats.csv", newline="") as stats:
        counts = {row["Name"]: int(row["Request Count"]) for row in csv.DictReader(stats)}
    assert counts["start conversation"] == 3 and counts["reply"] >= 3, counts
