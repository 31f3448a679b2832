"""TGT: matrix factorization on the target domain only (the no-transfer reference of every CDR paper).

Model: biased MF (Koren, Bell and Volinsky, "Matrix Factorization Techniques for Recommender Systems", IEEE
Computer 2009) fitted with rating MSE in family R and BPR (Rendle et al., "BPR: Bayesian Personalized Ranking
from Implicit Feedback", UAI 2009) in families L and C, on target-domain training rows only.
Source-domain data: none; this is what transfer methods must beat.
K=0: a cold user gets the mean user vector (embedding and bias) of the warm target users, i.e. a
personalization-free, popularity-like ranking. K>0: that mean vector is fitted on the user's support with
at most ``batch.adapt_steps`` Adam steps (item parameters fixed).
Validation cold users select the number of epochs (early stopping, with their support withheld:
``validate_pretrain``, so the MF is trained once per task group) and the number of adaptation steps.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.api import ColdBatch, TrainView
from methods.mf import ColdStartMF, fit_mf, ids


class TargetMF(ColdStartMF):
    summary = "MF on the target domain only; cold users start at the mean user vector, adapted on the support"
    paper = (
        "Koren, Bell, Volinsky. Matrix Factorization Techniques for Recommender Systems. IEEE Computer 2009"
    )

    pretrained_tensors = ("warm",)

    def train(self, view: TrainView) -> None:
        c = self.config
        self.start_target(view)
        self.warm = ids(np.unique(view.history(view.target_domain).user), self.device)
        sel = fit_mf(
            view,
            self.target,
            [view.target_domain],
            c,
            self.rng,
            c["epochs"],
            self.predict,
            validator=view.validate_pretrain,
        )
        self.selected["epochs"] = sel.best_epoch

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        mean = self.target.user_vectors(self.warm).mean(0)
        return mean.expand(len(batch), -1).clone()
