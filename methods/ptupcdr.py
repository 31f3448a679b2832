"""PTUPCDR: personalized transfer of user preferences (Zhu et al., "Personalized Transfer of User Preferences
for Cross-domain Recommendation", WSDM 2022, doi:10.1145/3488560.3498392).

Model: a source MF and a target MF (plain dot product, as published; ``bias = true`` adds biases), then a
meta network: attention over the embeddings of the user's source items gives a transferable characteristic,
which a decoder turns into a personalized ``dim x dim`` bridge; the target vector is the source user
embedding times the bridge. Only the meta network is trained in this stage, with the task-oriented loss on
the target training rows of warm overlapping users: rating MSE in family R, BPR (sampled target negatives)
in families L and C.
Source-domain data: the source MF is fitted on the union of ``view.source_domains``; the history fed to
the meta network is the user's source items, in family R those rated above 3 (all of them if none is), the
last ``history_len`` (20) of them.
K=0: a cold user's target vector is its bridged source embedding. K>0: that vector is then fitted on the
support with at most ``batch.adapt_steps`` Adam steps (target item parameters fixed).
Defaults as published (embedding 10, meta dim 50, 10 epochs, Adam lr 0.01); validation cold users select
the meta network's epochs (best state kept) and the number of adaptation steps, never test users.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import Budget, ColdBatch, Interactions, TrainView
from methods.mf import (
    MF,
    ColdStartMF,
    NegativeSampler,
    bpr,
    epoch_batches,
    fit_mf,
    ids,
    seeded,
    sgd_epoch,
    train_selected,
)


def liked_history(
    history: Interactions, n_users: int, explicit: bool, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Padded ``(items, mask)`` of each user's last ``length`` source items (rated > 3 in family R)."""
    if explicit:
        liked = history.rating > 3
        keep = liked | (np.bincount(history.user[liked], minlength=n_users) == 0)[history.user]
        history = Interactions(history.user[keep], history.item[keep], history.rating[keep], history.ts[keep])
    items, _, mask = history.padded(n_users, length)
    return items, mask


class MetaNet(nn.Module):
    """Attention over history item embeddings -> characteristic -> decoder -> ``dim x dim`` bridge."""

    def __init__(self, dim: int, meta_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.event = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1, bias=False))
        self.decoder = nn.Sequential(nn.Linear(dim, meta_dim), nn.ReLU(), nn.Linear(meta_dim, dim * dim))

    def forward(self, item_emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.event(item_emb).squeeze(-1).masked_fill(~mask, -torch.inf)
        attention = torch.nan_to_num(torch.softmax(logits, dim=1))  # users without history: all zeros
        character = (attention.unsqueeze(-1) * item_emb).sum(1)
        return self.decoder(character).view(-1, self.dim, self.dim)


class PTUPCDR(ColdStartMF):
    summary = "Meta network over source history -> personalized bridge from source to target user embedding"
    paper = "Zhu et al. Personalized Transfer of User Preferences for Cross-domain Recommendation. WSDM 2022"

    def fit(self, view: TrainView, budget: Budget) -> None:
        c = self.config
        self.setup(view)
        with seeded(self.seed):
            self.source = MF(view.n_users, view.item_domain, c["dim"], c["init_std"], c["bias"])
            self.target = MF(view.n_users, view.item_domain, c["dim"], c["init_std"], c["bias"])
            self.meta = MetaNet(c["dim"], c["meta_dim"])
        for module in (self.source, self.target, self.meta):
            module.to(self.device)
        for model in (self.source, self.target):
            self.init_mu(model, view)
        # histories first: they are charged to the training budget, which the MF stages may then use up
        hist_items, hist_mask = liked_history(
            view.batch_history(np.arange(view.n_users)), view.n_users, view.explicit, c["history_len"]
        )
        warm = np.zeros(view.n_users, dtype=bool)
        warm[np.unique(view.history(view.target_domain).user)] = True
        warm &= hist_mask.any(1)
        rng = self.rng(1)
        self.log["source_epochs"] = fit_mf(view, self.source, view.source_domains, c, rng, c["mf_epochs"])
        self.log["target_epochs"] = fit_mf(view, self.target, [view.target_domain], c, rng, c["mf_epochs"])

        self.hist_items = ids(hist_items, self.device)
        self.hist_mask = torch.as_tensor(hist_mask, device=self.device)
        self.user_bias = self.target.user_bias.weight[ids(np.flatnonzero(warm), self.device)].mean().detach()
        sampler, opt = NegativeSampler(view.item_domain), torch.optim.Adam(self.meta.parameters(), lr=c["lr"])

        def loss(rows: Interactions) -> torch.Tensor:
            keep = warm[rows.user]
            if not keep.any():  # a batch of target-only users: nothing to learn from
                return torch.zeros((), device=self.device, requires_grad=True)
            users, items = ids(rows.user[keep], self.device), ids(rows.item[keep], self.device)
            user = self.bridged(users, self.hist_items[users], self.hist_mask[users])
            pos = self.target.score(user, items)
            if view.explicit:
                rating = torch.as_tensor(rows.rating[keep], dtype=torch.float32, device=self.device)
                return F.mse_loss(pos, rating)
            neg = ids(sampler.sample(rows.item[keep], rng, c["negatives"]), self.device)
            return bpr(pos, self.target.score(user, neg)).mean()

        def run_epoch() -> bool:
            return sgd_epoch(epoch_batches(view, c["batch_size"], rng, [view.target_domain]), loss, [opt])

        for p in [*self.source.parameters(), *self.target.parameters()]:
            p.requires_grad_(False)
        score = lambda: view.validate(self.predict)  # noqa: E731
        self.log["meta_epochs"] = train_selected(
            run_epoch, [self.meta], c["meta_epochs"], score, c["patience"]
        )
        self.select_adapt_steps(view)

    def bridged(self, users: torch.Tensor, items: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Target user vectors ``[p_src @ bridge, mean warm bias]`` from source embeddings and history."""
        bridge = self.meta(self.source.item(items), mask)
        emb = torch.bmm(self.source.user(users).unsqueeze(1), bridge).squeeze(1)
        return torch.cat([emb, self.user_bias.expand(len(users), 1)], dim=1)

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        items, mask = liked_history(batch.history, len(batch), self.explicit, self.config["history_len"])
        mask_t = torch.as_tensor(mask, device=self.device)
        return self.bridged(ids(batch.users, self.device), ids(items, self.device), mask_t)
