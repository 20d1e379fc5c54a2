"""The command line as a whole: start-up stays light, README and CI agree, version; the names of the live
commands (listen's --input-device and --device, recover and its old spelling listen --recover)."""

import subprocess
import sys

import pytest

from pianonotes import __version__

from conftest import ROOT, random_checkpoint, run_cli, sine


def test_help_and_version_do_not_import_torch_or_music21():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom pianonotes.cli.app import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "for cmd in ('transcribe', 'listen', 'recover', 'train', 'evaluate', 'devices', 'data'):\n"
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


# ------------------------------------------------------------------------ listen --device, recover
def _invoke(args):
    from typer.testing import CliRunner

    from pianonotes.cli.app import app

    res = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    return res, [ln for ln in res.stderr.splitlines() if ln.strip()]


@pytest.fixture
def take(tmp_path, monkeypatch):
    """A 1.5 s take through `listen --input --fast` with a small random checkpoint: (take folder, model)."""
    import soundfile as sf

    monkeypatch.setenv("PIANONOTES_CACHE", str(tmp_path / "cache"))
    model = random_checkpoint(tmp_path / "rand", {"channels": [8, 8], "hidden": 32, "dilations": [1]})
    sf.write(tmp_path / "in.wav", sine(440, 1.5), 16000)
    res, err = _invoke(["listen", "--input", tmp_path / "in.wav", "--fast", "--plain", "--device", "cpu",
                        "-o", tmp_path / "take.csv", "--model", model])
    assert res.exit_code == 0, (res.stdout, err, repr(res.exception))
    (folder,) = (tmp_path / "cache" / "takes").iterdir()
    return folder, model


def test_help_names_input_device_device_and_recover():
    res, _ = _invoke(["listen", "--help"])
    assert res.exit_code == 0 and "--input-device" in res.stdout and "Compute device" in res.stdout
    assert "--recover" not in res.stdout  # the old spelling works but is no longer offered
    res, _ = _invoke(["recover", "--help"])
    assert res.exit_code == 0 and "journal" in res.stdout and "--note-length" in res.stdout
    for opt in ("--model", "--output", "--overwrite", "--device", "--bpm", "--time-signature", "--onset-threshold"):
        assert opt in res.stdout, opt


@pytest.mark.parametrize("command", ["listen", "recover"])
def test_device_is_the_compute_device(take, tmp_path, monkeypatch, command):
    from pianonotes.transcribe import Transcriber

    folder, model = take
    seen = []
    real = Transcriber.from_checkpoint.__func__

    def spy(cls, path=None, **kw):
        seen.append(kw.get("device"))
        return real(cls, path, **kw)

    monkeypatch.setattr(Transcriber, "from_checkpoint", classmethod(spy))
    args = (["listen", "--input", tmp_path / "in.wav", "--fast", "--plain", "-o", tmp_path / "again.csv"]
            if command == "listen" else ["recover", folder, "-o", tmp_path / "again.csv"])
    res, err = _invoke([*args, "--model", model, "--device", "auto"])
    assert res.exit_code == 0, (res.stdout, err, repr(res.exception))
    assert seen == ["auto"]
    # a microphone given to --device is one line naming --input-device, before any work
    res, err = _invoke([*args, "--model", model, "--device", "2", "--overwrite"])
    assert res.exit_code == 1 and len(err) == 1 and "--input-device 2" in err[0] and seen == ["auto"], err


def test_recover_command_and_the_old_listen_recover(take, tmp_path):
    from pianonotes.export import read_events

    folder, model = take
    res, err = _invoke(["recover", folder, "-o", tmp_path / "a.csv", "--model", model])
    assert res.exit_code == 0, (res.stdout, err, repr(res.exception))
    assert "recovered" in res.stdout and str(tmp_path / "a.csv") in res.stdout and not err, err
    # no TAKE: the latest take
    res, err = _invoke(["recover", "-o", tmp_path / "b.csv", "--model", model])
    assert res.exit_code == 0 and f"from {folder}" in res.stdout, (res.stdout, err)
    # the old spelling still works, and says once (on stderr) to use the new one
    res, err = _invoke(["listen", "--recover", folder, "-o", tmp_path / "c.csv", "--model", model])
    assert res.exit_code == 0, (res.stdout, err, repr(res.exception))
    assert len(err) == 1 and "pianonotes recover" in err[0] and not err[0].startswith("error"), err
    assert "pianonotes recover" not in res.stdout and "recovered" in res.stdout
    assert read_events(tmp_path / "a.csv") == read_events(tmp_path / "b.csv") == read_events(tmp_path / "c.csv")
    assert read_events(tmp_path / "a.csv") == read_events(tmp_path / "take.csv")
    # a take folder without --recover is one line pointing to the command
    res, err = _invoke(["listen", folder, "--model", model])
    assert res.exit_code == 1 and len(err) == 1 and f"pianonotes recover {folder}" in err[0], err
