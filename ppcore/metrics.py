"""The feature distances of the paper's Figure 1, on the logits of one mini-batch."""

from __future__ import annotations

import torch


def feature_distances(logits_clean: torch.Tensor, logits_pair: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, float]:
    """d_per: mean l2 distance between each clean image's logits and its noisy copy's;
    d_intra / d_inter: mean l2 distance between the logits of pairs of distinct images of the
    same / of different classes. NaN where the batch has no such pair."""
    logits_clean = logits_clean.detach().float()
    d_per = (logits_clean - logits_pair.detach().float()).norm(dim=1).mean()
    dist = torch.cdist(logits_clean, logits_clean)
    same = labels.view(-1, 1) == labels.view(1, -1)
    upper = torch.ones_like(same).triu(diagonal=1)
    intra, inter = dist[same & upper], dist[~same & upper]
    nan = torch.tensor(float("nan"))
    return {
        "d_per": float(d_per),
        "d_intra": float(intra.mean()) if intra.numel() else float(nan),
        "d_inter": float(inter.mean()) if inter.numel() else float(nan),
    }
