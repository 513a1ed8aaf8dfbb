"""Training throughput: the article's recipe vs a competent Hugging Face baseline vs slmforge, one run.

Same model (SmolLM2-135M-Instruct unless --model), same examples (banking77 train, seeded shuffle), same
adapter (LoRA r=8 on q,k,v,o by default, the article-era setting; --all-linear for slmforge's default),
same precision. Prints one line per variant and its ratio to the article's recipe measured in this run.

    python scripts/bench_train_speed.py --steps 3            # ~5 minutes on 2 CPU cores
    python scripts/bench_train_speed.py --model tiny --steps 2                # a smoke run
    # GPU: random-weight Llama shapes sized like SmolLM2 (throughput does not depend on the weights),
    # bf16, the packed baseline (c), and slmforge with GPU-sized packed micro-batches; prints MFU.
    python scripts/bench_train_speed.py --model llama-1.7b-shape --precision bf16 --steps 5 \
        --variants article,hf,hf_packed,slmforge --micro 128 --pack 8192

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
  hf_packed    the strongest plain Trainer setup measured on GPU (the issue's baseline (c)): rows laid end
               to end into 2,048-token rows, 4 per micro-batch, accumulation 2, prompt-masked labels. Rows
               attend to the rows before them in the same packed row (no per-example boundaries): an
               upper bound for throughput, not a correct recipe.
``--micro`` / ``--pack`` set slmforge's rows per micro-batch (2 micro-batches per step, 16 rows per step
by default) and packed-sequence bound; on a GPU many more rows per step keep the card busy.
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

from slmforge.build import build_setup, compose_config
from slmforge.modeling.adapters import AdapterSpec, apply_adapter
from slmforge.tasks.classification import ClassificationTask
from slmforge.training.batching import encode_example
from slmforge.training.throughput import mfu, peak_bf16_flops

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]


def load_rows(path: Path, n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in path.open()]
    random.Random(seed).shuffle(rows)
    return [{"id": str(i), **r} for i, r in enumerate(rows[:n])]


# LlamaConfig sizes of SmolLM2-135M and SmolLM2-1.7B (vocabulary from the tokenizer, embeddings tied).
SHAPES = {
    "llama-135m-shape": {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                         "num_attention_heads": 9, "num_key_value_heads": 3},
    "llama-1.7b-shape": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                         "num_attention_heads": 32, "num_key_value_heads": 32},
}  # fmt: skip


def fresh_model(args: argparse.Namespace):
    """A fresh model per variant, through slmforge's one setup path (random weights for the *-shape models)."""
    if args.model == "smollm2-135m":
        overrides = ["model=smollm2-135m"]
    else:
        shape = {**SHAPES.get(args.model, {}), "max_position_embeddings": 8192}
        overrides = ["model=tiny", f"model.name={args.model}"]
        overrides += [f"++model.tiny_config.{k}={v}" for k, v in shape.items()]
    lm = build_setup(compose_config("train", [*overrides, "logger=none"])).lm
    assert lm is not None
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


def run_hf(args, examples, article: bool, packed: bool = False) -> dict:
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
    per_device, accumulation = 8, 2
    if packed:  # baseline (c): rows end to end in 2,048-token rows, 4 per micro-batch
        stream_ids = [t for f in feats for t in f["input_ids"]]
        stream_labels = [t for f in feats for t in f["labels"]]
        feats = [
            {"input_ids": stream_ids[i : i + 2048], "attention_mask": [1] * len(stream_ids[i : i + 2048]),
             "labels": stream_labels[i : i + 2048]}
            for i in range(0, len(stream_ids) - 2047, 2048)
        ]  # fmt: skip
        useful = [2048] * len(feats)
        per_device = 4

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
        output_dir=str(args.out / ("article" if article else "hf")), per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, max_steps=args.steps + 1, learning_rate=2e-4, report_to=[],
        bf16=args.precision == "bf16",
        use_cpu=not torch.cuda.is_available(), save_strategy="no", logging_strategy="no",
        dataloader_num_workers=0, disable_tqdm=True, remove_unused_columns=False,
    )  # fmt: skip
    trainer = Trainer(
        model=lm.model, args=targs, train_dataset=feats, data_collator=collate, callbacks=[timer]
    )
    trainer.train()
    per_step = per_device * accumulation
    if len(useful) < per_step * (args.steps + 1):
        raise SystemExit(
            f"{len(useful)} rows are too few for {args.steps + 1} steps of {per_step}: raise --rows"
        )
    timed_rows = useful[per_step : per_step * (args.steps + 1)]
    elapsed = timer.times[-1] - timer.times[0]
    return {"useful_tokens": sum(timed_rows), "seconds": elapsed}


