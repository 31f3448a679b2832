"""CMF: collective matrix factorization (Singh and Gordon, "Relational Learning via Collective Matrix
Factorization", KDD 2008), the shared-user-factor baseline of cross-domain recommendation.

Model: one biased MF over all domains of the task whose user vectors ``[p_u, b_u]`` are shared across
domains, item vectors per item (hence per domain), a global bias per domain. Each domain's rows form one
relation; the loss is the relation-weighted sum (``source_weight`` for source rows, 1 for target rows) of
rating MSE (family R) or BPR with same-domain negatives (families L and C).
Source-domain data: every user's shared vector is fitted on its rows in all domains, so a cold user's
vector comes from its source rows alone (in family L, the union of the three source domains).
K=0: a cold user's target scores use its shared vector. K>0: the shared vector is fitted on the support
with at most ``batch.adapt_steps`` Adam steps, pulled towards its source-fitted value (``adapt_reg``).
Validation cold users select the number of epochs (early stopping) and the number of adaptation steps.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.api import Budget, ColdBatch, TrainView
from methods.mf import ColdStartMF, fit_mf, ids


class CMF(ColdStartMF):
    summary = "Collective MF: user vectors shared across all domains, fitted jointly on every domain's rows"
    paper = "Singh, Gordon. Relational Learning via Collective Matrix Factorization. KDD 2008"

    def fit(self, view: TrainView, budget: Budget) -> None:
        c = self.config
        self.start_target(view)
        weight = np.full(len(view.domains), c["source_weight"], dtype=np.float32)
        weight[view.domain_index(view.target_domain)] = 1.0
        domains = [*view.source_domains, view.target_domain]
        score = lambda: view.validate(self.predict)  # noqa: E731
        self.log["epochs"] = fit_mf(
            view, self.target, domains, c, self.rng(1), c["epochs"], score, domain_weight=weight
        )
        self.select_adapt_steps(view)

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        return self.target.user_vectors(ids(batch.users, self.device))
