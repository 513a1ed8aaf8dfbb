"""Training throughput: the article's recipe vs a competent Hugging Face baseline vs slmforge, one run.

Same model (SmolLM2-135M-Instruct unless --model), same examples (banking77 train, seeded shuffle), same
adapter (LoRA r=8 on q,k,v,o by default, the article-era setting; --all-linear for slmforge's default),
same precision. Prints one line per variant and its ratio to the article's recipe measured in this run.

    python scripts/bench_train_speed.py --steps 3            # ~5 minutes on 2 CPU cores
    python scripts/bench_train_speed.py --model tiny --steps 2 --rows-per-step 8   # a smoke run

Variants
  (a) article   HF Trainer, every row padded to 512, labels = input_ids (padding and prompt trained on),
                batch 8 x accumulation 2
  (b) hf        HF Trainer, dynamic padding, prompt-masked labels (what TRL's SFTTrainer does)
  (c) slmforge  slmforge's Lightning module as configured by default: windows sorted by length, LM head
                only at answer positions, the prompt head the rows share run once per micro-batch, the
                rows after it packed without padding (block-diagonal mask), loss normalised over the
                accumulation window, LoRA dropout from 16-bit random ints
  slmforge_nopack    the same, padded instead of packed (``train.pack_max_tokens=0``)
  slmforge_plain     padded and without the shared head (``train.shared_prefix=false pack_max_tokens=0``)
  slmforge_mb16      16 rows in one micro-batch instead of 8 x 2 (the same optimizer step and gradient)
Every variant trains on the same rows, tokenised the same way (SmolLM2's chat template with its default
system line, prompt + label + EOS); useful tokens = those non-padding tokens. The first optimizer step of each variant is a warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import time
from pathlib import Path

import torch

from slmforge.modeling.adapters import AdapterSpec, apply_adapter
from slmforge.modeling.batching import encode_example
from slmforge.modeling.loading import _SMOLLM2_GGUF, ModelSpec, load_model
from slmforge.tasks.classification import ClassificationTask

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]


def load_rows(path: Path, n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in path.open()]
    random.Random(seed).shuffle(rows)
    return [{"id": str(i), **r} for i, r in enumerate(rows[:n])]


def fresh_model(args: argparse.Namespace):
    spec = (
        ModelSpec(**_SMOLLM2_GGUF) if args.model == "smollm2-135m" else ModelSpec(name="tiny", source="tiny")
    )
    lm = load_model(spec)
    targets = "all-linear" if args.all_linear else ATTN
    lm.model = apply_adapter(
        lm.model, AdapterSpec(kind="lora", r=8, alpha=16, dropout=0.05, target_modules=targets)
    )
    lm.model.train()
    return lm


class StepTimer:
    """A TrainerCallback recording wall time at each optimizer step end."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def __getattr__(self, name):  # every other callback hook is a no-op
        return lambda *a, **k: None

    def on_step_end(self, *args, **kwargs):
        self.times.append(time.perf_counter())


def run_hf(args, examples, article: bool) -> dict:
    from transformers import Trainer, TrainingArguments

    lm = fresh_model(args)
    tok = lm.tokenizer
    feats, useful = [], []
    task = ClassificationTask(label_list_in_prompt=False)
    task.setup(examples, {})
    for ex in examples:
        row = encode_example(task, tok, ex, 512)  # the same tokens in every variant
        if article:
            n = len(row.input_ids)
            padded = row.input_ids + [tok.pad_token_id] * (512 - n)
            feats.append({"input_ids": padded, "attention_mask": [1] * n + [0] * (512 - n),
                          "labels": list(padded)})  # fmt: skip
            useful.append(n)
        else:
            feats.append(
                {"input_ids": row.input_ids, "attention_mask": [1] * len(row.input_ids), "labels": row.labels}
            )
            useful.append(len(row.input_ids))

    def collate(batch):
        width = max(len(b["input_ids"]) for b in batch)
        out = {k: torch.full((len(batch), width), v, dtype=torch.long)
               for k, v in (("input_ids", tok.pad_token_id), ("attention_mask", 0), ("labels", -100))}  # fmt: skip
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            for k in out:
                out[k][i, :n] = torch.tensor(b[k])
        return out

    timer = StepTimer()
    targs = TrainingArguments(
        output_dir=str(args.out / ("article" if article else "hf")), per_device_train_batch_size=8,
        gradient_accumulation_steps=2, max_steps=args.steps + 1, learning_rate=2e-4, report_to=[],
        use_cpu=not torch.cuda.is_available(), save_strategy="no", logging_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )  # fmt: skip
    trainer = Trainer(
        model=lm.model, args=targs, train_dataset=feats, data_collator=collate, callbacks=[timer]
    )
    trainer.train()
    per_step = 16
    timed_rows = useful[per_step : per_step * (args.steps + 1)]
    elapsed = timer.times[-1] - timer.times[0]
    return {"useful_tokens": sum(timed_rows), "seconds": elapsed}


