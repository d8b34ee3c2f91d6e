"""What a user can get wrong, tried through the public entry points: each case must be refused
before any work starts, with one line that says what would work, exit code 2, no traceback, and
nothing on disk damaged. (Data on disk: test_data_cache.py and test_download.py; Ctrl-C:
test_interrupt.py.)
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from htlib import checkpoints
from htlib.cli import build_parser, main
from htlib.errors import CheckpointError, ConfigError
from htlib.models import CNNSpec, ProtoNet
from htlib.train import TrainConfig, Trainer, train
from htlib.utils import write_atomic

ROOT = Path(__file__).resolve().parents[1]
# a cheap task on the synthetic glyphs (240 / 40 / 80 classes of 20 drawings)
TASK = ["--dataset", "synthetic", "--profile", "ci", "--ways", "5", "--channels", "4", "--steps", "4",
        "--no-progress", "--device", "cpu"]
SMALL = dict(dataset="synthetic", profile="ci", ways=5, channels=4, steps=4, device="cpu", test_episodes=8)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a folder with its bytes; the empty lock file a trainer leaves is no damage."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _refused(capsys, argv: list[str], *needles: str) -> str:
    """main(argv) must exit with 2 and print one 'error: ...' line holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A small finished run (checkpoint.pt, model.pt, config.json, result.json)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(TrainConfig(**SMALL), run, progress=False)
    return run


# ------------------------------------------------------------------ security: a .pt file is data


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))  # what an attacker's file would run when unpickled


def _crafted(path: Path, marker: Path, like: dict | None = None) -> Path:
    torch.save({**(like or {}), "payload": _Payload(marker)}, path)
    return path