def run_slmforge(args, examples, shared_prefix: bool = True, micro: int = 8, pack: int = 1024) -> dict:
    """``micro`` rows per micro-batch, 2 micro-batches per optimizer step (1 when ``micro`` is 16 on the
    CPU default), the window packed up to ``pack`` tokens."""
    import lightning as L

    from slmforge.training.datamodule import SLMDataModule
    from slmforge.training.module import CausalLMModule

    lm = fresh_model(args)
    task = ClassificationTask(label_list_in_prompt=False)
    task.setup(examples, {})
    dm = SLMDataModule(
        task, lm.tokenizer, examples, examples[:1], micro_batch_size=micro, accumulate=max(1, 16 // micro)
        if micro <= 16 else 2, seed=0,
    )  # fmt: skip
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
        precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        enable_progress_bar=False, limit_val_batches=0, enable_model_summary=False, default_root_dir=str(args.out),
    )  # fmt: skip
    trainer.fit(module, datamodule=dm)
    return {"useful_tokens": sum(tokens[1:]), "seconds": steps_t[-1] - steps_t[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/banking77/train.jsonl"))
    p.add_argument("--model", default="smollm2-135m", choices=["smollm2-135m", "tiny", *SHAPES])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: mixed, for GPUs")
    p.add_argument("--micro", type=int, default=8, help="slmforge rows per micro-batch")
    p.add_argument("--pack", type=int, default=1024, help="slmforge pack_max_tokens")
    p.add_argument("--rows", type=int, default=None, help="rows to load (default: enough for every variant)")
    p.add_argument("--steps", type=int, default=3, help="timed optimizer steps per variant (16 rows each)")
    p.add_argument(
        "--all-linear", action="store_true", help="LoRA on every linear layer (slmforge's default)"
    )
    p.add_argument("--variants", default="article,hf,slmforge_plain,slmforge_nopack,slmforge")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_train"))
    args = p.parse_args()
    torch.manual_seed(0)
    rows_per_step = max(16, 2 * args.micro, 280 if "hf_packed" in args.variants else 0)  # (c): ~270 rows/step
    examples = load_rows(args.data, args.rows or rows_per_step * (args.steps + 1), seed=0)
    n_params = sum(p.numel() for p in fresh_model(args).model.get_base_model().parameters())
    print(f"# {args.model} ({n_params / 1e6:.0f}M parameters, {args.precision}), LoRA r=8 on {'all linear layers' if args.all_linear else 'q,k,v,o'}, "
          f"{args.steps} timed steps x 16 rows, torch threads={torch.get_num_threads()}")  # fmt: skip
    results = {}
    for name in args.variants.split(","):
        t0 = time.perf_counter()
        if name == "article":
            r = run_hf(args, examples, article=True)
        elif name == "hf":
            r = run_hf(args, examples, article=False)
        elif name == "hf_packed":
            r = run_hf(args, examples, article=False, packed=True)
        elif name == "slmforge_mb16":
            r = run_slmforge(args, examples, micro=16)
        elif name == "slmforge_nopack":
            r = run_slmforge(args, examples, pack=0)
        elif name == "slmforge_plain":
            r = run_slmforge(args, examples, shared_prefix=False, pack=0)
        else:
            r = run_slmforge(args, examples, micro=args.micro, pack=args.pack)
        r["tok_s"] = r["useful_tokens"] / r["seconds"]
        r["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        gpu = ""
        if torch.cuda.is_available():
            peak = peak_bf16_flops(torch.cuda.get_device_name())
            r["mfu"] = mfu(r["tok_s"], n_params, peak) if peak else None
            gpu = f"  MFU {r['mfu']:.1%}" if peak else ""
            gpu += f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
            torch.cuda.reset_peak_memory_stats()
        results[name] = r
        base = results.get("article", r)["tok_s"]
        print(f"{name:9s} useful tokens/s {r['tok_s']:8.1f}  ({r['tok_s'] / base:5.1f}x article)  "
              f"{r['seconds']:.1f}s for {r['useful_tokens']} useful tokens  (wall {time.perf_counter() - t0:.0f}s, "
              f"peak RSS so far {r['peak_rss_mb']:.0f} MB){gpu}", flush=True)  # fmt: skip
    for baseline in ("hf", "hf_packed"):
        if baseline in results and "slmforge" in results:
            ratio = results["slmforge"]["tok_s"] / results[baseline]["tok_s"]
            print(f"slmforge / {baseline} = {ratio:.2f}x")


if __name__ == "__main__":
    main()
