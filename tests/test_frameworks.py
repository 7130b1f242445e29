"""Real training frameworks under `wbg run`, unchanged: HuggingFace `Trainer` reporting to
W&B or to nothing, Lightning with `WandbLogger`. Tiny models built from a config, random
data, CPU only, no downloads (HF_HUB_OFFLINE, WANDB_MODE=offline), a few seconds each.

CI installs the frameworks with the `frameworks` extra (the README's test command)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import invoke, records, sqlite_only, wbg_executable

for _module in ("wandb", "torch", "transformers", "accelerate", "lightning"):
    pytest.importorskip(_module, reason="install the extra: pip install -e '.[test,frameworks]'")

PY = sys.executable

# The frameworks record through the same API as every script (test_api.py runs that on
# both engines); a second round of torch training on a server would double a slow file.
pytestmark = sqlite_only("the frameworks' cost: their runs go through the API tested on both")


def run_wbg(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`wbg ARGS` as a real process with exactly ``env``: none of this process's own W&B
    variables leak in (an in-process `wandb` leaves WANDB_SERVICE behind, and a child
    that finds it hands its run to that service instead of starting its own)."""
    return subprocess.run(
        [*wbg_executable(), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


HF_TRAIN = """
import sys

import torch
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

torch.manual_seed(0)
config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=16, num_labels=2)
model = BertForSequenceClassification(config)


class RandomTokens(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 64, (8,), generator=g), "labels": torch.tensor(i % 2)}


args = TrainingArguments(
    output_dir="out", num_train_epochs=2, per_device_train_batch_size=8, logging_steps=2,
    eval_strategy="epoch", per_device_eval_batch_size=16, learning_rate=1e-3,
    save_strategy="no", use_cpu=True, report_to=sys.argv[1].split(","), seed=0,
)
Trainer(model=model, args=args, train_dataset=RandomTokens(), eval_dataset=RandomTokens()).train()
"""

LIGHTNING_TRAIN = """
import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger


class MLP(L.LightningModule):
    def __init__(self, hidden=8, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def training_step(self, batch, _index):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
trainer = L.Trainer(
    max_epochs=3, accelerator="cpu", logger=WandbLogger(), log_every_n_steps=2,
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
trainer.fit(MLP(), torch.utils.data.DataLoader(data, batch_size=8))
"""


def framework_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "HF_"))}
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "HF_HOME"):
        path = tmp_path / name.lower()
        path.mkdir(exist_ok=True)
        env[name] = str(path)
    env.update(
        {
            "WANDB_MODE": "offline",
            "WANDB_DISABLE_GIT": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **extra,
        }
    )
    return env


