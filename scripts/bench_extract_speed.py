"""Extraction evaluation speed: the article's per-example generate(256) + JSON parse vs slmforge's batched
greedy generation (and schema-constrained generation), same model and examples, measured in one run.

    python scripts/bench_extract_speed.py --n 24 --adapter <invoices run>/adapter   # a fine-tuned model
    python scripts/bench_extract_speed.py --n 8                                      # base model, zero-shot
    python scripts/bench_extract_speed.py --masks 64                                 # mask time only, old vs new

Data and task come from ``experiment=invoices`` (the built-in invoice generator, its test split); Hydra
overrides after ``--`` replace that default, e.g. ``-- experiment=sroie paths.shared_data=../shared/data``. The
article's recipe generates up to 256 new tokens one example at a time through the PEFT model as trained,
stopping at the tokenizer's end-of-turn token. slmforge variants run as ``slmforge-evaluate`` runs them:
the runner's length-sorted batches, stop at the end of the JSON object, the adapter merged. Prints
examples/s, field micro-F1 and JSON validity per variant and the ratio to the article's recipe.

``--masks N`` times the constrained-decoding mask alone on the canonical targets of N test examples,
feeding each target token by token: the llguidance engine (one row, and a batch of 8 rows per call) against
the lm-format-enforcer mask it replaced (``scripts/baselines/lmfe_json_constraint.py``, needs
``pip install -e .[bench]``), both under the bounds learned from the training split. Prints milliseconds per
token and how many canonical targets each mask refused somewhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from slmforge.build import build_setup
from slmforge.config import config_dir
from slmforge.evaluation.runner import predict_rows, to_row
from slmforge.modeling.adapters import merged_adapter
from slmforge.prediction.base import Prediction
from slmforge.prediction.constrained import GrammarConstraint
from slmforge.prediction.factory import build_predictor
from slmforge.prompting import render_prompt


def _old_engine():
    """The lm-format-enforcer constraint this repository used before llguidance, or None if not installed."""
    path = Path(__file__).parent / "baselines" / "lmfe_json_constraint.py"
    try:
        spec = importlib.util.spec_from_file_location("lmfe_json_constraint", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except ImportError as e:
        print(f"old engine skipped ({e}; pip install -e .[bench])")
        return None
    return module


def _time_masks(session_of, targets: list[list[int]], rows_per_call: int = 1) -> tuple[float, int]:
    """(ms per row-token, targets refused somewhere): each target fed token by token through a fresh
    session's mask, ``rows_per_call`` targets per mask call."""
    refused, tokens, secs = 0, 0, 0.0
    for start in range(0, len(targets), rows_per_call):
        chunk = targets[start : start + rows_per_call]
        session = session_of()
        bad = [False] * len(chunk)
        for step in range(max(len(t) for t in chunk)):
            live = [r for r, t in enumerate(chunk) if step < len(t) and not bad[r]]
            if not live:
                break
            t0 = time.perf_counter()
            mask = (
                session.mask([chunk[r][:step] for r in live], live)
                if rows_per_call > 1
                else session.mask([chunk[live[0]][:step]])
            )
            secs += time.perf_counter() - t0
            tokens += len(live)
            for b, r in enumerate(live):
                if not bool(mask[b, chunk[r][step]]):
                    bad[r] = True
        refused += sum(bad)
    return 1000 * secs / max(tokens, 1), refused


