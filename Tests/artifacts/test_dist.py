"""The C release tarball (`make dist`): its layout and links, a relocatable
pkg-config file, a stripped library with the right SONAME and no run path
into the build tree, the same bytes when made again, and a C example built
from the unpacked folder with nothing but cc and pkg-config that talks to the
emulator.

The tarball is unpacked under pytest's temporary folder, a path without
spaces: pkg-config prints ${pcfiledir} unquoted, so a space would split the
flags in `$(pkg-config ...)`, and the tarball's README says to avoid them."""
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from test_install import ROOT, library_version, recorded_symbols, run

VERSION = library_version()
MAJOR = VERSION.split(".")[0]
NAME = f"libdirectline-{VERSION}-linux-x86_64"


def expected_mtime():
    """What scripts/dist.sh stamps every member with."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"]).stdout)


def committed_examples():
    listed = run(["git", "-C", str(ROOT), "ls-files", "examples/c", "examples/python"]).stdout.split()
    assert listed, "no examples found by git ls-files"
    return sorted(listed)


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    """`make dist` into a fresh folder (not the checkout's dist/)."""
    output = tmp_path_factory.mktemp("dist")
    result = run(["make", "-C", str(ROOT), "dist", f"DIST_DIR={output}"])
    assert result.returncode == 0, result.stdout + result.stderr
    path = output / f"{NAME}.tar.gz"
    assert path.is_file(), f"make dist did not write {path.name}: {sorted(os.listdir(output))}"
    return path


@pytest.fixture(scope="module")
def unpacked(tarball, tmp_path_factory):
    """The tarball unpacked with tar, as a user would: the top folder."""
    target = tmp_path_factory.mktemp("unpacked")
    result = run(["tar", "-C", str(target), "-xzf", str(tarball)])
    assert result.returncode == 0, result.stderr
    return target / NAME


def test_one_top_folder_holding_the_library_its_links_header_pc_examples_license_and_readme(tarball):
    with tarfile.open(tarball) as archive:
        members = archive.getmembers()
    names = [member.name for member in members]
    assert names == sorted(names), "members are not in sorted order"
    files = {
        f"lib/libdirectline.so.{VERSION}",
        "lib/pkgconfig/directline.pc",
        "include/directline.h",
        "LICENSE",
        "README",
        *committed_examples(),
    }
    links = {"lib/libdirectline.so": f"libdirectline.so.{MAJOR}",
             f"lib/libdirectline.so.{MAJOR}": f"libdirectline.so.{VERSION}"}
    found_files = {m.name.removeprefix(f"{NAME}/") for m in members if m.isfile()}
    found_links = {m.name.removeprefix(f"{NAME}/"): m.linkname for m in members if m.issym()}
    assert all(name == NAME or name.startswith(f"{NAME}/") for name in names), names
    assert found_files == files
    assert found_links == links
    assert all(m.isdir() for m in members if m.name.removeprefix(f"{NAME}/") not in files | set(links))
    # Reproducible metadata: root-owned by number, the last commit's time.
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert {m.mtime for m in members} == {expected_mtime()}
    modes = {m.name.removeprefix(f"{NAME}/"): m.mode for m in members if m.isfile()}
    assert modes.pop(f"lib/libdirectline.so.{VERSION}") == 0o755
    assert set(modes.values()) == {0o644}, modes


def test_making_it_again_gives_the_same_bytes(tarball, tmp_path):
    """A second run of scripts/dist.sh (the library already built) writes an identical file."""
    result = run([str(ROOT / "scripts" / "dist.sh"), str(tmp_path)], env=dict(os.environ, VERSION=VERSION))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / tarball.name).read_bytes() == tarball.read_bytes()


def test_header_license_and_examples_are_the_checkouts(unpacked):
    for name in ["include/directline.h", "LICENSE", *committed_examples()]:
        assert (unpacked / name).read_bytes() == (ROOT / name).read_bytes(), name
    readme = (unpacked / "README").read_text()
    assert "@" not in readme, "a placeholder was left in README"
    for needed in ("pkg-config --cflags --libs directline", "LD_LIBRARY_PATH", "-Wl,-rpath", "7.88", "8.11",
                   f"libdirectline.so.{MAJOR}", NAME):
        assert needed in readme, needed


