"""define_metric summaries: min, max, mean, first, last, none, several ops, glob names,
and an explicit summary value over a defined one."""

import wandb

run = wandb.init(project="metrics", group="g")
wandb.define_metric("m_*", summary="mean")
wandb.define_metric("firsty", summary="first")
wandb.define_metric("mm", summary="min,max")
wandb.define_metric("lastone", summary="last")
wandb.define_metric("nosum", summary="none")
wandb.define_metric("hid", hidden=True)
wandb.define_metric("epoch")
wandb.define_metric("val", step_metric="epoch")
for i in range(4):
    wandb.log(
        {
            "m_a": i,
            "m_b": 2 * i,
            "firsty": 5 - i,
            "mm": i * i,
            "lastone": i,
            "nosum": i,
            "hid": i,
            "epoch": i,
            "val": i / 2,
            "plain": 10 - i,
        }
    )
wandb.summary["m_a"] = 100
run.finish()
