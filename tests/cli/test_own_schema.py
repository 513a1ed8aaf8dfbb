""" "Your own schema in five minutes", as a user does it: a task option file in their own config folder (not the
repository's), passed with Hydra's --config-dir, on their own JSONL data, through the real slmforge-evaluate.

The schema uses every field type: string (with a description), number with a minimum, date, enum, an optional
list of strings, an object (scored as dotted sub-fields) and a list of objects (items compared whole)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from slmforge.records import read_predictions, read_results

from clihelp import FAST, run_cli

TASK_YAML = """\
# A purchase-order schema kept outside the slmforge repository: myconf/task/purchase_orders.yaml
_target_: slmforge.tasks.extraction.ExtractionTask
schema:
  po_number: {type: string, description: "the order number, e.g. PO-1042"}
  supplier: {type: string}
  order_date: {type: date}
  currency: {type: enum, values: [USD, EUR, GBP]}
  total: {type: number, minimum: 0}
  tags: {type: list, required: false}
  ship_to:
    type: object
    fields:
      city: {type: string}
      country: {type: string}
  lines:
    type: list
    items:
      type: object
      fields:
        sku: {type: string}
        quantity: {type: number, minimum: 1}
        unit_price: {type: number, minimum: 0}
system_prompt: "You extract purchase orders and reply with JSON only."
instruction: "Extract the fields below from the purchase order. Reply with one JSON object only."
max_length: 768
"""
FIELDS = ["po_number", "supplier", "order_date", "currency", "total", "tags", "ship_to", "lines"]
SCORED = [
    "po_number",
    "supplier",
    "order_date",
    "currency",
    "total",
    "tags",
    "ship_to.city",
    "ship_to.country",
    "lines",
]


def _order(i: int, rng: random.Random) -> dict:
    lines = [
        {
            "sku": f"SKU-{rng.randint(100, 999)}",
            "quantity": rng.randint(1, 9),
            "unit_price": rng.randint(100, 9000) / 100,
        }
        for _ in range(rng.randint(1, 3))
    ]
    total = round(sum(item["quantity"] * item["unit_price"] for item in lines), 2)
    currency = rng.choice(["USD", "EUR", "GBP"])
    date = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    supplier = rng.choice(["Acme Tools", "Globex", "Initech", "Umbrella Supply"])
    city, country = rng.choice([("Leeds", "UK"), ("Lyon", "FR"), ("Austin", "US")])
    text = "\n".join(
        [
            f"PURCHASE ORDER PO-{1000 + i}",
            f"Supplier: {supplier}",
            f"Date: {date}",
            *(f"{item['sku']}  x{item['quantity']}  @ {item['unit_price']:.2f}" for item in lines),
            f"Total: {total:.2f} {currency}",
            f"Ship to: {city}, {country}",
        ]
    )
    fields = {
        "po_number": f"PO-{1000 + i}", "supplier": supplier, "order_date": date, "currency": currency,
        "total": total, "ship_to": {"city": city, "country": country}, "lines": lines,
    }  # fmt: skip
    if i % 3 == 0:
        fields["tags"] = ["urgent"]
    return {"id": f"po-{i}", "text": text, "fields": fields}


def test_a_schema_from_the_users_own_config_folder(tmp_path: Path) -> None:
    (tmp_path / "myconf" / "task").mkdir(parents=True)
    (tmp_path / "myconf" / "task" / "purchase_orders.yaml").write_text(TASK_YAML)
    rng = random.Random(0)
    (tmp_path / "data").mkdir()
    for split, ids in (("train", range(8)), ("test", range(8, 12))):
        rows = [_order(i, rng) for i in ids]
        (tmp_path / "data" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-evaluate", "--config-dir", "myconf", "task=purchase_orders",
        "data=jsonl", "data.name=purchase_orders", "data.train_path=data/train.jsonl",
        "data.test_path=data/test.jsonl", "data.fields_field=fields",
        *FAST, "eval.constrained=true", "logger=csv", f"hydra.run.dir={run}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    record = read_results(run)
    assert record.task == "extraction" and record.n == 4
    assert record.predictor["decoding"] == "constrained_greedy"
    # The record scores the user's schema: every field, objects as dotted sub-fields, lists of objects whole.
    assert list(record.metrics["per_field"]) == SCORED
    # An untrained (random) model, but decoding under the schema: every answer is valid JSON that fits it.
    assert record.metrics["json_validity"] == 1.0 and record.metrics["schema_adherence"] == 1.0
    rows = read_predictions(run)
    assert len(rows) == 4
    for row in rows:
        assert row.details["valid_json"] is True and row.details["schema_ok"] is True
        assert set(row.pred) <= set(FIELDS) and set(FIELDS) - set(row.pred) <= {"tags"}
        assert isinstance(row.pred["ship_to"], dict) and set(row.pred["ship_to"]) == {"city", "country"}
        assert all(set(item) == {"sku", "quantity", "unit_price"} for item in row.pred["lines"])
        assert row.pred["total"] >= 0 and all(item["quantity"] >= 1 for item in row.pred["lines"])
    # The saved config keeps the schema, so the run can be re-evaluated without the folder.
    saved = (run / ".hydra" / "config.yaml").read_text()
    assert "purchase_orders" in saved and "unit_price" in saved
