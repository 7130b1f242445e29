"""K-fold cross-validation in one process: one run per fold, reinit=True finishes the last."""

import wandb

for fold in range(3):
    run = wandb.init(
        project="kfold",
        group="cv-1",
        job_type="fold",
        config={"fold": fold, "lr": 0.1},
        reinit=True,
    )
    for epoch in range(4):
        run.log({"val_acc": 0.5 + fold / 10 + epoch / 100, "epoch": epoch})
    run.summary["final_acc"] = 0.5 + fold / 10
wandb.finish()
