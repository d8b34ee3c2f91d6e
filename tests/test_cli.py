"""Command line behaviour a user meets first."""

from __future__ import annotations

from htlib.cli import main


def test_main_job_offline_stops_with_instructions_without_omniglot(tmp_path, capsys, monkeypatch):
    # Were --offline ignored, the download would go to this closed address and fail differently.
    monkeypatch.setenv("HTLIB_SOURCE", "http://127.0.0.1:9/nowhere")
    code = main(["notebooks", "--profile", "ci", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--offline"])
    err = capsys.readouterr().err
    assert code == 2
    assert "htlib download omniglot" in err and "synthetic" in err and str(tmp_path) in err
    assert "--offline" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
