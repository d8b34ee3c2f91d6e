"""Command line behaviour a user meets first."""

from __future__ import annotations

from htlib.cli import main


def test_main_job_stops_with_instructions_without_omniglot(tmp_path, capsys):
    code = main(["notebooks", "--profile", "ci", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "htlib download omniglot" in err and "synthetic" in err and str(tmp_path) in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
