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


def evaluation_loader_generator(shuffle: bool) -> torch.Generator | None:
    """A generator of its own for a loader that is not shuffled (validation, test). Creating a DataLoader iterator
    draws its base seed from the loader's generator, or from the global stream training draws from when it has
    none, and Lightning creates the iterator before any evaluation hook runs (`EvaluationRandomStream`,
    `divlab/callbacks/evaluation_rng.py`): without one, each validation pass shifted training's random stream. A
    shuffled (training) loader keeps the global stream, so its order is the run seed's."""
    return None if shuffle else torch.Generator().manual_seed(0)


def batched_loader(dataset, batch_size: int, shuffle: bool, num_workers: int = 0, drop_last: bool = False):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=evaluation_loader_generator(shuffle),
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
