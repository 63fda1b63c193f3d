"""The variant table: each variant's loss, item-side inputs, reweighting and tokenizer folder."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bbqrec.io import InputError
from bbqrec.models import VARIANTS, get_variant
from bbqrec.training import TrainConfig, build_model


@pytest.fixture
def semantic_ids(tmp_path):
    """Two items, text and behaviour streams, 2 levels, 2-d quantized vectors."""
    table = pa.table(
        {
            "item_id": pa.array([1, 2, 1, 2], pa.int32()),
            "stream": ["text", "text", "behavior", "behavior"],
            "c1": pa.array([0, 0, 1, 2], pa.int32()),
            "c2": pa.array([3, 4, 5, 5], pa.int32()),
            "extra": pa.array([0, 0, 0, 0], pa.int32()),
            "quantized": pa.FixedSizeListArray.from_arrays(pa.array([1, 0, 0, 1, 1, 1, 2, 0], pa.float32()), 2),
        }
    )
    path = tmp_path / "semantic_ids.parquet"
    pq.write_table(table, path)
    return path


@pytest.fixture
def text_embeddings(tmp_path):
    table = pa.table(
        {
            "item_id": pa.array([1, 2], pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array([0.5, 0.5, 0.5, 0, 0, 0], pa.float32()), 3, mask=pa.array([False, True])
            ),
            "has_text": [True, False],
        }
    )
    path = tmp_path / "text.parquet"
    pq.write_table(table, path)
    return path


def test_every_variant_of_the_method_is_in_the_table():
    assert set(VARIANTS) == {
        "sasrec", "sasrec-bce", "sasrec-mm", "bbqrec", "bbqrec-no-club", "bbqrec-no-behavior",
        "bbqrec-no-reweight", "bbqrec-cosine", "bbqrec-untrained",
    }
    assert {v.tokenizer for v in VARIANTS.values()} == {None, "bbq", "bbq-no-club", "bbq-no-behavior", "bbq-untrained"}
    # the control differs from bbqrec in its tokenizer only
    assert dataclasses.replace(get_variant("bbqrec-untrained"), tokenizer="bbq") == get_variant("bbqrec")
    with pytest.raises(InputError, match="config key variant: unknown variant 'tiger'"):
        get_variant("tiger")


@pytest.mark.parametrize(
    ("variant", "loss", "n_features", "similarity"),
    [
        ("sasrec", "ce", 0, None),
        ("sasrec-bce", "bce", 0, None),
        ("bbqrec", "ce", 2, "prefix"),
        ("bbqrec-no-reweight", "ce", 2, None),
        ("bbqrec-cosine", "ce", 2, "cosine"),
    ],
)
def test_build_model_maps_the_variant_to_model_options(semantic_ids, variant, loss, n_features, similarity):
    # METHOD.md's literal item input: the quantized vectors of every stream, no continuous embeddings
    literal = TrainConfig.from_dict({"quantized_inputs": ["text", "image", "behavior"], "content_inputs": False})
    model = build_model(variant, literal, n_items=2, semantic_ids=semantic_ids)
    assert model.config.loss == loss and model.config.similarity == similarity
    assert len(model.feature_projections) == n_features
    if n_features:
        # streams ordered text, behavior; row 0 = padding
        assert model.item_feature_0.tolist() == [[0, 0], [1, 0], [0, 1]]
        assert model.item_feature_1.tolist() == [[0, 0], [1, 1], [2, 0]]
    if similarity == "prefix":
        assert model.similarity.item_codes[1].tolist() == [[0, 3], [1, 5]]


def test_similarity_option_overrides_only_reweighted_variants(semantic_ids):
    config = TrainConfig.from_dict({"similarity": "equal_levels", "content_inputs": False})
    assert build_model("bbqrec", config, 2, semantic_ids).config.similarity == "equal_levels"
    assert build_model("bbqrec-no-reweight", config, 2, semantic_ids).config.similarity is None


def test_multimodal_baseline_projects_the_continuous_embeddings(text_embeddings):
    model = build_model("sasrec-mm", TrainConfig(), n_items=2, text_embeddings=text_embeddings)
    assert model.config.similarity is None
    assert model.item_feature_0.tolist() == [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0]]  # item 2 has no text
    assert torch.equal(model.item_vectors()[0], torch.zeros(64))


def test_missing_inputs_name_the_option():
    with pytest.raises(InputError, match=r"variant bbqrec-no-club: needs sids/bbq-no-club/semantic_ids.parquet"):
        build_model("bbqrec-no-club", TrainConfig(), 2)
    with pytest.raises(InputError, match=r"variant sasrec-mm: needs text and/or image embeddings"):
        build_model("sasrec-mm", TrainConfig(), 2)


def test_item_input_options_choose_the_streams_and_keep_every_code(semantic_ids, text_embeddings):
    config = TrainConfig()  # the defaults: content embeddings and the content streams' ẑ, no behaviour ẑ
    model = build_model("bbqrec", config, 2, semantic_ids, text_embeddings)
    # the continuous text embedding, then the text stream's quantized vector; no behaviour vector
    assert len(model.feature_projections) == 2
    assert model.item_feature_0.tolist() == [[0, 0, 0], [0.5, 0.5, 0.5], [0, 0, 0]]
    assert model.item_feature_1.tolist() == [[0, 0], [1, 0], [0, 1]]
    assert model.similarity.item_codes[1].tolist() == [[0, 3], [1, 5]]  # both streams' codes feed the bias
    cosine = build_model("bbqrec-cosine", config, 2, semantic_ids, text_embeddings)
    assert cosine.similarity.item_vectors[2].tolist() == [[0, 1], [2, 0]]  # both streams' quantized vectors
    id_only = TrainConfig.from_dict({"quantized_inputs": [], "content_inputs": False})
    no_vectors = build_model("bbqrec", id_only, 2, semantic_ids)
    assert len(no_vectors.feature_projections) == 0 and no_vectors.similarity is not None
    with pytest.raises(InputError, match=r"variant bbqrec: needs text and/or image embeddings"):
        build_model("bbqrec", config, 2, semantic_ids)


def test_quantized_inputs_must_name_streams():
    with pytest.raises(InputError, match=r"config train.quantized_inputs: expected a list of streams out of "):
        TrainConfig.from_dict({"quantized_inputs": ["text", "audio"]})
    assert TrainConfig.from_dict({"quantized_inputs": ["image"]}).quantized_inputs == ("image",)
