"""Shipping: `make install` into a prefix, pkg-config, the SONAME, the ABI
symbol list, and `pip install ./bindings/python` into a fresh venv."""
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / ".build" / "release" / "libdirectline.so"
SYMBOLS = ROOT / "abi" / "symbols.txt"
C_EXAMPLES = sorted((ROOT / "examples" / "c").glob("*.c"))


def run(command, **options):
    options.setdefault("capture_output", True)
    options.setdefault("text", True)
    options.setdefault("timeout", 600)
    return subprocess.run(command, **options)


VERSION_SOURCE = ROOT / "Sources" / "DirectLine" / "Support" / "LibraryVersion.swift"


def library_version():
    text = VERSION_SOURCE.read_text()
    parts = [re.search(rf"static let {name} = (\d+)", text).group(1) for name in ("major", "minor", "patch")]
    return ".".join(parts)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """`make install PREFIX=...` into a fresh directory."""
    target = tmp_path_factory.mktemp("prefix")
    result = run(["make", "-C", str(ROOT), "install", f"PREFIX={target}"])
    assert result.returncode == 0, result.stdout + result.stderr
    return target


def test_install_lays_out_the_versioned_library_its_links_header_and_pc(prefix):
    version = library_version()
    major = version.split(".")[0]
    lib = prefix / "lib"
    real = lib / f"libdirectline.so.{version}"
    assert real.is_file() and not real.is_symlink()
    assert os.readlink(lib / f"libdirectline.so.{major}") == real.name
    assert os.readlink(lib / "libdirectline.so") == f"libdirectline.so.{major}"
    assert (prefix / "include" / "directline.h").read_bytes() == (ROOT / "include" / "directline.h").read_bytes()
    pc = (lib / "pkgconfig" / "directline.pc").read_text()
    assert f"Version: {version}" in pc
    assert "@" not in pc, "a placeholder was left in directline.pc"


def test_the_soname_carries_the_major_version():
    result = run(["readelf", "-d", str(LIBRARY)])
    assert result.returncode == 0, result.stderr
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", result.stdout)
    assert soname, "libdirectline.so has no SONAME"
    assert soname.group(1) == f"libdirectline.so.{library_version().split('.')[0]}"


def pkg_config(prefix, *arguments):
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    result = run(["pkg-config", *arguments, "directline"], env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("example", C_EXAMPLES, ids=lambda path: path.name)
def test_c_examples_build_with_nothing_but_pkg_config_and_run(prefix, emulator, tmp_path, example):
    binary = tmp_path / example.stem
    flags = pkg_config(prefix, "--cflags", "--libs")
    result = run(["cc", str(example), *flags, "-o", str(binary)])
    assert result.returncode == 0, result.stderr
    # The program finds the library by its SONAME in the prefix, not in the build tree.
    needed = run(["readelf", "-d", str(binary)]).stdout
    assert f"[libdirectline.so.{library_version().split('.')[0]}]" in needed
    token_endpoint = (f"{emulator.url}/powervirtualagents/botsbyschema/cr1_example/directline/token"
                      "?api-version=2022-03-01-preview")
    env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"), DIRECTLINE_ENDPOINT=emulator.url,
               DIRECTLINE_SECRET="emulator-secret", DIRECTLINE_TOKEN_ENDPOINT=token_endpoint)
    ran = run([str(binary)], env=env, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    loaded = run(["ldd", str(binary)], env=env).stdout
    assert str(prefix / "lib") in loaded


def exported_symbols():
    result = run(["nm", "-D", "--defined-only", str(LIBRARY)])
    assert result.returncode == 0, result.stderr
    return {line.split()[-1] for line in result.stdout.splitlines()
            if len(line.split()) == 3 and line.split()[1] == "T"}


def recorded_symbols():
    names = []
    for line in SYMBOLS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split()[0])
    return names


def test_no_recorded_symbol_has_disappeared():
    missing = [name for name in recorded_symbols() if name not in exported_symbols()]
    assert missing == [], f"removing exported functions breaks the ABI: {missing}"


