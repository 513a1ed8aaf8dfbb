"""The generator registry and the split rule: one generator -> disjoint train/validation/test splits."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

from slmforge.data.generators import entities, invoices, product_descriptions, tickets

GENERATORS: dict[str, Callable[[int, int], list[dict[str, Any]]]] = {
    "tickets": tickets.generate,
    "invoices": invoices.generate,
    "product_descriptions": product_descriptions.generate,
    "entities": entities.generate,
}

# Evaluation splits are filled first so they never change when only the train size changes
# (learning curves compare models on the very same test set); train then avoids their texts.
_SPLIT_PRIORITY = {"test": 0, "validation": 1, "val": 1, "dev": 1}


def _split_seed(seed: int, split: str) -> int:
    # crc32, not hash(): str hashes are salted per process and would break reproducibility.
    return zlib.crc32(f"{seed}:{split}".encode())


def generate_splits(name: str, sizes: dict[str, int], seed: int) -> dict[str, list[dict[str, Any]]]:
    """Disjoint splits from the generator ``name``, e.g. ``sizes={"train": 800, "test": 300}``.

    Deterministic for ``seed``. Each split draws from its own seed stream (derived from ``seed`` and
    the split name), so a split's content does not depend on the other splits' sizes, except that
    no text appears twice: duplicates within a split, or of a text already taken by an evaluation
    split, are skipped and generation continues until every size is met. Ids are rewritten to
    ``"{name}-{seed}-{split}-{i}"`` so they are unique across splits.
    """
    if name not in GENERATORS:
        raise ValueError(f"unknown data generator {name!r}; known generators: {sorted(GENERATORS)}")
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 0}
    if bad:
        raise ValueError(f"split sizes must be non-negative integers, got {bad}")
    generate = GENERATORS[name]
    seen: set[str] = set()
    result: dict[str, list[dict[str, Any]]] = {}
    for split in sorted(sizes, key=lambda s: (_SPLIT_PRIORITY.get(s, 2), s)):
        size = sizes[split]
        split_seed = _split_seed(seed, split)
        # Generators yield a stable prefix for a seed (generate(m)[:n] == generate(n)), so asking
        # for more after a shortfall extends the same sequence instead of reshuffling it.
        n_try = size + size // 5 + 8
        while True:
            rows = []
            taken: set[str] = set()
            for row in generate(n_try, split_seed):
                if row["text"] in seen or row["text"] in taken:
                    continue
                taken.add(row["text"])
                rows.append(row)
                if len(rows) == size:
                    break
            if len(rows) == size:
                break
            if n_try > 20 * size + 1000:
                raise ValueError(
                    f"generator {name!r} produced only {len(rows)} distinct texts for split {split!r} "
                    f"(wanted {size}); lower the split sizes"
                )
            n_try *= 2
        for i, row in enumerate(rows):
            row["id"] = f"{name}-{seed}-{split}-{i}"
        seen |= taken
        result[split] = rows
    return {split: result[split] for split in sizes}  # caller's key order
