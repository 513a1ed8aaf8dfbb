"""The LightningModule's loss: learning, sparse LM head parity, and accumulation = one large batch."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from slmforge.modeling.adapters import AdapterSpec, apply_adapter
from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.tasks.classification import ClassificationTask
from slmforge.training.batching import WindowCollator, encode_example
from slmforge.training.datamodule import SLMDataModule
from slmforge.training.module import CausalLMModule, warmup_cosine

TOY = [
    {"id": f"t{i}", "text": text, "label": label}
    for i, (text, label) in enumerate(
        [("my card was charged twice", "billing"), ("the parcel never arrived", "shipping")] * 8
    )
]


def _task() -> ClassificationTask:
    t = ClassificationTask(system_prompt="x", instruction="Classify.", label_list_in_prompt=False)
    t.setup(TOY, {})
    return t


def test_loss_falls_on_learnable_toy_set(tmp_path):
    L.seed_everything(0)
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    task = _task()
    lm.model = apply_adapter(lm.model, AdapterSpec(kind="none"))
    dm = SLMDataModule(task, lm.tokenizer, TOY, TOY[:4], micro_batch_size=8, accumulate=1)
    module = CausalLMModule(lm.model, lr=1e-2, warmup_ratio=0.0)
    dm.setup()
    window = WindowCollator(dm.rows, lm.tokenizer.pad_token_id, 16)(list(range(16)))
    before = sum(module.supervised_loss(mb)[0] for mb in window["micro_batches"]) / window["n_supervised"]
    trainer = L.Trainer(
        accelerator="cpu", max_steps=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, default_root_dir=tmp_path, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    with torch.no_grad():
        after = sum(module.supervised_loss(mb)[0] for mb in window["micro_batches"]) / window["n_supervised"]
    assert trainer.global_step == 40
    assert float(after) < 0.25 * float(before), (float(before), float(after))


def test_sparse_lm_head_gives_the_same_loss_as_full_logits():
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    lm.model = apply_adapter(lm.model, AdapterSpec(kind="lora", r=4, alpha=8, dropout=0.0))
    task = _task()
    rows = [encode_example(task, lm.tokenizer, ex, 512) for ex in TOY[:6]]
    batch = WindowCollator(rows, lm.tokenizer.pad_token_id, 6)(list(range(6)))["micro_batches"][0]
    sparse = CausalLMModule(lm.model, sparse_lm_head=True).supervised_loss(batch)
    full = CausalLMModule(lm.model, sparse_lm_head=False).supervised_loss(batch)
    assert sparse[1] == full[1] == sum(r.n_supervised for r in rows)
    torch.testing.assert_close(sparse[0], full[0], rtol=1e-5, atol=1e-5)


def test_gradient_accumulation_equals_one_large_batch():
    """Windows normalise by the window's supervised tokens: 3 micro-batches of 2 == 1 batch of 6."""
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    task = _task()
    # Answers of different lengths make per-micro-batch averaging differ from the large batch.
    exs = [
        dict(ex, label=lab) for ex, lab in zip(TOY[:6], ["billing", "shipping and handling"] * 3, strict=True)
    ]
    task.labels = ["billing", "shipping and handling"]
    rows = [encode_example(task, lm.tokenizer, ex, 512) for ex in exs]
    grads = []
    for micro in (6, 2):
        model = copy.deepcopy(lm.model)
        module = CausalLMModule(model)
        window = WindowCollator(rows, lm.tokenizer.pad_token_id, micro)(list(range(6)))
        for mb in window["micro_batches"]:
            (module.supervised_loss(mb)[0] / window["n_supervised"]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_warmup_cosine_schedule_values():
    assert warmup_cosine(0, 100, 10, 0.1) == 0.1
    assert warmup_cosine(9, 100, 10, 0.1) == 1.0
    assert abs(warmup_cosine(10, 100, 10, 0.1) - 1.0) < 1e-12
    assert abs(warmup_cosine(100, 100, 10, 0.1) - 0.1) < 1e-12
    assert abs(warmup_cosine(55, 100, 10, 0.0) - 0.5) < 1e-12


def test_training_runs_in_train_mode_even_if_the_model_arrives_in_eval_mode(tmp_path):
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    lm.model = apply_adapter(lm.model, AdapterSpec(kind="lora", r=4, alpha=8, dropout=0.1))
    lm.model.eval()  # as from_pretrained returns it
    modes = []

    class Probe(CausalLMModule):
        def training_step(self, window, batch_idx):
            modes.append(self.model.training)
            return super().training_step(window, batch_idx)

    dm = SLMDataModule(_task(), lm.tokenizer, TOY, TOY[:4], micro_batch_size=8, accumulate=1)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, default_root_dir=tmp_path, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(Probe(lm.model), datamodule=dm)
    assert modes == [True, True]


def test_shared_prefix_len_on_hand_made_rows():
    from slmforge.training.batching import IGNORE_INDEX as X
    from slmforge.training.module import shared_prefix_len

    ids = torch.tensor([[1, 2, 3, 4, 5, 0], [1, 2, 3, 9, 5, 6]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    labels = torch.tensor([[X, X, X, X, 5, X], [X, X, X, X, X, 6]])
    assert shared_prefix_len(ids, mask, labels) == 3
    # Identical rows: the head stops before the position that predicts the first supervised token.
    same = torch.tensor([[1, 2, 3, 4], [1, 2, 3, 4]])
    assert shared_prefix_len(same, torch.ones_like(same), torch.tensor([[X, X, 3, 4], [X, X, 3, 4]])) == 1
    assert shared_prefix_len(ids[:1], mask[:1], labels[:1]) == 0  # one row: nothing to share


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize(("shared", "pack"), [(True, 0), (False, 4096), (True, 4096)])
def test_shared_prefix_and_packing_give_the_same_loss_and_gradients(attn, shared, pack):
    lm = load_model(ModelSpec(name="tiny", source="tiny", attn_implementation=attn))
    lm.model = apply_adapter(lm.model, AdapterSpec(kind="lora", r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # non-zero LoRA B, so the adapter changes the shared head's keys and values
        for name, p in lm.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    task = ClassificationTask(system_prompt="a longer shared system line " * 3, instruction="Classify.")
    task.setup(TOY, {})
    texts = ["short", "a much longer text that pads the others " * 3, "mid size text here"]
    examples = [{**ex, "text": texts[i % 3] + ex["text"]} for i, ex in enumerate(TOY[:6])]
    rows = [encode_example(task, lm.tokenizer, ex, 512) for ex in examples]
    batch = WindowCollator(rows, lm.tokenizer.pad_token_id, 6)(list(range(6)))["micro_batches"][0]
    from slmforge.training.module import shared_prefix_len

    assert shared_prefix_len(batch["input_ids"], batch["attention_mask"], batch["labels"]) > 20
    assert int((batch["attention_mask"] == 0).sum()) > 20  # the padded reference really pads

    def loss_and_grads(shared: bool, pack: int):
        lm.model.zero_grad()
        module = CausalLMModule(lm.model, shared_prefix=shared, pack_max_tokens=pack)
        loss, n = module.supervised_loss(batch)
        loss.backward()
        grads = {k: p.grad.clone() for k, p in lm.model.named_parameters() if p.requires_grad}
        return float(loss), n, grads

    loss_s, n_s, grads_s = loss_and_grads(shared, pack)
    loss_p, n_p, grads_p = loss_and_grads(False, 0)  # padded, every row computed in full
    assert n_s == n_p
    assert abs(loss_s - loss_p) < 1e-4 * abs(loss_p)
    for k in grads_p:
        torch.testing.assert_close(grads_s[k], grads_p[k], rtol=1e-4, atol=1e-6)


def test_packable_window_runs_as_one_micro_batch_with_the_same_gradient():
    lm = load_model(ModelSpec(name="tiny", source="tiny"))
    lm.model = apply_adapter(lm.model, AdapterSpec(kind="lora", r=4, alpha=8, dropout=0.0))
    with torch.no_grad():
        for name, p in lm.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    task = ClassificationTask(system_prompt="a longer shared system line " * 3, instruction="Classify.")
    task.setup(TOY, {})
    rows = [encode_example(task, lm.tokenizer, ex, 512) for ex in TOY[:6]]
    window = WindowCollator(rows, lm.tokenizer.pad_token_id, 2)(list(range(6)))
    assert len(window["micro_batches"]) == 3

    def window_grads(pack: int):
        lm.model.zero_grad()
        module = CausalLMModule(lm.model, pack_max_tokens=pack)
        micro = module._merge_if_packable(window["micro_batches"])
        for mb in micro:
            (module.supervised_loss(mb)[0] / window["n_supervised"]).backward()
        return len(micro), {k: p.grad.clone() for k, p in lm.model.named_parameters() if p.requires_grad}

    n_merged, merged = window_grads(4096)
    n_small, separate = window_grads(0)
    assert (n_merged, n_small) == (1, 3)
    assert window_grads(40)[0] == 3  # too many tokens to pack: the micro-batches stay as they are
    for k in separate:
        torch.testing.assert_close(merged[k], separate[k], rtol=1e-4, atol=1e-6)
