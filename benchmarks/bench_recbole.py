"""RecBole 1.2.1's SASRec (cross-entropy) on OUR prepared Beauty split, timed like bench_train.py.

    make bench-recbole-venv                                      # once: benchmarks/recbole/.venv (RecBole's pins)
    python benchmarks/bench_recbole.py                           # 2 epochs: s/epoch, s/valid pass, s/test eval
    python benchmarks/bench_recbole.py --epochs 60 --json r.json # until early stopping, at most 60 epochs
    python benchmarks/bench_recbole.py --ours sasrec bbqrec      # also bench_train.py's variants: one table
    python benchmarks/bench_recbole.py --convert-only --work /tmp/rb   # write + check the atomic files only
    python benchmarks/bench_recbole.py --device cuda --atomic /tmp/rb/atomic --recbole-python python3  # on a GPU

Runs in the project's venv (it reads the Parquet split with polars); RecBole itself runs in its own venv
(`benchmarks/recbole/.venv`: numpy<2, pandas<2.2) as a child process, 1 torch thread, in a scratch working
directory (RecBole writes log/, log_tensorboard/ and checkpoints there).

The split. `convert` writes RecBole atomic *benchmark* files `<name>.{train,valid,test}.inter`. For a
sequential model RecBole does NOT augment benchmark files (SequentialDataset._change_feat_format returns early
when `benchmark_filename` is set): each row must already be one (history, target) pair, with the columns
`user_id:token  item_id_list:token_seq  item_id:token` (and `alias_of_item_id: [item_id_list]`, so the
history and the target share one item-id space). Rows of (user_id, item_id, timestamp) would not be read as
sequences. So:
  train.inter: one row per prefix of each train.parquet sequence (RecBole's own augmentation of the same
               sequence: history = items[:i][-max_len:], target = items[i], i = 1..n-1);
  valid.inter / test.inter: valid.parquet / test.parquet rows as they are (history, target).
Every item of items.parquet occurs in these files, so RecBole's item_num = n_items + 1 ([PAD]) and full ranking
scores exactly our catalogue. The files are checked against the Parquet split after writing (`check_conversion`)
and, inside RecBole, after its dataset is built (ids decoded back to our tokens, every row compared).

Model and training = our sasrec defaults (bbqrec.training.TrainConfig): hidden 64, 2 layers, 2 heads, inner 256,
dropout .5/.5, gelu, post-LN, eps 1e-12, init std .02, Adam lr 1e-3, batch 256, max_len 50, CE over all items,
no negative sampling; full ranking, history items NOT excluded (RecBole never excludes them for sequential
models); Recall/NDCG@5/10/20; selection on valid NDCG@10. Early stopping: RecBole stops when more than
`stopping_step` epochs in a row did not improve, ours (patience 10) after 10, so stopping_step 9 = patience 10
(`--stopping-step`). RecBole trains on one row per prefix (127,895 rows on Beauty), ours on one row per user
with a target at every position (22,363 rows): compare wall time to convergence, not only s/epoch.
RecBole 1.2.1 switches autograd's anomaly (debug) mode on when its sequential models are imported (sine.py);
it is switched off here (about 1.8x faster training) unless --keep-anomaly-mode.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECBOLE_PYTHON = REPO / "benchmarks" / "recbole" / ".venv" / "bin" / "python"
NAME = "beauty"
SPLITS = ("train", "valid", "test")
HEADER = "user_id:token\titem_id_list:token_seq\titem_id:token\n"

# Our sasrec defaults in RecBole's names (bbqrec.training.TrainConfig / bbqrec.models.SASRecConfig).
MODEL = {
    "n_layers": 2,
    "n_heads": 2,
    "hidden_size": 64,
    "inner_size": 256,
    "hidden_dropout_prob": 0.5,
    "attn_dropout_prob": 0.5,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
    "loss_type": "CE",
}


# ---------------------------------------------------------------- conversion (project venv: polars)
def split_rows(data: Path, max_len: int = 50) -> dict[str, tuple[list[int], list[list[int]], list[int]]]:
    """(user ids, histories, targets) of each split as RecBole must see it: train = one row per prefix."""
    import polars as pl

    rows = {}
    train = pl.read_parquet(data / "train.parquet")
    prefixes = (
        train.select("user_id", "items", end=pl.int_ranges(1, pl.col("items").list.len(), dtype=pl.Int32))
        .explode("end")
        .drop_nulls("end")
        .select(
            "user_id",
            history=pl.col("items").list.head(pl.col("end")).list.tail(max_len),
            target=pl.col("items").list.get(pl.col("end")),
        )
    )
    rows["train"] = (prefixes["user_id"].to_list(), prefixes["history"].to_list(), prefixes["target"].to_list())
    for split in ("valid", "test"):
        frame = pl.read_parquet(data / f"{split}.parquet")
        histories = frame["history"].list.tail(max_len)
        if (histories.list.len() != frame["history"].list.len()).any():
            raise ValueError(f"{split}.parquet: histories longer than max_len={max_len}")
        rows[split] = (frame["user_id"].to_list(), histories.to_list(), frame["target"].to_list())
    return rows


def convert(data: Path, out: Path, name: str = NAME, max_len: int = 50) -> dict:
    """Write <out>/<name>/<name>.{train,valid,test}.inter from a prepared data folder; returns counts."""
    import polars as pl

    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    rows = split_rows(data, max_len)
    for split, (users, histories, targets) in rows.items():
        with open(folder / f"{name}.{split}.inter", "w") as f:
            f.write(HEADER)
            for user, history, target in zip(users, histories, targets):
                if not history:
                    raise ValueError(f"{split}: user {user} has an empty history")
                f.write(f"{user}\t{' '.join(map(str, history))}\t{target}\n")
    n_items = pl.read_parquet(data / "items.parquet", columns=["item_id"]).height
    seen = {i for _, histories, targets in rows.values() for h in histories for i in h} | {
        t for _, _, targets in rows.values() for t in targets
    }
    if seen != set(range(1, n_items + 1)):
        raise ValueError(f"the split uses {len(seen)} of {n_items} items: RecBole would score a smaller catalogue")
    return {"folder": str(folder), "items": n_items, **{f"{s}_rows": len(rows[s][0]) for s in SPLITS}}


def read_atomic(path: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """(user tokens, history tokens, target tokens) of one atomic benchmark file, in file order."""
    users, histories, targets = [], [], []
    with open(path) as f:
        if f.readline() != HEADER:
            raise ValueError(f"{path}: unexpected header")
        for line in f:
            user, history, target = line.rstrip("\n").split("\t")
            users.append(user)
            histories.append(history.split(" "))
            targets.append(target)
    return users, histories, targets


def check_conversion(data: Path, out: Path, name: str = NAME, max_len: int = 50) -> dict:
    """Re-read the atomic files and compare every row with the Parquet split; returns what was checked."""
    import polars as pl

    rows = split_rows(data, max_len)
    report = {}
    for split in SPLITS:
        users, histories, targets = read_atomic(out / name / f"{name}.{split}.inter")
        want_users, want_histories, want_targets = rows[split]
        same = (
            users == list(map(str, want_users))
            and histories == [list(map(str, h)) for h in want_histories]
            and targets == list(map(str, want_targets))
        )
        if not same:
            raise ValueError(f"{split}.inter differs from the Parquet split")
        report[f"{split}_rows"] = len(users)
    # independent checks against the Parquet files themselves
    train = pl.read_parquet(data / "train.parquet")
    valid = pl.read_parquet(data / "valid.parquet")
    test = pl.read_parquet(data / "test.parquet")
    assert report["train_rows"] == int((train["items"].list.len() - 1).sum())
    assert report["valid_rows"] == valid.height == report["test_rows"] == test.height
    report["users"] = train.height
    report["items"] = pl.read_parquet(data / "items.parquet", columns=["item_id"]).height
    # a few users by hand: the last train row's history + target = the train sequence (its last max_len + 1
    # items), valid history = the train sequence, test history = train sequence + valid target (truncated)
    users, histories, targets = read_atomic(out / name / f"{name}.train.inter")
    last = {u: (h, t) for u, h, t in zip(users, histories, targets)}
    v_users, v_histories, v_targets = read_atomic(out / name / f"{name}.valid.inter")
    t_users, t_histories, t_targets = read_atomic(out / name / f"{name}.test.inter")
    examples = []
    for index in (0, 1, int(train["items"].list.len().arg_max())):
        user = str(train["user_id"][index])
        sequence = list(map(str, train["items"][index].to_list()))
        history, target = last[user]
        assert (history + [target])[-len(sequence):] == sequence[-(max_len + 1):]
        assert v_users[index] == user and v_histories[index] == sequence[-max_len:]
        assert t_users[index] == user and t_histories[index] == (sequence + [v_targets[index]])[-max_len:]
        assert t_targets[index] == str(test["target"][index]) and v_targets[index] == str(valid["target"][index])
        examples.append(
            {
                "user_id": user,
                "train_len": len(sequence),
                "train_rows": users.count(user),
                "valid": f"{' '.join(v_histories[index][-5:])} -> {v_targets[index]}",
                "test": f"{' '.join(t_histories[index][-5:])} -> {t_targets[index]}",
            }
        )
    report["examples"] = examples
    return report


def recbole_config(
    out: Path, work: Path, epochs: int, stopping_step: int, name: str = NAME, device: str = "cpu"
) -> dict:
    return {
        "data_path": str(out),  # RecBole reads <data_path>/<dataset>/<dataset>.<split>.inter
        "dataset": name,
        "benchmark_filename": list(SPLITS),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": None,
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        "alias_of_item_id": ["item_id_list"],
        "MAX_ITEM_LIST_LENGTH": 50,
        **MODEL,
        "train_neg_sample_args": None,
        "epochs": epochs,
        "train_batch_size": 256,
        "eval_batch_size": 1024,  # rows per evaluation batch: ours when RecBole was measured (256 since, faster on a CPU)
        "learner": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "eval_step": 1,
        "stopping_step": stopping_step,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [5, 10, 20],
        "valid_metric": "NDCG@10",
        "seed": 0,
        "reproducibility": True,
        "use_gpu": device == "cuda",
        "gpu_id": "0",
        "worker": 0,
        "show_progress": False,
        "checkpoint_dir": str(work / "saved"),
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }


# ---------------------------------------------------------------- the RecBole side (RecBole's venv)
def run_recbole(point: dict) -> dict:
    """Build RecBole's dataset from the atomic files, train SASRec to early stopping, time it all."""
    os.chdir(point["work"])  # RecBole writes log/ and log_tensorboard/ into the working directory
    import numpy as np
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    progress = Path(point["work"]) / "progress.jsonl"

    class TimedTrainer(Trainer):
        """RecBole's Trainer, with the seconds of each training epoch and validation pass recorded."""

        def __init__(self, config, model):
            super().__init__(config, model)
            self.epochs_log = []

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            started, cpu = time.perf_counter(), time.process_time()
            loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
            self.epochs_log.append({"epoch": epoch_idx + 1, "loss": float(loss), "seconds": time.perf_counter() - started,
                                    "cpu_seconds": time.process_time() - cpu})
            return loss

        def _valid_epoch(self, valid_data, show_progress=False):
            started, cpu = time.perf_counter(), time.process_time()
            score, result = super()._valid_epoch(valid_data, show_progress)
            row = self.epochs_log[-1]
            row.update(valid_seconds=time.perf_counter() - started, valid_cpu_seconds=time.process_time() - cpu,
                       **{k: float(v) for k, v in result.items()})
            with open(progress, "a") as f:
                f.write(json.dumps(row) + "\n")
            return score, result

    # Importing recbole.model.sequential_recommender imports sine.py, whose module level calls
    # torch.autograd.set_detect_anomaly(True): every RecBole sequential run then trains in autograd's anomaly
    # (debug) mode, about 1.8x slower per batch here. Off unless --keep-anomaly-mode (RecBole as shipped).
    anomaly_as_shipped = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(point["anomaly_mode"])
    config = Config(model="SASRec", dataset=point["config"]["dataset"], config_dict=point["config"])
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(point["threads"])
    init_logger(config)
    started = time.perf_counter()
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    prepare_seconds = time.perf_counter() - started
    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = TimedTrainer(config, model)
    if point.get("resume"):
        # RecBole saves the best model with its optimiser, epoch and patience counter; it goes on from there
        # (the data order of the later epochs differs from an uninterrupted run's: no RNG state is saved)
        resumed = Path(config["checkpoint_dir"]) / f"resumed-{Path(point['resume']).name}"
        resumed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(point["resume"], resumed)  # RecBole overwrites the file it resumed from
        trainer.resume_checkpoint(resumed)
    started, cpu = time.perf_counter(), time.process_time()
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_seconds, fit_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    best_epoch = checkpoint["epoch"] + 1
    started, cpu = time.perf_counter(), time.process_time()
    test_result = trainer.evaluate(test_data, load_best_model=False)
    test_seconds, test_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    with torch.no_grad():  # top-20 lists of all test rows, as bench_train's recommend pass
        for interaction, _, _, _ in test_data:
            scores = model.full_sort_predict(interaction)
            scores[:, 0] = -np.inf
            torch.topk(scores, 20, dim=1)
    recommend_seconds = time.perf_counter() - started
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log = trainer.epochs_log
    epochs = log[-1]["epoch"] if log else best_epoch
    # the wall time at the point where patience 10 (ours) stops: best epoch + 10, training + validation
    # (after --resume: of the epochs this run trained)
    stop_at = best_epoch + 10
    return {
        "variant": "recbole-sasrec",
        "device": str(config["device"]),
        "threads": torch.get_num_threads(),
        "epochs": epochs,
        "trained_epochs": len(log),
        "best_epoch": best_epoch,
        "early_stopped": epochs < config["epochs"],
        "epoch_s": float(np.mean([r["seconds"] for r in log])),
        "valid_s": float(np.mean([r["valid_seconds"] for r in log])),
        "fit_s": fit_seconds,
        "fit_cpu_s": fit_cpu_seconds,
        "epoch_cpu_s": float(np.mean([r["cpu_seconds"] for r in log])),
        "valid_cpu_s": float(np.mean([r["valid_cpu_seconds"] for r in log])),
        "fit_s_best_plus_10": float(sum(r["seconds"] + r["valid_seconds"] for r in log if r["epoch"] <= stop_at)),
        "resumed_from_epoch": trainer.start_epoch if point.get("resume") else None,
        "test_eval_s": test_seconds,
        "test_eval_cpu_s": test_cpu_seconds,
        "recommend_s": recommend_seconds,
        "prepare_s": prepare_seconds,
        "test_recall10": float(test_result["recall@10"]),
        "test_ndcg10": float(test_result["ndcg@10"]),
        "test": {k: float(v) for k, v in test_result.items()},
        "best_valid": {k: float(v) for k, v in (trainer.best_valid_result or {}).items()},
        "peak_rss_mib": peak_rss,
        "anomaly_mode": point["anomaly_mode"],
        "anomaly_mode_as_shipped": anomaly_as_shipped,
        "train_rows": len(train_data._dataset),
        "item_num": int(dataset.item_num),
        "recbole_check": check_recbole_dataset(point, dataset, (train_data, valid_data, test_data)),
        "log": log,
        "versions": versions(),
    }