def run_slmforge(args, examples, shared_prefix: bool = True, micro: int = 8, pack: int = 1024) -> dict:
    import lightning as L

    from slmforge.data.datamodule import SLMDataModule
    from slmforge.modeling.module import CausalLMModule

    lm = fresh_model(args)
    task = ClassificationTask(label_list_in_prompt=False)
    task.setup(examples, {})
    dm = SLMDataModule(
        task, lm.tokenizer, examples, examples[:1], micro_batch_size=micro, accumulate=16 // micro, seed=0
    )
    steps_t: list[float] = []
    tokens: list[int] = []

    class Timed(CausalLMModule):
        def training_step(self, window, batch_idx):
            out = super().training_step(window, batch_idx)
            steps_t.append(time.perf_counter())
            tokens.append(window["n_tokens"])
            return out

    module = Timed(lm.model, lr=2e-4, shared_prefix=shared_prefix, pack_max_tokens=pack)
    trainer = L.Trainer(
        accelerator="auto", devices=1, max_steps=args.steps + 1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, limit_val_batches=0, enable_model_summary=False, default_root_dir=str(args.out),
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return {"useful_tokens": sum(tokens[1:]), "seconds": steps_t[-1] - steps_t[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/banking77/train.jsonl"))
    p.add_argument("--model", default="smollm2-135m", choices=["smollm2-135m", "tiny"])
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant (16 rows each)")
    p.add_argument(
        "--all-linear", action="store_true", help="LoRA on every linear layer (slmforge's default)"
    )
    p.add_argument("--variants", default="article,hf,slmforge_plain,slmforge_nopack,slmforge")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_train"))
    args = p.parse_args()
    torch.manual_seed(0)
    examples = load_rows(args.data, 16 * (args.steps + 1), seed=0)
    print(f"# {args.model}, LoRA r=8 on {'all linear layers' if args.all_linear else 'q,k,v,o'}, "
          f"{args.steps} timed steps x 16 rows, torch threads={torch.get_num_threads()}")  # fmt: skip
    results = {}
    for name in args.variants.split(","):
        t0 = time.perf_counter()
        if name == "article":
            r = run_hf(args, examples, article=True)
        elif name == "hf":
            r = run_hf(args, examples, article=False)
        elif name == "slmforge_mb16":
            r = run_slmforge(args, examples, micro=16)
        elif name == "slmforge_nopack":
            r = run_slmforge(args, examples, pack=0)
        elif name == "slmforge_plain":
            r = run_slmforge(args, examples, shared_prefix=False, pack=0)
        else:
            r = run_slmforge(args, examples)
        r["tok_s"] = r["useful_tokens"] / r["seconds"]
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results[name] = r
        base = results.get("article", r)["tok_s"]
        print(f"{name:9s} useful tokens/s {r['tok_s']:8.1f}  ({r['tok_s'] / base:5.1f}x article)  "
              f"{r['seconds']:.1f}s for {r['useful_tokens']} useful tokens  (wall {time.perf_counter() - t0:.0f}s, "
              f"peak RSS so far {r['peak_rss_mb']:.0f} MB)", flush=True)  # fmt: skip
    if "hf" in results and "slmforge" in results:
        print(f"slmforge / hf = {results['slmforge']['tok_s'] / results['hf']['tok_s']:.2f}x")


if __name__ == "__main__":
    main()
