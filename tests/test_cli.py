"""The command line as a whole: start-up stays light, README and CI agree, version."""

import subprocess
import sys

from pianonotes import __version__

from conftest import ROOT, run_cli


def test_help_and_version_do_not_import_torch_or_music21():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom pianonotes.cli.app import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "for cmd in ('transcribe', 'listen', 'train', 'evaluate', 'devices', 'data'):\n"
            "    assert cmd in r.output, cmd\n"
            "bad = [m for m in ('torch', 'music21', 'verovio', 'matplotlib', 'scipy') if m in sys.modules]\n"
            "assert not bad, bad\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_version():
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"pianonotes {__version__}"


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text().splitlines()
    block = readme[readme.index("```sh") + 1: readme.index("```sh") + 3]
    setup, tests = block
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests == "make test" and "\nmake test\n" in ci
    first, _, transcribe = setup.partition(" && ")
    assert first == "make setup" and "\nmake setup\n" in ci
    assert transcribe.startswith(".venv/bin/pianonotes transcribe pianonotes/examples/twohands.flac -o ")
    assert ".venv/bin/pianonotes transcribe pianonotes/examples/twohands.flac -o " in ci
    assert (ROOT / "pianonotes" / "examples" / "twohands.flac").exists()
