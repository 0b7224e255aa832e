#!/usr/bin/env bash
# The C release tarball: scripts/dist.sh [OUTPUT_DIR] (default dist/), run by
# `make dist`, which builds the library first and passes VERSION.
#
#   OUTPUT_DIR/libdirectline-VERSION-linux-x86_64.tar.gz
#     libdirectline-VERSION-linux-x86_64/
#       lib/libdirectline.so.VERSION      the library (static Swift runtime, no debug info)
#       lib/libdirectline.so.MAJOR        -> libdirectline.so.VERSION (the SONAME)
#       lib/libdirectline.so              -> libdirectline.so.MAJOR (for -ldirectline)
#       lib/pkgconfig/directline.pc       relocatable: paths from ${pcfiledir}
#       include/directline.h
#       examples/c, examples/python
#       LICENSE, README
#
# The layout is `make install`'s own (the Makefile's install target into a
# staging folder), so the tarball and an installed prefix cannot drift apart.
# Reproducible as far as the build is: names sorted, owner 0:0, every mtime
# that of the last commit (or SOURCE_DATE_EPOCH), gzip without a timestamp.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${VERSION:?run by make dist, which passes VERSION (from LibraryVersion.swift)}"
BUILT="$ROOT/.build/release/libdirectline.so"
[ -f "$BUILT" ] || { echo "dist.sh: $BUILT is missing: run make dist (it builds first)" >&2; exit 1; }

output="${1:-$ROOT/dist}"
mkdir -p "$output"
output="$(cd "$output" && pwd)"
name="libdirectline-$VERSION-linux-$(uname -m)"
tarball="$output/$name.tar.gz"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH="$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)"
fi
if [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    echo "dist.sh: warning: the work tree has uncommitted changes; the tarball carries them" >&2
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
top="$stage/$name"

# The install target as it is (-o library: the library is already built).
# Every directory is given, so LIBDIR etc. in the environment cannot leak in.
make -C "$ROOT" --no-print-directory -s -o library install DESTDIR= \
    PREFIX="$top" LIBDIR="$top/lib" INCLUDEDIR="$top/include" PKGCONFIGDIR="$top/lib/pkgconfig"

# Debug info out, the symbol tables (dynamic and static) kept: 14 MB -> 12 MB,
# and a backtrace through the library still names its functions.
strip --strip-debug "$top/lib/libdirectline.so.$VERSION"

# The same template as make install's, with paths relative to the .pc's own
# folder, so pkg-config finds the header and library wherever this is unpacked.
# Libs carries no -Wl,-rpath,${libdir}: pkg-config hands ${pcfiledir} over as
# given, so a relative PKG_CONFIG_PATH would record a relative run path, which
# the loader resolves against the working directory of every later run (any
# folder could supply the library). The README shows LD_LIBRARY_PATH and an
# explicit absolute -Wl,-rpath instead, the program's author's choice.
sed -e 's|@PREFIX@|${pcfiledir}/../..|g' -e 's|@LIBDIR@|${prefix}/lib|g' \
    -e 's|@INCLUDEDIR@|${prefix}/include|g' -e "s|@VERSION@|$VERSION|g" \
    "$ROOT/packaging/directline.pc.in" > "$top/lib/pkgconfig/directline.pc"

# The examples as committed (no caches or build outputs from a local run).
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$ROOT" && git ls-files -z examples/c examples/python | xargs -0 cp --parents -t "$top")
else
    mkdir -p "$top/examples" && cp -R "$ROOT/examples/c" "$ROOT/examples/python" "$top/examples/"
fi
cp "$ROOT/LICENSE" "$top/LICENSE"
sed -e "s|@VERSION@|$VERSION|g" -e "s|@MAJOR@|${VERSION%%.*}|g" -e "s|@NAME@|$name|g" \
    "$ROOT/packaging/README.dist.in" > "$top/README"

# Modes as make install gives them, whatever the umask or checkout said.
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --format=gnu \
    --mtime="@$SOURCE_DATE_EPOCH" --mode='u+rwX,go+rX,go-w' -cf - "$name" \
    | gzip -n -9 > "$tarball.tmp"
mv "$tarball.tmp" "$tarball"

echo "$tarball ($(du -k "$tarball" | cut -f1) KiB; library $(du -k "$top/lib/libdirectline.so.$VERSION" | cut -f1) KiB)"
