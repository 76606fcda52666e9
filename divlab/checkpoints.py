"""Find and check the checkpoint a run resumes from, before anything is trained or overwritten."""
from pathlib import Path

import torch

from divlab.tracking.run_record import read_run_record


def last_checkpoint(output_dir: Path) -> Path | None:
    path = Path(output_dir) / "checkpoints" / "last.ckpt"
    return path if path.exists() else None


def latest_sibling_checkpoint(log_dir: Path, group: str) -> Path | None:
    """The newest `last.ckpt` of an earlier run of the same group under `log_dir`."""
    candidates = []
    for ckpt in Path(log_dir).glob("**/checkpoints/last.ckpt"):
        record = read_run_record(ckpt.parent.parent) or {}
        if (record.get("config") or {}).get("run", {}).get("group") == group:
            candidates.append(ckpt)
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path, log_dir: Path, group: str) -> Path | None:
    """`last` → this output dir's last.ckpt, else the newest of the same group; None → resume here if possible."""
    if ckpt_path in (None, "last"):
        found = last_checkpoint(output_dir)
        if found is None and ckpt_path == "last":
            found = latest_sibling_checkpoint(log_dir, group)
            if found is None:
                raise FileNotFoundError(
                    f"ckpt_path=last but no checkpoints/last.ckpt in {output_dir} or any earlier "
                    f"run of group {group!r} under {log_dir}; drop ckpt_path to start fresh"
                )
        return found
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path!r} does not exist; pass a .ckpt file, 'last' or null")
    return path


def check_readable(path: Path) -> dict:
    """Load a checkpoint on CPU or fail with a message naming it."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 -- any unpickling failure means the file is unusable
        raise ValueError(f"checkpoint {str(path)!r} is unreadable ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {str(path)!r} has no state_dict: not a Lightning checkpoint")
    return checkpoint
