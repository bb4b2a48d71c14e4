"""The kernels compile with the heap and the STL containers poisoned (hls/tb/strict_prelude.h).

g++ cannot tell what Vitis HLS synthesizes, but it can refuse what it never does: malloc and
friends, new and delete, std::vector, std::string and the other containers. The same compile
must refuse a snippet that uses any of them, else the check proves nothing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from engine_harness import ROOT


def strict(*sources) -> subprocess.CompletedProcess:
    cmd = ["make", "-s", "-C", str(ROOT / "hls"), "strict", f"PYTHON={sys.executable}"]
    if sources:
        cmd.append("STRICT_SOURCES=" + " ".join(str(s) for s in sources))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_kernel_source_compiles_strictly():
    r = strict()
    assert r.returncode == 0, r.stderr


FORBIDDEN = {
    "malloc": "word_t* f() { return (word_t*)malloc(16); }",
    "free": "void f(void* p) { free(p); }",
    "new": "q16_t* f() { return new q16_t[4]; }",
    "vector": "int f() { std::vector<int> v(3); return v[0]; }",
    "string": 'int f() { std::string s("x"); return int(s.size()); }',
    "deque": "int f() { std::deque<int> d; return int(d.size()); }",
    "map": "#include <map>\nint f() { std::map<int, int> m; return int(m.size()); }",
    "list": "#include <list>\nint f() { std::list<int> l; return int(l.size()); }",
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_heap_and_containers_are_refused(tmp_path, name):
    src = tmp_path / f"uses_{name}.cpp"
    src.write_text('#include "engine.h"\n' + FORBIDDEN[name] + "\n")
    r = strict(src)
    assert r.returncode != 0, f"the strict compile accepted {name}"
    assert "error" in r.stderr


def test_plain_kernel_code_with_ordinary_names_is_accepted(tmp_path):
    # arrays and variables called map or list are fine; only the containers are refused
    src = tmp_path / "plain.cpp"
    src.write_text(
        '#include "engine.h"\n'
        "int f(const q16_t x[8]) {\n"
        "    int map[8];\n"
        "    int list = 0;\n"
        "    for (int i = 0; i < 8; i++) map[i] = int(x[i]);\n"
        "    for (int i = 0; i < 8; i++) list += map[i];\n"
        "    return list;\n"
        "}\n"
    )
    r = strict(src)
    assert r.returncode == 0, r.stderr
