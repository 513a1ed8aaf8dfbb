"""A routing policy as a small JSON file a serving process can load and apply per request.

Serving flow::

    policy = RoutingPolicy.load("routing_policy.json")
    if policy.pre_route(text) == "expensive":       # a text tier rule matched: skip the cheap model
        answer = call_expensive(text)
    else:
        probs, pred = run_cheap(text)                # raw (uncalibrated) label distribution
        if policy.route(text, probs, pred) == "cheap":
            answer = pred
        else:
            answer = call_expensive(text)

The threshold lives in the *calibrated* confidence space: :meth:`RoutingPolicy.route` applies the
fitted temperature to the raw distribution before comparing, exactly as the sweep did.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slmforge.routing.calibration import apply_temperature
from slmforge.routing.errors import RoutingError
from slmforge.routing.tiers import TierRule, pre_route

POLICY_SCHEMA_VERSION = 1
Route = Literal["cheap", "expensive"]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclass
class RoutingPolicy:
    """What to route where, and what that was measured to give.

    ``threshold``: escalate when the (temperature-scaled) cheap confidence is below it.
    ``temperature``: 1.0 means no calibration. ``expected_*`` are the values measured on
    ``measured_on`` (a split name) when the policy was chosen.

    ``chain`` (optional, a chain of >= 3 predictors): one ``{name, threshold, temperature}`` per tier,
    cheapest first, the last tier's threshold null; ``cheap_name``/``threshold``/``temperature`` then
    repeat the first tier's, so a two-model reader still routes its first hop correctly. ``guarantee``
    (optional): how the threshold was chosen (method, target, delta, valid, statement). Both are optional,
    so policies written before them load unchanged (same schema version).
    """

    cheap_name: str
    expensive_name: str
    threshold: float
    temperature: float = 1.0
    tiers: list[TierRule] = field(default_factory=list)
    metric_name: str = "accuracy"
    expected_metric: float | None = None
    expected_cost_per_1k_usd: float | None = None
    expected_escalated_share: float | None = None
    measured_on: str | None = None
    created_at: str = field(default_factory=_now)
    schema_version: int = POLICY_SCHEMA_VERSION
    chain: list[dict[str, Any]] | None = None
    guarantee: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.chain is not None:
            self.chain = _check_chain(self.chain)
        self.tiers = [TierRule.from_dict(r, where=f"tiers[{i}]") for i, r in enumerate(self.tiers)]
        if not isinstance(self.threshold, int | float) or isinstance(self.threshold, bool):
            raise RoutingError(f"threshold must be a number, got {self.threshold!r}")
        if not math.isfinite(self.threshold):
            raise RoutingError(f"threshold must be finite, got {self.threshold}")
        if not isinstance(self.temperature, int | float) or not (
            self.temperature > 0 and math.isfinite(self.temperature)
        ):
            raise RoutingError(f"temperature must be a positive number, got {self.temperature!r}")

    # -- serving ---------------------------------------------------------------------------------------

    def pre_route(self, text: str) -> Route:
        """``"expensive"`` when a text tier rule matches (do not run the cheap model), else ``"cheap"``."""
        return "expensive" if pre_route(text, self.tiers) else "cheap"

    def calibrated_confidence(self, probs: Mapping[str, float], pred: str | None = None) -> float:
        """The temperature-scaled probability of ``pred`` (default: of the top label)."""
        if not probs:
            raise RoutingError("probs is empty; pass the cheap model's label distribution")
        keys = list(probs)
        scaled = apply_temperature(np.array([[float(probs[k]) for k in keys]]), self.temperature)[0]
        if pred is not None and pred in probs:
            return float(scaled[keys.index(pred)])
        return float(scaled.max())

    def route(
        self, text: str, cheap: Mapping[str, float] | float | None, cheap_pred: str | None = None
    ) -> Route:
        """Where the answer for ``text`` should come from, given the cheap predictor's output.

        ``cheap`` is the cheap model's raw label distribution (preferred: the temperature is applied
        here), or its confidence as a float, or None when it gave none (then escalate, as in the
        sweep). A float is only accepted when the policy has no temperature (T = 1), because scaling
        a multi-class distribution needs all of it. ``cheap_pred`` defaults to the top label of
        ``cheap`` and feeds the ``labels`` tier rule.
        """
        if self.pre_route(text) == "expensive":
            return "expensive"
        if isinstance(cheap, Mapping):
            if cheap_pred is None and cheap:
                cheap_pred = max(cheap, key=lambda k: cheap[k])
            conf: float | None = self.calibrated_confidence(cheap, cheap_pred)
        elif cheap is None:
            conf = None
        else:
            if not math.isclose(self.temperature, 1.0):
                raise RoutingError(
                    f"this policy was calibrated with temperature {self.temperature:.3f}; pass the cheap "
                    "model's full label distribution (a dict) so the temperature can be applied"
                )
            conf = float(cheap)
        if any(r.matches(text, cheap_pred) for r in self.tiers if r.needs_cheap):
            return "expensive"
        if conf is None or math.isnan(conf) or conf < self.threshold:
            return "expensive"
        return "cheap"

    def route_chain(self, outputs: list[Mapping[str, float] | float | None]) -> int:
        """Index of the chain tier that answers, given the outputs of tiers run so far, in order.

        ``outputs[i]`` is tier i's raw label distribution (its temperature is applied here) or a float
        confidence (only when that tier's temperature is 1) or None (no confidence: move on). Call it
        after each tier runs: a result ``< len(outputs)`` means that tier's answer stands; otherwise run
        the next tier and call again. The last tier always answers.
        """
        if not self.chain:
            raise RoutingError("this policy has no chain; use route() for a two-model policy")
        last = len(self.chain) - 1
        for i, out in enumerate(outputs[:last]):
            tier = self.chain[i]
            t, temp = float(tier["threshold"]), float(tier["temperature"])
            if isinstance(out, Mapping):
                hop = RoutingPolicy(
                    cheap_name=tier["name"], expensive_name="next", threshold=t, temperature=temp
                )
                conf: float | None = hop.calibrated_confidence(out)
            elif out is None:
                conf = None
            else:
                if not math.isclose(temp, 1.0):
                    raise RoutingError(
                        f"chain tier {tier['name']!r} was calibrated with temperature {temp:.3f}; pass its "
                        "full label distribution (a dict)"
                    )
                conf = float(out)
            if conf is not None and not math.isnan(conf) and conf >= t:
                return i
        return min(len(outputs), last)

    # -- persistence -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "cheap_name": self.cheap_name,
            "expensive_name": self.expensive_name,
            "threshold": self.threshold,
            "temperature": self.temperature,
            "tiers": [r.to_dict() for r in self.tiers],
            "metric_name": self.metric_name,
            "expected_metric": self.expected_metric,
            "expected_cost_per_1k_usd": self.expected_cost_per_1k_usd,
            "expected_escalated_share": self.expected_escalated_share,
            "measured_on": self.measured_on,
            "created_at": self.created_at,
            **({"chain": self.chain} if self.chain is not None else {}),
            **({"guarantee": self.guarantee} if self.guarantee is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "<policy>") -> RoutingPolicy:
        if not isinstance(d, dict):
            raise RoutingError(f"{where}: a routing policy must be a JSON object, got {type(d).__name__}")
        required = ["cheap_name", "expensive_name", "threshold"]
        missing = [k for k in required if k not in d]
        if missing:
            raise RoutingError(
                f"{where}: missing field(s) {missing}; is this a routing policy written by slmforge-route?"
            )
        version = d.get("schema_version", POLICY_SCHEMA_VERSION)
        if version != POLICY_SCHEMA_VERSION:
            raise RoutingError(
                f"{where}: policy schema_version {version} is not supported (expected {POLICY_SCHEMA_VERSION}); "
                "re-run slmforge-route to regenerate it"
            )
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise RoutingError(f"{where}: unknown field(s) {unknown}")
        for k in ("cheap_name", "expensive_name"):
            if not isinstance(d[k], str) or not d[k]:
                raise RoutingError(f"{where}: field {k!r} must be a non-empty string, got {d[k]!r}")
        for k in ("expected_metric", "expected_cost_per_1k_usd", "expected_escalated_share"):
            v = d.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                raise RoutingError(f"{where}: field {k!r} must be a number or null, got {v!r}")
        if d.get("guarantee") is not None and not isinstance(d["guarantee"], dict):
            raise RoutingError(
                f"{where}: field 'guarantee' must be an object or null, got {d['guarantee']!r}"
            )
        if not isinstance(d.get("tiers", []), list):
            raise RoutingError(f"{where}: field 'tiers' must be a list of rules, got {d['tiers']!r}")
        try:
            return cls(**d)
        except RoutingError as e:
            raise RoutingError(f"{where}: {e}") from None
        except TypeError as e:  # a wrongly typed field the dataclass rejected
            raise RoutingError(f"{where}: {e}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)  # atomic: a serving process never reads half a policy
        return path

    @classmethod
    def load(cls, path: str | Path) -> RoutingPolicy:
        path = Path(path)
        if not path.exists():
            raise RoutingError(f"{path}: no routing policy here; run slmforge-route to create one")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise RoutingError(f"{path}: not valid JSON ({e}); re-run slmforge-route to regenerate it") from e
        return cls.from_dict(d, where=str(path))


def _check_chain(chain: Any) -> list[dict[str, Any]]:
    """The chain list validated: >= 2 tiers of {name, threshold, temperature}, the last threshold null."""
    if not isinstance(chain, list) or len(chain) < 2:
        raise RoutingError(f"chain must be a list of at least 2 tiers, got {chain!r}")
    out = []
    for i, tier in enumerate(chain):
        if not isinstance(tier, dict) or set(tier) != {"name", "threshold", "temperature"}:
            raise RoutingError(
                f"chain[{i}] must be an object with name, threshold and temperature, got {tier!r}"
            )
        last = i == len(chain) - 1
        t, temp = tier["threshold"], tier["temperature"]
        if last and t is not None:
            raise RoutingError(
                f"chain[{i}] is the last tier: it answers everything, so its threshold must be null"
            )
        if not last and (isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t)):
            raise RoutingError(f"chain[{i}].threshold must be a number, got {t!r}")
        if (
            isinstance(temp, bool)
            or not isinstance(temp, int | float)
            or not (temp > 0 and math.isfinite(temp))
        ):
            raise RoutingError(f"chain[{i}].temperature must be a positive number, got {temp!r}")
        if not isinstance(tier["name"], str) or not tier["name"]:
            raise RoutingError(f"chain[{i}].name must be a non-empty string, got {tier['name']!r}")
        out.append(dict(tier))
    return out
