"""Time one MAML meta-batch: the torch.func inner loop (batched over users) vs learn2learn's per-user loop.

Both paths run on the CPU on the same MeLU model (maml's family-R defaults from methods/maml.toml) and the
same inputs (32 users, support 10, query 10, 5 inner steps, second-order): embeddings and user
representations, the inner loop, the query loss and the backward pass. Each measurement is the median of
``--runs`` timed meta-batches after ``--warmup`` untimed ones, at each thread count, both paths in the same
process so their ratio is measured in one run. ``max_grad_diff`` is the largest absolute difference between
the two meta-gradients. Without learn2learn (any env but
``tox -e l2l``) the torch.func numbers are reported and learn2learn is marked unavailable.

    python benchmarks/maml_speed.py --out benchmarks/results/maml_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from methods.maml import MAML, _rating_loss
from methods.meta_model import MeLU, learn2learn_meta_losses, torch_func_meta_losses

DEFAULTS = MAML.default_config("R")  # the model maml runs in family R (rating MSE, rating-weighted history)
SETUP = {
    "users": 32,
    "support": 10,
    "query": 10,
    "inner_steps": 5,
    "inner_lr": DEFAULTS["inner_lr"],
    "second_order": True,
    "history": DEFAULTS["history_len"],
    "n_items": 5000,
    "dim": DEFAULTS["dim"],
    "hidden": DEFAULTS["hidden"],
    "loss": "rating MSE",
    "dtype": "float32",
}


def make_inputs(seed: int = 0) -> tuple[MeLU, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    s = SETUP
    b = s["users"]
    inputs = {
        "hist_items": torch.randint(0, s["n_items"], (b, s["history"]), generator=gen),
        "hist_ratings": torch.randint(1, 6, (b, s["history"]), generator=gen).float(),
        "hist_mask": torch.rand(b, s["history"], generator=gen) > 0.2,
        "sup_items": torch.randint(0, s["n_items"], (b, s["support"]), generator=gen),
        "sup_y": torch.randint(1, 6, (b, s["support"]), generator=gen).float() - 3.6,
        "qry_items": torch.randint(0, s["n_items"], (b, s["query"]), generator=gen),
        "qry_y": torch.randint(1, 6, (b, s["query"]), generator=gen).float() - 3.6,
    }
    torch.manual_seed(seed)
    model = MeLU(s["n_items"], s["dim"], tuple(s["hidden"]), rating_weighted=True)
    return model, inputs


def meta_step(model: MeLU, x: dict[str, torch.Tensor], backend) -> torch.Tensor:
    """One meta-batch forward + backward; returns the loss (gradients land in ``model``)."""
    model.zero_grad(set_to_none=True)
    user = model.user_repr(x["hist_items"], x["hist_ratings"], x["hist_mask"])
    sv, sb = model.items(x["sup_items"])
    qv, qb = model.items(x["qry_items"])
    sup_m = torch.ones_like(x["sup_y"], dtype=torch.bool)
    qry_m = torch.ones_like(x["qry_y"], dtype=torch.bool)
    loss = backend(
        model,
        _rating_loss,
        (user, sv, sb, x["sup_y"], sup_m),
        _rating_loss,
        (user, qv, qb, x["qry_y"], qry_m),
        SETUP["inner_steps"],
        SETUP["inner_lr"],
        first_order=not SETUP["second_order"],
    ).mean()
    loss.backward()
    return loss.detach()


def median_ms(model: MeLU, x: dict[str, torch.Tensor], backend, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        meta_step(model, x, backend)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        meta_step(model, x, backend)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def gradients(model: MeLU, x: dict[str, torch.Tensor], backend) -> dict[str, torch.Tensor]:
    meta_step(model, x, backend)
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def learn2learn_status() -> tuple[bool, str]:
    try:
        import learn2learn
    except ImportError as exc:
        return False, f"unavailable: {exc} (run inside `tox -e l2l`)"
    return True, learn2learn.__version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the JSON here (printed either way)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs: at least 20 timed runs")
    have_l2l, l2l_version = learn2learn_status()
    model, x = make_inputs()
    load_before = os.getloadavg()[0]

    timings = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        row: dict[str, float | None] = {
            "torch_func_ms": round(median_ms(model, x, torch_func_meta_losses, args.runs, args.warmup), 3)
        }
        if have_l2l:
            row["learn2learn_ms"] = round(
                median_ms(model, x, learn2learn_meta_losses, args.runs, args.warmup), 3
            )
            row["ratio"] = round(row["learn2learn_ms"] / row["torch_func_ms"], 2)
        else:
            row["learn2learn_ms"] = row["ratio"] = None
        timings[str(threads)] = row
        print(f"threads={threads}: {row}", file=sys.stderr)

    max_diff = None
    if have_l2l:
        ours = gradients(model, x, torch_func_meta_losses)
        theirs = gradients(model, x, learn2learn_meta_losses)
        max_diff = max((ours[n] - theirs[n]).abs().max().item() for n in ours)
    result = {
        "benchmark": "maml meta-batch: torch.func (vmap over users) vs learn2learn.algorithms.MAML loop",
        "setup": SETUP,
        "runs": args.runs,
        "warmup": args.warmup,
        "statistic": "median ms per meta-batch (forward + inner loop + backward)",
        "threads": timings,
        "max_grad_diff": max_diff,
        "learn2learn": l2l_version,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "device": "cpu",
        "cpu_count": os.cpu_count(),
        # other processes on the machine slow both paths (multi-threaded runs the most): keep for context
        "load_average_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
    }
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
