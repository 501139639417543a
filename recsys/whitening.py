"""Partial whitening of a static student's token table: one linear map that every sentence vector shares."""

from __future__ import annotations

import numpy as np
import torch


def whiten_weights(weight: torch.Tensor, vectors: np.ndarray, strength: float, center: bool = True) -> torch.Tensor:
    """Token table W' = (W - mu) V diag((s / s_max) ** -strength) V^T, rescaled to W's largest row norm.

    mu, V, s: mean, principal axes and singular values of the unit-normalised sentence vectors ``vectors`` (mean
    token vectors of training sentences). Mean pooling is linear, so every sentence's vector becomes exactly
    (v - mu) M: the student's dominant directions are damped, which lifts STS (docs/students/README.md). The
    rescale is one global factor (cosines unchanged) that keeps the table inside float16's range."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    mu = x.mean(0) if center else np.zeros(x.shape[1])
    _, s, vt = np.linalg.svd(x - mu, full_matrices=False)
    m = vt.T @ np.diag((s / s[0]) ** -strength) @ vt
    w = weight.detach().to(torch.float64)
    out = (w - torch.from_numpy(mu)) @ torch.from_numpy(m)
    out = out * (w.norm(dim=1).max() / out.norm(dim=1).max())
    return out.to(weight.dtype)
