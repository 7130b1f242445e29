"""Config from argparse, updated as wandb allows: attribute and item assignment,
allow_val_change, setdefaults, None values, keys with dots."""

import argparse

import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--model", default="resnet18")
args = parser.parse_args([])
run = wandb.init(project="args", group="g", config=args)
wandb.config.batch = 32
wandb.config["optimizer"] = {"name": "adam", "betas": [0.9, 0.999]}
wandb.config.update({"optimizer": {"name": "sgd"}}, allow_val_change=True)
wandb.config.update({"lr": 0.5}, allow_val_change=True)
try:
    wandb.config.update({"lr": 0.7})
except wandb.Error as exc:
    assert 'Attempted to change value of key "lr" from 0.5 to 0.7' in str(exc), exc
else:
    raise AssertionError("changing a config value needs allow_val_change")
wandb.config.update({"lr": 0.5})  # the same value: allowed
wandb.config.setdefaults({"batch": 64, "seed": 7})
wandb.config.update({"scheduler": None, "x.y": 3, "a..b": 4})
assert wandb.config.batch == 32 and wandb.config["seed"] == 7 and "lr" in wandb.config
assert wandb.config.get("missing", "d") == "d"
assert dict(wandb.config)["model"] == "resnet18"
run.log({"loss": 0.5})
run.finish()