def test_the_pc_file_is_relocatable_and_carries_the_library_version(unpacked):
    pc = (unpacked / "lib" / "pkgconfig" / "directline.pc").read_text()
    variables = dict(re.findall(r"^(\w+)=(.*)$", pc, re.MULTILINE))
    assert variables["prefix"] == "${pcfiledir}/../.."
    assert variables["libdir"] == "${prefix}/lib"
    assert variables["includedir"] == "${prefix}/include"
    assert re.search(r"^Version: (.+)$", pc, re.MULTILINE).group(1) == VERSION
    assert "@" not in pc, "a placeholder was left in directline.pc"
    assert not any(value.startswith("/") for value in variables.values()), "an absolute path in the .pc"
    env = dict(os.environ, PKG_CONFIG_PATH=str(unpacked / "lib" / "pkgconfig"))
    modversion = run(["pkg-config", "--modversion", "directline"], env=env)
    assert modversion.stdout.strip() == VERSION, modversion.stderr
    flags = run(["pkg-config", "--cflags", "--libs", "directline"], env=env).stdout.split()
    include = [Path(flag[2:]).resolve() for flag in flags if flag.startswith("-I")]
    libdir = [Path(flag[2:]).resolve() for flag in flags if flag.startswith("-L")]
    assert include == [unpacked / "include"] and libdir == [unpacked / "lib"], flags


def test_the_library_has_its_soname_no_run_path_into_the_build_tree_and_no_debug_info(unpacked):
    library = unpacked / "lib" / f"libdirectline.so.{VERSION}"
    dynamic = run(["readelf", "-d", str(library)]).stdout
    assert re.search(r"\(SONAME\)\s+Library soname: \[(.+?)\]", dynamic).group(1) == f"libdirectline.so.{MAJOR}"
    for path in re.findall(r"\((?:RPATH|RUNPATH)\)\s+Library r(?:un)?path: \[(.*?)\]", dynamic):
        for entry in path.split(":"):
            assert entry.startswith("$ORIGIN"), f"run path {entry!r} points outside the unpacked folder"
    sections = run(["readelf", "-S", "-W", str(library)]).stdout
    assert ".debug_" not in sections, "the packed library still carries debug info"
    exported = {line.split()[-1] for line in run(["nm", "-D", "--defined-only", str(library)]).stdout.splitlines()
                if len(line.split()) == 3 and line.split()[1] == "T"}
    assert exported == set(recorded_symbols()), "stripping must keep every function of abi/symbols.txt, and no more"


def test_the_library_reports_the_version_in_its_file_name(unpacked):
    """dl_version() of the packed library, loaded by its SONAME link in a separate process."""
    script = ("import ctypes, sys\n"
              "lib = ctypes.CDLL(sys.argv[1])\n"
              "lib.dl_version.restype = ctypes.c_char_p\n"
              "print(lib.dl_version().decode())\n")
    result = run(["python3", "-c", script, str(unpacked / "lib" / f"libdirectline.so.{MAJOR}")])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == VERSION


def build_quickstart(unpacked, *extra):
    """cc examples/c/quickstart.c with only the unpacked .pc's flags (no -I or -L into the checkout), as the
    README says, through a shell so the $(...) line is the README's own."""
    flags = f"$(PKG_CONFIG_PATH={unpacked}/lib/pkgconfig pkg-config --cflags --libs directline)"
    command = f"cc quickstart.c {flags} {' '.join(extra)} -o quickstart"
    result = run(["sh", "-c", command], cwd=unpacked / "examples" / "c")
    assert result.returncode == 0, command + "\n" + result.stderr
    return unpacked / "examples" / "c" / "quickstart"


def run_quickstart(binary, emulator, **env):
    """Runs it with no LD_LIBRARY_PATH but the one given; returns what ldd says it loads."""
    environment = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    environment.update(DIRECTLINE_ENDPOINT=emulator.url, DIRECTLINE_SECRET="emulator-secret", **env)
    loaded = run(["ldd", str(binary)], env=environment).stdout
    ran = run([str(binary)], env=environment, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "bot: echo: hello from C" in ran.stdout, ran.stdout
    return loaded


def test_quickstart_built_against_the_unpacked_folder_talks_to_the_emulator(unpacked, emulator):
    binary = build_quickstart(unpacked)
    assert f"[libdirectline.so.{MAJOR}]" in run(["readelf", "-d", str(binary)]).stdout
    loaded = run_quickstart(binary, emulator, LD_LIBRARY_PATH=str(unpacked / "lib"))
    assert f"libdirectline.so.{MAJOR} => {unpacked / 'lib'}/" in loaded, loaded
    assert str(ROOT) not in loaded


def test_quickstart_linked_with_an_rpath_runs_without_ld_library_path(unpacked, emulator, tmp_path):
    """The README's second way: -Wl,-rpath to the unpacked lib/, then run it from elsewhere."""
    binary = build_quickstart(unpacked, f"-Wl,-rpath,{unpacked}/lib")
    moved = tmp_path / "quickstart"
    shutil.move(binary, moved)
    loaded = run_quickstart(moved, emulator)
    assert f"libdirectline.so.{MAJOR} => {unpacked / 'lib'}/" in loaded, loaded
