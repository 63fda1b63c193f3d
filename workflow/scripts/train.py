"""Stage train: fit one model variant with one seed; early stopping on validation NDCG@10.

Writes model.pt (the best epoch's weights + everything needed to rebuild the model, frozen item inputs
included, and provenance) and log.parquet (one row per epoch). A checkpoint beside model.pt is written after
every epoch; a killed run started again resumes from it and ends with the same result. It is removed at the end.

With `--refit-from <train/variant/seed<k>>` (rule refit) it trains the same model afresh on every prepared
interaction (interactions.parquet: the validation and test items included) for exactly that run's best epoch count,
at the learning rate it had in each of those epochs, without validation: the model to serve, which has seen the
latest items. Its model.pt has the same layout (best_epoch = the epochs trained, best_valid_ndcg10 NaN).

With config `processes: N` > 1 it runs as N data-parallel processes (DistributedDataParallel), started with
`torchrun --standalone --nproc_per_node N train.py ...` (the train rule does this); rank 0 writes the outputs.
"""

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset name (recorded in the provenance)")
    parser.add_argument("--variant", required=True, help="model variant, e.g. sasrec, bbqrec (bbqrec.models.VARIANTS)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--data", required=True, help="results/<ds>/data: items, train, valid parquet files")
    parser.add_argument("--sids", default=None, help="sids/<tokenizer>/semantic_ids.parquet (bbqrec variants)")
    parser.add_argument("--text", default=None, help="embeddings/text.parquet (sasrec-mm)")
    parser.add_argument("--image", default=None, help="embeddings/image.parquet (sasrec-mm)")
    parser.add_argument(
        "--quantize-dir", default=None, help="quantize/<tokenizer>/seed<k>: the tokenizer (tokenizer_training joint)"
    )
    parser.add_argument("--embeddings-dir", default=None, help="embeddings/: the tokenizer's inputs (joint)")
    parser.add_argument(
        "--behavior", nargs="+", default=None, help="the tokenizer's behaviour embedding file(s), as quantize's (joint)"
    )
    parser.add_argument(
        "--refit-from", default=None, help="train/<variant>/seed<k> of an early-stopped run: refit on all interactions"
    )
    parser.add_argument("--config-json", default="{}", help="the train config block as JSON (keys: DEFAULT_TRAIN_CONFIG)")
    parser.add_argument("--out", required=True, help="output folder: model.pt, log.parquet")
    parser.add_argument("--log", default=None, help="log file (default: stderr)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    from bbqrec import distributed
    from bbqrec.training import TrainConfig, resolve_device

    config = TrainConfig.from_dict(json.loads(args.config_json))
    torch.set_num_threads(config.threads)
    with distributed.process_group(resolve_device(config.device)):
        train_and_save(args, config)


def train_and_save(args, config):
    """What each process does (one process, or every rank inside the process group)."""
    import polars as pl
    import torch

    from bbqrec import distributed
    from bbqrec.data.split import user_sequences
    from bbqrec.embed.common import open_stage_log
    from bbqrec.evaluation import EvalSet
    from bbqrec.io import atomic_path, provenance, read_parquet_metadata, write_parquet
    from bbqrec.training import (
        TrainingSequences,
        build_model,
        count_items,
        fit,
        load_joint_quantizer,
        load_refit_schedule,
        seed_everything,
    )

    open_stage_log(args.log if distributed.is_main() else None)
    if not distributed.is_main():  # the other ranks share rank 0's stderr: their warnings only
        logging.getLogger().setLevel(logging.WARNING)
    data, out = Path(args.data), Path(args.out)
    n_items = count_items(data / "items.parquet")
    learning_rates = valid = None
    if args.refit_from:  # every interaction, for the stopped run's epochs and rates
        learning_rates = load_refit_schedule(args.refit_from, args.variant)
        sequences = user_sequences(pl.read_parquet(data / "interactions.parquet"))
    else:
        sequences = pl.read_parquet(data / "train.parquet")
        valid = EvalSet.from_frame(pl.read_parquet(data / "valid.parquet"), config.max_len, str(data / "valid.parquet"))
    train = TrainingSequences.from_frame(sequences, config.max_len, config.training_rows)
    joint = None
    if config.tokenizer_training == "joint" and args.quantize_dir is not None:
        joint = load_joint_quantizer(args.quantize_dir, args.embeddings_dir, args.behavior, n_items)
    seed_everything(args.seed)
    model = build_model(args.variant, config, n_items, args.sids, args.text, args.image, joint)
    logging.info("%s %s seed %d: %d items, %d training sequences", args.dataset, args.variant, args.seed, n_items, len(train.inputs))
    checkpoint = out / "checkpoint.pt"
    result = fit(
        model, train, valid, config, args.seed, checkpoint, lambda row: logging.info("%s", row), learning_rates
    )
    if not distributed.is_main():  # every rank holds the same best weights; rank 0 writes them
        return
    run = {"dataset": args.dataset, "variant": args.variant, "train": asdict(config)}
    if args.refit_from:
        run["refit_of"] = {"run": args.refit_from, "epochs": len(learning_rates)}
    if args.sids:  # the codes' tokenizer and seed are part of a bbqrec result (quantize.seed: per_run or fixed)
        sids_meta = read_parquet_metadata(args.sids)
        tokenizer_seed = sids_meta["provenance"]["seed"]
        run["sids"] = {"path": str(args.sids), "tokenizer": sids_meta["tokenizer"], "seed": tokenizer_seed}
    if joint is not None:  # one stage: the starting tokenizer and its inputs
        run["joint"] = {"quantize_dir": args.quantize_dir, "embeddings": args.embeddings_dir, "behavior": args.behavior}
    saved = {
        **model.checkpoint(),
        "variant": args.variant,
        "best_epoch": result.best_epoch,
        "best_valid_ndcg10": result.best_metric,
        "provenance": provenance(run, args.seed),
    }
    with atomic_path(out / "model.pt", ".pt") as tmp:
        torch.save(saved, tmp)
    write_parquet(result.log, out / "log.parquet", metadata={"provenance": provenance(run, args.seed)})
    checkpoint.unlink(missing_ok=True)
    if args.refit_from:
        logging.info("refit on every interaction: %d epochs, as %s", result.best_epoch, args.refit_from)
    else:
        logging.info("best epoch %d, valid NDCG@10 %.5f", result.best_epoch, result.best_metric)


if __name__ == "__main__":
    main()
