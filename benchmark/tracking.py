"""Optional experiment tracking: one wandb run per finished cell, logged from the bench's main process.

Off unless ``--wandb``. Honours ``WANDB_MODE`` (``offline`` in tests and CI writes runs under ``WANDB_DIR``
without any network), and logs what the record holds: config, metrics, cost and task.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.records import load_record


class WandbLogger:
    def __init__(self, project: str, directory: Path | None = None) -> None:
        import wandb  # imported only when tracking is asked for

        self.wandb = wandb
        self.project = project
        self.directory = directory

    def __call__(self, record_file: Path) -> None:
        record = load_record(record_file)
        run = self.wandb.init(
            project=self.project,
            name=f"{record.task.id}/{record.method.name}/seed-{record.seed}",
            group=record.task.id,
            job_type=record.method.name,
            dir=str(self.directory) if self.directory else None,
            config={
                "task": record.task.model_dump(),
                "method": record.method.name,
                "method_config": record.method.config,
                "config_hash": record.method.config_hash,
                "seed": record.seed,
                "code": record.code.model_dump(),
                "env": record.env.model_dump(),
            },
            reinit="finish_previous",
        )
        run.log(
            {
                **{f"metric/{k}": v for k, v in record.metrics.items()},
                "cost/fit_seconds": record.timing.fit,
                "cost/adapt_seconds": record.timing.adapt,
                "cost/train_examples": record.budget.train_examples_used,
                "cost/train_flops_estimate": record.train_flops_estimate,
                "cost/peak_rss_mb": record.peak_rss_mb,
                "status_ok": int(record.status == "ok"),
            }
        )
        run.summary["status"] = record.status
        run.finish()