def check_recbole_dataset(point: dict, dataset, loaders) -> dict:
    """Decode RecBole's built splits back to our tokens and compare every row with the atomic files."""
    import numpy as np

    item_tokens = dataset.field2id_token["item_id"]
    user_tokens = dataset.field2id_token["user_id"]
    folder = Path(point["config"]["data_path"]) / point["config"]["dataset"]
    out = {"item_num_with_pad": int(dataset.item_num)}
    for split, loader in zip(SPLITS, loaders):
        inter = loader._dataset.inter_feat
        users, histories, targets = read_atomic(folder / f"{point['config']['dataset']}.{split}.inter")
        lengths = inter["item_length"].numpy()
        sequences = item_tokens[inter["item_id_list"].numpy()]
        got_histories = [list(row[:n]) for row, n in zip(sequences, lengths)]
        same = (
            len(inter) == len(users)
            and list(user_tokens[inter["user_id"].numpy()]) == users
            and got_histories == histories
            and list(item_tokens[inter["item_id"].numpy()]) == targets
            and bool(np.all(sequences[np.arange(sequences.shape[1]) >= lengths[:, None]] == "[PAD]"))
        )
        out[split] = {"rows": len(inter), "identical": bool(same)}
    return out


def versions() -> dict:
    import numpy
    import pandas
    import recbole
    import torch

    return {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__}


