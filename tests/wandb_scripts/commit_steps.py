"""commit=False rows, explicit steps, steps logged out of order, nested dicts."""

import wandb

run = wandb.init(project="steps", group="g", job_type="train")
for step in range(5):
    wandb.log({"loss": 1 / (step + 1), "nested": {"a": step, "b": {"c": 2 * step}}})
    wandb.log({"val_loss": 5 - step}, commit=False)
wandb.log({"late": 1}, step=2)
wandb.log({"x": 1}, step=10)
wandb.log({"x": 2})
wandb.log({"y": 7}, step=12, commit=True)
wandb.log({"y": 8}, step=12)
wandb.log({"z": 9}, step=14)
assert run.step == 14, run.step
wandb.finish()
