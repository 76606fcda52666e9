"""A Hugging Face causal LM as the alignment family's π_ref (`policy.hf_model=`), on a tiny randomly
initialised GPT-2 and a byte-level BPE trained here: saved to a local directory, nothing downloaded."""
import functools
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")

from divlab.lightning_modules.dpo import DPO  # noqa: E402
from divlab.lightning_modules.reference_policy import load_reference_policy  # noqa: E402
from divlab.lightning_modules.sequence import sequence_log_prob  # noqa: E402
from tests.test_alignment_family import PAIRS, one_dpo_step, preference_batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")

SENTENCES = ["KING: my good lord, what news?", "Enter sweet love and bloody death.",
             "To be, or not to be: that is the question.", "Thou vile wretch, get thee gone!"] * 8
SPECIAL = "<|endoftext|>"


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(SENTENCES, trainers.BpeTrainer(
        vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[SPECIAL],
        show_progress=False))
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=SPECIAL, eos_token=SPECIAL,
                                                     pad_token=SPECIAL)
    special = tokenizer.convert_tokens_to_ids(SPECIAL)
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=32, vocab_size=len(tokenizer), n_positions=128,
                                      bos_token_id=special, eos_token_id=special, resid_pdrop=0.0, embd_pdrop=0.0,
                                      attn_pdrop=0.0)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def spec(hf_dir):
    data_dir = os.environ.get("DIVLAB_DATA_DIR", os.path.expanduser("~/.cache/divlab/data"))  # as configs/paths
    return {"ckpt_path": None, "hf_model": str(hf_dir), "data_dir": data_dir}


def test_sequence_log_prob_equals_the_hf_models_own(spec, hf_dir):
    reference = load_reference_policy(**spec)
    text = reference.text
    assert text.decode(text.encode("KING: my good lord")) == "KING: my good lord"
    sentence = text.encode("KING: my good lord")
    tokens = torch.stack([sentence, torch.randint(text.vocab_size, sentence.shape)])
    mask = torch.ones_like(tokens)
    mask[:, :2] = 0
    mask[1, -1] = 0

    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    inputs = torch.cat([torch.full_like(tokens[:, :1], hf.config.bos_token_id), tokens[:, :-1]], 1)
    with torch.no_grad():
        logp = hf(input_ids=inputs).logits.log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
        ours = sequence_log_prob(reference.model, tokens, mask)
    torch.testing.assert_close(ours, (logp * mask).sum(-1), atol=1e-5, rtol=0)


def test_cached_steps_equal_a_full_recompute_and_sampling_runs(spec):
    model = load_reference_policy(**spec).model
    backbone = model.backbone
    tokens = torch.randint(backbone.vocab_size, (2, 9))
    tokens[:, 0] = model.bos
    with torch.no_grad():
        full = backbone(tokens)
        logits, cache = backbone.prefill(tokens[:, :3])
        steps = [logits]
        for t in range(3, tokens.shape[1]):
            logits, cache = backbone.step(tokens[:, t], cache)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), full[:, 2:], atol=1e-5, rtol=0)
    assert backbone.cache_length(cache) == tokens.shape[1] and full.shape[-1] == model.hparams.vocab_size
    samples = model.sample(3, prompt=tokens[0, 1:4], max_new_tokens=5)
    assert samples.shape == (3, 8) and torch.equal(samples[:, :3], tokens[0, 1:4].expand(3, -1))


def test_dpo_step_on_the_hf_policy_raises_the_chosen_logprob(spec):
    sgd = functools.partial(torch.optim.SGD, lr=1e-2)
    model = DPO((128,), spec, sgd, beta=0.5)
    batch = preference_batch(load_reference_policy(**spec), PAIRS)
    loss, (chosen0, rejected0), (chosen1, rejected1) = one_dpo_step(model, batch)
    assert torch.isfinite(loss)
    assert (chosen1 > chosen0).all() and (rejected1 < rejected0).all()
    # π_ref (the HF model) is untouched by π's step
    torch.testing.assert_close(model.reference_logprobs(batch)[:, 0], chosen0, atol=1e-5, rtol=0)


def test_reward_model_reads_the_hf_backbone(spec):
    from divlab.lightning_modules.reward_model import RewardModel

    model = RewardModel((128,), spec, functools.partial(torch.optim.Adam, lr=1e-3))
    batch = preference_batch(load_reference_policy(**spec), PAIRS)
    assert model.rewards(batch["chosen_ids"], batch["chosen_mask"]).shape == (2,)


def test_bad_hf_settings_say_what_to_do(spec, monkeypatch):
    from divlab.lightning_modules.networks.hf_causal_lm import import_transformers

    with pytest.raises(ValueError, match="policy.ckpt_path or policy.hf_model, not both"):
        load_reference_policy(**{**spec, "ckpt_path": "x.ckpt"})
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install 'divlab\[hf\]'"):
        import_transformers()


def test_align_dpo_runs_on_an_hf_policy_through_train(train_with, hf_dir):
    from tests.test_alignment_family import TINY_EVALUATION

    _, metrics = train_with("experiment=align_dpo", f"policy.hf_model={hf_dir}", "logger=csv", "debug=tiny",
                            "data.n_prompts=16", "data.drop_ties=false", "data.prompt_length=4",
                            "data.completion_length=6", TINY_EVALUATION)
    assert {"val/true_reward", "val/kl_to_ref", "val/implicit_reward_accuracy"} <= set(metrics)


def test_the_corpus_is_tokenised_on_first_use_only():
    from divlab.lightning_modules.hf_policy import HFText

    calls = []

    class CountingTokenizer:
        def __call__(self, text, add_special_tokens=False):
            calls.append(text)
            return {"input_ids": [ord(c) % 7 for c in text]}

        def __len__(self):
            return 7

    text = HFText(CountingTokenizer(), {"train": "abcdef", "val": "xyz"})
    assert calls == []  # building the policy's text tokenises nothing
    assert text.tokens["val"].tolist() == [ord(c) % 7 for c in "xyz"] and len(calls) == 2
    assert text.tokens["train"].tolist() == [ord(c) % 7 for c in "abcdef"] and len(calls) == 2  # once
