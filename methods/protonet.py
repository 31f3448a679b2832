"""ProtoNet: prototypical networks adapted to cross-domain cold-start recommendation.

Snell, Swersky, Zemel. "Prototypical Networks for Few-shot Learning." NeurIPS 2017.

Model: an item encoder (``metric_encoders.ItemEncoder``, one embedding space over every domain) and squared
Euclidean distances, as in the paper. A user's prototype is the weighted mean of the embeddings of its
target-domain support items (weight 1) and of its source-domain history (learned weight ``a``), shrunk
towards a learned prior prototype (learned weight ``w0``): ``p = (w0 prior + sum_s e_s + a sum_h e_h) /
(w0 + K + a H)``. Source items thus build the prototype of a cold user at K=0 (families R and C); at K>0 the
support items join them. No gradient steps are taken at prediction time.

Ranking (families L, C): score of a candidate item = minus its squared distance to the user's prototype.
Training: episodes over warm users of the target domain (``view.episodes``). Support = the user's target
rows, of which a random first k in 0..support_size are kept (so every K, including 0, is trained), plus the
user's source history; query = the other target rows. Loss: sampled softmax of each query item against the
episode's other users' query items and uniformly drawn target items (logits = minus distances), the
few-shot classification loss of the paper with items as the classes.

Ratings (family R): one prototype per rating level (each integer of the task's ``view.rating_range``, 1..5
on Amazon), built from the user's rated items of both the support and the source history (source ratings
share the scale, so at K=0 the source ratings alone define the levels). A level the user never used falls
back to a learned prior prototype of that level (the same shrinkage as above, so every level is always
defined and no user needs a separate fallback). Prediction =
the expected rating under the softmax over levels of ``log(w0 + n_l) + b_l + c_{q,l} - |e_q - p_l|^2``:
minus the squared distance of the query item to the level prototype, plus the log of the user's (weighted,
shrunk) count of ratings at that level, a learned level bias and a learned per-item level bias. The counts
are the mixing weights ``pi_k`` of the paper's reading of the classifier as mixture density estimation:
without them a user who rates nearly everything 5 would look the same as one who uses all levels evenly.
Training: the same episodes, rating MSE on the query rows.

Tuned on validation cold users: the number of epochs (early stopping with patience, the support withheld:
``validate_pretrain``, so training runs once per task group, in ``pretrain``); all else is config.

Cold items (families IR, IL): the same model turned around (``ItemPrototypeModel``). A user is encoded as
above from its training rows (target rows weight 1, source rows learned weight ``a``, shrunk towards a learned
user prior); a cold item's prototype is the mean of its support users' encodings, shrunk towards a learned
item prior (the support users' source rows are those the ``ColdItemBatch`` serves). IL: score = minus the
squared distance of the query user's encoding to the prototype. IR: per rating level, a prototype of the
support users who gave that rating, and the expected rating under the softmax of ``log(w0 + n_l) + b_l +
c_{u,l} - |e_u - p_l|^2``, with ``c_u`` the query user's learned prior over levels (the mirror of the
per-item level bias above). Training: episodes of warm target items (``metric_encoders.ItemRaters``): a
batch of target training rows is the query, each of its items gets k support users drawn from its other
raters, and the episode's items are left out of every profile (a cold item is in none). Loss: IL the
prototypical loss with the episode's items as the classes; IR the rating MSE. Epochs: IR selected with the
support withheld (the query users' side still varies); in IL a withheld support makes every cold item alike
(no signal), so the configured ``epochs`` are trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

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
    rating_levels,
    squared_distances,
    support_positions,
    tensor,
    user_item_sets,
    user_profiles,
)

ITEM_FAMILIES = ("IR", "IL")  # cold items: ``predict`` gets a ``ColdItemBatch``


class PrototypeModel(nn.Module):
    """Item encoder plus the prototype's learned weights and priors (per rating level, given ``levels``: the
    task's rating values, e.g. ``rating_levels(view.rating_range)``)."""

    def __init__(
        self, n_items: int, dim: int, generator: torch.Generator, levels: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.encoder = ItemEncoder(n_items, dim, generator)
        self.log_prior_weight = nn.Parameter(torch.zeros(()))
        self.log_source_weight = nn.Parameter(torch.zeros(()))
        if levels is not None:
            n = len(levels)
            self.register_buffer("level_values", torch.tensor(np.asarray(levels), dtype=torch.float32))
            self.level_prior = nn.Parameter(torch.zeros(n, dim))
            self.level_bias = nn.Parameter(torch.zeros(n))
            self.item_level_bias = nn.Embedding(n_items, n)  # the item's own prior over levels
            nn.init.zeros_(self.item_level_bias.weight)
        else:
            self.prior = nn.Parameter(torch.zeros(dim))

    def source_weight(self) -> torch.Tensor:
        return self.log_source_weight.exp()

    def prototypes(self, sets: ItemSet) -> torch.Tensor:
        """(B, D): shrunk weighted mean of each user's item embeddings."""
        w0 = self.log_prior_weight.exp()
        total = (sets.weights.unsqueeze(-1) * self.encoder(sets.items)).sum(1) + w0 * self.prior
        return total / (sets.weights.sum(1, keepdim=True) + w0)

    def level_prototypes(self, sets: ItemSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Per rating level, the shrunk weighted mean of the user's items at that level (B, levels, D), and
        the log of the level's weighted count plus ``w0`` (B, levels): the user's own prior over levels."""
        w0 = self.log_prior_weight.exp()
        n = len(self.level_values)
        levels = sets.levels(float(self.level_values[0]), n)
        onehot = nn.functional.one_hot(levels, n).float() * sets.weights.unsqueeze(-1)
        total = onehot.transpose(1, 2) @ self.encoder(sets.items) + w0 * self.level_prior
        mass = onehot.sum(1) + w0
        return total / mass.unsqueeze(-1), mass.log()

    def expected_rating(
        self, items: torch.Tensor, protos: torch.Tensor, log_mass: torch.Tensor
    ) -> torch.Tensor:
        """Expected level of ``items`` (N,) under softmax over levels of log prior minus squared distance to
        the level prototypes of the item's user (``protos`` (N, levels, D), ``log_mass`` (N, levels))."""
        dist = ((protos - self.encoder(items).unsqueeze(1)) ** 2).sum(-1)
        logits = log_mass + self.level_bias + self.item_level_bias(items) - dist
        return torch.softmax(logits, dim=-1) @ self.level_values.to(dist.dtype)


class ItemPrototypeModel(nn.Module):
    """The cold-item model: user encodings from their item sets, item prototypes from support users'
    encodings (per rating level, given ``levels``; ``n_users`` sizes the users' learned level priors)."""

    def __init__(
        self,
        n_items: int,
        dim: int,
        generator: torch.Generator,
        levels: Sequence[float] | None = None,
        n_users: int = 0,
    ) -> None:
        super().__init__()
        self.encoder = ItemEncoder(n_items, dim, generator)
        self.log_prior_weight = nn.Parameter(torch.zeros(()))
        self.log_source_weight = nn.Parameter(torch.zeros(()))
        self.prior = nn.Parameter(torch.zeros(dim))
        self.log_item_prior_weight = nn.Parameter(torch.zeros(()))
        if levels is not None:
            n = len(levels)
            self.register_buffer("level_values", torch.tensor(np.asarray(levels), dtype=torch.float32))
            self.level_prior = nn.Parameter(torch.zeros(n, dim))
            self.level_bias = nn.Parameter(torch.zeros(n))
            self.user_level_bias = nn.Embedding(n_users, n)  # the query user's own prior over levels
            nn.init.zeros_(self.user_level_bias.weight)
        else:
            self.item_prior = nn.Parameter(torch.zeros(dim))

    def source_weight(self) -> torch.Tensor:
        return self.log_source_weight.exp()

    def users(self, sets: ItemSet) -> torch.Tensor:
        """(B, D): shrunk weighted mean of each user's item embeddings (``PrototypeModel.prototypes``)."""
        w0 = self.log_prior_weight.exp()
        total = (sets.weights.unsqueeze(-1) * self.encoder(sets.items)).sum(1) + w0 * self.prior
        return total / (sets.weights.sum(1, keepdim=True) + w0)

    def item_prototypes(self, support: torch.Tensor, owner: torch.Tensor, n_items: int) -> torch.Tensor:
        """(n_items, D): mean of the support users' encodings ``support`` (S, D) per item ``owner`` (S,),
        shrunk towards the item prior (an item without support is the prior)."""
        w0 = self.log_item_prior_weight.exp()
        total = (
            support.new_zeros(n_items, support.shape[1]).index_add(0, owner, support) + w0 * self.item_prior
        )
        count = torch.bincount(owner, minlength=n_items).to(support.dtype) + w0
        return total / count.unsqueeze(-1)

    def level_prototypes(
        self, support: torch.Tensor, owner: torch.Tensor, rating: torch.Tensor, n_items: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per item and rating level, the shrunk mean of the encodings of the support users who gave that
        rating (n_items, levels, D), and the log of the level's count plus ``w0`` (n_items, levels)."""
        w0 = self.log_item_prior_weight.exp()
        n, lowest = len(self.level_values), float(self.level_values[0])
        level = (torch.floor(rating + 0.5).clamp(lowest, lowest + n - 1) - lowest).long()
        slot = owner * n + level
        total = support.new_zeros(n_items * n, support.shape[1]).index_add(0, slot, support)
        total = total.view(n_items, n, -1) + w0 * self.level_prior
        mass = torch.bincount(slot, minlength=n_items * n).to(support.dtype).view(n_items, n) + w0
        return total / mass.unsqueeze(-1), mass.log()

    def expected_rating(
        self, query: torch.Tensor, users: torch.Tensor, protos: torch.Tensor, log_mass: torch.Tensor
    ) -> torch.Tensor:
        """Expected level of query users (encodings ``query`` (N, D), global ``users``) under softmax over
        levels of log prior minus squared distance to their item's level prototypes ``protos`` (N, L, D)."""
        dist = ((protos - query.unsqueeze(1)) ** 2).sum(-1)
        logits = log_mass + self.level_bias + self.user_level_bias(users) - dist
        return torch.softmax(logits, dim=-1) @ self.level_values.to(dist.dtype)


class ProtoNet(Method):
    summary = "prototypical network: user prototype from support + source items, minus distance as score"
    paper = "Snell, Swersky, Zemel. Prototypical Networks for Few-shot Learning. NeurIPS 2017"
    families: ClassVar[tuple[str, ...]] = ("R", "L", "C", "IR", "IL")

    def __init__(self, config: dict[str, Any], seed: int, device: str = "cpu") -> None:
        super().__init__(config, seed, device)
        self.model: Any = None  # PrototypeModel, or ItemPrototypeModel in the cold-item families

    # -- training ---------------------------------------------------------------------------------------
    def setup(self, view: TrainView) -> None:
        """Facts of the view, free of budget."""
        self.explicit = view.explicit
        self.target_items = tensor(view.items_of(view.target_domain), self.device)

    def pretrain(self, view: TrainView) -> None:
        """All of training: episodes, epochs selected with the support withheld (``validate_pretrain``)."""
        if view.family in ITEM_FAMILIES:
            return self._pretrain_items(view)
        cfg, rng, gen = self.config, self.rng, self.torch_generator
        self.setup(view)
        levels = rating_levels(view.rating_range) if view.explicit else None
        self.model = PrototypeModel(view.n_items, int(cfg["dim"]), gen, levels).to(self.device)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=float(cfg["lr"]), fused=True)

        def step(episode: Episode) -> None:
            loss = self._episode_loss(episode, rng, gen)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        sel = fit_by_validation(view, self.model, cfg, rng, step, self.predict, view.validate_pretrain)
        self.selected = {"epochs": sel.best_epoch}

    def pretrained_state(self) -> dict[str, Any]:
        assert self.model is not None
        return {"model": self.model.state_dict(), "selected": dict(self.selected)}

    def load_pretrained(self, state: dict[str, Any]) -> None:
        values = state["model"]
        n_items, dim = values["encoder.table.weight"].shape
        levels = values["level_values"].tolist() if "level_values" in values else None
        if "log_item_prior_weight" in values:  # the cold-item model
            n_users = values["user_level_bias.weight"].shape[0] if levels is not None else 0
            self.model = ItemPrototypeModel(n_items, dim, torch.Generator(), levels, n_users)
        else:
            self.model = PrototypeModel(n_items, dim, torch.Generator(), levels)
        self.model.load_state_dict(values)
        self.model.to(self.device)
        self.selected = dict(state["selected"])

    def fit(self, view: TrainView, budget: Budget) -> None:
        """Pretrain unless done (or loaded); the record's validation score is then taken with the support."""
        if self.model is None:
            self.pretrain(view)
        if view.family in ITEM_FAMILIES:
            self.setup_items(view)
        else:
            self.setup(view)
        self.validation_score = view.validate(self.predict)

    def _episode_loss(self, episode: Episode, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        cfg, model = self.config, self.model
        assert model is not None
        n = len(episode.users)
        keep = random_support_keep(n, cfg["support_size"], rng)
        sets = user_item_sets(
            episode.support, episode.history, n, model.source_weight(), cfg["max_history"], self.device, keep
        )
        query = tensor(episode.query.item.reshape(n, -1), self.device)
        if self.explicit:
            rating = tensor(episode.query.rating.reshape(n, -1), self.device, torch.float32)
            owner = torch.arange(n, device=self.device).repeat_interleave(query.shape[1])
            protos, log_mass = model.level_prototypes(sets)
            pred = model.expected_rating(query.reshape(-1), protos[owner], log_mass[owner])
            return ((pred - rating.reshape(-1)) ** 2).mean()
        draws = torch.randint(len(self.target_items), (int(cfg["negatives"]),), generator=gen).to(self.device)
        candidates = torch.cat([query.reshape(-1), self.target_items[draws]])
        logits = -squared_distances(model.prototypes(sets), model.encoder(candidates))
        q = query.shape[1]
        own = torch.zeros_like(logits, dtype=torch.bool)
        users = torch.arange(n, device=self.device)
        own[:, : n * q] = torch.arange(n * q, device=self.device)[None, :] // q == users[:, None]
        positive = logits[:, : n * q].reshape(n, n, q)[users, users]  # (n, q)
        rest = torch.logsumexp(logits.masked_fill(own, float("-inf")), dim=1, keepdim=True)
        return (torch.logaddexp(positive, rest) - positive).mean()

    # -- prediction -------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: ColdBatch | ColdItemBatch) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("ProtoNet.predict called before fit")
        if isinstance(batch, ColdItemBatch):
            return self._predict_items(batch)
        model = self.model
        sets = user_item_sets(
            batch.support,
            batch.history,
            len(batch),
            model.source_weight(),
            self.config["max_history"],
            self.device,
        )
        if batch.wants_ratings:
            users, items = query_positions(batch, self.device)
            protos, log_mass = model.level_prototypes(sets)
            return model.expected_rating(items, protos[users], log_mass[users]).cpu().numpy()
        candidates = tensor(batch.candidates, self.device, torch.int64)
        scores = -squared_distances(model.prototypes(sets), model.encoder(candidates))
        return scores.cpu().numpy()

    # -- cold items (IR, IL) ------------------------------------------------------------------------------
    def setup_items(self, view: TrainView) -> None:
        """Every user's training rows (charged once per domain; free again after ``pretrain``)."""
        self.explicit = view.explicit
        self.profiles = user_profiles(view, int(self.config["max_history"]))

    def _pretrain_items(self, view: TrainView) -> None:
        """Item episodes; epochs selected with the support withheld in IR, the configured epochs in IL."""
        cfg, rng, gen = self.config, self.rng, self.torch_generator
        self.setup_items(view)
        levels = rating_levels(view.rating_range) if view.explicit else None
        model = ItemPrototypeModel(view.n_items, int(cfg["dim"]), gen, levels, view.n_users).to(self.device)
        self.model = model
        optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg["lr"]), fused=True)
        raters = ItemRaters(view.history(view.target_domain), view.n_items)
        min_support = 0 if view.explicit else 1

        def step(episode: ItemEpisode) -> None:
            loss = self._item_episode_loss(episode)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        def run_epoch() -> bool:
            return item_epoch(view, cfg, rng, raters, min_support, step)

        predict = self.predict if view.explicit else None
        every, patience = int(cfg["validate_every"]), int(cfg["patience"])
        sel = select_epochs(
            view,
            run_epoch,
            [model],
            int(cfg["epochs"]),
            predict,
            patience,
            every,
            validator=view.validate_pretrain,
        )
        self.selected = {"epochs": sel.best_epoch}

    def _encode(
        self, users: np.ndarray, exclude: torch.Tensor | None = None, history: Any = None
    ) -> torch.Tensor:
        model = self.model
        sets = profile_sets(self.profiles, users, model.source_weight(), self.device, history, exclude)
        return model.users(sets)

    def _item_episode_loss(self, episode: ItemEpisode) -> torch.Tensor:
        model = self.model
        users, q_pos, s_pos = episode.users()
        encoded = self._encode(users, exclude=tensor(episode.items, self.device))
        mask = episode.support_mask
        owner = tensor(np.nonzero(mask)[0], self.device)
        support = encoded[tensor(s_pos[mask], self.device)]
        query = encoded[tensor(q_pos, self.device)]
        n = len(episode.items)
        target = tensor(episode.query_item, self.device)
        if self.explicit:
            rating = tensor(episode.support_rating[mask], self.device, torch.float32)
            protos, log_mass = model.level_prototypes(support, owner, rating, n)
            q_user = tensor(episode.query_user, self.device)
            pred = model.expected_rating(query, q_user, protos[target], log_mass[target])
            return ((pred - tensor(episode.query_rating, self.device)) ** 2).mean()
        logits = -squared_distances(query, model.item_prototypes(support, owner, n))
        return nn.functional.cross_entropy(logits, target)

    def _predict_items(self, batch: ColdItemBatch) -> np.ndarray:
        model = self.model
        s_user, s_item = support_positions(batch)
        support = self._encode(batch.support_users, history=batch.history)[tensor(s_user, self.device)]
        owner = tensor(s_item, self.device)
        n = len(batch.items)
        if batch.wants_ratings:
            users, position = np.unique(batch.query_user, return_inverse=True)
            query = self._encode(users)[tensor(position, self.device)]
            rating = tensor(batch.support.rating, self.device, torch.float32)
            protos, log_mass = model.level_prototypes(support, owner, rating, n)
            item = tensor(np.searchsorted(batch.items, batch.query_item), self.device)
            q_user = tensor(batch.query_user, self.device)
            return model.expected_rating(query, q_user, protos[item], log_mass[item]).cpu().numpy()
        query = self._encode(np.asarray(batch.query_users))
        return (-squared_distances(query, model.item_prototypes(support, owner, n))).cpu().numpy()
