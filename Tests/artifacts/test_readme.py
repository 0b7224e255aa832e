"""The README's promises: its snippets are the examples the suite runs, and
its two set-up commands exist."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

sys.path.insert(0, ROOT)
from emulator.server import start_in_thread  # noqa: E402


def read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def code_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", read("README.md"), re.S)


def is_excerpt(block, source):
    """Every non-blank line of the block appears in the source, in order."""
    lines = [line.strip() for line in source.splitlines()]
    position = 0
    for wanted in (line.strip() for line in block.splitlines() if line.strip()):
        try:
            position = lines.index(wanted, position) + 1
        except ValueError:
            return False
    return True


def test_c_quickstart_is_the_example():
    (block,) = code_blocks("c")
    assert is_excerpt(block, read("examples", "c", "quickstart.c"))


def test_python_quickstart_is_the_example():
    (block,) = code_blocks("python")
    assert is_excerpt(block, read("examples", "python", "quickstart.py"))


def test_setup_commands_exist_and_ci_runs_the_test_command():
    commands = re.findall(r"^(scripts/\S+\.sh)", code_blocks("sh")[0], re.M)
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    for command in commands:
        assert os.access(os.path.join(ROOT, command), os.X_OK)
    assert "scripts/test.sh" in read(".ci", "run")


def test_excerpt_check_can_fail():
    assert not is_excerpt("int main(void) { return 42; }", read("examples", "c", "quickstart.c"))


def test_getting_started_c_program_compiles_and_talks_to_the_emulator(tmp_path):
    text = open(os.path.join(ROOT, "docs", "getting-started.md")).read()
    (program,) = re.findall(r"```c\n(.*?)```", text, re.S)
    # The page's program talks to the emulator on its usual port: point it
    # at a private one instead.
    with start_in_thread(secret="emulator-secret") as emulator:
        source = tmp_path / "hello.c"
        source.write_text(program.replace("http://127.0.0.1:3978", emulator.url))
        library_dir = os.path.join(ROOT, ".build", "release")
        built = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(ROOT, "include"),
                                str(source), "-L", library_dir, "-ldirectline", f"-Wl,-rpath,{library_dir}",
                                "-o", str(tmp_path / "hello")], capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
        ran = subprocess.run([str(tmp_path / "hello")], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert '"text":"echo: hello"' in ran.stdout
