"""Data-parallel training (config `processes`): two CPU processes follow the single-process run on real Gift Cards.

The two runs must agree because nothing random differs between them: dropout 0 and the `ce` loss (sasrec) leave
the seeded order of the rows as the only draw, and every rank takes rank 0's. What remains is float32 summation
order (the gradients of a batch are summed in two halves, then averaged over the processes), hence the tolerance.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
import torch.multiprocessing as mp

from bbqrec.evaluation import EvalSet
from bbqrec.io import InputError
from bbqrec.training import TrainConfig, TrainingSequences, build_model, count_items, fit, seed_everything

BIN = Path(sys.executable).parent
TOLERANCE = 1e-4  # relative difference of each epoch's mean training loss, one process vs two
# dropout masks are drawn per rank: off, for a comparison with the single-process run
OPTIONS = {"hidden_size": 32, "inner_size": 64, "batch_size": 64, "max_epochs": 4, "patience": 10, "threads": 1}
OPTIONS.update(dropout=0.0, attn_dropout=0.0)
N_USERS = 449  # = 7 x 64 + 1: the last batch has one row, so rank 1 has none and joins the backward with weight 0


@pytest.fixture(scope="module")
def gift_cards(prepared, tmp_path_factory):
    """Real Amazon 2018 Gift Cards (148 items), prepared like the workflow does, its first N_USERS users trained on."""
    source = prepared("gift-cards")
    out = tmp_path_factory.mktemp("gift-cards") / "data"
    out.mkdir()
    for name in ("items", "valid"):
        shutil.copy(source / f"{name}.parquet", out / f"{name}.parquet")
    pl.read_parquet(source / "train.parquet").head(N_USERS).write_parquet(out / "train.parquet")
    return out


class Killed(Exception):
    pass


def _fit_until_killed(rank, port, data, checkpoint, rows_path):
    """One of two processes (torch.multiprocessing.spawn): what train.py does, killed after epoch 2."""
    from bbqrec import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    config = TrainConfig.from_dict({**OPTIONS, "processes": 2})
    train = TrainingSequences.from_frame(pl.read_parquet(data / "train.parquet"), config.max_len)
    valid = EvalSet.from_frame(pl.read_parquet(data / "valid.parquet"), config.max_len)
    assert len(train.inputs) == N_USERS
    rows = []

    def on_epoch(row):
        rows.append(row)
        if rank == 0:
            Path(rows_path).write_text(json.dumps(rows))
        if row["epoch"] == 2:
            raise Killed

    with distributed.process_group(torch.device("cpu")):
        seed_everything(0)
        model = build_model("sasrec", config, count_items(data / "items.parquet"))
        fit(model, train, valid, config, 0, checkpoint, on_epoch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_killed_and_resumed_follow_the_single_process_curve(repo_root, gift_cards, tmp_path, stage_script):
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--dataset", "gift-cards", "--variant", "sasrec", "--seed", "0", "--data", str(gift_cards)]
    stage_script("train").main([*common, "--config-json", json.dumps(OPTIONS), "--out", str(one)])

    # two processes killed after epoch 2, then train.py under torchrun resumes from their checkpoint
    with pytest.raises(mp.ProcessRaisedException, match="Killed"):
        mp.spawn(_fit_until_killed, (_free_port(), gift_cards, two / "checkpoint.pt", tmp_path / "killed.json"), nprocs=2)
    assert len(torch.load(two / "checkpoint.pt", weights_only=True)["other_ranks"]) == 1  # rank 1's random states
    resumed = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(repo_root / "workflow/scripts/train.py")]
        + [*common, "--config-json", json.dumps({**OPTIONS, "processes": 2}), "--out", str(two)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert sorted(p.name for p in two.iterdir()) == ["log.parquet", "model.pt"]  # checkpoint removed
    assert resumed.stderr.count("'epoch': 3,") == 1 and "'epoch': 2," not in resumed.stderr  # rank 0 logs, resumed

    single, multi = pl.read_parquet(one / "log.parquet"), pl.read_parquet(two / "log.parquet")
    assert multi.head(2).to_dicts() == json.loads((tmp_path / "killed.json").read_text())  # from the checkpoint
    assert single["epoch"].to_list() == multi["epoch"].to_list() == [1, 2, 3, 4]
    for loss_one, loss_two in zip(single["loss"], multi["loss"]):
        assert loss_two == pytest.approx(loss_one, rel=TOLERANCE)
    # the same rankings up to near-ties flipped by the float differences (one flip moves NDCG@10 by < 0.003)
    assert (single["valid_ndcg_10"] - multi["valid_ndcg_10"]).abs().max() < 0.01
    one_model, two_model = (torch.load(out / "model.pt", weights_only=True) for out in (one, two))
    assert one_model["best_epoch"] == two_model["best_epoch"]
    for name, weights in one_model["state_dict"].items():
        torch.testing.assert_close(two_model["state_dict"][name], weights, rtol=1e-3, atol=1e-5, msg=name)


def test_processes_must_match_the_launch(gift_cards):
    config = TrainConfig.from_dict({**OPTIONS, "processes": 2})
    train = TrainingSequences.from_frame(pl.read_parquet(gift_cards / "train.parquet"), config.max_len)
    valid = EvalSet.from_frame(pl.read_parquet(gift_cards / "valid.parquet"), config.max_len)
    model = build_model("sasrec", config, count_items(gift_cards / "items.parquet"))
    with pytest.raises(InputError, match=r"processes is 2 but 1 process\(es\) run: .*--nproc_per_node 2"):
        fit(model, train, valid, config, seed=0)


def test_the_train_rule_launches_torchrun(repo_root, tmp_path):
    config = {"datasets": ["gift-cards"], "train": {"variants": ["sasrec"], "seeds": [0], "options": {"processes": 2}}}
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    result = subprocess.run(
        [str(BIN / "snakemake"), "results/gift-cards/train/sasrec/seed0/model.pt", "-n", "-p", "--forceall"]
        + ["--cores", "4", "--configfile", str(tmp_path / "config.yaml")],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torchrun --standalone --nproc_per_node 2 " in result.stdout
    assert '"processes":2,"threads":1}' in result.stdout  # the job's 2 threads, one per process
