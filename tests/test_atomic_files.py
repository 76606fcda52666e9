"""Atomic writes and directory builds (divlab.atomic_files), and when periodic callbacks are due."""
import os
from types import SimpleNamespace

import pytest

from divlab.atomic_files import atomic_directory, atomic_write, write_bytes_atomic, write_text_atomic
from divlab.callbacks.periodic import validation_due


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_write_replaces_the_file_whole_with_the_mode_open_would_give(tmp_path, umask_022):
    path = tmp_path / "sub" / "record.json"
    write_text_atomic(path, "old")
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o644  # mkstemp alone would leave 0600
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_write(path, fsync=True) as file:
            file.write(b"half of the new")
            raise RuntimeError("killed mid-write")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_directory_appears_whole_and_the_first_build_wins(tmp_path):
    target = tmp_path / "cache" / "built"
    with atomic_directory(target) as tmp:
        assert not target.exists()  # readers never see a partial build
        (tmp / "a.txt").write_text("first")
    with atomic_directory(target) as tmp:  # a concurrent builder that finishes second
        (tmp / "a.txt").write_text("second")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["built"]


def test_a_failed_directory_build_leaves_nothing(tmp_path):
    target = tmp_path / "built"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("partial")
            raise RuntimeError("build failed")
    assert list(tmp_path.iterdir()) == []


def test_validation_is_due_every_n_epochs_counting_from_one_never_in_the_sanity_check():
    due = [
        epoch for epoch in range(9) if validation_due(SimpleNamespace(sanity_checking=False, current_epoch=epoch), 3)
    ]
    assert due == [2, 5, 8]  # the 3rd, 6th and 9th epochs
    assert validation_due(SimpleNamespace(sanity_checking=False, current_epoch=0), 1)
    assert not validation_due(SimpleNamespace(sanity_checking=True, current_epoch=2), 3)