def test_every_exported_symbol_is_recorded_with_its_version():
    unrecorded = sorted(exported_symbols() - set(recorded_symbols()))
    assert unrecorded == [], f"append these to abi/symbols.txt with the version that adds them: {unrecorded}"
    for line in SYMBOLS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"dl_\w+\s+\d+\.\d+\.\d+", line), f"malformed line in abi/symbols.txt: {line!r}"
    assert len(recorded_symbols()) == len(set(recorded_symbols())), "a symbol is listed twice"


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    """`pip install ./bindings/python` from a copy of the checkout (the binding, the
    version source and the built library), into a fresh venv."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(ROOT / "bindings" / "python", root / "bindings" / "python",
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "*.so"))
    version_source = root / VERSION_SOURCE.relative_to(ROOT)
    version_source.parent.mkdir(parents=True)
    shutil.copyfile(VERSION_SOURCE, version_source)
    (root / ".build" / "release").mkdir(parents=True)
    shutil.copyfile(LIBRARY, root / ".build" / "release" / "libdirectline.so")
    environment = tmp_path_factory.mktemp("venv")
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key not in ("DIRECTLINE_LIBRARY", "PYTHONPATH")}
    result = run([str(python), "-m", "pip", "install", "-q", "./bindings/python"], cwd=root, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return python, env


def test_pip_install_puts_the_library_inside_the_package_and_talks_to_the_emulator(installed_venv, emulator, tmp_path):
    python, env = installed_venv
    script = tmp_path / "talk.py"
    script.write_text(
        "import pathlib, sys, directline\n"
        "package = pathlib.Path(directline.__file__).parent\n"
        "assert (package / 'libdirectline.so').is_file()\n"
        "assert pathlib.Path(directline._native.lib._name).parent == package, directline._native.lib._name\n"
        "with directline.Client(sys.argv[1], secret='emulator-secret') as client:\n"
        "    with client.start_conversation() as conversation:\n"
        "        conversation.send_text('user1', 'hello')\n"
        "        replies = conversation.wait(timeout=10)\n"
        "        print(replies[0]['text'])\n")
    result = run([str(python), str(script), emulator.url], cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "echo: hello"


def test_pip_install_provides_the_directline_command(installed_venv, emulator, tmp_path):
    python, env = installed_venv
    command = python.parent / "directline"
    assert command.is_file(), "pip did not install the directline script"
    result = run([str(command), "send", "--endpoint", emulator.url, "hi there"], cwd=tmp_path,
                 env=dict(env, DIRECTLINE_SECRET="emulator-secret"), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bot: echo: hi there" in result.stdout
    assert "emulator-secret" not in result.stdout + result.stderr


def test_package_library_soname_and_header_all_carry_the_version_of_LibraryVersion_swift(installed_venv, tmp_path):
    python, env = installed_venv
    script = tmp_path / "versions.py"
    # The library is the copy pip bundled, loaded without importing the package.
    script.write_text(
        "import ctypes, importlib.metadata, importlib.util, pathlib\n"
        "library = pathlib.Path(importlib.util.find_spec('directline').origin).parent / 'libdirectline.so'\n"
        "loaded = ctypes.CDLL(str(library))\n"
        "loaded.dl_version.restype = ctypes.c_char_p\n"
        "loaded.dl_version_number.restype = ctypes.c_uint32\n"
        "import directline\n"
        "print(library)\n"
        "print(importlib.metadata.version('directline'))\n"
        "print(directline.__version__)\n"
        "print(loaded.dl_version().decode())\n"
        "print(loaded.dl_version_number())\n")
    result = run([str(python), str(script)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    bundled, metadata, package, function, function_number = result.stdout.split()
    dynamic = run(["readelf", "-d", bundled])
    assert dynamic.returncode == 0, dynamic.stderr
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", dynamic.stdout)
    header = (ROOT / "include" / "directline.h").read_text()
    macros = dict(re.findall(r'#define (DL_VERSION_\w+) "?([^"\s]+)"?', header))

    version = library_version()
    major, minor, patch = (int(part) for part in version.split("."))
    number = str(major * 10000 + minor * 100 + patch)
    found = {
        "package metadata": metadata,
        "directline.__version__": package,
        "dl_version()": function,
        "dl_version_number()": function_number,
        "SONAME": soname.group(1) if soname else None,
        "DL_VERSION_MAJOR.MINOR.PATCH": ".".join(macros.get(f"DL_VERSION_{part}", "?")
                                                 for part in ("MAJOR", "MINOR", "PATCH")),
        "DL_VERSION_STRING": macros.get("DL_VERSION_STRING"),
        "DL_VERSION_NUMBER": macros.get("DL_VERSION_NUMBER"),
    }
    expected = {
        "package metadata": version,
        "directline.__version__": version,
        "dl_version()": version,
        "dl_version_number()": number,
        "SONAME": f"libdirectline.so.{major}",
        "DL_VERSION_MAJOR.MINOR.PATCH": version,
        "DL_VERSION_STRING": version,
        "DL_VERSION_NUMBER": number,
    }
    assert found == expected, f"everything derives from {VERSION_SOURCE.relative_to(ROOT)} ({version})"


def test_building_the_package_outside_a_checkout_says_where_the_version_was_looked_for(tmp_path):
    shutil.copytree(ROOT / "bindings" / "python", tmp_path / "bindings" / "python",
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info", "*.so"))
    result = run([sys.executable, "setup.py", "--version"], cwd=tmp_path / "bindings" / "python")
    assert result.returncode != 0
    missing = tmp_path / VERSION_SOURCE.relative_to(ROOT)
    assert f"cannot read the package version from {missing}" in result.stderr
