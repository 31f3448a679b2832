"""CMF: collective matrix factorization (Singh and Gordon, "Relational Learning via Collective Matrix
Factorization", KDD 2008), the shared-user-factor baseline of cross-domain recommendation.

Model: one MF over all domains of the task whose user vectors are shared across domains, item vectors per
item (hence per domain). Each domain's rows form one relation; the loss is the relation-weighted sum
(``source_weight`` for source rows, 1 for target rows) of rating MSE (family R) or BPR with same-domain
negatives (families L and C).
Source-domain data: every user's shared vector is fitted on its rows in all domains, so a cold user's
vector comes from its source rows alone (in family L, the union of the three source domains).
K=0: a cold user's target scores use its shared vector. K>0: the shared vector is fitted on the support
with at most ``batch.adapt_steps`` Adam steps, pulled towards its source-fitted value (``adapt_reg``).

Two configurations (``profile``):

* ``reference`` (family R only; reported as published, not ranked) reproduces the CMF of the official
  PTUPCDR code (its "DataAug" stage; easezyc/WSDM2022-PTUPCDR @ f096fde, MF base model, its default
  configuration), the implementation behind the CMF figures of the PTUPCDR paper: one MF over source and
  target rows shuffled together, dimension 10, nn.Embedding's N(0, 1), plain dot products, ratings cast
  to int, dense Adam lr 0.01, batches of 256, 10 epochs, the last epoch, no clamping, no adaptation. On
  the six R K=0 tasks its 5-seed last-epoch MAE falls inside the 95% intervals of the official code run
  on the same artifacts on 5 of 6 (benchmarks/reference_transfer.py). Not reproduced: the official code
  scores against int-cast labels and reports the best epoch on test (here: the last).
* ``default`` (ranked); every deviation from the paper and the official code is in ``CMF.deviations``,
  listed here:

  - trained by minibatch Adam on squared error (or BPR), not by the paper's alternating Newton
    projections over Bregman divergences;
  - dimension 32, not 10; initialization N(0, 0.1^2), not nn.Embedding's N(0, 1);
  - biased MF: a user bias shared across domains, item biases and a global bias per domain (started at
    the domain's mean rating in family R); the official code's MF is a plain dot product;
  - L2 regularization 0.001 in family R (0.0001 in L and C); none in the official code;
  - batches drawn from one domain at a time, the domains' batches interleaved at random; the official
    code mixes both domains' rows in every batch;
  - up to 20 epochs (10 in L and C) selected on validation cold users (best state kept, patience 3); the
    official code runs 10 and its printout keeps the best epoch on the test users;
  - lazy (sparse) Adam on the embedding tables, not dense Adam; ratings used as stored, not cast to int;
    predicted ratings clipped to the training range ([1, 5]);
  - families L and C (no official counterpart): BPR, batches of 2048; K>0 (no official counterpart):
    support adaptation, its step count chosen on validation.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.api import ColdBatch, TrainView
from methods.mf import PROFILE_LABELS, ColdStartMF, fit_mf, ids, listed

DEVIATIONS = listed(__doc__, "``CMF.deviations``")


class CMF(ColdStartMF):
    summary = "Collective MF: user vectors shared across all domains, fitted jointly on every domain's rows"
    paper = "Singh, Gordon. Relational Learning via Collective Matrix Factorization. KDD 2008"
    deviations = DEVIATIONS
    profile_labels = PROFILE_LABELS

    def train(self, view: TrainView) -> None:
        c = self.use_profile(view)
        self.start_target(view)
        weight = np.full(len(view.domains), c["source_weight"], dtype=np.float32)
        weight[view.domain_index(view.target_domain)] = 1.0
        domains = [*view.source_domains, view.target_domain]
        predict = self.predict if c["select"] == "validation" else None
        sel = fit_mf(
            view,
            self.target,
            domains,
            c,
            self.rng,
            c["epochs"],
            predict,
            domain_weight=weight,
            validator=view.validate_pretrain,
        )
        self.selected["epochs"] = sel.best_epoch

    def initial_vectors(self, batch: ColdBatch) -> torch.Tensor:
        return self.target.user_vectors(ids(batch.users, self.device))
