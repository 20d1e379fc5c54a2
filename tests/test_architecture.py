"""The package map of ARCHITECTURE.md holds: every import inside pianonotes points down the layers (imports
inside functions included), so no module imports one above it and there are no cycles; the maintenance
tools stay out of the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pianonotes"

# The layers of ARCHITECTURE.md's package map, lowest first. A module may import its own layer and below.
LAYERS = [
    ["pianonotes", "pianonotes.errors", "pianonotes.constants"],
    ["pianonotes.fileio"],
    ["pianonotes.notes", "pianonotes.streaming", "pianonotes.audio"],
    ["pianonotes.features"],
    ["pianonotes.decode"],
    ["pianonotes.nn"],
    ["pianonotes.inference"],
    ["pianonotes.engine"],
    ["pianonotes.export"],
    ["pianonotes.transcribe"],
    ["pianonotes.live"],
    ["pianonotes.datasets"],
    ["pianonotes.training"],
    ["pianonotes.serve"],
    ["pianonotes.cli", "pianonotes.__main__"],
]


def layer(module: str) -> int:
    best = (-1, -1)
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and len(n) > best[1]:
                best = (i, len(n))
    if best[0] < 0:
        raise KeyError(module)
    return best[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def imports(path: Path) -> list[tuple[str, int]]:
    """Every pianonotes module a file imports, anywhere in it (``from a.b import c`` counts a.b and, when
    c is a module, a.b.c)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pianonotes":
            out.append((node.module, node.lineno))
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                        (PKG.parent / Path(*sub.split("."))).is_dir():
                    out.append((sub, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "pianonotes"]
    return out


FILES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in FILES if not _has_layer(module_name(p))]
    assert not missing, f"add these to LAYERS (and to ARCHITECTURE.md's package map): {missing}"


def _has_layer(m: str) -> bool:
    try:
        layer(m)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path):
    me = layer(module_name(path))
    up = [f"{target} (line {line})" for target, line in imports(path) if layer(target) > me]
    assert not up, f"{module_name(path)} (layer {me}) imports a higher layer: {up}"


def test_the_layer_check_can_fail(tmp_path):
    """The checker sees an upward import inside a function."""
    bad = PKG / "audio.py"
    src = bad.read_text() + "\n\ndef _x():\n    from pianonotes.cli.app import main\n"
    fake = tmp_path / "audio.py"
    fake.write_text(src)
    found = [t for t, _ in imports(fake) if layer(t) > layer("pianonotes.audio")]
    assert "pianonotes.cli.app" in found


def test_maintenance_tools_are_not_in_the_package():
    assert not (PKG / "tools").exists()
    assert (PKG.parent / "devtools" / "ship.py").exists()


def test_no_single_letter_module_aliases():
    """``import x as C`` hides what C is; modules are imported under their own names."""
    roots = [PKG, PKG.parent / "devtools", PKG.parent / "tests"]
    found = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    found += [f"{path.relative_to(PKG.parent)}:{node.lineno} {a.name} as {a.asname}"
                              for a in node.names if a.asname and len(a.asname) == 1]
    assert not found, found