def test_eval_refuses_a_pickle_with_code_and_never_runs_it(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = _crafted(tmp_path / "evil.pt", marker, {"config": {}, "model": {}})
    _refused(capsys, ["eval", "--checkpoint", str(evil)], "Refused to load", str(evil), "run arbitrary code")
    assert not marker.exists()


def test_resume_and_init_from_refuse_a_pickle_with_code(tmp_path, capsys, finished_run):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    good = checkpoints.load(finished_run / "checkpoint.pt")
    _crafted(run / "checkpoint.pt", marker, good)
    before = _files(run)
    _refused(capsys, ["train", *TASK, "--run-dir", str(run), "--resume"], "Refused to load")
    assert not marker.exists() and _files(run) == before
    with pytest.raises(CheckpointError, match="Refused to load"):
        Trainer(TrainConfig(**SMALL, init_from=str(_crafted(tmp_path / "w.pt", marker))))
    assert not marker.exists()


def test_checkpoints_hold_only_plain_data(finished_run):
    state = torch.load(finished_run / "checkpoint.pt", weights_only=True)  # raises on anything else
    assert isinstance(state["config"], dict) and all(isinstance(v, float) for v in state["rows"][0].values()
                                                    if not isinstance(v, int))


# ------------------------------------------------------------------ work is never lost


def test_a_second_trainer_on_the_same_folder_is_refused_at_start(tmp_path, capsys, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = _files(run)
    with FileLock(run / ".lock", timeout=0):  # stands for another process training there now
        _refused(capsys, ["train", *TASK, "--run-dir", str(run), "--resume"], "Another process is training", str(run))
    assert _files(run) == before


def test_a_truncated_checkpoint_on_resume_names_the_file(tmp_path, capsys, finished_run):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes((finished_run / "checkpoint.pt").read_bytes()[:3000])
    before = _files(run)
    _refused(capsys, ["train", *TASK, "--run-dir", str(run), "--resume"], str(run / "checkpoint.pt"), "truncated")
    assert _files(run) == before


def test_an_existing_checkpoint_without_resume_is_kept(tmp_path, capsys, finished_run):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = _files(run)
    _refused(capsys, ["train", *TASK, "--run-dir", str(run)], "--resume")
    assert _files(run) == before


def test_atomic_writes_use_a_private_temporary_file_and_keep_the_old_file_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    names = []

    def failing(tmp: Path) -> None:
        names.append(tmp.name)
        tmp.write_text("half")
        raise OSError("disk full")

    for _ in range(2):
        with pytest.raises(OSError):
            write_atomic(target, failing)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]
    assert names[0] != names[1], "two writers must never share a temporary file"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_full_or_read_only_disk_is_one_line_that_names_the_file(tmp_path, code):
    from htlib.errors import StorageError

    target = tmp_path / "result.json"
    target.write_text("old")

    def full(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(code, os.strerror(code))

    with pytest.raises(StorageError, match=rf"cannot write {re.escape(str(target))}: {os.strerror(code)} \(its "
                                           rf"previous version is kept\); free space or choose a writable folder"):
        write_atomic(target, full)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with pytest.raises(OSError) as other:  # another OSError is not the disk's: it keeps its own type
        write_atomic(target, lambda tmp: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    assert not isinstance(other.value, StorageError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_a_storage_error_before_any_write(tmp_path):
    from htlib.errors import StorageError

    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            write_atomic(tmp_path / "x.csv", lambda tmp: tmp.write_text("x"))
    finally:
        tmp_path.chmod(0o755)


@pytest.mark.parametrize("kind", ["file", "dangling link", "file on the path"])
def test_a_run_folder_that_cannot_be_one_is_one_line(tmp_path, capsys, kind):
    if kind == "file":
        run = tmp_path / "run"
        run.write_text("")
        needle = "is a file, not a folder"
    elif kind == "dangling link":
        run = tmp_path / "run"
        run.symlink_to(tmp_path / "gone")
        needle = "which does not exist; create that folder or remove the link"
    else:
        (tmp_path / "plain").write_text("")
        run = tmp_path / "plain" / "run"
        needle = "a part of this path is a file"
    _refused(capsys, ["train", *TASK, "--run-dir", str(run)], needle)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs, where the machine lets this process mount one (root on Linux)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip() or 'mount failed'}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_checkpoint_on_a_full_disk_keeps_the_old_one_and_says_the_disk_is_full(small_disk, capsys):
    from htlib.errors import StorageError

    checkpoints.save({"weights": torch.zeros(1000)}, small_disk / "checkpoint.pt")  # 4 KB: fits
    before = (small_disk / "checkpoint.pt").read_bytes()
    with pytest.raises(StorageError, match=r"checkpoint.pt: No space left on device \(its previous version is kept"):
        checkpoints.save({"weights": torch.zeros(200_000)}, small_disk / "checkpoint.pt")  # 800 KB: does not
    assert (small_disk / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in small_disk.iterdir()] == ["checkpoint.pt"]  # no half-written temporary file
    # the command line: one line, no traceback, exit code 2
    _refused(capsys, ["train", *TASK, "--channels", "32", "--run-dir", str(small_disk / "run")], "No space left on device")


def test_a_killed_writer_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    """SIGKILL gives no chance to clean up; the writer's process id in the file name tells the next
    writer that nobody owns it any more. A live writer's file is left alone."""
    target = tmp_path / "checkpoint.pt"
    writer = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from htlib.utils import write_atomic\n"
        "def slow(tmp):\n"
        "    tmp.write_text('half')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
        f"write_atomic({str(target)!r}, slow)\n")], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait(timeout=30)
    orphan, = tmp_path.glob(".checkpoint.pt.*.tmp")
    assert f".{writer.pid}." in orphan.name
    alive = tmp_path / f".checkpoint.pt.{os.getpid()}.abc123.tmp"  # this process: still running
    alive.write_text("mine")
    write_atomic(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and not orphan.exists() and alive.exists()


# ------------------------------------------------------------------ errors at the start


@pytest.mark.parametrize("extra, needles", [
    (["--ways", "60"], ["val episodes cannot be drawn", "60 classes", "only 40"]),
    (["--shots", "15", "--queries", "6"], ["train episodes cannot be drawn", "21 images per class", "only 20"]),
    (["--ways", "1"], ["ways must be a whole number >= 2", "at least 2 classes"]),
    (["--channels", "0"], ["channels must be a whole number >= 1"]),
    (["--steps", "0"], ["steps must be a whole number >= 1"]),
    (["--episodes-per-step", "0"], ["episodes_per_step must be a whole number >= 1"]),
    (["--unlabelled", "-1"], ["unlabelled must be a whole number >= 0"]),
    (["--lr", "0"], ["lr must be a number > 0"]),
    (["--device", "tpu"], ["Unknown device 'tpu'"]),
    (["--method", "svm"], ["Unknown method 'svm'"]),
    (["--method", "ht"], ["Unknown method 'ht'", "ht-all", "ht-<n>"]),  # a family, as configs once held
    (["--method", "ht-seven"], ["Unknown method 'ht-seven'"]),
    (["--method", "ht-9"], ["generate must be 'all', 'logits' or an int in [0, 4]"]),
    (["--dataset", "cifar"], ["Unknown dataset 'cifar'"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v[0].startswith("--") else None)
def test_impossible_training_requests_are_refused_before_training(tmp_path, capsys, extra, needles):
    run = tmp_path / "run"
    _refused(capsys, ["train", *TASK, *extra, "--run-dir", str(run)], *needles)
    assert not (run / "checkpoint.pt").exists() and not (run / "metrics.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: --device cuda is valid here")
def test_cuda_without_a_gpu_is_refused_with_advice(tmp_path, capsys):
    _refused(capsys, ["train", *TASK, "--device", "cuda", "--run-dir", str(tmp_path / "r")], "sees none", "'cpu'")
    _refused(capsys, ["eval", "--checkpoint", str(tmp_path), "--device", "cuda"], "sees none")


def test_an_unknown_profile_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--profile", "huge", "--run-dir", "x"])
    assert exit_.value.code == 2 and "invalid choice: 'huge'" in capsys.readouterr().err


def test_weights_for_another_image_shape_or_size_are_refused(tmp_path, capsys, finished_run):
    colour = ProtoNet(CNNSpec(image_channels=3, image_size=84, channels=4))  # miniImageNet-shaped
    torch.save(colour.state_dict(), tmp_path / "colour.pt")
    with pytest.raises(CheckpointError, match="do not fit this model.*image shape"):
        Trainer(TrainConfig(**SMALL, method="protonet", init_from=str(tmp_path / "colour.pt")))
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "channels": 8}))  # weights are C = 4
    _refused(capsys, ["eval", "--checkpoint", str(run)], "do not fit this model")


def test_eval_refuses_more_ways_than_trained_and_weights_without_a_config(tmp_path, capsys, finished_run):
    _refused(capsys, ["eval", "--checkpoint", str(finished_run), "--ways", "7"], "trained for 5-way", "at most 5")
    _refused(capsys, ["eval", "--checkpoint", str(finished_run), "--episodes", "0"], "--episodes must be >= 1")
    lone = tmp_path / "weights.pt"
    shutil.copy(finished_run / "model.pt", lone)
    _refused(capsys, ["eval", "--checkpoint", str(lone)], "no config.json")


def test_a_user_mistake_is_one_line_on_stderr_without_traceback_in_a_real_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "htlib", "train", *TASK, "--ways", "1", "--run-dir",
                           str(tmp_path / "r")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ways must be"), done.stderr


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    import htlib.train

    def broken(*args, **kwargs):
        raise ValueError("a bug inside htlib")  # not a UserError: must not be hidden

    monkeypatch.setattr(htlib.train, "train", broken)
    with pytest.raises(ValueError, match="a bug inside htlib"):
        main(["train", *TASK, "--run-dir", str(tmp_path / "r")])


# ------------------------------------------------------------------ eval works on every committed run


COMMITTED = sorted((ROOT / "results" / "runs").glob("*/*/model.pt"))


@pytest.mark.parametrize("weights", COMMITTED, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_eval_works_on_every_committed_run(weights, omniglot_data_dir, capsys):
    for target in (weights, weights.parent):  # the model.pt, and the run folder
        assert main(["eval", "--checkpoint", str(target), "--episodes", "2", "--batch-size", "2", "--json",
                     "--device", "cpu", "--data-dir", str(omniglot_data_dir)]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["episodes"] == 2 and 0.0 <= out["accuracy"] <= 1.0


# ------------------------------------------------------------------ the library's own checks


def test_wrong_types_from_papermill_are_refused():
    with pytest.raises(ConfigError, match="ways must be a whole number >= 2, got '20'"):
        TrainConfig(ways="20").resolved()
    with pytest.raises(ConfigError, match="shots must be a whole number >= 1, got 1.5"):
        TrainConfig(shots=1.5).resolved()


def test_help_shows_every_option_with_a_meaning_and_its_default():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"download", "notebooks", "readme", "train", "eval", "bench", "sweep", "semi", "recipe",
                             "campaign"}
    for name, sub in commands.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name} {action.option_strings}: no help text"
            if action.default not in (None, False) and action.option_strings:
                assert f"(default: {action.default})" in " ".join(text.split()), \
                    f"{name} {action.option_strings}: default not shown"


@pytest.mark.parametrize("extra, needle", [
    (["--only", "99"], "No notebook"),
    (["--dataset", "cifar"], "Unknown dataset 'cifar'"),
    (["--device", "tpu"], "Unknown device 'tpu'"),
], ids=["only", "dataset", "device"])
def test_the_main_job_refuses_bad_options_before_running_a_notebook(tmp_path, capsys, extra, needle):
    _refused(capsys, ["notebooks", "--profile", "ci", "--offline", "--out", str(tmp_path / "out"), *extra], needle)
    assert not (tmp_path / "out").exists()


def test_the_main_job_refuses_to_write_over_the_committed_notebooks(capsys):
    from htlib.tools.notebooks import NOTEBOOK_DIR

    before = {book.name: book.stat().st_mtime_ns for book in NOTEBOOK_DIR.glob("*.ipynb")}
    _refused(capsys, ["notebooks", "--profile", "ci", "--offline", "--out", str(NOTEBOOK_DIR / ".")],
             "would replace the committed notebooks")
    assert {book.name: book.stat().st_mtime_ns for book in NOTEBOOK_DIR.glob("*.ipynb")} == before


def test_ctrl_c_in_an_experiment_names_the_same_command_to_resume(monkeypatch, capsys):
    """sweep / semi / recipe resume by themselves: the message must not add a --resume they lack."""
    import htlib.experiments.recipe as recipe
    from htlib.train import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(7, Path("runs/x/checkpoint.pt"))

    monkeypatch.setattr(recipe, "run_recipe", interrupted)
    assert main(["recipe", "--profile", "ci", "--dataset", "synthetic"]) == 130
    assert capsys.readouterr().err.strip().endswith(
        "Resume with: python -m htlib recipe --profile ci --dataset synthetic")
