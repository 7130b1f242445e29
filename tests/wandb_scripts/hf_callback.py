"""A callback shaped as HuggingFace's WandbCallback: init only when no run is open,
config.update with allow_val_change, define_metric with a step metric, rewritten log keys."""

import wandb


class Callback:
    def __init__(self):
        self._wandb = wandb
        self._initialized = False

    def setup(self, args, model_config):
        self._initialized = True
        combined = {**args, **model_config}
        if self._wandb.run is None:
            self._wandb.init(project="hf", group="finetune", job_type="train", name="hf-run")
        self._wandb.config.update(combined, allow_val_change=True)
        self._wandb.run._label(code="transformers_trainer")
        self._wandb.define_metric("train/global_step")
        self._wandb.define_metric("*", step_metric="train/global_step", step_sync=True)

    def on_log(self, logs, global_step):
        rewritten = {}
        for key, value in logs.items():
            rewritten[key if key.startswith("eval_") else f"train/{key}"] = value
        self._wandb.log({**rewritten, "train/global_step": global_step})

    def on_train_end(self, metrics):
        for key, value in metrics.items():
            self._wandb.run.summary[key] = value


cb = Callback()
cb.setup({"learning_rate": 5e-5, "num_train_epochs": 2, "output_dir": "out"}, {"hidden_size": 32})
cb.setup({"learning_rate": 1e-4, "num_train_epochs": 2, "output_dir": "out"}, {"hidden_size": 32})
for step in range(1, 7):
    cb.on_log({"loss": 1 / step, "learning_rate": 1e-4 * (1 - step / 10), "epoch": step / 3}, step)
    if step % 3 == 0:
        cb.on_log({"eval_loss": 1.5 / step}, step)
cb.on_train_end({"train_runtime": 12.5, "total_flos": 1234})
wandb.finish()
