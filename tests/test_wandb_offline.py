"""Reading resumed offline W&B runs back from disk: attempt order and the merged history."""
import json
import struct
import zlib

from divlab.tracking.wandb_offline import HEADER, find_offline_runs, merged_history, offline_run_id


def _write_run(folder, run_id, steps, resumed_at=None):
    """A minimal `run-<id>.wandb` file: an optional config record, one history record per (step, loss), an exit."""
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    if resumed_at is not None:
        record = pb.Record()
        item = record.config.update.add()
        item.key, item.value_json = "resumed_at_step", json.dumps(resumed_at)
        records.append(record)
    for step, loss in steps:
        record = pb.Record()
        for key, value in (("_step", step), ("train/loss", loss)):
            item = record.history.item.add()
            item.key, item.value_json = key, json.dumps(value)
        records.append(record)
    exit_record = pb.Record()
    exit_record.exit.exit_code = 0
    records.append(exit_record)
    body = b"".join(
        struct.pack("<IHB", zlib.crc32(data), len(data), 1) + data for data in (r.SerializeToString() for r in records)
    )
    folder.mkdir(parents=True)
    (folder / f"run-{run_id}.wandb").write_bytes(HEADER + body)


def test_same_second_attempts_are_ordered_by_wandbs_suffix_and_keep_their_id(tmp_path):
    names = ["offline-run-20261201_002306-abc-10", "offline-run-20261201_002306-abc-2",
             "offline-run-20261201_002306-abc", "offline-run-20261201_002305-abc"]
    for name in names:
        _write_run(tmp_path / "wandb" / name, "abc", [])
    order = [folder.name for folder in find_offline_runs(tmp_path)]
    assert order == ["offline-run-20261201_002305-abc", "offline-run-20261201_002306-abc",
                     "offline-run-20261201_002306-abc-2", "offline-run-20261201_002306-abc-10"]
    assert {offline_run_id(folder) for folder in find_offline_runs(tmp_path)} == {"abc"}


def test_a_resumed_attempt_drops_rows_logged_past_its_checkpoint(tmp_path):
    wandb = tmp_path / "wandb"
    _write_run(wandb / "offline-run-20261201_002305-abc", "abc", [(1, 1.0), (2, 2.0), (3, 3.0)])
    _write_run(wandb / "offline-run-20261201_002306-abc", "abc", [(4, 40.0), (5, 50.0)], resumed_at=3)  # killed at 5
    _write_run(wandb / "offline-run-20261201_002306-abc-1", "abc", [(4, 4.0), (5, 5.0), (6, 6.0)], resumed_at=3)
    rows = merged_history(tmp_path, wait_seconds=0.0)
    assert [(row["_step"], row["train/loss"]) for row in rows] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0),
                                                                   (6, 6.0)]


def test_merged_history_reads_only_the_folders_it_is_given(tmp_path):
    wandb = tmp_path / "wandb"
    _write_run(wandb / "offline-run-20261201_002305-abc", "abc", [(1, 1.0), (2, 2.0)])
    _write_run(wandb / "offline-run-20261201_002306-abc", "abc", [(3, 3.0)])
    earlier = [wandb / "offline-run-20261201_002305-abc"]
    assert [row["_step"] for row in merged_history(tmp_path, folders=earlier, wait_seconds=0.0)] == [1, 2]
