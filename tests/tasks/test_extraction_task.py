"""ExtractionTask: canonical targets, never-raising parsing, per-example verdicts and metrics by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from slmforge.data.generators import invoices
from slmforge.metrics.extraction import scored_fields
from slmforge.records import PredictionRow
from slmforge.schema import parse_output
from slmforge.tasks.base import TaskError
from slmforge.tasks.extraction import ExtractionTask

SMALL = {"name": {"type": "string"}, "total": {"type": "number"}}
CONF = Path(__file__).resolve().parents[2] / "conf"


class CharTokenizer:
    """One token per character: enough for the length bound."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) for c in text]}


def _row(raw: str | None, gold: dict, pred: object = None) -> PredictionRow:
    return PredictionRow(
        id="x", text="", gold=gold, pred=pred, confidence=None, correct=0.0, latency_ms=0.0, raw_output=raw
    )


def test_target_is_canonical_json_in_schema_order() -> None:
    task = ExtractionTask(invoices.SCHEMA)
    ex = {
        "id": "1",
        "text": "...",
        "fields": {
            "total": "1,234.50",
            "currency": "usd",
            "vendor": "Müller GmbH",
            "date": "14.03.2024",
            "invoice_number": 17,
            "extra": "ignored",
        },
    }
    target = task.target(ex)
    assert target == (
        '{"vendor":"Müller GmbH","date":"2024-03-14","invoice_number":"17","currency":"USD","total":1234.5}'
    )
    pred, details = task.parse(target)
    assert pred == json.loads(target)
    assert details == {"valid_json": True, "schema_ok": True, "errors": []}
    assert task.correct(pred, ex["fields"]) == 1.0
    # Few-shot turns use the same canonical target as the assistant answer.
    msgs = task.messages(ex, shots=[ex])
    assert msgs[-2] == {"role": "assistant", "content": target}


def test_prompt_lists_fields_unless_disabled() -> None:
    ex = {"text": "Invoice from ACME"}
    with_schema = ExtractionTask(SMALL).user_content(ex)
    assert "- name (string, required)" in with_schema and "- total (number, required)" in with_schema
    assert with_schema.endswith("Document:\nInvoice from ACME")
    assert "- name" not in ExtractionTask(SMALL, schema_in_prompt=False).user_content(ex)


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "no json here", '{"name": "A", "total":', "[1, 2]", '{"name": NaN}', None, "{{{{"],
)
def test_parse_malformed_gives_details_not_exceptions(raw: str | None) -> None:
    task = ExtractionTask(SMALL)
    pred, details = task.parse(raw)  # type: ignore[arg-type]
    assert pred is None
    assert details["schema_ok"] is False
    assert details["errors"]
    assert task.correct(pred, {"name": "A", "total": 1}) == 0.0
    row = task.row_details(raw, {"name": "A", "total": 1})  # type: ignore[arg-type]
    assert row["field_correct"] == {"name": False, "total": False}
    assert row["schema_ok"] is False


def test_parse_wrong_types_and_prose() -> None:
    task = ExtractionTask(SMALL)
    pred, details = task.parse('Sure! {"name": "Ann", "total": "12.50"} Hope this helps.')
    assert pred == {"name": "Ann", "total": "12.50"}
    assert details["valid_json"] is True and details["schema_ok"] is False
    assert any("total" in e for e in details["errors"])
    # strict types: the string "12.50" in a number field is wrong, the name is right
    assert task.correct(pred, {"name": "ann", "total": 12.5}) == 0.5
    assert task.row_details('{"name":"Ann","total":12.5}', {"name": "ann", "total": "12.50"}) == {
        "field_correct": {"name": True, "total": True},
        "valid_json": True,
        "schema_ok": True,
        "errors": [],
    }


