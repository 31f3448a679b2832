"""FineTune: pretrain on every domain, fine-tune on the target, then adapt per cold user: the
pretrain-then-fine-tune transfer baseline (Yosinski, Clune, Bengio and Lipson, "How transferable are features
in deep neural networks?", NeurIPS 2014; the "Finetune" baseline of Triantafillou et al., "Meta-Dataset",
ICLR 2020).

Model: one biased MF over all domains (user vectors shared across domains), pretrained on all training rows
of all domains with uniform weights, then fine-tuned on the target domain's rows only with a smaller
learning rate (``finetune_lr``). Loss: rating MSE in family R, BPR with same-domain negatives in L and C.
Source-domain data: pretraining fits every user's vector on all its rows, so a cold user's vector is its
source-based representation; fine-tuning moves the target items (and warm users) but not cold users.
K=0: a cold user's target scores use its pretrained vector. K>0: that vector is fine-tuned on the support
with at most ``batch.adapt_steps`` Adam steps (item parameters fixed), pulled towards its start.
Validation cold users select the pretraining epochs, the fine-tuning epochs (zero allowed: fine-tuning may
not help) and the number of adaptation steps.
"""

from __future__ import annotations

import torch

from benchmark.api import Budget, ColdBatch, TrainView
from methods.mf import ColdStartMF, fit_mf, ids


class FineTune(ColdStartMF):
    summary = "MF pretrained on all domains, fine-tuned on the target, adapted on each cold user's support"
    paper = "Yosinski et al. How transferable are features in deep neural networks? NeurIPS 2014"

    def fit(self, view: TrainView, budget: Budget) -> None:
        c = self.config
        self.start_target(view)
        rng, score = self.rng(1), lambda: view.validate(self.predict)
        domains = [*view.source_domains, view.target_domain]
        self.log["pretrain_epochs"] = fit_mf(view, self.target, domains, c, rng, c["pretrain_epochs"], score)
        target, epochs, tune_lr = [view.target_domain], c["finetune_epochs"], c["finetune_lr"]
        tuned = fit_mf(view, self.target, target, c, rng, epochs, score, tune_lr, score_start=True)
        self.log["finetune_epochs"] = tuned
        self.select_adapt_steps(view)

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        return self.target.user_vectors(ids(batch.users, self.device))