def train(tmp_path: Path, source: str, *args: str, env: dict[str, str] | None = None):
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent(source))
    done = run_wbg(
        "run", "-g", "G", "-j", "J", "--", PY, str(path), *args,
        env=env or framework_env(tmp_path), timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def show(run_id: str, db: Path | None = None) -> dict:
    args = ["runs", "show", run_id, "--format", "json", "--history"]
    result = invoke(*args, *(["--db", str(db)] if db else []))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def the_run(db_path: Path) -> dict:
    found = records(db_path)
    assert len(found) == 1, [(r["id"], r["group"], r["job_type"]) for r in found]
    (record,) = found
    assert (record["group"], record["job_type"], record["state"]) == ("G", "J", "finished")
    return show(record["id"])


def as_imported(tmp_path: Path) -> dict:
    """The W&B run the command wrote, read by `wbg import wandb` into another file."""
    (folder,) = [p for p in (Path.cwd() / "wandb").glob("*run-*") if p.is_dir()]
    other = tmp_path / "imported.db"
    result = invoke("import", "wandb", str(folder), "--db", str(other))
    assert result.exit_code == 0, result.output
    (record,) = json.loads(invoke("runs", "list", "-f", "json", "--db", str(other)).stdout)
    return show(record["id"], other)


def curve(run: dict, key: str) -> list[tuple[int, float]]:
    return sorted((p["step"], p["value"]) for p in run["history"] if p["key"] == key)


def printed_logs(output: str) -> list[dict[str, float]]:
    """The Trainer's printed log dicts, read here independently of wbg's parser."""
    found = []
    for line in output.replace("\r", "\n").splitlines():
        line = line.strip()
        if line.startswith("{'") and line.endswith("}"):
            found.append({k: float(v) for k, v in ast.literal_eval(line).items()})
    return found


def test_huggingface_trainer_reporting_to_wandb(tmp_path, db_path):
    done = train(tmp_path, HF_TRAIN, "wandb")
    run = the_run(db_path)
    wandb_run = as_imported(tmp_path)
    assert run["config"] == wandb_run["config"]
    # the Trainer's arguments and the model's config, as HuggingFace gives them to W&B
    assert run["config"]["learning_rate"] == 0.001 and run["config"]["num_train_epochs"] == 2
    assert run["config"]["hidden_size"] == 16 and run["config"]["model_type"] == "bert"
    assert sorted(
        map(tuple, ([p["step"], p["key"], p["value"]] for p in run["history"]))
    ) == sorted(map(tuple, ([p["step"], p["key"], p["value"]] for p in wandb_run["history"])))
    assert run["summary"] == wandb_run["summary"]
    # the printed logs are the same numbers (rounded to 4 digits): W&B's names and full
    # values are kept, not the printed ones
    printed = printed_logs(done.stdout)
    losses = [log["loss"] for log in printed if "loss" in log]
    assert len(losses) == 4
    assert [v for _, v in curve(run, "train/loss")] == pytest.approx(losses, rel=1e-3)
    eval_losses = [log["eval_loss"] for log in printed if "eval_loss" in log]
    assert [v for _, v in curve(run, "eval/loss")] == pytest.approx(eval_losses, rel=1e-3)
    keys = {p["key"] for p in run["history"]}
    assert not keys & {"loss", "eval_loss", "epoch", "grad_norm", "train_runtime"}
    assert run["summary"]["train_runtime"] == pytest.approx(printed[-1]["train_runtime"], rel=1e-3)


def test_huggingface_trainer_reporting_to_nothing(tmp_path, db_path):
    done = train(tmp_path, HF_TRAIN, "none")
    run = the_run(db_path)
    printed = printed_logs(done.stdout)
    assert len(printed) == 7  # 4 training logs, 2 evaluations, the final one
    by_step: dict[int, dict[str, float]] = {}
    for point in run["history"]:
        by_step.setdefault(point["step"], {})[point["key"]] = point["value"]
    assert [by_step[step] for step in sorted(by_step)] == printed
    assert curve(run, "loss") == [(0, printed[0]["loss"]), (1, printed[1]["loss"]),
                                  (3, printed[3]["loss"]), (4, printed[4]["loss"])]  # fmt: skip
    assert run["summary"]["train_loss"] == printed[-1]["train_loss"]
    assert not (Path.cwd() / "wandb").exists()


def test_lightning_with_wandb_logger(tmp_path, db_path):
    train(tmp_path, LIGHTNING_TRAIN)
    run = the_run(db_path)
    wandb_run = as_imported(tmp_path)
    assert run["config"] == wandb_run["config"] == {"hidden": 8, "lr": 0.05}
    assert sorted(
        map(tuple, ([p["step"], p["key"], p["value"]] for p in run["history"]))
    ) == sorted(map(tuple, ([p["step"], p["key"], p["value"]] for p in wandb_run["history"])))
    assert run["summary"] == wandb_run["summary"]
    # 8 batches a epoch, 3 epochs, a point every 2nd step
    assert len(curve(run, "train_loss")) == 12
    assert [v for _, v in curve(run, "trainer/global_step")] == list(range(1, 24, 2))