# ---------------------------------------------------------------- driver (project venv)
def run_child(point: dict, threads: int, python: str = str(RECBOLE_PYTHON)) -> dict:
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONHASHSEED": "0"}
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    child = subprocess.run(
        [python, __file__, "--one", json.dumps(point)],
        check=False, capture_output=True, text=True, env=env, cwd=point["work"],
    )
    (Path(point["work"]) / "child.stderr").write_text(child.stderr)
    if child.returncode:
        sys.stderr.write(child.stderr[-5000:])
        raise SystemExit(f"RecBole child failed ({child.returncode}); see {point['work']}/child.stderr")
    return json.loads(child.stdout.strip().splitlines()[-1])


def print_table(rows: list[dict]) -> None:
    """bench_train.py's table, with test Recall@10 and, for RecBole, the wall time at best epoch + 10."""
    header = ("| variant | device | threads | epochs | best epoch | early stop | s/epoch | s/valid pass | fit s | "
              "s/test eval | s/recommend top-20 | test Recall@10 | test NDCG@10 | peak RSS MiB |")
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for r in rows:
        recall = f"{r['test_recall10']:.4f}" if r.get("test_recall10") is not None else "–"
        print(f"| {r['variant']} | {r['device']} | {r['threads']} | {r['epochs']} | {r['best_epoch']} | "
              f"{r['early_stopped']} | {r['epoch_s']:.1f} | {r['valid_s']:.1f} | {r['fit_s']:.0f} | "
              f"{r['test_eval_s']:.1f} | {r['recommend_s']:.1f} | {recall} | {r['test_ndcg10']:.4f} | "
              f"{r['peak_rss_mib']:.0f} |")
    # process CPU seconds: on a shared, loaded machine wall time also counts the time the process waited
    print("\n| variant | CPU s/epoch (incl. valid) | fit CPU s | test eval CPU s |\n| --- | --- | --- | --- |")
    for r in rows:
        if "fit_cpu_s" in r:
            print(f"| {r['variant']} | {r['fit_cpu_s'] / r.get('trained_epochs', r['epochs']):.1f} | {r['fit_cpu_s']:.0f} | "
                  f"{r['test_eval_cpu_s']:.1f} |")


