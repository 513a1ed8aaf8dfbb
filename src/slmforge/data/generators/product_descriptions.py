"""Synthetic product specifications paired with on-brand descriptions, for templated generation.

Products, names and prices are invented by a seeded RNG. The input ``text`` is a spec sheet of
``key: value`` lines; the ``output`` is the description a brand style guide would require: it always
starts with "Meet the ", names the product, and ends with a price sentence (see
:data:`TEMPLATE_REGEX`). The ``Tone:`` line of the spec picks one of a few fixed variants, so the
output is a pure function of the input (:func:`describe`) and a model can in principle match it
exactly; what it must learn is the house template, not facts it cannot see.

Each record: ``{"id", "text", "output", "required_phrases": [product name, price string]}``.
"""

from __future__ import annotations

import random
import re
from typing import Any

TONES: list[str] = ["classic", "playful", "minimal", "premium"]
PRICE_ENDINGS: list[str] = ["Only", "Grab yours for just", "Yours for", "Available now for"]

# Every output matches this: "Meet the ..." and a final price sentence such as "Only $34.99."
TEMPLATE_REGEX: str = (
    r"^Meet the .+\. (?:Only|Grab yours for just|Yours for|Available now for) \$\d{1,3}(?:,\d{3})*\.\d{2}\.$"
)
_TEMPLATE_RE = re.compile(TEMPLATE_REGEX)

SPEC_KEYS: list[str] = [
    "Product",
    "Category",
    "Type",
    "Material",
    "Color",
    "Key feature",
    "Best for",
    "Price",
    "Tone",
]

