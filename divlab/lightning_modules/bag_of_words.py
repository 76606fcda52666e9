"""A bag-of-words Bradley–Terry reward model: r(y) = w · counts(y) over the training pairs' most frequent words.

P(y_w ≻ y_l) = σ(r(y_w) − r(y_l)) = σ(w · Δ), Δ = counts(y_w) − counts(y_l), so fitting w is L2-regularised
logistic regression on the pairs' count differences (scikit-learn's, each pair in both orders so that no
intercept is needed: r is defined up to an offset). Words are runs of letters and apostrophes, lower-cased.
It reads the completion's text, not its tokens: `decode` turns the policy's token ids back into text, so
`rewards(tokens, mask)` and `pair_rewards(batch)` take the same batches as the neural `RewardModel` and PPO,
the reward normalisation and the `alignment` callback's held-out accuracy use either unchanged.

A CPU-cheap reward model for the controlled sentiment task, whose true reward (VADER) is itself a
lexicon scorer: on that task's pairs it reaches 90–94 % of the accuracy ceiling the labels' noise sets
(README at aeac04c, Alignment), where the character-level neural reward model needs hours of training. The
vocabulary and weights travel in the module's state dict (`get_extra_state`), so a checkpoint restores it.
"""
import re
from collections import Counter
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from divlab.validation import check_int, check_positive

WORD = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def masked_texts(decode: Callable[[list[int]], str], tokens: Tensor, mask: Tensor) -> list[str]:
    """The text of each row's masked tokens (a completion without its prompt and padding)."""
    return [decode(row[keep.bool()].tolist()) for row, keep in zip(tokens.cpu(), mask.cpu())]


class BagOfWordsRewardModel(nn.Module):
    def __init__(self, decode: Callable[[list[int]], str] | None, n_words: int = 3000, l2: float = 1.0):
        """`decode`: token ids → text (the policy's tokenizer; None for a model fitted and scored on texts
        only); `n_words`: the vocabulary's size; `l2`: the inverse of scikit-learn's C, the weight of ½‖w‖²
        against the summed log-likelihood of the pairs."""
        super().__init__()
        self.decode = decode
        self.n_words = check_int("bag-of-words reward model: n_words", n_words, minimum=1)
        self.l2 = check_positive("bag-of-words reward model: l2", l2)
        self.vocabulary: list[str] = []
        self.register_buffer("weights", torch.zeros(0))

    @property
    def fitted(self) -> bool:
        return len(self.vocabulary) > 0

    def counts(self, texts: Iterable[str]):
        """Word counts over the vocabulary, a scipy sparse matrix [len(texts), len(vocabulary)]."""
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(analyzer=words, vocabulary=self.vocabulary).transform(list(texts))

    def fit_texts(self, chosen: list[str], rejected: list[str]) -> "BagOfWordsRewardModel":
        """w by logistic regression on the pairs (chosen[i] preferred to rejected[i]); returns self."""
        import numpy as np
        import scipy.sparse
        from sklearn.linear_model import LogisticRegression

        if len(chosen) != len(rejected) or not chosen:
            raise ValueError(f"need as many chosen as rejected texts, at least one: got {len(chosen)}, {len(rejected)}")
        # words of equal frequency in the order the pairs first use them (chosen, then rejected, pair by pair)
        frequency = Counter(word for pair in zip(chosen, rejected) for text in pair for word in words(text))
        self.vocabulary = [word for word, _ in frequency.most_common(self.n_words)]
        if not self.vocabulary:
            raise ValueError("the preference pairs hold no words to fit a bag-of-words reward model on")
        delta = self.counts(chosen) - self.counts(rejected)
        x = scipy.sparse.vstack([delta, -delta]).tocsr()
        y = np.concatenate([np.ones(len(chosen)), np.zeros(len(chosen))])
        regression = LogisticRegression(C=1.0 / self.l2, fit_intercept=False, max_iter=1000).fit(x, y)
        self.weights = torch.as_tensor(regression.coef_[0], dtype=torch.float32, device=self.weights.device)
        return self

    def fit(self, loader: Iterable[dict]) -> "BagOfWordsRewardModel":
        """Fit on every (chosen, rejected) pair of a preference loader's batches."""
        chosen, rejected = [], []
        for batch in loader:
            chosen += masked_texts(self.decode, batch["chosen_ids"], batch["chosen_mask"])
            rejected += masked_texts(self.decode, batch["rejected_ids"], batch["rejected_mask"])
        return self.fit_texts(chosen, rejected)

    def score_texts(self, texts: list[str]) -> Tensor:
        if not self.fitted:
            raise RuntimeError("the bag-of-words reward model is scored before it was fitted")
        scores = self.counts(texts) @ self.weights.cpu().double().numpy()  # sparse counts: never densified
        return torch.as_tensor(scores, dtype=torch.float32, device=self.weights.device)

    def rewards(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """r(x, y) per sequence [B] of the completion tokens `mask` marks in `tokens` [B, T]."""
        return self.score_texts(masked_texts(self.decode, tokens, mask)).to(tokens.device)

    def pair_rewards(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(r(x, y_w), r(x, y_l)) [B] each, of a preference batch."""
        return (self.rewards(batch["chosen_ids"], batch["chosen_mask"]),
                self.rewards(batch["rejected_ids"], batch["rejected_mask"]))

    def get_extra_state(self) -> dict:
        return {"vocabulary": self.vocabulary}

    def set_extra_state(self, state: dict) -> None:
        self.vocabulary = list(state["vocabulary"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weights = state_dict.get(prefix + "weights")
        if weights is not None:  # a fitted model's weights replace the empty buffer whatever their length
            self.weights = torch.empty_like(weights, device=self.weights.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
