"""Price tables: what one API token or one self-hosted machine-hour costs.

Prices live in ``conf/pricing/default.yaml`` (composed into the report config as ``pricing``) so a user can
edit them without touching code; :class:`Pricing` is the typed view the cost functions use. Reports
recompute every cost from these tables instead of trusting costs stored in results records, so a price
change never needs a re-evaluation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from slmforge.errors import PricingError

DEFAULT_PRICING_FILE = "conf/pricing/default.yaml"
DEFAULT_MONTHLY_REQUESTS = 10_000_000
DEFAULT_AMORTISE_MONTHS = 12.0
HOURS_PER_MONTH = 730.0  # 365 * 24 / 12: what an always-on machine is billed for in a month

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ApiPrice:
    """USD per 1k prompt (input) tokens and per 1k completion (output) tokens."""

    input_per_1k: float
    output_per_1k: float


@dataclass(frozen=True)
class MachinePrice:
    """A self-hosted machine's on-demand price."""

    hourly_usd: float
    note: str = ""


@dataclass
class Pricing:
    """All prices a report needs; build it with :func:`load_pricing` or :meth:`from_config`."""

    api: dict[str, ApiPrice] = field(default_factory=dict)
    self_hosted: dict[str, MachinePrice] = field(default_factory=dict)
    monthly_requests: int = DEFAULT_MONTHLY_REQUESTS
    utilisation: float = 1.0
    # Break-even only: months over which a fine-tuning run's one-off cost is spread, and whether one serving
    # machine is paid around the clock whatever the volume (see conf/pricing/default.yaml for the trade-offs).
    amortise_months: float = DEFAULT_AMORTISE_MONTHS
    always_on: bool = False
    currency: str = "USD"
    source: str = DEFAULT_PRICING_FILE  # named in error messages so the user knows what to edit

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | DictConfig, source: str | None = None) -> Pricing:
        """Build from the YAML structure of ``conf/pricing/default.yaml`` (a dict or a Hydra node)."""
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        assert isinstance(cfg, Mapping)
        src = source or str(cfg.get("source", DEFAULT_PRICING_FILE))
        api: dict[str, ApiPrice] = {}
        for model, p in (cfg.get("api") or {}).items():
            try:
                api[str(model)] = ApiPrice(float(p["input_per_1k"]), float(p["output_per_1k"]))
            except (KeyError, TypeError, ValueError) as e:
                raise PricingError(
                    f"{src}: api.{model} needs numeric input_per_1k and output_per_1k (USD per 1k tokens)"
                ) from e
        machines: dict[str, MachinePrice] = {}
        for name, p in (cfg.get("self_hosted") or {}).items():
            try:
                hourly = float(p["hourly_usd"] if isinstance(p, Mapping) else p)
            except (KeyError, TypeError, ValueError) as e:
                raise PricingError(f"{src}: self_hosted.{name} needs a numeric hourly_usd") from e
            note = str(p.get("note", "")) if isinstance(p, Mapping) else ""
            machines[str(name)] = MachinePrice(hourly, note)
        utilisation = float(cfg.get("utilisation", 1.0))
        if not 0.0 < utilisation <= 1.0:
            raise PricingError(f"{src}: utilisation must be in (0, 1], got {utilisation}")
        try:
            amortise = float(cfg.get("amortise_months", DEFAULT_AMORTISE_MONTHS))
        except (TypeError, ValueError) as e:
            raise PricingError(f"{src}: amortise_months must be a number of months > 0") from e
        if not amortise > 0:
            raise PricingError(
                f"{src}: amortise_months must be > 0 (months to spread training cost over), got {amortise}"
            )
        always_on = cfg.get("always_on", False)
        if not isinstance(always_on, bool):
            raise PricingError(f"{src}: always_on must be true or false, got {always_on!r}")
        return cls(
            api=api,
            self_hosted=machines,
            monthly_requests=int(cfg.get("monthly_requests", DEFAULT_MONTHLY_REQUESTS)),
            utilisation=utilisation,
            amortise_months=amortise,
            always_on=always_on,
            currency=str(cfg.get("currency", "USD")),
            source=src,
        )

    def api_price(self, model: str) -> ApiPrice:
        """The price of an API model; tolerant of ``provider/`` prefixes, case and dated snapshots."""
        key = _match_model(model, self.api)
        if key is None:
            known = ", ".join(sorted(self.api)) or "none"
            raise PricingError(
                f"no API price for model '{model}'; add `{model}: {{input_per_1k: ..., output_per_1k: ...}}` "
                f"under api: in {self.source} (known models: {known})"
            )
        return self.api[key]

    def machine(self, name: str) -> MachinePrice:
        """The hourly price of a self-hosted machine."""
        if name not in self.self_hosted:
            known = ", ".join(sorted(self.self_hosted)) or "none"
            raise PricingError(
                f"no self-hosted price for machine '{name}'; add `{name}: {{hourly_usd: ...}}` under "
                f"self_hosted: in {self.source}, or pick one of: {known}"
            )
        return self.self_hosted[name]


def _match_model(model: str, table: Mapping[str, Any]) -> str | None:
    """Find ``model``'s row: exact, then case-insensitive, then without provider prefix / snapshot date."""
    if model in table:
        return model
    lowered = {k.lower(): k for k in table}
    candidates = [model.lower()]
    bare = model.lower().rsplit("/", 1)[-1]
    candidates += [bare, _SNAPSHOT_SUFFIX.sub("", bare)]
    for c in candidates:
        if c in lowered:
            return lowered[c]
    return None


def default_pricing_path() -> Path:
    """``conf/pricing/default.yaml`` inside the package (wheel) or at the repo root (editable install)."""
    for conf in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf"):
        path = conf / "pricing" / "default.yaml"
        if path.exists():
            return path
    raise PricingError(f"{DEFAULT_PRICING_FILE} not found next to {_PACKAGE_DIR}; reinstall slmforge")


def load_pricing(
    source: str | Path | Mapping[str, Any] | DictConfig | Pricing | None = None,
) -> Pricing:
    """Load prices from a YAML path, a config mapping, an existing :class:`Pricing`, or the defaults."""
    if isinstance(source, Pricing):
        return source
    if source is None:
        source = default_pricing_path()
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise PricingError(f"pricing file {path} does not exist")
        return Pricing.from_config(OmegaConf.load(path), source=str(path))  # type: ignore[arg-type]
    return Pricing.from_config(source)
