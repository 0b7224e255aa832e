"""Builds the directline package with the self-contained libdirectline.so inside.

The library is taken from DIRECTLINE_LIBRARY, else from the repository's
release build (`make` or `swift build -c release -Xswiftc -static-stdlib`
at the top of the checkout). It links the Swift runtime statically, so the
installed package needs nothing but libcurl and libc: no compiler and no
Swift on the user's side. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
LIBRARY = "libdirectline.so"


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


setup(cmdclass={"build_py": BuildWithLibrary}, distclass=BinaryDistribution)
