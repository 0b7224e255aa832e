"""The benchmark harness still runs: `bench/run.sh --quick` exercises every
benchmark with tiny counts. It checks that each one ran and measured
something, never how fast (timings belong in bench/, not in tests)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_benchmark_runs_every_benchmark(tmp_path):
    out = tmp_path / "quick.json"
    env = dict(os.environ, DIRECTLINE_LIBRARY=str(ROOT / ".build" / "release" / "libdirectline.so"))
    result = subprocess.run([str(ROOT / "bench" / "run.sh"), "--quick", "--no-build", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["quick"] is True
    assert set(report["targets"]) == {"c_seq", "python", "threads_2", "cold", "size", "rss",
                                      "refresh_open", "refresh_keepup"}
    for name, target in report["targets"].items():
        assert target["result"] in ("PASS", "MISS"), name
        # rss: growth, and refresh_keepup: tokens expired, may well be 0.
        assert target["value"] > 0 or name in ("rss", "refresh_keepup"), name
    assert report["refresh"]["keepup"]["refreshes"] > 0
    assert "| benchmark |" in result.stdout
    assert "emulator-secret" not in result.stdout + result.stderr


@pytest.mark.slow
def test_the_quick_locust_benchmark_runs_and_measures(tmp_path):
    out = tmp_path / "locust.json"
    result = subprocess.run([str(ROOT / "bench" / "locust.sh"), "--quick", "--no-build", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert [run["users"] for run in report["runs"]] == [20, 50]
    for run in report["runs"]:
        assert run["repliesPerSecond"] > 0 and run["sendsPerSecond"] > 0, run
        assert run["replyMs"]["p50"] >= run["botDelayMs"], run
        assert run["worker"]["rssMiB"] > 0 and run["emulator"]["rssMiB"] > 0, run
    assert "| users | sends/s" in result.stdout
