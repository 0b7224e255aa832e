"""The built artifacts: the shared object's exports and dependencies, the
generated header, and the C programs compiled against both (the C test
suite, the C thread test and the C quickstart), run against the emulator."""
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIBRARY_DIR = os.path.join(ROOT, ".build", "release")
LIBRARY = os.path.join(LIBRARY_DIR, "libdirectline.so")
INCLUDE = os.path.join(ROOT, "include")
C_TESTS = os.path.join(ROOT, "Tests", "c")
# How long each test_threads phase runs here, as in scripts/memcheck.sh: longer
# than the emulator's 2 s tokens, so the background refresher runs in each phase.
THREAD_TEST_SECONDS = "3"


@pytest.fixture(scope="module", autouse=True)
def library():
    if not os.path.exists(LIBRARY):
        pytest.fail(f"{LIBRARY} is missing: run swift build -c release -Xswiftc -static-stdlib")
    return LIBRARY


def run(command, **options):
    return subprocess.run(command, capture_output=True, text=True, timeout=300, **options)


def c_suite_sources():
    """The C suite's files, from the list scripts/memcheck.sh and tsan.sh read too."""
    with open(os.path.join(C_TESTS, "suite_sources.txt")) as listing:
        names = [line.strip() for line in listing]
    return [os.path.join(C_TESTS, name) for name in names if name and not name.startswith("#")]


def compile_c(tmp_path, sources, name, extra=(), standard="c99"):
    binary = str(tmp_path / name)
    result = run(["gcc", f"-std={standard}", "-Wall", "-Wextra", "-pedantic", "-Werror",
                  "-I", INCLUDE, *sources, "-L", LIBRARY_DIR, "-ldirectline",
                  f"-Wl,-rpath,{LIBRARY_DIR}", *extra, "-o", binary])
    assert result.returncode == 0, result.stderr
    return binary


def assert_c_tests_pass(binary, *arguments):
    """Runs a C test program; it must exit 0 and report no failed check."""
    result = run([binary, *arguments])
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\d+ passed, 0 failed$", result.stdout, re.M)


def test_only_dl_symbols_are_exported():
    result = run(["nm", "-D", "--defined-only", LIBRARY])
    assert result.returncode == 0, result.stderr
    exported = [line.split()[-1] for line in result.stdout.splitlines()
                if len(line.split()) == 3 and line.split()[1].isupper()]
    assert exported, "no exported symbols at all"
    assert [name for name in exported if not name.startswith("dl_")] == []
    declared = set(re.findall(r"\b(dl_\w+)\(", open(os.path.join(INCLUDE, "directline.h")).read()))
    assert set(exported) == declared


def test_swift_runtime_is_linked_in():
    result = run(["ldd", LIBRARY])
    assert result.returncode == 0, result.stderr
    assert "swift" not in result.stdout.lower(), result.stdout
    assert "not found" not in result.stdout


