"""The options of the train and evaluate stages (config section `train`), without torch.

The workflow reads DEFAULT_TRAIN_CONFIG when it parses the Snakefile, which every job on a cluster does again:
importing torch there would add about 3 s to each of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bbqrec.io import InputError
from bbqrec.models.variants import SIMILARITIES

STREAM_ORDER = ("text", "image", "behavior")
# How evaluate ranks all items for the top-K lists (bbqrec.evaluation.ranking.recommend).
RECOMMEND_BACKENDS = ("matmul", "faiss")


@dataclass(frozen=True)
class TrainConfig:
    """Every option of the train/evaluate stages (config section `train`); defaults = DEFAULT_TRAIN_CONFIG."""

    # model (see bbqrec.models.ModelConfig)
    max_len: int = 50
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    dropout: float = 0.5
    attn_dropout: float = 0.5
    norm_first: bool = False
    layer_norm_eps: float = 1e-12
    init_std: float = 0.02
    similarity: str | None = None  # overrides the variant's reweighting ("prefix", "equal_levels", "cosine")
    cosine_buckets: int = 8
    # Item inputs of the semantic-ID variants (see build_model). Defaults chosen on validation NDCG@10
    # (docs/results.md, "Item inputs of bbqrec"): the behaviour stream's ẑ copies an ID-SASRec fitted on the same
    # split and generalises worse, and ẑ keeps less of the content than the embeddings it was made from.
    quantized_inputs: tuple[str, ...] = ("text", "image")  # streams whose quantized vectors join the item input
    content_inputs: bool = True  # also add the continuous text/image embeddings (sasrec-mm's inputs)
    # "two_stage": the tokenizer's codes and ẑ are frozen inputs (METHOD.md's default); "joint": one stage, the
    # recommender and the tokenizer's own losses train the tokenizer further from there (bbqrec.models.joint)
    tokenizer_training: str = "two_stage"
    joint_tokenizer_weight: float = 1.0  # "joint": weight of the tokenizer's own losses in the one objective
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256  # sequences (rows) per step
    training_rows: str = "sequence"  # "sequence": one row per user, a target at every position; "prefix": one per prefix
    max_epochs: int = 200
    patience: int = 10
    # learning rate times lr_decay_factor after every lr_decay_patience epochs without a new best (0: constant)
    lr_decay_patience: int = 0
    lr_decay_factor: float = 0.5
    # evaluation
    ks: tuple[int, ...] = (5, 10, 20)
    eval_batch_size: int = 256  # users per evaluation batch: on a CPU 256 beats 1024 (cache; docs/benchmarks.md)
    exclude_history: bool = False
    recommend_k: int = 20
    recommend_backend: str = "matmul"
    # resources
    device: str = "auto"
    threads: int = 1  # torch threads of each process
    processes: int = 1  # > 1: data-parallel training (DDP) on that many processes, started by torchrun

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config train") -> "TrainConfig":
        """Defaults overridden by `values`; an unknown key or a value of the wrong type is an InputError."""
        defaults = asdict(cls())
        for key, value in values.items():
            default = defaults.get(key, ...)
            if default is ...:
                raise InputError(f"{source}: unknown key {key!r}; expected one of {sorted(defaults)}")
            if key in CHOICES:
                ok = value in CHOICES[key]
            elif key == "ks":
                ok = isinstance(value, (list, tuple)) and all(type(k) is int and k > 0 for k in value)
            elif key == "quantized_inputs":
                ok = isinstance(value, (list, tuple)) and set(value) <= set(STREAM_ORDER)
            else:  # the default's type; an int where a float is expected is fine
                ok = type(value) is type(default) or (type(default) is float and type(value) is int)
            if not ok:
                expected = {
                    "ks": "a list of positive integers",
                    "quantized_inputs": f"a list of streams out of {list(STREAM_ORDER)}",
                }.get(key, type(default).__name__)
                expected = f"one of {CHOICES[key]}" if key in CHOICES else expected
                raise InputError(f"{source}.{key}: expected {expected}, got {value!r}")
        merged = {**defaults, **values}
        floats = {key: float(merged[key]) for key, default in defaults.items() if type(default) is float}
        tuples = {"ks": tuple(merged["ks"]), "quantized_inputs": tuple(merged["quantized_inputs"])}
        return cls(**{**merged, **floats, **tuples})


# The options with a fixed set of values.
CHOICES = {
    "similarity": (None, *SIMILARITIES),
    "training_rows": ("sequence", "prefix"),
    "tokenizer_training": ("two_stage", "joint"),
    "recommend_backend": RECOMMEND_BACKENDS,
}
DEFAULT_TRAIN_CONFIG: dict[str, Any] = asdict(TrainConfig())
NOT_TRAINING_OPTIONS = ("eval_batch_size", "recommend_k", "recommend_backend", "device", "threads", "processes")
# Options only the semantic-ID variants read (the ID-only behaviour SASRec of the tokenizer ignores them).
SEMANTIC_ID_OPTIONS = (
    "similarity",
    "cosine_buckets",
    "quantized_inputs",
    "content_inputs",
    "tokenizer_training",
    "joint_tokenizer_weight",
)


def recommend_runs(block: dict[str, Any], runs: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """The (dataset, variant, seed) runs whose models write next-item lists (config section `recommend`).

    runs: every configured training run, in config order. `block["variants"]`: "auto" (bbqrec where it is trained)
    or a list; each listed variant must be trained somewhere, and on each dataset where it is, the run with
    `block["seed"]` (None: its first seed there) must be configured. Anything else is an InputError naming the key.
    """
    trained = list(dict.fromkeys(variant for _, variant, _ in runs))
    variants = block["variants"]
    if variants == "auto":
        variants = [variant for variant in ("bbqrec",) if variant in trained]
    chosen = []
    for variant in variants:
        if variant not in trained:
            raise InputError(
                f"config key recommend.variants: {variant!r} has no training run (configured variants: {trained}); "
                "add it to train.variants or leave it out of recommend.variants"
            )
        for dataset in dict.fromkeys(d for d, v, _ in runs if v == variant):
            seeds = [s for d, v, s in runs if (d, v) == (dataset, variant)]
            seed = seeds[0] if block["seed"] is None else block["seed"]
            if seed not in seeds:
                raise InputError(
                    f"config key recommend.seed: {variant} has no run with seed {seed} on {dataset} "
                    f"(its seeds there: {seeds})"
                )
            chosen.append((dataset, variant, seed))
    return chosen
