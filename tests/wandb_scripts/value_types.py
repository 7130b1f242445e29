"""Value types: numpy scalars and 0-d arrays, bools, strings, lists, very large ints, NaN,
media objects (kept differently: README)."""

import numpy as np
import wandb

run = wandb.init(project="values", group="g")
for i in range(3):
    wandb.log(
        {
            "np32": np.float32(1.5 + i),
            "np64": np.float64(i),
            "npint": np.int64(i),
            "arr0": np.array(2.5 + i),
            "flag": True,
            "label": f"epoch-{i}",
            "lst": [1, 2],
            "big": 2**70,
            "nan": float("nan"),
            "inf": float("inf"),
        }
    )
wandb.log(
    {"hist": wandb.Histogram([1, 2, 3, 4]), "table": wandb.Table(columns=["a"], data=[[1], [2]])}
)
wandb.log({"img": wandb.Image(np.zeros((2, 2, 3), dtype=np.uint8), caption="zeros")})
run.finish()
