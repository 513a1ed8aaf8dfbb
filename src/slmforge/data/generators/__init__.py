"""Built-in, seeded generators of synthetic task data (no downloads, no real people or companies).

``GENERATORS`` maps a task's data name to ``generate(n, seed) -> list[dict]``:

- ``tickets``: support tickets labelled with a routing category and urgency (classification);
- ``invoices``: invoice/receipt texts with normalised gold fields (extraction);
- ``product_descriptions``: spec sheet -> on-brand description (templated generation);
- ``entities``: short posts with people, places, groups, titles, companies and products as spans copied
  from the text (grounded entity extraction, WNUT-17's six types).

:func:`generate_splits` turns one generator into disjoint train/validation/test splits.
"""

from slmforge.data.generators import entities, invoices, product_descriptions, tickets
from slmforge.data.generators.registry import GENERATORS, generate_splits

__all__ = ["GENERATORS", "entities", "generate_splits", "invoices", "product_descriptions", "tickets"]
