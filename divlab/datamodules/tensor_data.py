"""In-memory datasets indexed a whole batch at a time, so no Python runs per sample."""
import torch
from torch.utils.data import DataLoader, Dataset


class BatchedTensorDataset(Dataset):
    """Rows of `data`, fetched with one tensor index per batch and turned into a batch by `decode`.

    `decode(rows) -> Tensor` runs once per batch (e.g. uint8 → float in [−1, 1]).
    """

    def __init__(self, data: torch.Tensor, decode=None):
        self.data = data
        self.decode = decode

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):
        rows = self.data[torch.as_tensor(indices)]
        return rows if self.decode is None else self.decode(rows)


def keep_batch(batch):
    """Collate for `BatchedTensorDataset`: the batch is already a tensor."""
    return batch


def batched_loader(dataset, batch_size: int, shuffle: bool, num_workers: int = 0, drop_last: bool = False):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=keep_batch,
        persistent_workers=num_workers > 0,
    )
