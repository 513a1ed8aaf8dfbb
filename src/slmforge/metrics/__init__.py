"""Task metrics built on torchmetrics; ``compute()`` results are plain Python, ready for ``results.json``.

- classification: :class:`ClassificationMetrics` (accuracy, macro/per-class F1, ECE, Brier, NLL,
  confusion matrix) and :func:`classification_metrics` (the same as a torchmetrics collection);
- extraction: :class:`FieldExtractionMetrics` (validity, adherence, field P/R/F1, exact match),
  :class:`JSONValidityRate`, :class:`SchemaAdherenceRate`, :func:`score_example`;
- generation: :class:`GenerationMetrics` (ROUGE-L, chrF, BLEU, exact match, token accuracy,
  compliance), :class:`ConstraintCompliance`, :class:`Constraints`, :func:`check_constraints`.
"""

from slmforge.metrics.classification import ClassificationMetrics, classification_metrics
from slmforge.metrics.extraction import (
    FieldExtractionMetrics,
    JSONValidityRate,
    SchemaAdherenceRate,
    field_counts,
    score_example,
)
from slmforge.metrics.generation import (
    ConstraintCompliance,
    Constraints,
    GenerationMetrics,
    check_constraints,
    token_accuracy,
)

__all__ = [
    "ClassificationMetrics",
    "ConstraintCompliance",
    "Constraints",
    "FieldExtractionMetrics",
    "GenerationMetrics",
    "JSONValidityRate",
    "SchemaAdherenceRate",
    "check_constraints",
    "classification_metrics",
    "field_counts",
    "score_example",
    "token_accuracy",
]
