"""The built-in synthetic data generators: determinism, disjoint splits, label balance, gold correctness."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from decimal import Decimal

import pytest

from slmforge.data.generators import GENERATORS, generate_splits, invoices, product_descriptions, tickets


@pytest.fixture(scope="module")
def ticket_rows() -> list[dict]:
    return tickets.generate(2000, seed=7)


@pytest.fixture(scope="module")
def invoice_rows() -> list[dict]:
    return invoices.generate(800, seed=7)


@pytest.fixture(scope="module")
def product_rows() -> list[dict]:
    return product_descriptions.generate(800, seed=7)


def test_registry_names() -> None:
    assert set(GENERATORS) == {"tickets", "invoices", "product_descriptions", "entities"}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_deterministic_and_seed_sensitive(name: str) -> None:
    gen = GENERATORS[name]
    a, b, c = gen(50, 1), gen(50, 1), gen(50, 2)
    assert a == b
    assert [r["text"] for r in a] != [r["text"] for r in c]
    assert len(a) == 50


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_prefix_stable(name: str) -> None:
    # generate_splits relies on generate(m)[:n] == generate(n) to top up after duplicates.
    gen = GENERATORS[name]
    assert gen(120, 3)[:40] == gen(40, 3)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_unique_string_ids(name: str) -> None:
    rows = GENERATORS[name](500, 11)
    ids = [r["id"] for r in rows]
    assert all(isinstance(i, str) for i in ids)
    assert len(set(ids)) == 500


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generate_splits_disjoint_sized_and_deterministic(name: str) -> None:
    sizes = {"train": 400, "validation": 50, "test": 150}
    splits = generate_splits(name, sizes, seed=5)
    assert list(splits) == ["train", "validation", "test"]
    assert {k: len(v) for k, v in splits.items()} == sizes
    texts = [r["text"] for rows in splits.values() for r in rows]
    assert len(set(texts)) == len(texts) == 600
    ids = [r["id"] for rows in splits.values() for r in rows]
    assert len(set(ids)) == 600
    assert splits["test"][0]["id"] == f"{name}-5-test-0"
    assert generate_splits(name, sizes, seed=5) == splits
    assert generate_splits(name, sizes, seed=6)["test"] != splits["test"]


def test_test_split_independent_of_train_size() -> None:
    small = generate_splits("tickets", {"train": 50, "test": 100}, seed=1)
    big = generate_splits("tickets", {"train": 900, "test": 100}, seed=1)
    assert small["test"] == big["test"]
    assert {r["text"] for r in big["train"]}.isdisjoint(r["text"] for r in big["test"])


def test_generate_splits_dedupes_when_generator_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    def tiny(n: int, seed: int) -> list[dict]:
        # Only 30 distinct texts: forces duplicate skipping and a top-up across splits.
        return [{"id": f"x-{i}", "text": f"t{(seed + i) % 30}"} for i in range(n)]

    monkeypatch.setitem(GENERATORS, "tiny", tiny)
    splits = generate_splits("tiny", {"train": 20, "test": 10}, seed=0)
    texts = [r["text"] for rows in splits.values() for r in rows]
    assert sorted(texts) == sorted(f"t{i}" for i in range(30))
    with pytest.raises(ValueError, match="distinct texts"):
        generate_splits("tiny", {"train": 25, "test": 10}, seed=0)


def test_unknown_generator_lists_known_names() -> None:
    with pytest.raises(ValueError) as exc:
        generate_splits("tickts", {"train": 10}, seed=0)
    msg = str(exc.value)
    assert "tickts" in msg
    for known in ("tickets", "invoices", "product_descriptions"):
        assert known in msg


def test_negative_size_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        generate_splits("tickets", {"train": -1}, seed=0)


# --- tickets -----------------------------------------------------------------------------------


def test_ticket_schema_and_balance(ticket_rows: list[dict]) -> None:
    assert len(tickets.CATEGORIES) == 8 and tickets.URGENCIES == ["low", "medium", "high"]
    for r in ticket_rows:
        assert set(r) == {"id", "text", "label", "urgency"}
        assert r["label"] in tickets.CATEGORIES and r["urgency"] in tickets.URGENCIES
        assert 10 <= len(r["text"]) <= 1200
    counts = Counter(r["label"] for r in ticket_rows)
    assert set(counts) == set(tickets.CATEGORIES)
    # Categories are dealt in shuffled blocks of 8, so 2000 rows are exactly balanced.
    assert min(counts.values()) == max(counts.values()) == 250
    urg = Counter(r["urgency"] for r in ticket_rows)
    assert all(urg[u] >= 200 for u in tickets.URGENCIES)
    assert len({r["text"] for r in ticket_rows}) >= 0.95 * len(ticket_rows)


def test_ticket_templates_many_and_all_used() -> None:
    import random

    rng = random.Random(0)
    for cat in tickets.CATEGORIES:
        assert len(tickets._CORE[cat]) >= 15, cat
        used = {tickets._make_ticket(rng, cat)[2] for _ in range(400)} - {-1}
        assert used == set(range(len(tickets._CORE[cat]))), cat


def test_ticket_surface_variety(ticket_rows: list[dict]) -> None:
    by_cat: dict[str, set[str]] = {c: set() for c in tickets.CATEGORIES}
    for r in ticket_rows:
        by_cat[r["label"]].add(" ".join(r["text"].split()[:5]).lower())
    for cat, openings in by_cat.items():
        assert len(openings) >= 60, (cat, len(openings))  # of 250 tickets per category
    lengths = [len(r["text"]) for r in ticket_rows]
    assert min(lengths) < 60 and max(lengths) > 300  # one-liners to multi-sentence emails
    assert sum("\n" in r["text"] for r in ticket_rows) > 400  # email-style tickets


def test_ticket_urgency_follows_wording(ticket_rows: list[dict]) -> None:
    markers = re.compile(
        r"asap|(?<!not )urgent|immediately|resolved today|right now|production is down|!!!|within the hour",
        re.I,
    )
    high = [r for r in ticket_rows if r["urgency"] == "high"]
    low = [r for r in ticket_rows if r["urgency"] == "low"]
    assert sum(bool(markers.search(r["text"])) for r in high) / len(high) > 0.6
    assert sum(bool(markers.search(r["text"])) for r in low) / len(low) < 0.1
    calm = re.compile(r"no rush|not urgent|no hurry|whenever|take your time|low priority", re.I)
    assert sum(bool(calm.search(r["text"])) for r in low) / len(low) > 0.7


def test_ticket_confusers_present(ticket_rows: list[dict]) -> None:
    # Main intent decides the label, other categories' vocabulary appears too.
    cancel_with_refund = [
        r for r in ticket_rows if r["label"] == "cancellation" and "refund" in r["text"].lower()
    ]
    billing_with_login = [r for r in ticket_rows if r["label"] == "billing" and "log" in r["text"].lower()]
    assert len(cancel_with_refund) >= 10 and len(billing_with_login) >= 10


# --- invoices ----------------------------------------------------------------------------------

_MONTHS = [dt.date(2000, m, 1).strftime("%B") for m in range(1, 13)]


def _date_renderings(d: dt.date) -> set[str]:
    month = _MONTHS[d.month - 1]
    return {
        d.isoformat(),
        f"{d.month:02d}/{d.day:02d}/{d.year}",
        f"{d.day:02d}/{d.month:02d}/{d.year}",
        f"{d.day:02d}.{d.month:02d}.{d.year}",
        f"{month} {d.day}, {d.year}",
        f"{month[:3]} {d.day}, {d.year}",
        f"{d.day} {month} {d.year}",
        f"{d.day:02d} {month[:3]} {d.year}",
    }


def _money_renderings(x: float) -> set[str]:
    en = f"{x:,.2f}"
    return {en, en.replace(",", "_").replace(".", ",").replace("_", ".")}


def test_invoice_schema(invoice_rows: list[dict]) -> None:
    assert invoices.SCHEMA == {
        "vendor": {"type": "string", "required": True},
        "date": {"type": "date", "required": True},
        "invoice_number": {"type": "string", "required": True},
        "currency": {"type": "enum", "values": ["USD", "EUR", "GBP"], "required": True},
        "total": {"type": "number", "required": True},
        "line_items": {"type": "list", "required": False},
    }
    for r in invoice_rows:
        f = r["fields"]
        assert set(f) == {*invoices.SCHEMA, "items"}  # items: the nested gold of invoices.ITEMS_SCHEMA
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", f["date"])
        assert f["currency"] in ("USD", "EUR", "GBP")
        assert isinstance(f["total"], float) and round(f["total"], 2) == f["total"] and f["total"] > 0
        assert f["line_items"] and all(isinstance(s, str) for s in f["line_items"])
        assert 200 <= len(r["text"]) <= 900
    assert len(Counter(r["fields"]["currency"] for r in invoice_rows)) == 3


def test_invoice_items_gold(invoice_rows: list[dict]) -> None:
    for r in invoice_rows:
        text, f = r["text"], r["fields"]
        assert [it["description"] for it in f["items"]] == f["line_items"]
        for it in f["items"]:
            assert list(it) == ["description", "quantity", "unit_price", "amount"]
            assert isinstance(it["quantity"], int) and it["quantity"] >= 1
            for money in (it["unit_price"], it["amount"]):
                assert isinstance(money, float) and round(money, 2) == money and money > 0
                assert any(s in text for s in _money_renderings(money)), (money, text)
            assert it["amount"] == pytest.approx(it["quantity"] * it["unit_price"], abs=0.005)
        # The printed lines add up to the subtotal, so the amounts are the ones in the document.
        assert sum(it["amount"] for it in f["items"]) <= f["total"] + 0.005


def test_invoice_items_do_not_change_the_rest() -> None:
    # Golden values from before the items field existed: the text and every other field are unchanged.
    first = invoices.generate(2, seed=7)
    assert first[0]["fields"] == {
        "vendor": "Atelier Lumière SARL",
        "date": "2024-03-19",
        "invoice_number": "R190122",
        "currency": "EUR",
        "total": 110.56,
        "line_items": ["Additional revision round"],
        "items": [
            {"description": "Additional revision round", "quantity": 1, "unit_price": 92.91, "amount": 92.91}
        ],
    }
    assert first[1]["fields"]["line_items"] == [
        "Business cards (500)",
        "A2 poster print",
        "Booklet binding",
        "Flyers A5 (1000)",
    ]
    # Every id, text and pre-existing field of 200 records, hashed with the generator as it was before.
    rows = invoices.generate(200, seed=7)
    without_items = [
        [r["id"], r["text"], {k: v for k, v in r["fields"].items() if k != "items"}] for r in rows
    ]
    blob = json.dumps(without_items, sort_keys=True, ensure_ascii=False).encode()
    assert (
        hashlib.sha256(blob).hexdigest() == "d7118d5bd613125ba40ba87cb53c056b1cbc6c74d26f14c1583c7b09b326b75b"
    )


def test_invoice_gold_values_appear_in_text(invoice_rows: list[dict]) -> None:
    for r in invoice_rows:
        text, f = r["text"], r["fields"]
        assert f["vendor"] in text
        assert f["invoice_number"] in text
        assert all(item in text for item in f["line_items"])
        gold = dt.date.fromisoformat(f["date"])
        assert any(s in text for s in _date_renderings(gold)), (f["date"], text)
        assert any(s in text for s in _money_renderings(f["total"])), (f["total"], text)


def test_invoice_arithmetic() -> None:
    import random

    rng = random.Random(3)
    for _ in range(300):
        inv, text = invoices._make_invoice(rng)
        line_sum = sum((q * p for _, q, p in inv.items), Decimal(0))
        assert inv.subtotal == line_sum
        assert inv.total == inv.subtotal + inv.tax
        assert abs(inv.tax - inv.subtotal * inv.tax_rate) <= Decimal("0.005")
        # The printed subtotal, tax and total all appear, so the document is self-consistent.
        for amount in (inv.subtotal, inv.tax, inv.total):
            assert any(s in text for s in _money_renderings(float(amount))), (amount, text)


def test_invoice_date_formats_vary(invoice_rows: list[dict]) -> None:
    patterns = {
        "iso": r"\b\d{4}-\d{2}-\d{2}\b",
        "slash": r"\b\d{2}/\d{2}/\d{4}\b",
        "dot": r"\b\d{2}\.\d{2}\.\d{4}\b",
        "month_name": r"\b(?:" + "|".join(m[:3] for m in _MONTHS) + r")[a-z]*\b",
    }
    for label, pat in patterns.items():
        assert sum(bool(re.search(pat, r["text"])) for r in invoice_rows) >= 50, label


# --- product descriptions ----------------------------------------------------------------------


def test_product_outputs_follow_template(product_rows: list[dict]) -> None:
    regex = re.compile(product_descriptions.TEMPLATE_REGEX)
    for r in product_rows:
        out = r["output"]
        assert regex.match(out), out
        assert out.startswith("Meet the ")
        assert 25 <= len(out.split()) <= 60
        name, price = r["required_phrases"]
        assert name in out and price in out
        assert out.rstrip(".").endswith(price)
        assert f"Product: {name}" in r["text"] and f"Price: {price}" in r["text"]


def test_product_output_is_function_of_spec(product_rows: list[dict]) -> None:
    for r in product_rows[:200]:
        spec = dict(line.split(": ", 1) for line in r["text"].splitlines())
        assert list(spec) == product_descriptions.SPEC_KEYS
        assert product_descriptions.describe(spec) == r["output"]
    tones = Counter(
        dict(line.split(": ", 1) for line in r["text"].splitlines())["Tone"] for r in product_rows
    )
    assert set(tones) == set(product_descriptions.TONES)
    assert len({r["text"] for r in product_rows}) == len(product_rows)


def test_product_regex_rejects_off_template() -> None:
    regex = re.compile(product_descriptions.TEMPLATE_REGEX)
    assert not regex.match("Introducing the Nova Lamp. Only $10.00.")
    assert not regex.match("Meet the Nova Lamp. It is nice.")
