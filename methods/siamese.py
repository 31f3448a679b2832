"""Siamese: a shared item encoder trained with a triplet loss, scoring by similarity to the user's items.

Koch, Zemel, Salakhutdinov. "Siamese Neural Networks for One-shot Image Recognition." ICML Deep Learning
Workshop 2015 (one shared encoder, few-shot prediction by similarity to the support); Schroff, Kalenichenko,
Philbin. "FaceNet: A Unified Embedding for Face Recognition and Clustering." CVPR 2015 (the triplet loss on
unit-length embeddings: ``max(0, margin + |a - p|^2 - |a - n|^2)``).

Model: ``metric_encoders.ItemEncoder`` with unit-length rows, one space over every domain. A user is known by
its target-domain support items (weight 1) and its source-domain history (weight ``source_weight``), so a
cold user at K=0 (families R and C) is described by source items alone, and at K>0 the support joins them.
No gradient steps are taken at prediction time.

Training: episodes over warm users of the target domain (``view.episodes``); of each user's support rows a
random first k in 0..support_size is kept (so every K, including 0, is trained), next to its source history.
Families L and C (implicit): anchor = one of the user's kept support or history items, positive = one of its
query items, negative = a uniformly drawn target item; every (anchor, positive, negative) triple of the
episode enters the loss. Ranking score of a candidate = its weighted mean cosine similarity to the user's
items. Family R (ratings): anchor = a rated support or history item (source ratings are also 1..5),
positive and negative = two query items of the same user whose ratings are respectively closer to and at
least ``rating_gap`` farther from the anchor's rating. Predicted rating of item q = the similarity-weighted
mean of the user's support and history ratings, weights ``w_j exp(cos(q, j) / temperature)``, taken relative
to item means (item-based kNN with baselines, Koren, KDD 2008): ``mu_q + sum_j k_j (r_j - mu_j)``, where
``mu`` is the item's mean training rating shrunk towards its domain's mean; a user with no rated item gets
``mu_q``. Relative ratings matter: the plain weighted mean of a user's ratings ignores that items differ.

Tuned on validation cold users: the number of epochs (early stopping, with their support withheld:
``validate_pretrain``, so the encoder is trained once per task group, in ``pretrain``), then in family R the
temperature from the ``temperatures`` grid (with the support, in ``fit``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.api import Budget, ColdBatch, Episode, Method, TrainView
from methods.metric_encoders import (
    ItemEncoder,
    ItemSet,
    fit_by_validation,
    query_positions,
    random_support_keep,
    tensor,
    user_item_sets,
)


def item_means(view: TrainView, shrinkage: float) -> np.ndarray:
    """Each item's mean training rating, shrunk towards its domain's mean by ``shrinkage`` pseudo-ratings."""
    out = np.zeros(view.n_items, dtype=np.float32)
    for domain in view.domains:
        rows = view.history(domain)
        if len(rows) == 0:
            continue
        mean = float(rows.rating.mean())
        total = np.bincount(rows.item, weights=rows.rating, minlength=view.n_items)
        count = np.bincount(rows.item, minlength=view.n_items)
        items = view.items_of(domain)
        out[items] = (total[items] + shrinkage * mean) / (count[items] + shrinkage)
    return out


CHUNK = 4096  # query pairs scored at once in family R


class Siamese(Method):
    summary = "siamese item encoder with triplet loss; scores by similarity to support + source items"
    paper = (
        "Koch, Zemel, Salakhutdinov. Siamese Neural Networks for One-shot Image Recognition. "
        "ICML DL Workshop 2015; Schroff, Kalenichenko, Philbin. FaceNet (triplet loss). CVPR 2015"
    )
    families: ClassVar[tuple[str, ...]] = ("R", "L", "C")

    def __init__(self, config: dict[str, Any], seed: int, device: str = "cpu") -> None:
        super().__init__(config, seed, device)
        self.encoder: ItemEncoder | None = None
        self.temperature = 0.0  # family R's kernel temperature, set in fit

    # -- training ---------------------------------------------------------------------------------------
    def setup(self, view: TrainView) -> None:
        """Facts of the view, free of budget."""
        self.explicit = view.explicit
        self.target_items = tensor(view.items_of(view.target_domain), self.device)
        if self.explicit:
            self.temperature = float(self.config["temperature"])

    def pretrain(self, view: TrainView) -> None:
        """The encoder's episodes, epochs selected with the support withheld (``validate_pretrain``)."""
        cfg, rng, gen = self.config, self.rng, self.torch_generator
        self.setup(view)
        if self.explicit:
            self.item_mean = tensor(item_means(view, float(cfg["shrinkage"])), self.device)
        self.encoder = ItemEncoder(view.n_items, int(cfg["dim"]), gen, normalize=True).to(self.device)
        optimizer = torch.optim.Adam(self.encoder.parameters(), lr=float(cfg["lr"]), fused=True)

        def step(episode: Episode) -> None:
            loss = self._episode_loss(episode, rng, gen)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        sel = fit_by_validation(view, self.encoder, cfg, rng, step, self.predict, view.validate_pretrain)
        self.selected = {"epochs": sel.best_epoch}

    def pretrained_state(self) -> dict[str, Any]:
        assert self.encoder is not None
        state = {"encoder": self.encoder.state_dict(), "selected": dict(self.selected)}
        return state | ({"item_mean": self.item_mean} if self.explicit else {})

    def load_pretrained(self, state: dict[str, Any]) -> None:
        n_items, dim = state["encoder"]["table.weight"].shape
        self.encoder = ItemEncoder(n_items, dim, torch.Generator(), normalize=True)
        self.encoder.load_state_dict(state["encoder"])
        self.encoder.to(self.device)
        if "item_mean" in state:
            self.item_mean = state["item_mean"].to(self.device)
        self.selected = dict(state["selected"])

    def fit(self, view: TrainView, budget: Budget) -> None:
        """Pretrain unless done (or loaded); then, with the support, family R's temperature."""
        cfg = self.config
        if self.encoder is None:
            self.pretrain(view)
        self.setup(view)
        if not self.explicit:
            self.validation_score = view.validate(self.predict)
        else:
            scores = {}
            for t in cfg["temperatures"]:
                self.temperature = float(t)
                scores[float(t)] = view.validate(self.predict)
            self.temperature = max(scores, key=lambda t: scores[t])
            self.validation_score = scores[self.temperature]
            self.selected["temperature"] = self.temperature

    def _episode_loss(self, episode: Episode, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        cfg, encoder = self.config, self.encoder
        assert encoder is not None
        n = len(episode.users)
        keep = random_support_keep(n, cfg["support_size"], rng)
        sets = user_item_sets(
            episode.support, episode.history, n, cfg["source_weight"], cfg["max_history"], self.device, keep
        )
        anchors = encoder(sets.items)  # (n, L, D)
        query = tensor(episode.query.item.reshape(n, -1), self.device)
        q = query.shape[1]
        d_ap = 2.0 - 2.0 * anchors @ encoder(query).transpose(1, 2)  # (n, L, q), unit vectors
        if self.explicit:
            r_q = tensor(episode.query.rating.reshape(n, 1, q), self.device, torch.float32)
            gap = (r_q - sets.ratings.unsqueeze(-1)).abs()  # (n, L, q): |rating(query) - rating(anchor)|
            valid = gap.unsqueeze(-1) + float(cfg["rating_gap"]) <= gap.unsqueeze(-2)  # (n, L, p, neg)
            weight = valid.float() * sets.weights[:, :, None, None]
            hinge = torch.relu(cfg["margin"] + d_ap.unsqueeze(-1) - d_ap.unsqueeze(-2))
        else:
            m = int(cfg["negatives"])
            draws = torch.randint(len(self.target_items), (n, q * m), generator=gen).to(self.device)
            d_an = 2.0 - 2.0 * anchors @ encoder(self.target_items[draws]).transpose(1, 2)  # (n, L, q*m)
            hinge = torch.relu(cfg["margin"] + d_ap.unsqueeze(-1) - d_an.reshape(n, -1, q, m))
            weight = sets.weights[:, :, None, None].expand_as(hinge)
        return (weight * hinge).sum() / weight.sum().clamp_min(1.0)

    # -- prediction -------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: ColdBatch) -> np.ndarray:
        if self.encoder is None:
            raise RuntimeError("Siamese.predict called before fit")
        cfg = self.config
        sets = user_item_sets(
            batch.support, batch.history, len(batch), cfg["source_weight"], cfg["max_history"], self.device
        )
        if batch.wants_ratings:
            return self._ratings(sets, *query_positions(batch, self.device))
        candidates = self.encoder(tensor(batch.candidates, self.device, torch.int64))
        profile = (sets.weights.unsqueeze(-1) * self.encoder(sets.items)).sum(1)  # (B, D)
        return (profile @ candidates.T).cpu().numpy()  # weighted mean cosine, up to a factor

    def _ratings(self, sets: ItemSet, users: torch.Tensor, items: torch.Tensor) -> np.ndarray:
        """Item mean plus the kernel-weighted mean of the user's residuals (rating minus item mean)."""
        assert self.encoder is not None
        user_items = self.encoder(sets.items)  # (B, L, D)
        residuals = sets.ratings - self.item_mean[sets.items]
        out = np.empty(len(users), dtype=np.float32)
        for begin in range(0, len(users), CHUNK):  # bounded memory: (CHUNK, L, D)
            u, item = users[begin : begin + CHUNK], items[begin : begin + CHUNK]
            sim = (user_items[u] @ self.encoder(item).unsqueeze(-1)).squeeze(-1)  # (chunk, L)
            weight = sets.weights[u]
            logits = (sim / self.temperature + weight.log()).masked_fill(weight <= 0, float("-inf"))
            kernel = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # all zero for a user with no items
            out[begin : begin + len(u)] = (
                (self.item_mean[item] + (kernel * residuals[u]).sum(-1)).cpu().numpy()
            )
        return out