# category, noun (used in the name and the copy), price range, materials, features, uses.
# Materials/features/uses are per product type so every combination reads sensibly.
_TYPES: list[tuple[str, str, tuple[int, int], list[str], list[str], list[str]]] = [
    ("Drinkware", "Water Bottle", (18, 45), ["double-wall stainless steel", "BPA-free Tritan", "recycled aluminium"],
     ["keeps drinks cold for 24 hours", "fits every standard cup holder", "seals with a leak-proof twist cap"],
     ["long hikes and daily commutes", "the gym and the office", "road trips and picnics"]),
    ("Drinkware", "Travel Mug", (15, 38), ["vacuum-insulated steel", "ceramic-coated steel", "bamboo and glass"],
     ["keeps coffee hot for six hours", "opens and closes with one hand", "goes straight into the dishwasher"],
     ["early commutes", "long mornings at the desk", "school runs and errands"]),
    ("Bags", "Backpack", (49, 180), ["water-resistant recycled nylon", "waxed canvas", "ripstop polyester"],
     ["has a padded sleeve for a 16-inch laptop", "opens flat for quick airport checks", "carries 28 litres without sagging"],
     ["city commutes and weekend trips", "students and digital nomads", "travel days and office days"]),
    ("Bags", "Tote Bag", (25, 90), ["organic cotton canvas", "full-grain leather", "recycled PET felt"],
     ["folds into its own pocket", "holds a full week of groceries", "has an inner zip pocket for valuables"],
     ["market runs and beach days", "work and weekend errands", "shopping trips"]),
    ("Footwear", "Running Shoe", (70, 190), ["engineered knit mesh", "recycled polyester knit", "breathable mesh and suede"],
     ["cushions every stride with a responsive foam sole", "grips wet pavement with ease", "weighs under 250 grams"],
     ["daily training runs", "half-marathon training", "city running and gym sessions"]),
    ("Footwear", "Hiking Boot", (95, 240), ["waterproof nubuck leather", "full-grain leather", "ripstop and suede"],
     ["keeps feet dry through streams and rain", "supports your ankles on rocky trails", "breaks in within a day"],
     ["multi-day treks", "muddy spring trails", "mountain weekends"]),
    ("Home", "Desk Lamp", (35, 150), ["brushed aluminium", "powder-coated steel", "oak and linen"],
     ["dims smoothly from reading light to night light", "charges your phone through its base", "bends to point light exactly where you need it"],
     ["late-night reading", "home offices", "bedside tables and study corners"]),
    ("Home", "Throw Blanket", (40, 140), ["merino wool", "organic cotton waffle knit", "recycled fleece"],
     ["stays warm without feeling heavy", "softens with every wash", "drapes neatly over any sofa"],
     ["movie nights on the couch", "chilly evenings", "guest rooms and reading nooks"]),
    ("Kitchen", "Chef's Knife", (45, 220), ["high-carbon German steel", "Damascus steel with an olive wood handle", "Japanese VG-10 steel"],
     ["holds a razor edge through months of daily use", "glides through tomatoes without crushing them", "balances perfectly in the hand"],
     ["home cooks and weekend chefs", "everyday meal prep", "serious dinner parties"]),
    ("Kitchen", "Skillet", (30, 160), ["pre-seasoned cast iron", "tri-ply stainless steel", "carbon steel"],
     ["moves from stovetop to oven without a second thought", "heats evenly from edge to centre", "builds a natural non-stick surface over time"],
     ["weeknight dinners", "searing steaks and baking cornbread", "camp stoves and home kitchens"]),
    ("Audio", "Wireless Headset", (60, 350), ["soft protein leather and aluminium", "matte polycarbonate", "recycled plastics and memory foam"],
     ["blocks out city noise with adaptive cancellation", "plays for 40 hours on a single charge", "folds flat into a slim case"],
     ["long flights and open-plan offices", "daily commutes", "focus sessions and podcasts"]),
    ("Audio", "Bluetooth Speaker", (35, 220), ["rugged silicone and steel mesh", "woven fabric over ABS", "walnut and aluminium"],
     ["survives splashes, drops and sand", "fills a room with surprisingly deep bass", "pairs with a second speaker for stereo sound"],
     ["pool parties and camping trips", "kitchen playlists", "backyard evenings"]),
    ("Outdoor", "Camping Tent", (120, 480), ["ripstop nylon with aluminium poles", "polyester with a waterproof coating", "silnylon"],
     ["pitches in under five minutes", "sheds heavy rain all night", "packs down smaller than a sleeping bag"],
     ["festival weekends and backcountry trips", "family camping", "ultralight hikers"]),
    ("Outdoor", "Camp Chair", (30, 120), ["powder-coated steel and 600D polyester", "aluminium and ripstop mesh", "bamboo and canvas"],
     ["sets up in seconds", "supports up to 150 kilograms", "packs into a bag the size of a water bottle"],
     ["campfires and sports sidelines", "beach days and concerts", "fishing trips"]),
    ("Apparel", "Rain Jacket", (80, 260), ["three-layer waterproof shell", "recycled nylon with a PFC-free coating", "breathable eVent fabric"],
     ["keeps you dry in a downpour without trapping sweat", "stuffs into its own chest pocket", "blocks wind on exposed ridges"],
     ["unpredictable spring weather", "city cycling", "hillwalking and travel"]),
    ("Apparel", "Hoodie", (45, 120), ["brushed organic cotton", "heavyweight French terry", "merino and recycled polyester"],
     ["keeps its shape after dozens of washes", "feels soft from the very first wear", "layers easily under a jacket"],
     ["lazy Sundays and early runs", "travel days", "cool evenings outdoors"]),
    ("Fitness", "Yoga Mat", (25, 110), ["natural tree rubber", "non-slip TPE", "cork and natural rubber"],
     ["grips firmly even in a hot class", "cushions knees without wobbling", "rolls up light enough to carry anywhere"],
     ["daily practice at home", "hot yoga and pilates", "studio classes"]),
    ("Fitness", "Adjustable Dumbbell", (90, 400), ["cast iron with a steel handle", "rubber-coated steel", "chrome-plated steel"],
     ["switches from 2 to 24 kilograms with one dial", "replaces a whole rack of weights", "stays quiet on any floor"],
     ["home gyms with limited space", "strength training at home", "busy people who train at home"]),
    ("Office", "Notebook", (12, 40), ["lay-flat recycled paper with a linen cover", "100 gsm ivory paper", "stone paper"],
     ["keeps fountain pen ink from bleeding through", "lies completely flat on any desk", "has numbered pages and an index"],
     ["daily planning and journaling", "meetings and sketches", "students and writers"]),
    ("Office", "Desk Organizer", (20, 85), ["solid walnut", "powder-coated steel", "recycled felt"],
     ["keeps cables, pens and phone in one tidy spot", "charges your phone wirelessly", "stacks to grow with your desk"],
     ["home offices and studios", "busy reception desks", "minimalist workspaces"]),
]  # fmt: skip
_PREFIXES = [
    "Aurora", "Summit", "Nova", "Harbor", "Ember", "Willow", "Atlas", "Drift", "Cobalt", "Juniper", "Orbit",
    "Pioneer", "Sierra", "Tidal", "Vesper", "Alder", "Boreal", "Cedar", "Dune", "Fjord", "Halo", "Lumen",
    "Meridian", "Nimbus", "Onyx", "Pebble", "Quill", "Rook", "Sage", "Terra",
]  # fmt: skip
_SUFFIXES = ["", "", "", " Pro", " Mini", " 2.0", " Lite", " XL", " Classic"]
_COLORS = [
    "matte black", "forest green", "sandstone beige", "navy blue", "charcoal grey", "terracotta", "ivory white",
    "burnt orange", "slate blue", "olive", "dusty rose", "natural",
]  # fmt: skip
_PRICE_CENTS = [".99", ".99", ".00", ".50", ".95"]


