"""The distillation objective: squared distance to the teacher plus in-batch InfoNCE (pure tensor functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from recsys.distill import DistillConfig


def info_nce(s: torch.Tensor, anchor: torch.Tensor, temperature: float, same: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric in-batch InfoNCE: row i of ``s`` should match row i of ``anchor``; ``same`` masks pairs that
    are no negatives (duplicates)."""
    logits = F.normalize(s, dim=1) @ F.normalize(anchor, dim=1).T / temperature
    if same is not None:
        logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(s))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def pair_loss(s_en: torch.Tensor, s_xx: torch.Tensor, t: torch.Tensor, en_idx: np.ndarray, cfg: DistillConfig,
          t_xx: torch.Tensor | None = None) -> torch.Tensor:
    """Squared distance to the teacher (mean over the batch) for both sides, plus optional InfoNCE.
    `t_xx`: the teacher's own vectors of the translations (else both sides learn teacher(English))."""
    loss = (s_en - t).pow(2).sum(1).mean() + (s_xx - (t if t_xx is None else t_xx)).pow(2).sum(1).mean()
    if cfg.contrastive_weight > 0:
        anchor = t if cfg.contrastive_target == "teacher" else s_en
        e = torch.from_numpy(en_idx)
        same = (e[:, None] == e[None, :]) & ~torch.eye(len(e), dtype=torch.bool)  # duplicates are no negatives
        loss = loss + cfg.contrastive_weight * info_nce(s_xx, anchor, cfg.temperature, same)
    return loss


def monolingual_loss(s: torch.Tensor, t: torch.Tensor, cfg: DistillConfig) -> torch.Tensor:
    """Squared distance of student(x) to teacher(x), plus in-batch InfoNCE against the teacher's vectors."""
    loss = (s - t).pow(2).sum(1).mean()
    if cfg.contrastive_weight > 0 and len(s) > 1:
        loss = loss + cfg.contrastive_weight * info_nce(s, t, cfg.temperature)
    return loss
