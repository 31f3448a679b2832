"""EMCDR: embedding and mapping (Man, Shen, Jin and Cheng, "Cross-Domain Recommendation: An Embedding and
Mapping Approach", IJCAI 2017).

Model: one MF per domain, then an MLP (one tanh hidden layer of ``map_hidden`` units, as in the paper's
MLP variant) that maps a user's source vector to its target vector, fitted with MSE on the warm overlapping
users (training rows in both the source and the target domain). Vectors include the user bias
(``[p_u, b_u]``). MF losses: rating MSE in family R, BPR in families L and C.
Source-domain data: a source MF over the union of ``view.source_domains`` (one embedding space over all
source items) gives every user, cold ones included, a source vector; the mapping carries it over.
K=0: a cold user's target vector is the mapped source vector. K>0: the mapped vector is then fitted on the
support with at most ``batch.adapt_steps`` Adam steps (target item parameters fixed).
Validation cold users select the mapping's epochs and the number of adaptation steps; the two MF stages
run a fixed number of epochs (``source_epochs``, ``target_epochs``; the mapping cannot be scored before
both exist). The mapping trains on embeddings, not interactions, so it spends no training examples; the
domains' histories it reads to find the warm overlapping users are charged once, before the MF stages.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.api import Budget, ColdBatch, TrainView
from methods.mf import MF, ColdStartMF, fit_mf, ids, seeded, train_selected


class EMCDR(ColdStartMF):
    summary = "MF per domain + MLP mapping source to target user vectors, trained on warm overlapping users"
    paper = (
        "Man, Shen, Jin, Cheng. Cross-Domain Recommendation: An Embedding and Mapping Approach. IJCAI 2017"
    )

    def fit(self, view: TrainView, budget: Budget) -> None:
        c = self.config
        self.setup(view)
        dim = c["dim"]
        with seeded(self.seed):
            self.source = MF(view.n_users, view.item_domain, dim, c["init_std"])
            self.target = MF(view.n_users, view.item_domain, dim, c["init_std"])
            self.mapping = nn.Sequential(
                nn.Linear(dim + 1, c["map_hidden"]), nn.Tanh(), nn.Linear(c["map_hidden"], dim + 1)
            )
        for module in (self.source, self.target, self.mapping):
            module.to(self.device)
        for model in (self.source, self.target):
            self.init_mu(model, view)
        # histories first: they are charged to the training budget, which the MF stages may then use up
        has_source = np.zeros(view.n_users, dtype=bool)
        for d in view.source_domains:
            has_source[view.history(d).user] = True
        warm = np.intersect1d(np.flatnonzero(has_source), view.history(view.target_domain).user)
        rng = self.rng(1)
        self.log["source_epochs"] = fit_mf(view, self.source, view.source_domains, c, rng, c["source_epochs"])
        self.log["target_epochs"] = fit_mf(
            view, self.target, [view.target_domain], c, rng, c["target_epochs"]
        )

        with torch.no_grad():
            x = self.source.user_vectors(ids(warm, self.device))
            y = self.target.user_vectors(ids(warm, self.device))
        opt = torch.optim.Adam(self.mapping.parameters(), lr=c["map_lr"], weight_decay=c["map_l2"])

        def run_epoch() -> bool:
            for idx in torch.randperm(len(warm), generator=gen).to(self.device).split(c["map_batch_size"]):
                opt.zero_grad()
                (self.mapping(x[idx]) - y[idx]).pow(2).sum(-1).mean().backward()
                opt.step()
            return True

        gen = torch.Generator().manual_seed(self.seed)
        score = lambda: view.validate(self.predict)  # noqa: E731
        self.log["map_epochs"] = train_selected(
            run_epoch, [self.mapping], c["map_epochs"], score, c["patience"]
        )
        self.log["warm_overlap_users"] = len(warm)
        self.select_adapt_steps(view)

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        return self.mapping(self.source.user_vectors(ids(batch.users, self.device)))