def describe(spec: dict[str, str]) -> str:
    """The house-style description for a spec (keys as in :data:`SPEC_KEYS`); a pure function."""
    name, noun = spec["Product"], spec["Type"].lower()
    material, color, feature, use = spec["Material"], spec["Color"], spec["Key feature"], spec["Best for"]
    price, tone = spec["Price"], spec["Tone"]
    if tone == "classic":
        return (
            f"Meet the {name}: the {noun} that {feature}. Made from {material} in {color}, "
            f"it is built for {use}. Only {price}."
        )
    if tone == "playful":
        return (
            f"Meet the {name}, your new favourite {noun}! It {feature}, so {use} just got a whole lot better. "
            f"Crafted from {material} in a {color} finish. Grab yours for just {price}."
        )
    if tone == "minimal":
        return (
            f"Meet the {name}. {material[0].upper() + material[1:]} construction, {color} finish, "
            f"and a design that {feature}. Designed for {use}, built to last. Available now for {price}."
        )
    if tone == "premium":
        return (
            f"Meet the {name}, crafted for those who expect more from their {noun}. Made from {material} "
            f"and finished in {color}, it {feature}. Perfect for {use}. Yours for {price}."
        )
    raise ValueError(f"unknown tone {tone!r}; expected one of {TONES}")


def _spec_text(spec: dict[str, str]) -> str:
    return "\n".join(f"{k}: {spec[k]}" for k in SPEC_KEYS)


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` spec -> description pairs, deterministic for ``seed``.

    Records are drawn one after another from one RNG, so ``generate(m, seed)[:n] ==
    generate(n, seed)`` for ``m >= n``.
    """
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        category, noun, (lo, hi), materials, features, uses = rng.choice(_TYPES)
        name = f"{rng.choice(_PREFIXES)} {noun}{rng.choice(_SUFFIXES)}"
        price = f"${rng.randint(lo, hi)}{rng.choice(_PRICE_CENTS)}"
        spec = {
            "Product": name,
            "Category": category,
            "Type": noun,
            "Material": rng.choice(materials),
            "Color": rng.choice(_COLORS),
            "Key feature": rng.choice(features),
            "Best for": rng.choice(uses),
            "Price": price,
            "Tone": rng.choice(TONES),
        }
        output = describe(spec)
        assert _TEMPLATE_RE.match(output), output  # cheap guard: the template is the contract
        out.append(
            {
                "id": f"product_descriptions-{seed}-{i}",
                "text": _spec_text(spec),
                "output": output,
                "required_phrases": [name, price],
            }
        )
    return out
