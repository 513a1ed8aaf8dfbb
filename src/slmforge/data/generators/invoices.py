"""Synthetic invoices and receipts with gold fields, for structured extraction.

All vendors, addresses, numbers and amounts are invented by a seeded RNG. The text varies the way
real documents do (layout, date format, currency notation, decoy numbers such as due dates,
customer ids and PO numbers) while the gold ``fields`` are always normalised: ISO dates, ISO 4217
currency codes and the total as a float rounded to 2 dp. Money is computed with :class:`Decimal`
so the printed subtotal + tax always equals the printed total exactly.

Each record: ``{"id", "text", "fields": {"vendor", "date", "invoice_number", "currency", "total",
"line_items", "items"}}``. :data:`SCHEMA` is the flat extraction schema (``line_items``: the descriptions);
:data:`ITEMS_SCHEMA` is a nested one whose ``items`` are the printed lines as objects
(``{"description", "quantity", "unit_price", "amount"}``, money as floats rounded to 2 dp), the schema of
``conf/task/invoice_items.yaml``. ``items`` was added after ``SCHEMA``'s fields: the text and every other
field are unchanged for a given seed.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

SCHEMA: dict[str, dict[str, Any]] = {
    "vendor": {"type": "string", "required": True},
    "date": {"type": "date", "required": True},
    "invoice_number": {"type": "string", "required": True},
    "currency": {"type": "enum", "values": ["USD", "EUR", "GBP"], "required": True},
    "total": {"type": "number", "required": True},
    "line_items": {"type": "list", "required": False},
}
# Nested extraction: the header fields and every printed line as an object (conf/task/invoice_items.yaml).
ITEMS_SCHEMA: dict[str, dict[str, Any]] = {
    "vendor": {"type": "string", "required": True},
    "date": {"type": "date", "required": True},
    "currency": {"type": "enum", "values": ["USD", "EUR", "GBP"], "required": True},
    "total": {"type": "number", "required": True, "minimum": 0},
    "items": {
        "type": "list",
        "required": True,
        "items": {
            "type": "object",
            "fields": {
                "description": {"type": "string", "required": True},
                "quantity": {"type": "number", "required": True, "minimum": 0},
                "unit_price": {"type": "number", "required": True, "minimum": 0},
                "amount": {"type": "number", "required": True, "minimum": 0},
            },
        },
    },
}
CURRENCIES: list[str] = ["USD", "EUR", "GBP"]

_CENT = Decimal("0.01")

# name, address, catalogue key; the currency decides the locale conventions used in the text.
_VENDORS: dict[str, list[tuple[str, str, str]]] = {
    "USD": [
        ("Brightline Office Supply", "410 Grant Ave, Oakland, CA 94612", "office"),
        ("Cascade Cloud Hosting, Inc.", "1200 Westlake Ave N, Seattle, WA 98109", "it"),
        ("Redwood Print & Copy", "88 Mission St, San Francisco, CA 94105", "print"),
        ("Blue Harbor Coffee Co.", "23 Wharf Rd, Portland, ME 04101", "cafe"),
        ("Summit IT Services LLC", "5600 Tennyson Pkwy, Plano, TX 75024", "it"),
        ("Maple Street Hardware", "317 Maple St, Burlington, VT 05401", "hardware"),
        ("Pixel Forge Design Studio", "77 N Wacker Dr, Chicago, IL 60606", "design"),
        ("Lone Star Freight", "9000 Port Rd, Houston, TX 77029", "logistics"),
    ],
    "EUR": [
        ("Müller Bürobedarf GmbH", "Hauptstraße 12, 80331 München", "office"),
        ("Atelier Lumière SARL", "14 rue des Arts, 69002 Lyon", "design"),
        ("Van Dijk Logistiek B.V.", "Havenweg 8, 3089 JS Rotterdam", "logistics"),
        ("Nordlicht Software GmbH", "Friedrichstraße 101, 10117 Berlin", "it"),
        ("Café Centrale", "Via Roma 5, 20121 Milano", "cafe"),
        ("Ferreira & Filhos Lda", "Rua Augusta 210, 1100-053 Lisboa", "hardware"),
        ("Drukkerij De Vries", "Oudegracht 44, 3511 AS Utrecht", "print"),
    ],
    "GBP": [
        ("Thames Valley Plumbing Ltd", "4 Station Rd, Reading RG1 1LG", "plumbing"),
        ("Baker & Finch Stationers", "19 High St, Oxford OX1 4AH", "office"),
        ("Highland Web Services Ltd", "2 Union St, Inverness IV1 1PL", "it"),
        ("The Copper Kettle Tearoom", "7 Market Pl, York YO1 8SR", "cafe"),
        ("Kingsway Couriers Ltd", "150 Kingsway, London WC2B 6NH", "logistics"),
        ("Ashdown Print Works", "31 Queen St, Bristol BS1 4HQ", "print"),
    ],
}

# description, unit price range, max quantity
_CATALOGUE: dict[str, list[tuple[str, float, float, int]]] = {
    "office": [
        ("A4 copy paper, box of 5 reams", 22, 45, 6),
        ("Ballpoint pens, blue, 12 pack", 4, 12, 10),
        ("Heavy duty stapler", 15, 35, 3),
        ("Printer toner cartridge", 45, 120, 4),
        ("Sticky notes, 24 pads", 8, 18, 6),
        ("Ergonomic office chair", 150, 420, 2),
        ("Whiteboard markers, 8 pack", 6, 15, 5),
        ("Desk organiser", 12, 40, 4),
    ],
    "it": [
        ("Website maintenance (monthly)", 250, 900, 1),
        ("Consulting hours", 90, 180, 12),
        ("SSL certificate renewal", 40, 150, 2),
        ("Cloud server 4 vCPU / 16 GB", 60, 240, 3),
        ("Backup storage 500 GB", 15, 60, 2),
        ("Domain registration (1 year)", 12, 30, 3),
        ("Laptop setup and configuration", 80, 200, 4),
        ("On-site support visit", 120, 350, 2),
    ],
    "print": [
        ("Business cards (500)", 35, 90, 4),
        ("A2 poster print", 15, 45, 10),
        ("Flyers A5 (1000)", 60, 180, 3),
        ("Roll-up banner 85x200 cm", 80, 160, 2),
        ("Booklet binding", 5, 20, 20),
    ],
    "cafe": [
        ("Flat white", 3.2, 4.8, 3),
        ("Oat latte", 3.8, 5.5, 3),
        ("Croissant", 2.5, 4.2, 4),
        ("Avocado toast", 8, 13, 2),
        ("Espresso", 2.2, 3.5, 3),
        ("Blueberry muffin", 2.8, 4.5, 3),
        ("Iced tea", 3, 4.5, 2),
        ("Club sandwich", 7.5, 12, 2),
    ],
    "hardware": [
        ("Cordless drill 18V", 70, 160, 1),
        ("Wood screws 4x40mm (200)", 6, 14, 5),
        ("Paint roller set", 9, 25, 3),
        ("Masking tape 50 m", 3, 8, 6),
        ("Extension cord 10 m", 12, 30, 3),
        ("LED bulb 9W, 4 pack", 8, 20, 4),
    ],
    "design": [
        ("Logo design", 400, 1500, 1),
        ("Brand guidelines document", 300, 900, 1),
        ("Social media templates (10)", 150, 450, 1),
        ("Website mockups", 500, 1800, 1),
        ("Additional revision round", 60, 150, 3),
    ],
    "logistics": [
        ("Pallet freight", 90, 260, 6),
        ("Express courier delivery", 20, 75, 5),
        ("Warehouse storage (per week)", 40, 120, 4),
        ("Fuel surcharge", 10, 45, 1),
        ("Packaging materials", 8, 30, 5),
    ],
    "plumbing": [
        ("Call-out fee", 45, 95, 1),
        ("Labour (hours)", 40, 75, 6),
        ("Replacement valve", 12, 40, 2),
        ("Annual boiler service", 80, 140, 1),
        ("Copper pipe 15mm (3 m)", 9, 20, 4),
    ],
}

_TAX: dict[str, list[tuple[str, str]]] = {  # label, rate
    "USD": [
        ("Sales tax", "0.0625"),
        ("Sales tax", "0.0825"),
        ("Tax", "0.07"),
        ("Sales tax", "0.08875"),
        ("Tax", "0"),
    ],
    "EUR": [
        ("VAT", "0.19"),
        ("MwSt.", "0.19"),
        ("TVA", "0.20"),
        ("BTW", "0.21"),
        ("VAT", "0.10"),
        ("IVA", "0.22"),
    ],
    "GBP": [("VAT", "0.20"), ("VAT", "0.20"), ("VAT", "0.05"), ("VAT", "0")],
}
_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_CUSTOMERS = [
    "Northpeak Labs",
    "Greenleaf Bakery",
    "Orbit Media Ltd",
    "J. Alvarez",
    "Kiwi Analytics",
    "Sunrise Dental Clinic",
    "M. Okafor",
    "Brightside Studio",
]
_SENDERS = ["Anna", "Ben", "Claire", "David", "Elena", "Farid", "Greta", "Hugo"]


@dataclass
class _Invoice:
    """Everything the text is rendered from; kept so tests can check the arithmetic."""

    vendor: str
    address: str
    date: dt.date
    due: dt.date
    number: str
    currency: str
    items: list[tuple[str, int, Decimal]]  # description, qty, unit price
    tax_label: str
    tax_rate: Decimal

    @property
    def subtotal(self) -> Decimal:
        return sum((q * p for _, q, p in self.items), Decimal("0")).quantize(_CENT)

    @property
    def tax(self) -> Decimal:
        return (self.subtotal * self.tax_rate).quantize(_CENT, rounding=ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax


def _fmt_date(d: dt.date, style: str) -> str:
    if style == "iso":
        return d.isoformat()
    if style == "us_num":
        return f"{d.month:02d}/{d.day:02d}/{d.year}"
    if style == "us_long":
        return f"{_MONTHS[d.month - 1]} {d.day}, {d.year}"
    if style == "us_short":
        return f"{_MONTHS[d.month - 1][:3]} {d.day}, {d.year}"
    if style == "eu_dot":
        return f"{d.day:02d}.{d.month:02d}.{d.year}"
    if style == "uk_num":
        return f"{d.day:02d}/{d.month:02d}/{d.year}"
    if style == "long":
        return f"{d.day} {_MONTHS[d.month - 1]} {d.year}"
    if style == "short":
        return f"{d.day:02d} {_MONTHS[d.month - 1][:3]} {d.year}"
    raise ValueError(f"unknown date style {style!r}")


# Locale conventions per currency; the currency in the text disambiguates 03/04 (US) vs 03/04 (UK).
_DATE_STYLES = {
    "USD": ["us_num", "us_num", "us_long", "us_short", "iso"],
    "EUR": ["eu_dot", "eu_dot", "long", "short", "iso"],
    "GBP": ["uk_num", "uk_num", "long", "short", "iso"],
}
_MONEY_STYLES = {
    "USD": ["symbol", "symbol", "code_before", "code_after"],
    "EUR": ["symbol", "eu_after", "eu_after", "code_before", "eu_code_after"],
    "GBP": ["symbol", "symbol", "code_before"],
}
_SYMBOL = {"USD": "$", "EUR": "€", "GBP": "£"}


def _fmt_money(x: Decimal, currency: str, style: str) -> str:
    en = f"{x:,.2f}"
    eu = en.replace(",", "_").replace(".", ",").replace("_", ".")  # 1,234.50 -> 1.234,50
    if style == "symbol":
        return f"{_SYMBOL[currency]}{en}"
    if style == "code_before":
        return f"{currency} {en}"
    if style == "code_after":
        return f"{en} {currency}"
    if style == "eu_after":
        return f"{eu} €"
    if style == "eu_code_after":
        return f"{eu} EUR"
    raise ValueError(f"unknown money style {style!r}")


def _invoice_number(rng: random.Random, year: int, currency: str, layout: str) -> str:
    if layout == "receipt":
        return rng.choice([str(rng.randint(10000, 999999)), f"R{rng.randint(100000, 999999)}"])
    styles = [
        f"INV-{year}-{rng.randint(1, 9999):04d}",
        f"#{rng.randint(1000, 99999)}",
        f"{year}/{rng.randint(1, 99999):05d}",
        f"A-{rng.randint(100000, 999999)}",
    ]
    if currency == "EUR":
        styles += [f"RE-{year}{rng.randint(100, 9999)}", f"F{year}-{rng.randint(100, 999)}"]
    return rng.choice(styles)


def _make_invoice(rng: random.Random) -> tuple[_Invoice, str]:
    currency = rng.choice(CURRENCIES)
    vendor, address, catalogue = rng.choice(_VENDORS[currency])
    date = dt.date(2022, 1, 1) + dt.timedelta(days=rng.randrange(4 * 365))
    layout = "receipt" if catalogue == "cafe" else rng.choice(["receipt", "formal", "formal", "email"])
    products = rng.sample(_CATALOGUE[catalogue], k=rng.randint(1, min(4, len(_CATALOGUE[catalogue]))))
    items = [
        (desc, rng.randint(1, qmax), Decimal(str(round(rng.uniform(lo, hi), 2))).quantize(_CENT))
        for desc, lo, hi, qmax in products
    ]
    tax_label, rate = rng.choice(_TAX[currency])
    inv = _Invoice(
        vendor=vendor,
        address=address,
        date=date,
        due=date + dt.timedelta(days=rng.choice([14, 30, 30, 45])),
        number=_invoice_number(rng, date.year, currency, layout),
        currency=currency,
        items=items,
        tax_label=tax_label,
        tax_rate=Decimal(rate),
    )
    date_style = rng.choice(_DATE_STYLES[currency])
    money_style = rng.choice(_MONEY_STYLES[currency])
    render = {"receipt": _render_receipt, "formal": _render_formal, "email": _render_email}[layout]
    return inv, render(
        rng, inv, lambda d: _fmt_date(d, date_style), lambda x: _fmt_money(x, currency, money_style)
    )


def _tax_line(inv: _Invoice, money: Any) -> str:
    pct = f"{inv.tax_rate * 100:.3f}".rstrip("0").rstrip(".")
    return f"{inv.tax_label} ({pct}%): {money(inv.tax)}"


def _render_receipt(rng: random.Random, inv: _Invoice, date: Any, money: Any) -> str:
    lines = [inv.vendor, inv.address]
    time = f"{rng.randint(7, 21):02d}:{rng.randint(0, 59):02d}"
    lines.append(f"{date(inv.date)} {time}")
    lines.append(f"{rng.choice(['Receipt #', 'Receipt No.', 'Trans #', 'Bill no.'])} {inv.number}")
    lines.append("-" * 28)
    for desc, qty, price in inv.items:
        lines.append(f"{qty} x {desc} @ {money(price)}  {money(qty * price)}")
    lines.append("-" * 28)
    lines.append(f"Subtotal: {money(inv.subtotal)}")
    lines.append(_tax_line(inv, money))
    lines.append(f"{rng.choice(['TOTAL', 'Total', 'Amount paid', 'TOTAL DUE'])}: {money(inv.total)}")
    lines.append(
        rng.choice(["Paid by VISA ****", "Mastercard ****", "Card payment ****"])
        + f"{rng.randint(0, 9999):04d}"
    )
    lines.append(
        rng.choice(["Thank you for your visit!", "Thanks, see you soon!", "No refunds without receipt."])
    )
    return "\n".join(lines)


def _render_formal(rng: random.Random, inv: _Invoice, date: Any, money: Any) -> str:
    head = rng.choice(
        ["INVOICE", "Invoice", "TAX INVOICE", "Rechnung / Invoice" if inv.currency == "EUR" else "INVOICE"]
    )
    lines = [head, f"From: {inv.vendor}, {inv.address}", f"Bill to: {rng.choice(_CUSTOMERS)}"]
    meta = [
        f"{rng.choice(['Invoice No:', 'Invoice number:', 'Invoice #:'])} {inv.number}",
        f"{rng.choice(['Invoice date:', 'Date:', 'Issued:'])} {date(inv.date)}",
    ]
    # Decoys: a due date and other identifiers the extractor must not confuse with the gold fields.
    if rng.random() < 0.7:
        meta.append(f"Due date: {date(inv.due)}")
    if rng.random() < 0.4:
        meta.append(
            f"{rng.choice(['Customer ID:', 'PO number:', 'Account no.:'])} {rng.randint(10000, 99999)}"
        )
    rng.shuffle(meta)
    lines += meta
    lines.append("Description | Qty | Unit price | Amount")
    for desc, qty, price in inv.items:
        lines.append(f"{desc} | {qty} | {money(price)} | {money(qty * price)}")
    lines.append(f"Subtotal: {money(inv.subtotal)}")
    lines.append(_tax_line(inv, money))
    lines.append(
        f"{rng.choice(['Total due', 'TOTAL', 'Amount due', 'Balance due', 'Grand total'])}: {money(inv.total)}"
    )
    if rng.random() < 0.5:
        lines.append(
            rng.choice(
                ["Payment terms: net 30.", "Please pay by bank transfer.", "Thank you for your business."]
            )
        )
    if rng.random() < 0.6:
        lines.append(_bank_footer(rng, inv.currency))
    return "\n".join(lines)


def _bank_footer(rng: random.Random, currency: str) -> str:
    """Payment details: realistic, and more long digit strings that are not the invoice number."""

    def digits(k: int) -> str:
        return "".join(str(rng.randrange(10)) for _ in range(k))

    if currency == "EUR":
        return rng.choice(
            [
                f"IBAN: DE{digits(2)} {digits(4)} {digits(4)} {digits(4)} {digits(4)} {digits(2)}, BIC: COBADEFFXXX",
                f"VAT ID: DE{digits(9)}. Bank: IBAN NL{digits(2)} INGB {digits(4)} {digits(4)} {digits(2)}",
            ]
        )
    if currency == "GBP":
        return rng.choice(
            [
                f"VAT reg. no. GB {digits(3)} {digits(4)} {digits(2)}",
                f"Sort code {digits(2)}-{digits(2)}-{digits(2)}, Account {digits(8)}",
            ]
        )
    return rng.choice(
        [
            f"ACH: routing {digits(9)}, account {digits(10)}",
            f"EIN {digits(2)}-{digits(7)}. Questions? billing@example.com",
        ]
    )


def _render_email(rng: random.Random, inv: _Invoice, date: Any, money: Any) -> str:
    sender = rng.choice(_SENDERS)
    intro = rng.choice(
        [
            f"Please find attached invoice {inv.number} dated {date(inv.date)}.",
            f"As discussed, here is our invoice {inv.number} from {date(inv.date)}.",
            f"Attached is invoice {inv.number} (issued {date(inv.date)}) for our recent work.",
        ]
    )
    lines = [
        f"Subject: Invoice {inv.number} from {inv.vendor}",
        "",
        rng.choice(["Hi,", "Hello,", "Dear customer,", "Good afternoon,"]),
        "",
        intro,
        "Summary:",
    ]
    for desc, qty, price in inv.items:
        lines.append(f"- {desc}: {qty} × {money(price)} = {money(qty * price)}")
    lines.append(f"Subtotal {money(inv.subtotal)}, {_tax_line(inv, money)}")
    lines.append(f"Total amount due: {money(inv.total)} by {date(inv.due)}.")
    lines += ["", rng.choice(["Best regards,", "Kind regards,", "Thanks,"]), sender, inv.vendor]
    return "\n".join(lines)


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` invoice/receipt texts with normalised gold fields, deterministic for ``seed``.

    Records are drawn one after another from one RNG, so ``generate(m, seed)[:n] ==
    generate(n, seed)`` for ``m >= n``.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        inv, text = _make_invoice(rng)
        fields = {
            "vendor": inv.vendor,
            "date": inv.date.isoformat(),
            "invoice_number": inv.number,
            "currency": inv.currency,
            "total": round(float(inv.total), 2),
            "line_items": [desc for desc, _, _ in inv.items],
            # Computed from the invoice after the text: no extra draws, so nothing else changes for a seed.
            "items": [
                {
                    "description": desc,
                    "quantity": qty,
                    "unit_price": round(float(price), 2),
                    "amount": round(float(qty * price), 2),
                }
                for desc, qty, price in inv.items
            ],
        }
        out.append({"id": f"invoices-{seed}-{i}", "text": text, "fields": fields})
    return out
