"""Builds the directline package with the self-contained libdirectline.so inside.

Where the library comes from, in order:

1. DIRECTLINE_LIBRARY, when set: a library built beforehand (scripts/wheel.sh
   passes its stripped copy this way).
2. In a checkout of the repository: its release build (`make` or
   `swift build -c release -Xswiftc -static-stdlib` at the top).
3. In an sdist, which carries the Swift sources under libdirectline/ (put
   there by the sdist command below): built from them with Swift, which
   must then be installed; without it the build stops and points to the
   wheel, which needs neither Swift nor a compiler.

The library links the Swift runtime statically, so the installed package
needs nothing but libcurl and libc. The version is the library's, read from
Sources/DirectLine/Support/LibraryVersion.swift (the checkout's or the
sdist's copy) and written into the build as directline/_version.py, so the
package knows it without loading the library. Everything else is in
pyproject.toml.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist
from setuptools.dist import Distribution

try:  # setuptools 70.1 and later carry it; before, the wheel package did
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:  # an older setuptools without wheel: it builds no wheel, but runs the other commands
        bdist_wheel = None

HERE = Path(__file__).resolve().parent
LIBRARY = "libdirectline.so"
# Found from this file, never from the working directory: pip runs this from
# wherever it was called, or from a temporary one.
CHECKOUT = HERE.parent.parent
# Where an sdist keeps the Swift package: everything `swift build` reads.
STAGED = HERE / "libdirectline"
SWIFT_PACKAGE_FILES = ("Package.swift", "Sources", "LICENSE")
# Package.swift declares this test target; SwiftPM wants its folder to exist
# even when no test is built, so the sdist carries it with a placeholder.
TEST_TARGET = Path("Tests") / "DirectLineTests"
WHEEL_HINT = ("Install the prebuilt wheel instead (`pip install directline-*-manylinux_2_36_x86_64.whl`, "
              "built by `make wheel`): it needs neither Swift nor a compiler")


def swift_package() -> Path:
    """The Swift package's root: the sdist's staged copy, else the checkout."""
    return STAGED if (STAGED / "Package.swift").is_file() else CHECKOUT


def in_checkout() -> bool:
    """Whether this is a checkout's bindings/python rather than an unpacked sdist."""
    return not (STAGED / "Package.swift").is_file()


def library_version() -> str:
    """MAJOR.MINOR.PATCH from the library's one version source, so the package
    carries the version of the library it bundles."""
    source = swift_package() / "Sources" / "DirectLine" / "Support" / "LibraryVersion.swift"
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"cannot read the package version from {source} ({error.strerror}): "
                         "build the package from a checkout of the repository or from its sdist") from None
    parts = [re.search(rf"^ *static let {name} = (\d+)$", text, re.MULTILINE) for name in ("major", "minor", "patch")]
    if not all(parts):
        raise SystemExit(f"{source} does not define `static let major/minor/patch = N`")
    return ".".join(part.group(1) for part in parts)


def build_from_sources(package: Path) -> Path:
    """Builds the library from the sdist's Swift sources; returns the built file."""
    swift = shutil.which("swift")
    if swift is None:
        raise SystemExit("building libdirectline.so from source needs Swift 6 (`swift` on PATH) and "
                         f"libcurl's development files, and no `swift` was found. {WHEEL_HINT}.")
    # The linker flags in Package.swift name exports.map relative to the package root: build from there.
    command = [swift, "build", "-c", "release", "-Xswiftc", "-static-stdlib", "--package-path", str(package)]
    print("building libdirectline.so:", " ".join(command), flush=True)
    if subprocess.run(command, cwd=package, check=False).returncode != 0:
        raise SystemExit(f"`swift build` of libdirectline.so failed (see above). {WHEEL_HINT}.")
    return package / ".build" / "release" / LIBRARY


def find_library() -> Path:
    explicit = os.environ.get("DIRECTLINE_LIBRARY")
    if explicit:
        if not Path(explicit).is_file():
            raise SystemExit(f"DIRECTLINE_LIBRARY is {explicit}, which is not a file")
        return Path(explicit).resolve()
    if not in_checkout():
        built = build_from_sources(STAGED)
        if not built.is_file():
            raise SystemExit(f"`swift build` reported success but {built} is missing")
        return built.resolve()
    built = CHECKOUT / ".build" / "release" / LIBRARY
    if not built.is_file():
        raise SystemExit(f"libdirectline.so not found (looked at {built}): run `make` at the top of the "
                         "repository first, or set DIRECTLINE_LIBRARY to the library to package")
    return built.resolve()


class BuildWithLibrary(build_py):
    """Copies the C library into the package being built, and writes its version there."""

    def run(self) -> None:
        super().run()
        package = Path(self.build_lib) / "directline"
        package.mkdir(parents=True, exist_ok=True)
        target = package / LIBRARY
        shutil.copyfile(find_library(), target)
        target.chmod(0o755)
        # The library's license travels with it (the repository's, or the sdist's
        # copy); a partial tree (DIRECTLINE_LIBRARY given) may have none.
        license_file = swift_package() / "LICENSE"
        if license_file.is_file():
            shutil.copyfile(license_file, package / "LICENSE")
        (package / "_version.py").write_text(
            '"""Written by setup.py when the package was built."""\n\n'
            f'version = "{library_version()}"\n', encoding="utf-8")


class SdistWithSources(sdist):
    """Adds the Swift package (Package.swift, Sources/) under libdirectline/, so
    that installing the sdist can build the library."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        source = swift_package()
        staged = Path(base_dir) / "libdirectline"
        for name in SWIFT_PACKAGE_FILES:
            if (source / name).is_dir():
                shutil.copytree(source / name, staged / name,
                                ignore=shutil.ignore_patterns(".build", "__pycache__", "*.pyc"))
            else:
                staged.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, staged / name)
        placeholder = staged / TEST_TARGET / "Placeholder.swift"
        placeholder.parent.mkdir(parents=True, exist_ok=True)
        placeholder.write_text("// The tests are in the repository, not in the sdist.\n", encoding="utf-8")


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not as pure Python."""

    def has_ext_modules(self) -> bool:
        return True


COMMANDS: dict[str, type] = {"build_py": BuildWithLibrary, "sdist": SdistWithSources}

if bdist_wheel is not None:

    class PlatformWheel(bdist_wheel):
        """Tags the wheel py3-none-PLATFORM: the library is loaded with ctypes, so
        one wheel serves every Python 3 on the platform, not only the building one."""

        def get_tag(self) -> tuple[str, str, str]:
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    COMMANDS["bdist_wheel"] = PlatformWheel


setup(version=library_version(), cmdclass=COMMANDS, distclass=BinaryDistribution)
