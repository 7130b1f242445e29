"""W&B's quickstart loop, with module-level calls only."""

import random

import wandb

assert wandb.run is None
wandb.init(
    project="quickstart",
    group="exp-1",
    job_type="train",
    name="quick",
    tags=["baseline"],
    notes="first try",
    config={"learning_rate": 0.02, "architecture": "CNN", "dataset": "CIFAR-100", "epochs": 5},
)
assert wandb.run is not None
config = wandb.config
random.seed(0)
offset = random.random() / 5
for epoch in range(2, config.epochs + 2):
    acc = 1 - 2**-epoch - random.random() / epoch - offset
    loss = 2**-epoch + random.random() / epoch + offset
    wandb.log({"acc": acc, "loss": loss})
wandb.summary["best_acc"] = 0.93
wandb.finish()
assert wandb.run is None