def run_ours(variants: list[str], epochs: int, threads: int, data: Path) -> list[dict]:
    """bench_train.py's rows for `variants` (each in a fresh process, as bench_train.py runs them)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_train

    sids = None
    if any(v.startswith("bbqrec") for v in variants):
        from bbqrec.training import count_items

        sids = str(Path(tempfile.mkdtemp(prefix="bench-sids-")) / "semantic_ids.parquet")
        bench_train.random_semantic_ids(count_items(data / "items.parquet"), Path(sids))
    config = {"threads": threads, "device": "cpu", **({"max_epochs": epochs} if epochs else {})}
    rows = []
    for variant in variants:
        point = {"variant": variant, "data": str(data), "sids": sids, "config": config}
        child = subprocess.run([sys.executable, bench_train.__file__, "--one", json.dumps(point)],
                               capture_output=True, text=True, check=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append({**row, "variant": variant + (" (random codes)" if sids else "")})
        print(f"done {variant}", file=sys.stderr)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epoch cap; 0 = 200 (ours' max_epochs)")
    parser.add_argument("--stopping-step", type=int, default=9, help="RecBole's; 9 = our patience 10")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=None, help="a prepared Beauty data folder (default: as bench_train.py)")
    parser.add_argument("--work", default=None, help="folder for the atomic files, logs, checkpoints (default: tmp)")
    parser.add_argument("--ours", nargs="*", default=[], help="also run these bench_train.py variants (same --epochs)")
    parser.add_argument("--keep-anomaly-mode", action="store_true",
                        help="train in autograd anomaly mode, as RecBole 1.2.1 leaves it on import (~1.8x slower)")
    parser.add_argument("--convert-only", action="store_true", help="write and check the atomic files, then stop")
    parser.add_argument("--atomic", default=None, help="atomic files written earlier (--convert-only): no conversion")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="RecBole's use_gpu")
    parser.add_argument("--recbole-python", default=str(RECBOLE_PYTHON), help="the interpreter that has RecBole")
    parser.add_argument("--resume", default=None,
                        help="a RecBole checkpoint (saved/*.pth) of the same config: train on from its epoch")
    parser.add_argument("--json", default=None, help="also write the rows (with RecBole's epoch log) here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: the RecBole child
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_recbole(json.loads(args.one))))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_train import beauty_data

    data = beauty_data(args.data) if args.ours or not args.atomic else None  # --atomic alone needs no split
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-recbole-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    atomic = Path(args.atomic).resolve() if args.atomic else work / "atomic"
    checked = None  # files from --atomic were checked when --convert-only wrote them
    if not args.atomic:
        counts = convert(data, atomic)
        checked = check_conversion(data, atomic)
        print(json.dumps({"converted": counts, "checked": checked}, indent=1), file=sys.stderr)
    if args.convert_only:
        return
    python = args.recbole_python  # a path, or a command name such as python3
    if os.sep in python and not Path(python).exists():
        raise SystemExit(f"{python} missing: run `make bench-recbole-venv` first")
    point = {
        "work": str(work),
        "threads": args.threads,
        "anomaly_mode": args.keep_anomaly_mode,
        "config": recbole_config(atomic, work, args.epochs or 200, args.stopping_step, device=args.device),
        "resume": str(Path(args.resume).resolve()) if args.resume else None,
    }
    started = time.perf_counter()
    row = run_child(point, args.threads, python)
    row["child_wall_s"] = time.perf_counter() - started
    print(f"done recbole-sasrec; RecBole's split check: {row['recbole_check']}", file=sys.stderr)
    row["variant"] += " (anomaly mode)" if row["anomaly_mode"] else ""
    rows = [row] + (run_ours(args.ours, args.epochs, args.threads, data) if args.ours else [])
    print_table(rows)
    print(f"\nrecbole-sasrec: data preparation {row['prepare_s']:.1f} s, wall at best epoch + 10 "
          f"{row['fit_s_best_plus_10']:.0f} s, child process {row['child_wall_s']:.0f} s; test "
          + ", ".join(f"{k} {v:.4f}" for k, v in row["test"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps({"conversion": checked, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
