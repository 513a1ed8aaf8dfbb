"""The LightningModule: a causal LM (+ peft adapter) trained on prompt-masked answers.

Design choices, each for a reason:
- Manual optimisation over *windows* (see ``batching``): the loss of every micro-batch is divided by the
  number of supervised tokens in the whole window, so accumulation equals one large batch exactly.
- The LM head runs only at supervised positions (``sparse_lm_head``): a classification answer is a few
  tokens out of ~70, and the 49k-vocabulary projection is the most expensive matmul of a small model.
- The prompt head every row of a micro-batch shares (chat template system turn, instruction, label list)
  runs once per micro-batch (``shared_prefix``): its keys/values are computed for one row and reused by
  all, and backward sums the rows' gradients into that one computation. Same loss and gradients as
  running it per row (tested); on short classification prompts more than half the tokens are this head.
  With adapter dropout on, the head's dropout mask is shared by the rows of a micro-batch instead of
  drawn per row (the same regulariser in expectation).
- Packing (``pack_max_tokens``): the rows' tokens after the shared head are laid end to end in one
  sequence, no padding, with a block-diagonal causal mask (no row sees another) and positions restarting
  per row, so packed and padded training give the same loss (tested). A dense mask makes attention
  quadratic in the packed length, so a micro-batch packs only while it fits ``pack_max_tokens``; longer
  ones run padded (with the shared head broadcast). When a whole window fits, its micro-batches run as
  one packed sequence (the same gradient: the loss is normalised over the window either way), so the
  shared head runs once per optimizer step.
- Checkpoints hold only trainable weights (the adapter + optimizer), not a copy of the frozen base model.
- Validation runs the task's predictor through the same code as ``evaluate`` so ``val/accuracy`` means
  the same thing as the final test accuracy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from slmforge.errors import DivergenceError
from slmforge.modeling.internals import (
    CACHE_KWARG,
    block_attention_mask,
    decoder_and_head,
    full_cache,
    returned_cache,
)
from slmforge.training.batching import IGNORE_INDEX
from slmforge.training.throughput import mfu, peak_bf16_flops

# A shorter shared head is not worth the extra forward call.
MIN_SHARED_PREFIX = 8


def shared_prefix_len(ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> int:
    """Leading columns identical (and real tokens) in every row, ending before the first position whose
    hidden state predicts a supervised token (right-padded rows, as ``pad_rows`` makes them)."""
    if ids.shape[0] < 2:
        return 0
    same = (ids == ids[:1]).all(0) & mask.bool().all(0)
    n = int(same.long().cumprod(0).sum())
    supervised = labels != IGNORE_INDEX
    if supervised.any():
        first = int(supervised.float().argmax(1)[supervised.any(1)].min())  # first supervised label column
        n = min(n, first - 1)  # the hidden state at first - 1 predicts it: it must be computed per row
    return max(n, 0)


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class CausalLMModule(L.LightningModule):
    def __init__(
        self,
        model: torch.nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_ratio: float = 0.05,
        min_lr_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
        label_smoothing: float = 0.0,
        sparse_lm_head: bool = True,
        fused_adamw: bool = False,
        shared_prefix: bool = True,
        pack_max_tokens: int = 1024,
        validate_fn: Callable[[list[dict[str, Any]]], list[Any]] | None = None,
        metrics_fn: Callable[[list[Any]], dict[str, Any]] | None = None,
        primary_metric: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints hold only the trainable weights
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.warmup_ratio = warmup_ratio
        self.min_lr_ratio = min_lr_ratio
        self.grad_clip = grad_clip
        self.label_smoothing = label_smoothing
        self.sparse_lm_head = sparse_lm_head
        self.fused_adamw = fused_adamw
        self.shared_prefix = shared_prefix
        self.pack_max_tokens = pack_max_tokens
        self.validate_fn = validate_fn
        self.metrics_fn = metrics_fn
        self.primary_metric = primary_metric
        self._val_rows: list[Any] = []
        self.last_val_metrics: dict[str, Any] = {}
        self.tokens_seen = 0
        self.supervised_tokens_seen = 0
        self.train_time_s = 0.0

    # ---- loss -------------------------------------------------------------------------------------
    def supervised_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy over supervised (answer + EOS) tokens, and their count."""
        ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
        targets = labels[:, 1:]
        selected = targets != IGNORE_INDEX
        parts = decoder_and_head(self.model) if self.sparse_lm_head else None
        if parts is None:
            logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1][selected]
            targets = targets[selected]
        else:
            shared = self._shared_head_len(ids, mask, labels)
            decoder, head = parts
            cache = None
            if shared:
                from transformers import DynamicCache

                head_kv = returned_cache(
                    decoder(input_ids=ids[:1, :shared], use_cache=True, **{CACHE_KWARG: full_cache()})
                ).layers
            lengths = mask.sum(1)
            if int(lengths.sum()) - (ids.shape[0] - 1) * shared <= self.pack_max_tokens:
                if shared:
                    cache = DynamicCache(ddp_cache_data=[(layer.keys, layer.values) for layer in head_kv])
                hidden_sel, targets = self._packed_hidden(decoder, ids, labels, lengths, shared, cache)
            else:
                if shared:
                    n = ids.shape[0]
                    cache = DynamicCache(
                        ddp_cache_data=[
                            (layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1))
                            for layer in head_kv
                        ]
                    )
                positions = torch.arange(shared, ids.shape[1], device=ids.device)[None].expand(
                    ids.shape[0], -1
                )
                kwargs = {CACHE_KWARG: cache, "use_cache": True} if shared else {}
                hidden = decoder(
                    input_ids=ids[:, shared:], attention_mask=mask, position_ids=positions, **kwargs
                ).last_hidden_state
                hidden_sel = hidden[:, :-1][selected[:, shared:]]
                targets = targets[selected]
            logits = head(hidden_sel)
        loss = F.cross_entropy(logits.float(), targets, reduction="sum", label_smoothing=self.label_smoothing)
        return loss, int(selected.sum())

    def _shared_head_len(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> int:
        shared = shared_prefix_len(ids, mask, labels) if self.shared_prefix else 0
        return shared if shared >= MIN_SHARED_PREFIX else 0

    def _packed_hidden(
        self,
        decoder: torch.nn.Module,
        ids: torch.Tensor,
        labels: torch.Tensor,
        lengths: torch.Tensor,
        shared: int,
        cache: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states at the supervised positions of all rows packed into one sequence (after the
        shared head, which ``cache`` holds), and their target tokens."""
        device = ids.device
        seg_ids, seg_pos, seg_next = [], [], []
        for row, n in enumerate(lengths.tolist()):
            seg_ids.append(ids[row, shared:n])
            seg_pos.append(torch.arange(shared, n, device=device))
            nxt = torch.full((n - shared,), IGNORE_INDEX, dtype=torch.long, device=device)
            nxt[:-1] = labels[row, shared + 1 : n]  # position t predicts the label at t + 1, in its own row
            seg_next.append(nxt)
        total = sum(len(x) for x in seg_ids)
        allowed = torch.zeros((total, shared + total), dtype=torch.bool, device=device)
        allowed[:, :shared] = True  # every row sees the shared head
        start = 0
        for seg in seg_ids:
            k = len(seg)
            allowed[start : start + k, shared + start : shared + start + k] = torch.ones(
                (k, k), dtype=torch.bool, device=device
            ).tril()
            start += k
        kwargs = {CACHE_KWARG: cache, "use_cache": True} if cache is not None else {}
        hidden = decoder(
            input_ids=torch.cat(seg_ids)[None],
            attention_mask=block_attention_mask(allowed[None, None], self.model),
            position_ids=torch.cat(seg_pos)[None],
            **kwargs,
        ).last_hidden_state[0]
        targets = torch.cat(seg_next)
        keep = targets != IGNORE_INDEX
        return hidden[keep], targets[keep]

    # ---- training ---------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # from_pretrained returns models in eval mode and Lightning keeps module modes as it finds them:
        # without this, adapter dropout would silently stay off during training.
        self.model.train()
        self.n_params = sum(p.numel() for p in self.model.parameters())
        self.peak_flops = (
            peak_bf16_flops(torch.cuda.get_device_name(self.device)) if self.device.type == "cuda" else None
        )

    def training_step(self, window: dict[str, Any], batch_idx: int) -> torch.Tensor:
        start = time.perf_counter()
        opt = self.optimizers()
        sched = self.lr_schedulers()
        total = max(1, window["n_supervised"])
        loss_total = torch.zeros((), device=self.device)
        micro_batches = self._merge_if_packable(window["micro_batches"])
        for micro in micro_batches:
            micro = {k: v.to(self.device) for k, v in micro.items()}
            loss_sum, _ = self.supervised_loss(micro)
            loss = loss_sum / total
            self.manual_backward(loss)
            loss_total += loss.detach()
        if not torch.isfinite(loss_total):
            # Stop before the optimizer writes NaN into the weights: nothing after this step could be trusted.
            lr = sched.get_last_lr()[0]
            raise DivergenceError(
                f"training diverged at optimizer step {self.global_step + 1}: the loss is "
                f"{float(loss_total)} (learning rate now {lr:.3g}). Lower train.lr (e.g. train.lr={self.lr / 10:.1g}), "
                f"keep train.grad_clip on, or check the data; results already written are kept and no adapter "
                f"was saved"
            )
        if self.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        self.tokens_seen += window["n_tokens"]
        self.supervised_tokens_seen += window["n_supervised"]
        self.train_time_s += time.perf_counter() - start
        self.log("train/loss", loss_total, prog_bar=True, on_step=True, on_epoch=True, batch_size=1)
        self.log("train/lr", sched.get_last_lr()[0], on_step=True, batch_size=1)
        tokens_per_s = self.tokens_seen / max(self.train_time_s, 1e-9)
        self.log("train/tokens_per_s", tokens_per_s, on_step=True, batch_size=1)
        if getattr(self, "peak_flops", None):  # GPUs with a known peak only
            self.log(
                "train/mfu", mfu(tokens_per_s, self.n_params, self.peak_flops), on_step=True, batch_size=1
            )
        return loss_total

    def _merge_if_packable(
        self, micro_batches: list[dict[str, torch.Tensor]]
    ) -> list[dict[str, torch.Tensor]]:
        """All micro-batches as one when packing is on and the window's tokens fit ``pack_max_tokens``
        (counting the shared head once per micro-batch, an upper bound)."""
        if len(micro_batches) < 2 or not self.pack_max_tokens or not self.sparse_lm_head:
            return micro_batches
        if sum(int(mb["attention_mask"].sum()) for mb in micro_batches) > self.pack_max_tokens * 2:
            return micro_batches  # cheap early out; the exact check is in supervised_loss
        width = max(mb["input_ids"].shape[1] for mb in micro_batches)
        fill = {"input_ids": 0, "attention_mask": 0, "labels": IGNORE_INDEX}
        merged = {
            key: torch.cat(
                [F.pad(mb[key], (0, width - mb[key].shape[1]), value=fill[key]) for mb in micro_batches]
            )
            for key in fill
        }
        ids, mask = merged["input_ids"], merged["attention_mask"]
        shared = self._shared_head_len(ids, mask, merged["labels"])
        if int(mask.sum()) - (ids.shape[0] - 1) * shared > self.pack_max_tokens:
            return micro_batches
        return [merged]

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
        groups = [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        kw: dict[str, Any] = {"lr": self.lr, "betas": self.betas}
        if self.fused_adamw:
            kw["fused"] = True
        opt = torch.optim.AdamW(groups, **kw)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = round(self.warmup_ratio * total)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: warmup_cosine(step, total, warmup, self.min_lr_ratio)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- validation through the task's predictor ----------------------------------------------------
    def validation_step(self, examples: list[dict[str, Any]], batch_idx: int) -> None:
        if self.validate_fn is not None:
            self._val_rows.extend(self.validate_fn(examples))

    def on_validation_epoch_end(self) -> None:
        if self.metrics_fn is None or not self._val_rows:
            return
        metrics = self.metrics_fn(self._val_rows)
        self._val_rows = []
        self.last_val_metrics = metrics
        scalars = {f"val/{k}": float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.log_dict(scalars, prog_bar=False, batch_size=1)
        if "val/accuracy" in scalars:
            self.log("val_acc", scalars["val/accuracy"], prog_bar=True, batch_size=1)
        if self.primary_metric and f"val/{self.primary_metric}" in scalars:
            # One name for the task's primary metric, whatever the task: what early stopping monitors.
            self.log("val/primary", scalars[f"val/{self.primary_metric}"], batch_size=1)

    # ---- checkpoints hold trainable weights only ------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainable = {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["slmforge"] = {
            "tokens_seen": self.tokens_seen,
            "supervised_tokens_seen": self.supervised_tokens_seen,
            "train_time_s": self.train_time_s,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("slmforge", {})
        self.tokens_seen = extra.get("tokens_seen", 0)
        self.supervised_tokens_seen = extra.get("supervised_tokens_seen", 0)
        self.train_time_s = extra.get("train_time_s", 0.0)
