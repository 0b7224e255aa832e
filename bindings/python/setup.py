"""Builds the directline package with the self-contained libdirectline.so inside.

The library is taken from DIRECTLINE_LIBRARY, else from the repository's
release build (`make` or `swift build -c release -Xswiftc -static-stdlib`
at the top of the checkout). It links the Swift runtime statically, so the
installed package needs nothing but libcurl and libc: no compiler and no
Swift on the user's side. The version is the library's, read from the
checkout's Sources/DirectLine/Support/LibraryVersion.swift. Everything else
is in pyproject.toml.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
LIBRARY = "libdirectline.so"
# Found from this file, as find_library finds the build, never from the working
# directory: pip runs this from wherever it was called, or from a temporary one.
VERSION_SOURCE = HERE.parent.parent / "Sources" / "DirectLine" / "Support" / "LibraryVersion.swift"


def library_version() -> str:
    """MAJOR.MINOR.PATCH from the library's one version source, so the package
    carries the version of the library it bundles."""
    try:
        text = VERSION_SOURCE.read_text(encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"cannot read the package version from {VERSION_SOURCE} ({error.strerror}): "
                         "build the package from a checkout of the repository") from None
    parts = [re.search(rf"^ *static let {name} = (\d+)$", text, re.MULTILINE) for name in ("major", "minor", "patch")]
    if not all(parts):
        raise SystemExit(f"{VERSION_SOURCE} does not define `static let major/minor/patch = N`")
    return ".".join(part.group(1) for part in parts)


def find_library() -> Path:
    explicit = os.environ.get("DIRECTLINE_LIBRARY")
    candidates = [Path(explicit)] if explicit else [HERE.parent.parent / ".build" / "release" / LIBRARY]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise SystemExit(f"libdirectline.so not found (looked at {looked}): run `make` at the top of the "
                     "repository first, or set DIRECTLINE_LIBRARY to the library to package")


class BuildWithLibrary(build_py):
    """Copies the C library into the package being built."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "directline" / LIBRARY
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(find_library(), target)
        target.chmod(0o755)


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform, not as pure Python."""

    def has_ext_modules(self) -> bool:
        return True


setup(version=library_version(), cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
