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

Cold items (families IR, IL): the same encoder, turned around. A user is encoded as the unit-length weighted
sum of its training items (target rows weight 1, source rows ``source_weight``); a cold item is known by the
encodings of its support users (their source rows as the ``ColdItemBatch`` serves them). IL: score = the
query user's mean cosine similarity to the item's support users. IR: user-based kNN with baselines over the
support users, ``b_u + k/(k + lambda) sum_s w_s (r_s - b_s)`` with ``w = softmax(cos(u, s) / temperature)``
over the item's k support users and ``b`` a user's mean target training rating shrunk towards the target
mean (``shrinkage``). Training: episodes of warm target items (``metric_encoders.ItemRaters``: a batch of
target rows is the query, each item gets support users drawn from its other raters, the episode's items are
left out of every profile); triplet loss with the query user as anchor: IL, positive = its item's support
users, negative = those of the episode's other items; IR, positive and negative = two support users of its
item whose residual ratings (``r - b``) are closer to and at least ``rating_gap`` farther from the query's.
With the support withheld the prediction does not depend on the encoder, so the configured ``epochs`` are
trained; ``fit`` then selects IR's temperature and ``lambda`` (grids ``temperatures``, ``item_shrinkages``)
with the support.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.api import Budget, ColdBatch, ColdItemBatch, Episode, Method, TrainView, select_epochs
from methods.metric_encoders import (
    ItemEncoder,
    ItemEpisode,
    ItemRaters,
    ItemSet,
    fit_by_validation,
    item_epoch,
    profile_sets,
    query_positions,
    random_support_keep,
    support_positions,
    tensor,
    user_item_sets,
    user_profiles,
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
ITEM_FAMILIES = ("IR", "IL")  # cold items: ``predict`` gets a ``ColdItemBatch``


def user_means(view: TrainView, shrinkage: float) -> np.ndarray:
    """Each user's mean target training rating, shrunk towards the target mean by ``shrinkage`` pseudo-ratings
    (the target mean for a user without one)."""
    rows = view.history(view.target_domain)
    mean = float(rows.rating.mean()) if len(rows) else 0.0
    total = np.bincount(rows.user, weights=rows.rating, minlength=view.n_users)
    count = np.bincount(rows.user, minlength=view.n_users)
    return ((total + shrinkage * mean) / (count + shrinkage)).astype(np.float32)


class Siamese(Method):
    summary = "siamese item encoder with triplet loss; scores by similarity to support + source items"
    paper = (
        "Koch, Zemel, Salakhutdinov. Siamese Neural Networks for One-shot Image Recognition. "
        "ICML DL Workshop 2015; Schroff, Kalenichenko, Philbin. FaceNet (triplet loss). CVPR 2015"
    )
    families: ClassVar[tuple[str, ...]] = ("R", "L", "C", "IR", "IL")

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
        if view.family in ITEM_FAMILIES:
            return self._pretrain_items(view)
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
        return state | ({"item_mean": self.item_mean} if hasattr(self, "item_mean") else {})  # not in IR

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
        if view.family in ITEM_FAMILIES:
            return self._fit_items(view)
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
    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if self.encoder is None:
            raise RuntimeError("Siamese.predict called before fit")
        if isinstance(batch, ColdItemBatch):
            return self._predict_items(batch)
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

    # -- cold items (IR, IL) ------------------------------------------------------------------------------
    def setup_items(self, view: TrainView) -> None:
        """Every user's training rows and, in IR, rating baseline (charged once per domain; free again after
        ``pretrain``)."""
        cfg = self.config
        self.explicit = view.explicit
        self.profiles = user_profiles(view, int(cfg["max_history"]))
        if self.explicit:
            self.user_mean = tensor(user_means(view, float(cfg["shrinkage"])), self.device)
            self.temperature = float(cfg["temperature"])
            self.item_shrinkage = float(cfg["item_shrinkage"])

    def _pretrain_items(self, view: TrainView) -> None:
        """Item episodes for the configured epochs (a withheld support leaves no signal to select them)."""
        cfg, rng, gen = self.config, self.rng, self.torch_generator
        self.setup_items(view)
        self.encoder = ItemEncoder(view.n_items, int(cfg["dim"]), gen, normalize=True).to(self.device)
        optimizer = torch.optim.Adam(self.encoder.parameters(), lr=float(cfg["lr"]), fused=True)
        raters = ItemRaters(view.history(view.target_domain), view.n_items)

        def step(episode: ItemEpisode) -> None:
            loss = self._item_episode_loss(episode)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def run_epoch() -> bool:
            return item_epoch(view, cfg, rng, raters, 1, step)

        sel = select_epochs(view, run_epoch, [self.encoder], int(cfg["epochs"]), None, int(cfg["patience"]))
        self.selected = {"epochs": sel.best_epoch}

    def _fit_items(self, view: TrainView) -> None:
        """IR: the kernel's temperature and the item shrinkage, selected with the support; IL: nothing."""
        cfg = self.config
        self.setup_items(view)
        if not self.explicit:
            self.validation_score = view.validate(self.predict)
            return
        scores = {}
        for t in cfg["temperatures"]:
            for lam in cfg["item_shrinkages"]:
                self.temperature, self.item_shrinkage = float(t), float(lam)
                scores[(float(t), float(lam))] = view.validate(self.predict)
        best = max(scores, key=lambda key: scores[key])
        self.temperature, self.item_shrinkage = best
        self.validation_score = scores[best]
        self.selected |= {"temperature": best[0], "item_shrinkage": best[1]}

    def _encode(
        self, users: np.ndarray, exclude: torch.Tensor | None = None, history: Any = None
    ) -> torch.Tensor:
        """Unit-length weighted sums of the users' item embeddings (zero for a user with no row)."""
        assert self.encoder is not None
        sets = profile_sets(self.profiles, users, self.config["source_weight"], self.device, history, exclude)
        total = (sets.weights.unsqueeze(-1) * self.encoder(sets.items)).sum(1)
        return torch.nn.functional.normalize(total, dim=-1)

    def _item_episode_loss(self, episode: ItemEpisode) -> torch.Tensor:
        cfg = self.config
        users, q_pos, s_pos = episode.users()
        encoded = self._encode(users, exclude=tensor(episode.items, self.device))
        query = encoded[tensor(q_pos, self.device)]  # (B, D): the anchors
        support = encoded[tensor(s_pos, self.device)]  # (n, S, D)
        mask = tensor(episode.support_mask, self.device, torch.float32)
        item = tensor(episode.query_item, self.device)
        margin = float(cfg["margin"])
        if self.explicit:
            q_user = tensor(episode.query_user, self.device)
            s_user = tensor(episode.support_user, self.device)
            q_res = tensor(episode.query_rating, self.device) - self.user_mean[q_user]
            s_res = (tensor(episode.support_rating, self.device) - self.user_mean[s_user])[item]  # (B, S)
            dist = 2.0 - 2.0 * (support[item] @ query.unsqueeze(-1)).squeeze(-1)  # (B, S)
            gap = (s_res - q_res.unsqueeze(-1)).abs()
            valid = (gap.unsqueeze(-1) + float(cfg["rating_gap"]) <= gap.unsqueeze(-2)).float()
            valid = valid * mask[item].unsqueeze(-1) * mask[item].unsqueeze(-2)
            hinge = torch.relu(margin + dist.unsqueeze(-1) - dist.unsqueeze(-2))
            return (valid * hinge).sum() / valid.sum().clamp_min(1.0)
        centre = (mask.unsqueeze(-1) * support).sum(1) / mask.sum(1, keepdim=True).clamp_min(1.0)  # (n, D)
        dist = 2.0 - 2.0 * query @ centre.T  # (B, n): mean squared distance to each item's support users
        positive = dist.gather(1, item.unsqueeze(1))
        other = torch.ones_like(dist).scatter(1, item.unsqueeze(1), 0.0)
        hinge = torch.relu(margin + positive - dist) * other
        return hinge.sum() / other.sum().clamp_min(1.0)

    def _predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        s_user, s_item = support_positions(batch)
        support = self._encode(batch.support_users, history=batch.history)[tensor(s_user, self.device)]
        owner = tensor(s_item, self.device)
        n = len(batch.items)
        if not batch.wants_ratings:
            query = self._encode(np.asarray(batch.query_users))
            total = support.new_zeros(n, support.shape[1]).index_add(0, owner, support)
            count = torch.bincount(owner, minlength=n).clamp_min(1).to(support.dtype)
            return (query @ (total / count.unsqueeze(-1)).T).cpu().numpy()
        users, position = np.unique(batch.query_user, return_inverse=True)
        query = self._encode(users)[tensor(position, self.device)]  # (N, D)
        q_user = tensor(batch.query_user, self.device)
        item = tensor(np.searchsorted(batch.items, batch.query_item), self.device)
        s_users = tensor(batch.support.user, self.device)
        residual = tensor(batch.support.rating, self.device, torch.float32) - self.user_mean[s_users]
        # each query pair against the support rows of its item: support rows are sorted by item
        counts = torch.bincount(owner, minlength=n)
        width = int(counts.max()) if len(owner) else 0
        starts = torch.cumsum(counts, 0) - counts
        slot = starts[item].unsqueeze(-1) + torch.arange(width, device=self.device)  # (N, width)
        valid = torch.arange(width, device=self.device) < counts[item].unsqueeze(-1)
        slot = slot.clamp_max(max(len(owner) - 1, 0))
        out = self.user_mean[q_user].clone()
        if width == 0:
            return out.cpu().numpy()
        sim = (support[slot] @ query.unsqueeze(-1)).squeeze(-1)  # (N, width)
        kernel = torch.softmax((sim / self.temperature).masked_fill(~valid, float("-inf")), dim=-1)
        kernel = kernel.nan_to_num(0.0)
        k = counts[item].to(torch.float32)
        shrink = k / (k + self.item_shrinkage)
        return (out + shrink * (kernel * residual[slot]).sum(-1)).cpu().numpy()
