"""Synthetic short posts with named entities as lists of spans copied from the text (grounded extraction).

Everything here is invented by a seeded RNG from small word lists: the people, bands, teams, companies,
products and titles do not exist (place names are real cities and landmarks, as any sentence has them). The
style follows WNUT-17's noisy user text, already tokenised: punctuation stands apart (``in Lisbon !``), some
posts are lower-cased or carry a hashtag or a link, and about a third mention no entity at all.

Each record: ``{"id", "text", "fields": {type: [span, ...]}}`` with the six WNUT-17 types of
:data:`TYPES` (every type present, ``[]`` when none), so ``task=entities`` fits both this data and WNUT-17.
Every gold span is a run of whole whitespace-separated words of the text, exactly as written, listed in
order of appearance (repeats included), so copy-constrained decoding can produce every gold answer.
"""

from __future__ import annotations

import random
from typing import Any

TYPES: tuple[str, ...] = ("person", "location", "group", "creative-work", "corporation", "product")
SCHEMA: dict[str, dict[str, Any]] = {t: {"type": "list", "required": True} for t in TYPES}

_FIRST = [
    "Maya", "Tomas", "Priya", "Jonah", "Leila", "Oskar", "Amara", "Dmitri", "Keiko", "Rafael", "Ines", "Callum",
    "Zainab", "Mateo", "Freya", "Kwame", "Elodie", "Bram", "Soraya", "Nikhil", "Greta", "Emeka", "Lucia", "Hugo",
]  # fmt: skip
_LAST = [
    "Okafor", "Lindqvist", "Marchetti", "Haddad", "Brennan", "Kowalczyk", "Tanaka", "Duarte", "Verhoeven",
    "Castellano", "Ashworth", "Nakamura", "Oyelaran", "Petrovic", "Delacroix", "Halvorsen", "Quintero", "Mbeki",
]  # fmt: skip
_PLACES = [
    "Lisbon", "Toronto", "Nairobi", "Osaka", "Glasgow", "Austin", "Marseille", "Auckland", "Seoul", "Denver",
    "Porto", "Bristol", "Montreal", "Cape Town", "New Orleans", "Buenos Aires", "San Diego", "Hong Kong",
    "Times Square", "Central Park", "Brooklyn", "Alps", "Lake Como", "Hyde Park", "Venice Beach",
]  # fmt: skip
_BANDS = [
    "The Velvet Owls", "Paper Lanterns", "Neon Harbor", "The Quiet Tides", "Static Bloom", "Glass Foxes",
    "The Midnight Ferns", "Copper Sparrows",
]  # fmt: skip
_TEAMS = [
    "Riverside Rovers", "Harbor Hawks", "North Bay Comets", "Eastfield United", "Granite Bears",
    "Lakeshore Lions",
]  # fmt: skip
_CLUBS = ["Green Valley Hiking Club", "Oakwood Book Circle", "Tidewater Rowing Club", "Hollow Creek Choir"]
_COMPANIES = [
    "Brightline", "Norvale", "Quillstone", "Zephyra", "Lumacorp", "Tessaly", "Orbitek", "Halcyon Foods",
    "Bluefin Airways", "Kestrel Motors", "Marigold Bank", "Pinewood Telecom", "Solvane", "Ardent Games",
]  # fmt: skip
_PRODUCT_BRANDS = ["Zephyra", "Orbitek", "Lumacorp", "Kestrel", "Tessaly", "Solvane"]
_PRODUCT_LINES = ["Pulse", "Nova", "Aero", "Vista", "Echo", "Flux", "Orbit", "Spark"]
_PRODUCT_MODELS = ["X2", "Pro", "Max", "Mini", "3", "S9", "Air", "Ultra", "5G"]
_TITLE_A = [
    "The", "A", "Last", "Under the", "Beyond the", "Letters from the", "Return to the", "Songs of the",
]  # fmt: skip
_TITLE_B = [
    "Silent Harbor", "Glass Orchard", "Winter Kite", "Paper Moon", "Hollow Crown", "Tin Lighthouse",
    "Amber Road", "Salt Garden", "Ninth Lantern", "Velvet Storm",
]  # fmt: skip
_WORK_KINDS = ["show", "film", "book", "album", "game", "podcast", "song", "series"]
_TIMES = [
    "tonight", "today", "this weekend", "on Friday", "next week", "this morning", "last night", "tomorrow",
]  # fmt: skip
_FEELINGS = ["so excited", "so tired", "bored", "loving it", "not impressed", "still laughing", "can't wait"]
_THINGS = [
    "the rain", "my commute", "this coffee", "the traffic", "my cat", "the wifi", "my inbox", "the heat",
]  # fmt: skip
_ACTIVITIES = [
    "cleaning the kitchen", "doing laundry", "studying", "working late", "cooking dinner", "napping",
]  # fmt: skip
_TAGS = ["#fail", "#weekend", "#mood", "#tbt", "#blessed", "#nofilter", "#music", "#travel"]


