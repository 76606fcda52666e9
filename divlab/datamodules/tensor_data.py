"""In-memory datasets indexed a whole batch at a time, so no Python runs per sample."""
import lightning as L
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


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test loaders over `self.dataset(split)`; shuffled, full batches only for training.

    Subclasses fill `dataset(split)` (a `BatchedTensorDataset`, or any dataset that returns a whole
    batch from `__getitems__`) and, where they load lazily, `setup`; hparams hold `batch_size` and
    `num_workers`.
    """

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return batched_loader(
            self.dataset(split), self.hparams.batch_size, shuffle, self.hparams.num_workers, drop_last=shuffle
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
