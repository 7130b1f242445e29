"""A logger shaped as Lightning's WandbLogger: id= and resume="allow", explicit steps."""

import wandb

experiment = wandb.init(
    project="lightning",
    id="lit12345",
    resume="allow",
    group="lit",
    job_type="train",
    config={"max_epochs": 2},
)
experiment.config.update({"batch_size": 16, "hidden": [32, 32]}, allow_val_change=True)
experiment.define_metric("trainer/global_step")
experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
global_step = 0
for epoch in range(2):
    for _batch in range(5):
        global_step += 1
        experiment.log(
            {"train_loss": 1 / global_step, "trainer/global_step": global_step}, step=global_step
        )
    experiment.log(
        {"val_loss": 0.5 / (epoch + 1), "epoch": epoch, "trainer/global_step": global_step},
        step=global_step,
    )
experiment.finish()
