# Shared by scripts/memcheck.sh and scripts/tsan.sh: the C test programs'
# sources, the Swift toolchain's clang and sanitizer runtimes, and
# libdirectline.so built with a Swift sanitizer. Source it after
# scripts/common.sh; do not run it.
#
# The sanitizer runtime that instruments the Swift code must be the one the
# Swift compiler was built against: it ships in the toolchain
# (usr/lib/clang/N/lib/linux/libclang_rt.*), next to a clang that links it.
# The system gcc's libasan/libtsan are other versions and must not be mixed in.

# The sources of the two C test programs, as absolute paths: the suite's
# from Tests/c/suite_sources.txt (which Tests/artifacts/test_artifacts.py
# reads too), and the thread test's.
C_SUITE_SOURCES=()
while read -r name; do
    case "$name" in ''|'#'*) ;; *) C_SUITE_SOURCES+=("$ROOT/Tests/c/$name") ;; esac
done <"$ROOT/Tests/c/suite_sources.txt"
THREAD_TEST_SOURCES=("$ROOT/Tests/c/test_threads.c" "$ROOT/Tests/c/emulator_control.c")

# Sets TOOLCHAIN_CLANG, SWIFT_RUNTIME_DIR (libswiftCore.so & co.) and
# CLANG_RUNTIME_DIR (libclang_rt.*).
find_toolchain() {
    local swift_bin
    swift_bin="$(dirname "$(readlink -f "$(command -v swift)")")"
    TOOLCHAIN_CLANG="$swift_bin/clang"
    [ -x "$TOOLCHAIN_CLANG" ] || { echo "no clang next to swift in $swift_bin" >&2; return 1; }
    SWIFT_RUNTIME_DIR="$(cd "$swift_bin/../lib/swift/linux" && pwd)"
    local asan_runtime
    asan_runtime="$("$TOOLCHAIN_CLANG" -print-file-name=libclang_rt.asan-x86_64.so)"
    [ -f "$asan_runtime" ] || { echo "$TOOLCHAIN_CLANG has no sanitizer runtimes" >&2; return 1; }
    CLANG_RUNTIME_DIR="$(dirname "$asan_runtime")"
}

# build_sanitized_library NAME SANITIZER: a release build of the library
# with `-sanitize=SANITIZER` in .build/NAME (its own build folder, so the
# normal build is untouched); sets SANITIZED_LIBRARY_DIR. The SONAME link
# is made as `make` does for the normal build.
build_sanitized_library() {
    local name="$1" sanitizer="$2"
    log "building libdirectline.so with -sanitize=$sanitizer (.build/$name)"
    (cd "$ROOT" && swift build -c release --build-path "$ROOT/.build/$name" -Xswiftc "-sanitize=$sanitizer")
    SANITIZED_LIBRARY_DIR="$ROOT/.build/$name/release"
    local soname
    soname="$(objdump -p "$SANITIZED_LIBRARY_DIR/libdirectline.so" | awk '/SONAME/ {print $2}')"
    [ -z "$soname" ] || ln -sf libdirectline.so "$SANITIZED_LIBRARY_DIR/$soname"
}
