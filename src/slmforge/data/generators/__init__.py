"""Built-in, seeded generators of synthetic task data (no downloads, no real people or companies).

``GENERATORS`` maps a task's data name to ``generate(n, seed) -> list[dict]``:

- ``tickets``: support tickets labelled with a routing category and urgency (classification);
- ``invoices``: invoice/receipt texts with normalised gold fields (extraction);
- ``product_descriptions``: spec sheet -> on-brand description (templated generation).

:func:`generate_splits` turns one generator into disjoint train/validation/test splits.
"""

from slmforge.data.generators import invoices, product_descriptions, tickets
from slmforge.data.generators.registry import GENERATORS, generate_splits

__all__ = ["GENERATORS", "generate_splits", "invoices", "product_descriptions", "tickets"]