def test_header_is_generated_from_the_sources():
    result = run([sys.executable, os.path.join(ROOT, "scripts", "generate_header.py"), "--check"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("compiler", [
    ["gcc", "-x", "c", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror"],
    ["g++", "-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-pedantic", "-Werror"],
], ids=["c99", "c++17"])
def test_header_compiles_cleanly(tmp_path, compiler):
    source = tmp_path / "header_test.c"
    source.write_text('#include "directline.h"\n'
                      "int main(void) { return dl_version_number() == DL_VERSION_NUMBER ? 0 : 1; }\n")
    binary = str(tmp_path / "header_test")
    result = run([*compiler, "-I", INCLUDE, str(source), "-x", "none", "-L", LIBRARY_DIR, "-ldirectline",
                  f"-Wl,-rpath,{LIBRARY_DIR}", "-o", binary])
    assert result.returncode == 0, result.stderr
    assert run([binary]).returncode == 0


def test_c_suite(tmp_path, emulator):
    binary = compile_c(tmp_path, c_suite_sources(), "test_directline", extra=["-lcurl", "-pthread"])
    assert_c_tests_pass(binary, emulator.url)


def test_c_thread_test(tmp_path, emulator):
    """The concurrency test scripts/tsan.sh and memcheck.sh run under the
    sanitizers, here in short phases so a plain run also catches a failed
    call or a crash. It uses C11 atomics."""
    sources = [os.path.join(C_TESTS, "test_threads.c"), os.path.join(C_TESTS, "emulator_control.c")]
    binary = compile_c(tmp_path, sources, "test_threads", extra=["-lcurl", "-pthread"], standard="c11")
    assert_c_tests_pass(binary, emulator.url, THREAD_TEST_SECONDS)


@pytest.mark.parametrize("handles", ["freed", "alive"])
def test_unloading_the_library_never_crashes_its_host(tmp_path, emulator, handles):
    """50 dlopen/use/dlclose cycles with tokens due for refresh, handles
    freed or left alive; then the refresh time passes and the library is
    loaded once more (Tests/c/test_unload.c)."""
    sources = [os.path.join(C_TESTS, "test_unload.c"), os.path.join(C_TESTS, "emulator_control.c")]
    binary = str(tmp_path / "test_unload")
    result = run(["gcc", "-std=c11", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I", INCLUDE, *sources,
                  "-ldl", "-lcurl", "-o", binary])
    assert result.returncode == 0, result.stderr
    assert_c_tests_pass(binary, emulator.url, os.path.realpath(LIBRARY), handles)


def test_exiting_while_streams_close_never_crashes(tmp_path, emulator):
    """Tests/c/test_exit.c 40 times: eight streams freed, then main returns
    while the library's thread would send their close frames."""
    binary = compile_c(tmp_path, [os.path.join(C_TESTS, "test_exit.c")], "test_exit")
    outcomes = [run([binary, emulator.url]).returncode for _ in range(40)]
    assert outcomes == [0] * 40, outcomes


def test_a_forked_child_has_a_working_library(tmp_path, emulator):
    """20 forks while four threads keep the library busy; each child starts,
    sends, sees its token refreshed and uses ids of its own (Tests/c/test_fork.c)."""
    sources = [os.path.join(C_TESTS, "test_fork.c"), os.path.join(C_TESTS, "emulator_control.c")]
    binary = compile_c(tmp_path, sources, "test_fork", extra=["-lcurl", "-pthread"], standard="c11")
    assert_c_tests_pass(binary, emulator.url)


@contextlib.contextmanager
def closing_server():
    """A server that reads a little of each request, then ends the
    connection: a client writing a large body meets EPIPE."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with connection:
                connection.recv(4096)
                # FIN first (the client's socket moves to CLOSE_WAIT), then a
                # close with unread data, which resets: the client's next
                # write then fails with EPIPE, which raises SIGPIPE unless
                # the writer asked for none.
                connection.shutdown(socket.SHUT_WR)
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize("mode", ["sigpipe", "exit", "two-copies"])
def test_the_host_survives(tmp_path, emulator, mode):
    """What held under the hostile audit, kept true (Tests/c/test_host.c): a
    server closing mid-body with SIGPIPE at its default action, exit() while
    a wait runs, and two copies of the library loaded side by side."""
    sources = [os.path.join(C_TESTS, name) for name in ("test_host.c", "test_support.c", "emulator_control.c")]
    binary = compile_c(tmp_path, sources, "test_host", extra=["-ldl", "-lcurl", "-pthread"], standard="c11")
    arguments = [emulator.url, mode]
    if mode == "sigpipe":
        with closing_server() as url:
            assert_c_tests_pass(binary, url, mode)
        return
    if mode == "two-copies":
        for name in ("a", "b"):
            copy = tmp_path / f"copy-{name}" / "libdirectline.so"
            copy.parent.mkdir()
            shutil.copyfile(os.path.realpath(LIBRARY), copy)
            arguments.append(str(copy))
    assert_c_tests_pass(binary, *arguments)


def test_no_credential_is_left_in_memory_after_every_handle_is_freed(tmp_path, emulator):
    """Secret hygiene (Tests/c/test_secrets.c): after a conversation is
    started, used and freed with its client, neither the secret nor the
    token is anywhere in the heap or the anonymous mappings, freed or not."""
    sources = [os.path.join(C_TESTS, name) for name in ("test_secrets.c", "test_support.c", "emulator_control.c")]
    binary = compile_c(tmp_path, sources, "test_secrets", extra=["-lcurl", "-pthread"], standard="c11")
    assert_c_tests_pass(binary, emulator.url)


def test_c_quickstart(tmp_path, emulator):
    binary = compile_c(tmp_path, [os.path.join(ROOT, "examples", "c", "quickstart.c")], "quickstart")
    result = run([binary], env={**os.environ, "DIRECTLINE_ENDPOINT": emulator.url,
                                "DIRECTLINE_SECRET": "emulator-secret"})
    assert result.returncode == 0, result.stderr
    assert "bot: echo: hello from C" in result.stdout
    assert "bot: received 1 attachment(s): note.txt (text/plain, 18 bytes)" in result.stdout
    assert "emulator-secret" not in result.stdout + result.stderr