def mask_speed(task, tok, train: list, test: list) -> None:
    task.setup(train, {})
    eos = tok.eos_token_id
    targets = [tok(task.target(ex), add_special_tokens=False)["input_ids"] + [eos] for ex in test]
    vocab = len(tok)
    grammar = task.output_grammar(None, {})
    new = GrammarConstraint.static(tok, grammar)
    mean_tokens = sum(map(len, targets)) / len(targets)
    print(f"# mask time on {len(targets)} canonical targets ({mean_tokens:.0f} tokens each), vocab {vocab}, "
          f"bounds {task.value_bounds()}, torch threads={torch.get_num_threads()}")  # fmt: skip
    results = {}
    old = _old_engine()
    if old is not None:
        constraint = old.JsonConstraint.for_schema(tok, task.schema, **task.value_bounds())
        constraint.session(vocab)  # builds the tokenizer tables once (cached), outside the timing
        results["lm-format-enforcer, 1 row"] = _time_masks(lambda: constraint.session(vocab), targets)
    new.session(vocab).mask([[]])  # warm-up: compiles the grammar, builds the token trie
    results["llguidance, 1 row"] = _time_masks(lambda: new.session(vocab), targets)
    results["llguidance, 8 rows per call"] = _time_masks(lambda: new.session(vocab), targets, rows_per_call=8)
    base = results.get("lm-format-enforcer, 1 row", (None, 0))[0]
    for name, (ms, refused) in results.items():
        ratio = f"  ({base / ms:.1f}x less than lm-format-enforcer)" if base and "llguidance" in name else ""
        print(
            f"{name:30s}: {ms:7.3f} ms per token, refused {refused}/{len(targets)} targets{ratio}", flush=True
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=16, help="test examples")
    p.add_argument("--adapter", type=Path, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--variants", default="batched,constrained", help="of batched,constrained")
    p.add_argument("--max-new-tokens", type=int, default=256, help="the article's generate() bound")
    p.add_argument("--masks", type=int, default=0, help="time only the masks, on this many test targets")
    p.add_argument("overrides", nargs="*", help="Hydra overrides (default: experiment=invoices)")
    args = p.parse_args()
    overrides = args.overrides or ["experiment=invoices"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    setup = build_setup(cfg)
    splits, task, lm = setup.splits, setup.task, setup.lm
    assert lm is not None
    model, tok = lm.model, lm.tokenizer
    if args.masks:
        mask_speed(task, tok, list(splits.train), list(splits.test[: args.masks]))
        return
    if args.adapter:
        from peft import PeftModel

        model = lm.model = PeftModel.from_pretrained(model, str(args.adapter))
    model.eval()
    test = list(splits.test[: args.n])
    print(f"# {len(test)} test examples ({' '.join(overrides)}), {'fine-tuned' if args.adapter else 'base'} "
          f"SmolLM2-135M, torch threads={torch.get_num_threads()}")  # fmt: skip

    def summary(rows: list, secs: float) -> dict[str, float]:
        metrics = task.compute_metrics(rows)
        return {"ex_s": len(rows) / secs, "f1": metrics["field_micro_f1"], "valid": metrics["json_validity"]}

    t0 = time.perf_counter()
    rows, new_tokens = [], 0
    with torch.no_grad():
        for ex in test:
            ids = tok(render_prompt(tok, task.messages(ex)), return_tensors="pt", add_special_tokens=False)
            out = model.generate(
                **ids, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )  # fmt: skip
            new = out[0, ids["input_ids"].shape[1] :]
            new_tokens += len(new)
            text = tok.decode(new, skip_special_tokens=True)
            pred, _ = task.parse(text)
            rows.append(
                to_row(task, ex, Prediction(pred=pred, confidence=None, latency_ms=0.0, raw_output=text))
            )
    article = summary(rows, time.perf_counter() - t0)
    print(f"article  per-example generate(256): {article['ex_s']:.3f} ex/s  field F1 {article['f1']:.3f}  "
          f"JSON valid {article['valid']:.3f}  ({new_tokens / len(test):.0f} new tokens/example)", flush=True)  # fmt: skip

    for name in args.variants.split(","):
        predictor = build_predictor(lm, task, args.batch_size, constrained=name == "constrained")
        with merged_adapter(model):
            predictor.predict(test[:1])  # warm-up
            t0 = time.perf_counter()
            rows = predict_rows(predictor, task, test)
            result = summary(rows, time.perf_counter() - t0)
        print(f"slmforge {name:12s}: {result['ex_s']:7.3f} ex/s  field F1 {result['f1']:.3f}  "
              f"JSON valid {result['valid']:.3f}  ({result['ex_s'] / article['ex_s']:.1f}x article)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
