"""Classification evaluation speed: the article's per-example generate(256) + string match vs slmforge's
batched label scoring (exact) and label-trie decoding, on the same model and examples, measured in one run.

    python scripts/bench_eval_speed.py --n 16 --article-prompt          # base model zero-shot
    python scripts/bench_eval_speed.py --n 48 --adapter <run>/adapter   # a fine-tuned model

Prints examples/s and accuracy per variant and the ratio to the article's recipe. The article's recipe
generates up to 256 new tokens per example, one example at a time, through the PEFT model as trained,
then compares the stripped text with the gold label. Its prompt is slmforge's (the one the fine-tuned
model was trained on); ``--article-prompt`` gives it the article's own instruction format instead (the
same user message between ``### Input:`` and ``### Output:``, no chat template): what the article's
recipe sends a base model, which then runs on to 256 tokens. slmforge variants run as ``slmforge-evaluate`` runs
them: the evaluation runner's length-sorted batches, the LoRA adapter merged into the weights
(``eval.merge_adapter``; ``trie_unmerged`` shows what merging is worth), the prompt head every example
shares (system turn, instruction, label list) encoded once. ``--variants`` picks a subset.

``--dtype bfloat16`` runs the slmforge variants with bf16 weights (``model.dtype=bfloat16``: several times
faster matrix products on CPUs with AMX / AVX-512 BF16, emulated and slower without). The article's recipe
then runs twice, in float32 and in bfloat16, and the ratios are to the faster of the two; the variant
``scoring_fp32`` (exact scoring in float32, run before the cast) is the accuracy every variant is held to.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from slmforge.build import build_setup, compose_config
from slmforge.evaluation.runner import predict_rows
from slmforge.modeling.adapters import merged_adapter
from slmforge.prediction.label_scoring import LabelScorer
from slmforge.prompting import render_prompt


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/banking77"))
    p.add_argument(
        "--model", choices=["smollm2-135m", "tiny"], default="smollm2-135m", help="tiny: smoke test"
    )
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--adapter", type=Path, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--label-list", action="store_true", help="list all labels in the prompt")
    p.add_argument("--article-prompt", action="store_true", help="the article's ### Input/### Output format")
    p.add_argument(
        "--variants",
        default="scoring,trie,trie_greedy",
        help="of scoring,scoring_fp32,scoring_nocache,trie,trie_greedy,trie_nocache,trie_unmerged",
    )
    p.add_argument("--max-new-tokens", type=int, default=256, help="the article's generate() bound")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="slmforge's weights")
    p.add_argument(
        "--article",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the article's recipe (--no-article: accuracy and agreement only, e.g. on a large --n)",
    )
    p.add_argument("overrides", nargs="*", help="Hydra overrides on top (e.g. task.system_prompt=null)")
    args = p.parse_args()
    setup = build_setup(
        compose_config(
            "evaluate",
            [
                f"model={args.model}", "data=jsonl", f"data.train_path={args.data / 'train.jsonl'}",
                f"data.test_path={args.data / 'test.jsonl'}", f"task.label_list_in_prompt={args.label_list}",
                "logger=none",
                *args.overrides,
            ],
        )
    )  # fmt: skip
    lm, task = setup.lm, setup.task
    assert lm is not None
    test = list(setup.splits.test)
    random.Random(0).shuffle(test)  # the same rows as every earlier run of this benchmark
    test = [{**r, "id": str(i)} for i, r in enumerate(test[: args.n])]
    model = lm.model
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(args.adapter))
    model.eval()
    tok = lm.tokenizer
    print(f"# {len(test)} {args.data.name} test examples, {len(task.labels)} labels, "
          f"{'fine-tuned' if args.adapter else 'base'} {args.model}, torch threads={torch.get_num_threads()}")  # fmt: skip

    def article_recipe() -> dict[str, float]:
        """Per-example generate(256) + string match, in the model's current dtype."""
        t0 = time.perf_counter()
        correct = 0
        gen_tokens = 0
        with torch.no_grad():
            for ex in test:
                if args.article_prompt:
                    user = next(m["content"] for m in task.messages(ex) if m["role"] == "user")
                    prompt = f"### Input:\n{user}\n\n### Output:\n"
                else:
                    prompt = render_prompt(tok, task.messages(ex))
                ids = tok(prompt, return_tensors="pt", add_special_tokens=False)
                out = model.generate(
                    **ids, max_new_tokens=args.max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,  # the end of an answer: a fine-tuned model stops there
                )  # fmt: skip
                new = out[0, ids["input_ids"].shape[1] :]
                gen_tokens += len(new)
                correct += tok.decode(new, skip_special_tokens=True).strip() == ex["label"]
        secs = time.perf_counter() - t0
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        print(f"article  per-example generate(256), {dtype}: {len(test) / secs:.3f} ex/s  "
              f"accuracy {correct / len(test):.3f}  ({gen_tokens / len(test):.0f} new tokens/example)", flush=True)  # fmt: skip
        return {"ex_s": len(test) / secs, "acc": correct / len(test)}

    article = article_recipe() if args.article else None
    results = {"article": article}
    from slmforge.prediction.label_trie import LabelTriePredictor

    variants = {
        "scoring": lambda: LabelScorer(model, tok, task, batch_size=args.batch_size),
        "scoring_fp32": lambda: LabelScorer(model, tok, task, batch_size=args.batch_size),
        "scoring_nocache": lambda: LabelScorer(
            model, tok, task, batch_size=args.batch_size, prefix_cache=False
        ),
        "trie": lambda: LabelTriePredictor(model, tok, task, batch_size=args.batch_size),
        "trie_greedy": lambda: LabelTriePredictor(model, tok, task, batch_size=args.batch_size, exact=False),
        "trie_nocache": lambda: LabelTriePredictor(
            model, tok, task, batch_size=args.batch_size, prefix_cache=False
        ),
        "trie_unmerged": lambda: LabelTriePredictor(model, tok, task, batch_size=args.batch_size),
    }
    names = args.variants.split(",")
    if "scoring_fp32" in names:  # in float32, before any cast
        names = ["scoring_fp32", *(n for n in names if n != "scoring_fp32")]
    for name in names:
        if (
            name != "scoring_fp32"
            and args.dtype != "float32"
            and next(model.parameters()).dtype == torch.float32
        ):
            model.to(getattr(torch, args.dtype))
            # The article's recipe in the same precision too: the faster of its two runs is the baseline.
            if article is not None:
                other = article_recipe()
                article = other if other["ex_s"] > article["ex_s"] else article
        predictor = variants[name]()
        with merged_adapter(model, enabled=not name.endswith("_unmerged")):
            predictor.predict(test[:2])  # warm-up
            t0 = time.perf_counter()
            preds = predict_rows(predictor, task, test)
            secs = time.perf_counter() - t0
        acc = sum(pr.pred == ex["label"] for pr, ex in zip(preds, test, strict=True)) / len(test)
        results[name] = {"ex_s": len(test) / secs, "acc": acc, "preds": [pr.pred for pr in preds]}
        nodes = [pr.details["searched_nodes"] for pr in preds if "searched_nodes" in pr.details]
        searched = f"  {sum(nodes) / len(nodes):.1f} trie tokens/row" if nodes else ""
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        ratio = f"  ({len(test) / secs / article['ex_s']:.1f}x article)" if article else ""
        print(f"slmforge {name:16s} {dtype:8s}: {len(test) / secs:7.3f} ex/s  accuracy {acc:.3f}"
              f"{ratio}{searched}", flush=True)  # fmt: skip
    for ref in ("scoring", "scoring_fp32"):
        for name in ("trie", "trie_greedy", "scoring"):
            if ref in results and name in results and name != ref:
                pairs = zip(results[ref]["preds"], results[name]["preds"], strict=True)
                print(
                    f"{name} agrees with exact scoring ({ref}) on {sum(a == b for a, b in pairs)}/{len(test)} examples"
                )


if __name__ == "__main__":
    main()
