"""The Swift sources keep their layers: dependencies run one way.

    CABI  ->  Protocol  ->  Transport  ->  Support, JSON

A file may name what its own layer and the layers below it declare, never
what a layer above declares. Only the C boundary (CABI/) knows the C ABI:
its `dl_*` types and the C strings handed to the caller (malloc'd results
written into `out_json` slots). docs/internals.md explains the rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[2] / "Sources" / "DirectLine"
# Higher may use lower; Support and JSON are one level and may use each other.
RANK = {"CABI": 3, "Protocol": 2, "Transport": 1, "Support": 0, "JSON": 0}

DECLARATION = re.compile(
    r"^(?:@c\s+)?(?:(?:public|private|fileprivate|internal|final|nonisolated\(unsafe\))\s+)*"
    r"(?:enum|struct|class|protocol|typealias|func|let|var|actor)\s+`?(\w+)", re.M)
C_ABI_ONLY = [
    (re.compile(r"\bmalloc\s*\("), "allocates a C result (malloc)"),
    (re.compile(r"\bstrdup\s*\("), "allocates a C string (strdup)"),
    (re.compile(r"UnsafeMutablePointer<UnsafeMutablePointer<CChar>\?>"), "writes a caller's out_json slot"),
    (re.compile(r"\bdl_\w+"), "names a C ABI declaration"),
]


def code_of(text: str) -> str:
    """The Swift text without comments and string literals, so that prose
    and messages may mention any name."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r'#?"""(?:.|\n)*?"""#?', '""', text)
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)
    return re.sub(r"//[^\n]*", "", text)


def layer_files() -> dict[str, list[Path]]:
    layers = {name: sorted((SOURCES / name).glob("*.swift")) for name in RANK}
    unknown = {p.parent.name for p in SOURCES.rglob("*.swift")} - set(RANK)
    assert not unknown, f"folders with no place in the layer rule: {unknown}"
    return layers


def declared(files: list[Path]) -> set[str]:
    names: set[str] = set()
    for path in files:
        names |= set(DECLARATION.findall(code_of(path.read_text())))
    return names


def violations(layers: dict[str, list[Path]]) -> list[str]:
    found = []
    owners = {layer: declared(files) for layer, files in layers.items()}
    for layer, files in layers.items():
        higher = {name: other for other, names in owners.items() if RANK[other] > RANK[layer] for name in names}
        for path in files:
            code = code_of(path.read_text())
            for word in set(re.findall(r"\b\w+\b", code)):
                if word in higher and word not in owners[layer]:
                    found.append(f"{layer}/{path.name} names {word} from {higher[word]}/")
            if layer != "CABI":
                for pattern, what in C_ABI_ONLY:
                    match = pattern.search(code)
                    if match:
                        found.append(f"{layer}/{path.name} {what}: {match.group(0)}")
    return sorted(found)


def test_dependencies_run_one_way():
    assert violations(layer_files()) == []


def test_every_layer_has_files_and_the_boundary_declares_its_types():
    layers = layer_files()
    assert all(layers.values()), "an empty layer folder"
    cabi = declared(layers["CABI"])
    assert {"Boundary", "HandleTable", "dl_status", "dl_log_level"} <= cabi


@pytest.mark.parametrize("layer, planted", [
    ("Protocol", "let slot: Boundary.ResultSlot? = nil"),
    ("Transport", "func level() -> dl_log_level { .DL_LOG_OFF }"),
    ("Transport", "let client: DirectLineClient? = nil"),
    ("Support", "let request: HTTPRequest? = nil"),
    ("Protocol", "let result = malloc(1)"),
])
def test_the_check_catches_a_planted_violation(layer, planted):
    layers = layer_files()
    host = layers[layer][0]
    scratch = {name: list(files) for name, files in layers.items()}

    class Planted(type(host)):  # a Path whose text has one more line
        pass

    text = host.read_text() + "\n" + planted + "\n"
    fake = Planted(host)
    fake.read_text = lambda *args, **kwargs: text  # type: ignore[method-assign]
    scratch[layer] = [fake if p == host else p for p in scratch[layer]]
    assert violations(scratch), f"{planted!r} in {layer}/ went unnoticed"