def test_compute_metrics_on_hand_made_rows() -> None:
    task = ExtractionTask(SMALL)
    rows = [
        _row('{"name":"Ann","total":12.5}', {"name": "ann", "total": "12.50"}),  # tp 2
        _row("oops", {"name": "Bob", "total": 3}),  # fn 2
        _row('{"name":"Cy","total":4}', {"name": "Cy", "total": 5}),  # tp 1, fp 1, fn 1
        _row(None, {"name": "Di", "total": 1}, pred={"name": "Di", "total": 1}),  # falls back to pred: tp 2
    ]
    m = task.compute_metrics(rows)
    tp, fp, fn = 5, 1, 3
    assert m["n"] == 4
    assert m["field_micro_precision"] == pytest.approx(tp / (tp + fp))
    assert m["field_micro_recall"] == pytest.approx(tp / (tp + fn))
    assert m["field_micro_f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["json_validity"] == pytest.approx(3 / 4)
    assert m["schema_adherence"] == pytest.approx(3 / 4)
    assert m["record_exact_match"] == pytest.approx(2 / 4)
    assert m["per_field"]["total"]["exact_match"] == pytest.approx(2 / 4)
    assert task.primary_metric == "field_micro_f1"
    assert task.compute_metrics([])["n"] == 0


def test_setup_names_split_row_and_field() -> None:
    task = ExtractionTask(SMALL)
    good = [{"id": "a", "text": "t", "fields": {"name": "A", "total": "3.10"}}]
    task.setup(good, {"validation": good})
    bad = [*good, {"id": "b", "text": "t", "fields": {"name": "B"}}]
    with pytest.raises(TaskError, match=r"validation split, row 1 \(id=b\).*'total'.*required: false"):
        task.setup(good, {"validation": bad})
    with pytest.raises(TaskError, match=r"train split, row 0 .*not a number"):
        task.setup([{"id": "c", "text": "t", "fields": {"name": "C", "total": "lots"}}], {})
    with pytest.raises(TaskError, match="'fields' must be a mapping"):
        task.setup([{"id": "d", "text": "t", "fields": "name=D"}], {})


def test_setup_learns_value_bounds_and_length_bound() -> None:
    task = ExtractionTask(invoices.SCHEMA)
    assert task.value_bounds() == {}
    train = invoices.generate(20, seed=0)
    task.setup(train, {})
    longest = max(
        len(v)
        for ex in train
        for value in json.loads(task.target(ex)).values()
        for v in (value if isinstance(value, list) else [value])
        if isinstance(v, str)
    )
    assert task.value_bounds()["max_string_chars"] == max(32, 2 * longest)
    assert task.value_bounds()["max_list_items"] >= 2 * max(len(ex["fields"]["line_items"]) for ex in train)
    bound = task.set_length_bound(CharTokenizer(), train)
    assert bound == max(len(task.target(ex)) for ex in train) + 1 + 8
    assert task.max_new_tokens == bound
    assert task.describe()["max_new_tokens"] == bound


def test_bad_config_raises_task_error() -> None:
    with pytest.raises(TaskError, match="unknown type"):
        ExtractionTask({"x": {"type": "integer"}})
    with pytest.raises(TaskError, match="unknown key"):
        ExtractionTask(SMALL, normalization={"casefold": True})
    task = ExtractionTask(SMALL, normalization={"numbers": False})
    assert task.normalization.numbers is False


# --- nested schemas -------------------------------------------------------------------------------


NESTED = {
    "vendor": {"type": "string"},
    "buyer": {"type": "object", "fields": {"name": {"type": "string"}}},
    "line_items": {
        "type": "list",
        "items": {
            "type": "object",
            "fields": {"description": {"type": "string"}, "quantity": {"type": "number"}},
        },
    },
    "tags": {"type": "list", "required": False},
}


def test_setup_bounds_walk_nested_values() -> None:
    task = ExtractionTask(NESTED)
    long_description = "A much longer line description here"  # 35 characters, inside a list of objects
    record = {"vendor": "Acme", "buyer": {"name": "Ann"}, "line_items": [], "tags": ["x", "y"]}
    train = [
        {"id": "a", "text": "t", "fields": record},
        {"id": "b", "text": "t", "fields": {**record, "line_items": [{"description": long_description, "quantity": 1}] * 3}},
    ]  # fmt: skip
    task.setup(train, {})
    assert (task.longest_string, task.longest_list) == (35, 3)
    assert task.value_bounds() == {"max_string_chars": 70, "max_list_items": 6}


def test_invoice_items_task_config_and_generated_gold() -> None:
    cfg = yaml.safe_load((CONF / "task" / "invoice_items.yaml").read_text())
    assert cfg["schema"] == invoices.ITEMS_SCHEMA
    task = ExtractionTask(**{k: v for k, v in cfg.items() if k != "_target_"})
    rows = invoices.generate(50, seed=3)
    task.setup(rows[:40], {"test": rows[40:]})  # every gold record renders and fits the schema
    target = task.target(rows[0])
    assert parse_output(target, task.schema).schema_ok
    assert json.loads(target)["items"] == rows[0]["fields"]["items"]
    assert task.correct(target, rows[0]["fields"]) == 1.0
    js = task.schema.to_json_schema()
    item = js["properties"]["items"]["items"]
    assert item["required"] == ["description", "quantity", "unit_price", "amount"]
    assert all(item["properties"][k]["minimum"] == 0 for k in ("quantity", "unit_price", "amount"))


def test_invoice_items_experiment_composes() -> None:
    import hydra
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="train", overrides=["experiment=invoice_items"])
    finally:
        GlobalHydra.instance().clear()
    assert cfg.data.name == "invoices"
    task = hydra.utils.instantiate(cfg.task, _convert_="all")
    # Hydra merges dicts: the flat invoice fields must not leak into this schema.
    assert task.schema.names == ["vendor", "date", "currency", "total", "items"]
    assert [f.name for f in scored_fields(task.schema)] == task.schema.names
