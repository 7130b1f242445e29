"""The tiny simulated training and evaluation programs that ``wbg demo`` runs.

``train`` prints its metrics (``step: N``, ``loss: x``, ``acc: y``) for wbg's scalar
capture, as many real scripts do; ``eval`` uses the Python API (``wbg.init`` attaches to
the run that ``wbg run`` started). Run as ``python -m wbg.cli.demo_scripts train ...``.
"""

from __future__ import annotations

import argparse
import math
import random


def train(lr: float, seed: int, epochs: int) -> None:
    rng = random.Random(seed)
    speed = 6.0 * lr / (lr + 0.05)
    for epoch in range(epochs):
        progress = 1.0 - math.exp(-speed * (epoch + 1) / epochs)
        loss = 2.3 * (1.0 - progress) + 0.08 + rng.gauss(0.0, 0.02)
        acc = 0.1 + 0.82 * progress + rng.gauss(0.0, 0.01)
        print(f"step: {epoch}")
        print(f"loss: {loss:.5f}")
        print(f"acc: {min(acc, 1.0):.5f}")


def evaluate(lr: float, seed: int) -> None:
    import wbg

    rng = random.Random(seed + 1000)
    with wbg.init(config={"split": "validation"}) as run:
        base = 0.1 + 0.8 * (1.0 - math.exp(-6.0 * lr / (lr + 0.05)))
        for batch in range(10):
            run.log({"val_acc": base + rng.gauss(0.0, 0.01), "val_loss": 2.0 * (1 - base)})
            del batch
        run.summary["val_acc_best"] = base + 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["train", "eval"])
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    if args.role == "train":
        train(args.lr, args.seed, args.epochs)
    else:
        evaluate(args.lr, args.seed)


if __name__ == "__main__":
    main()