def _person(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.55:
        return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
    if r < 0.85:
        return rng.choice(_FIRST)
    return rng.choice(_LAST)


def _group(rng: random.Random) -> str:
    return rng.choice(rng.choice([_BANDS, _TEAMS, _CLUBS]))


def _product(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.5:
        return f"{rng.choice(_PRODUCT_BRANDS)} {rng.choice(_PRODUCT_LINES)} {rng.choice(_PRODUCT_MODELS)}"
    if r < 0.8:
        return f"{rng.choice(_PRODUCT_LINES)} {rng.choice(_PRODUCT_MODELS)}"
    return f"{rng.choice(_PRODUCT_BRANDS)}{rng.choice(_PRODUCT_LINES)}"


def _work(rng: random.Random) -> str:
    return f"{rng.choice(_TITLE_A)} {rng.choice(_TITLE_B)}" if rng.random() < 0.7 else rng.choice(_TITLE_B)


_MAKERS = {
    "person": _person,
    "location": lambda rng: rng.choice(_PLACES),
    "group": _group,
    "creative-work": _work,
    "corporation": lambda rng: rng.choice(_COMPANIES),
    "product": _product,
}

# Templates: {type} is an entity slot (a second one of a type: {type2}); the other slots are filler.
# Tokenised like WNUT-17: punctuation is its own word.
_WITH_ENTITIES = [
    "{person} just landed in {location} , {feeling} !",
    "anyone else going to see {group} in {location} {time} ?",
    "{person} and {person2} are watching {creative-work} again lol",
    "finally finished {creative-work} , what a {kind} .",
    "the new {product} from {corporation} is {feeling} , battery lasts forever",
    "{corporation} is hiring in {location} , apply before Friday .",
    "my {product} died again . thanks {corporation} #fail",
    "{group} won again {time} ! {person} scored twice",
    "shoutout to {person} for the tickets to {group} !",
    "stuck at the airport in {location} because {corporation} cancelled my flight",
    "listening to {creative-work} by {group} on repeat {time}",
    "{person} says {creative-work} is the best {kind} of the year . disagree",
    "just ordered a {product} , {person} recommended it",
    "moving from {location} to {location2} next month , wish me luck",
    "{corporation} and {corporation2} announce a merger , stocks up",
    "who else grew up on {creative-work} ? {feeling}",
    "RT {handle} : {person} joins {corporation} as head of design",
    "walking around {location} with {person} {time} , {feeling}",
    "the {product} vs the {product2} , which one should I get ?",
    "{group} concert in {location} was unreal , {person} sang {creative-work}",
    "my mom still uses her old {product} and refuses to upgrade lol",
    "{person} is the reason I started watching {creative-work}",
    "customer service at {corporation} kept me on hold for an hour",
    "heading to {location} {time} for the {group} game",
    "review : {creative-work} ( the {kind} ) is better than the book",
    "{person} , {person2} and me at {location} {tag}",
]  # fmt: skip
_WITHOUT_ENTITIES = [
    "{time} is my last day at the office .",
    "{feeling} about {thing} , honestly",
    "why is {thing} always like this ?",
    "just {activity} , nothing exciting {time}",
    "can't believe {thing} again {tag}",
    "{activity} {time} , then bed",
    "who else is {activity} {time} ? {feeling}",
    "{thing} is ruining my day lol",
    "27 followers ! 30 followers is my goal for {time} !",
    "lol I spent all day {activity}",
]  # fmt: skip


def _fill(rng: random.Random, template: str) -> tuple[str, dict[str, list[str]]]:
    """The post's words and its gold spans in order of appearance. Entities are inserted as whole words
    (none contains a space at its edge), and words are joined by single spaces, so each gold span is a run
    of whole words of the text."""
    words: list[str] = []
    fields: dict[str, list[str]] = {t: [] for t in TYPES}
    for part in template.split(" "):
        if part.startswith("{") and "}" in part:
            slot, rest = part[1:].split("}", 1)
            base = slot.rstrip("2")
            if base in _MAKERS:
                value = _MAKERS[base](rng)
                fields[base].append(value)
            else:
                value = {
                    "time": lambda: rng.choice(_TIMES),
                    "feeling": lambda: rng.choice(_FEELINGS),
                    "thing": lambda: rng.choice(_THINGS),
                    "activity": lambda: rng.choice(_ACTIVITIES),
                    "tag": lambda: rng.choice(_TAGS),
                    "kind": lambda: rng.choice(_WORK_KINDS),
                    "handle": lambda: f"@{rng.choice(_FIRST).lower()}{rng.randint(1, 99)}",
                }[base]()
            words.append(value + rest)
        else:
            words.append(part)
    return " ".join(words), fields


def _make_post(rng: random.Random) -> tuple[str, dict[str, list[str]]]:
    template = rng.choice(_WITHOUT_ENTITIES if rng.random() < 0.3 else _WITH_ENTITIES)
    text, fields = _fill(rng, template)
    r = rng.random()
    if r < 0.1:  # noisy user text: all lower case (the gold spans as written)
        text, fields = text.lower(), {t: [s.lower() for s in v] for t, v in fields.items()}
    elif r < 0.2:
        text += f" http://t.co/{rng.randrange(16**6):06x}"
    return text, fields


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` posts with their entity spans, deterministic for ``seed``; drawn one after another from one
    RNG, so ``generate(m, seed)[:n] == generate(n, seed)`` for ``m >= n``."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        text, fields = _make_post(rng)
        out.append({"id": f"entities-{seed}-{i}", "text": text, "fields": fields})
    return out
