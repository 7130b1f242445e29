"""mode="disabled" records nothing and every call works; a later offline run is recorded."""

import wandb

run = wandb.init(project="off", mode="disabled", config={"a": 1})
run.log({"x": 1.0})
wandb.log({"x": 2.0})
wandb.config.update({"b": 2})
run.summary["s"] = 1
assert wandb.run is run
wandb.define_metric("x", summary="max")
wandb.watch(None)
run.finish()
assert wandb.run is None
with wandb.init(project="off", mode="offline", group="after-disabled") as run:
    run.log({"y": 3.0})
