"""One-stage training (`tokenizer_training: joint`): the recommender starts from the trained tokenizer, trains its
aligned encoders and codebook through ẑ, and its similarity bias follows the codes. Real data: the tokenizer of
test_sids on Scientific-mm's shipped text/image features and a co-occurrence behaviour stream."""

from __future__ import annotations


import polars as pl
import pytest
import torch
from test_sids import scientific, train_quick_model  # noqa: F401  (scientific is a fixture)

from bbqrec.evaluation import EvalSet
from bbqrec.io import InputError
from bbqrec.models import SASRec
from bbqrec.quantize.sids import encode_items
from bbqrec.training import TrainConfig, TrainingSequences, build_model, fit, load_joint_quantizer
from bbqrec.training.loop import count_items

JOINT = {"tokenizer_training": "joint", "hidden_size": 16, "inner_size": 32, "dropout": 0.0, "attn_dropout": 0.0}


@pytest.fixture(scope="module")
def tokenizer(scientific, tmp_path_factory):  # noqa: F811
    """(quantize dir holding tokenizer.pt, embeddings dir, n_items, the tokenizer's SIDs, the data dir)."""
    embeddings, train = scientific
    model, inputs = train_quick_model(embeddings, train, seed=0)
    quantize_dir = tmp_path_factory.mktemp("quantize")
    torch.save(model.checkpoint(), quantize_dir / "tokenizer.pt")
    n_items = count_items(train.parent / "items.parquet")
    return quantize_dir, embeddings, n_items, encode_items(model, inputs), train.parent


def joint_model(tokenizer, **options) -> SASRec:
    quantize_dir, embeddings, n_items, *_ = tokenizer
    torch.manual_seed(0)
    joint = load_joint_quantizer(quantize_dir, embeddings, None, n_items)
    config = TrainConfig.from_dict({**JOINT, **options})
    text, image = embeddings / "text.parquet", embeddings / "image.parquet"
    return build_model("bbqrec", config, n_items, text_embeddings=text, image_embeddings=image, joint=joint)


def batch(n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    items = torch.randint(1, n_items + 1, (32, 9), generator=generator)
    return items[:, :-1], items[:, 1:]


def test_joint_model_starts_from_the_tokenizers_argmin_codes_and_vectors(tokenizer):
    *_, sids, _ = tokenizer
    model = joint_model(tokenizer)
    assert model.joint.streams == ["text", "image", "behavior"]
    assert model.joint_inputs == [0, 1]  # the default quantized_inputs: text and image
    codes = model.similarity.item_codes
    vectors = model.joint().vectors.detach()
    for m, stream in enumerate(model.joint.streams):
        rows = sids.filter(pl.col("stream") == stream)
        ids = torch.from_numpy(rows["item_id"].to_numpy().astype("int64"))
        expected = torch.from_numpy(rows.select("c1", "c2", "last_argmin").to_numpy().astype("int64"))
        assert torch.equal(codes[ids, m], expected), stream  # the argmin codes, not the balanced last level
        zq = torch.from_numpy(rows["quantized"].to_numpy().copy())
        moved = rows["c3"].to_numpy() != rows["last_argmin"].to_numpy()  # SIDs' ẑ follows the balanced code
        assert torch.allclose(vectors[ids[~moved], m], zq[~moved], atol=1e-6), stream
    assert torch.equal(codes[0], torch.zeros_like(codes[0])) and not vectors[0].any()  # padding


def test_items_missing_a_stream_get_zero_vectors_and_codes_that_match_no_other_item(tokenizer):
    quantize_dir, embeddings, n_items, *_ = tokenizer
    joint = load_joint_quantizer(quantize_dir, embeddings, None, n_items)
    missing = torch.tensor([3, 10, 11])  # items 3, 10, 11 without an image (rows 2, 9, 10)
    joint.present_image[missing - 1] = False
    joint.features_image[missing - 1] = 0.0
    items = joint()
    image = joint.streams.index("image")
    assert (items.codes[missing, image] == -missing[:, None]).all()
    assert not items.vectors[missing, image].any()
    assert (items.codes[1:, image][joint.present_image] >= 0).all()  # the others keep real codes
    assert items.vectors[missing, joint.streams.index("text")].abs().sum() > 0  # their other streams too


def test_a_training_step_moves_the_aligned_encoders_and_codebook_and_the_codes_follow(tokenizer):
    model = joint_model(tokenizer, lr=0.05)
    tok = model.joint.tokenizer
    inputs, targets = batch(model.config.n_items)
    model.eval()
    with torch.no_grad():
        before = model.score(inputs[:4])
    codebook = tok.quantizers["shared"].codebooks.detach().clone()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    # the recommendation loss alone reaches the codebook and the aligned encoders of the streams whose ẑ is an
    # item input (text and image by default); the codes of the similarity bias pass no gradient
    recommender_only = joint_model(tokenizer, joint_tokenizer_weight=0.0)
    recommender_only.loss(inputs, targets).backward()
    alone = recommender_only.joint.tokenizer
    for stream in ("text", "image"):
        assert alone.aligned[stream][0].weight.grad.abs().sum() > 0, stream
    assert not alone.aligned["behavior"][0].weight.grad.any()
    assert alone.quantizers["shared"].codebooks.grad.abs().sum() > 0
    assert alone.decoders["text"][0].weight.grad is None  # only the tokenizer's losses use the decoders
    loss = model.loss(inputs, targets)
    loss.backward()
    # one objective: the encoders, codebook and decoders learn from the recommendation and tokenizer losses ...
    for trained in (tok.aligned["text"], tok.aligned["behavior"], tok.specific["image"], tok.decoders["behavior"]):
        assert trained[0].weight.grad.abs().sum() > 0
    assert tok.quantizers["shared"].codebooks.grad.abs().sum() > 0
    # ... but CLUB's q (refitted by its own optimiser in stage 1) and the sequence contrast's encoder do not
    for frozen in (tok.clubs, tok.sequence_encoder, tok.sequence_head):
        assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    for _ in range(3):
        optimizer.step()
        optimizer.zero_grad()
        model.loss(inputs, targets).backward()
    assert not torch.equal(tok.quantizers["shared"].codebooks.detach(), codebook)
    with torch.no_grad():
        current = model.joint()
        model.loss(inputs, targets)  # every step sets the bias to the current codes
    assert torch.equal(model.similarity.item_codes, current.codes)
    model.eval()  # the item vectors kept out of training are those of the new weights
    with torch.no_grad():
        assert not torch.allclose(model.score(inputs[:4]), before)


def test_the_one_objective_adds_the_tokenizers_losses_on_the_items_of_the_step(tokenizer):
    inputs, targets = (t.clone() for t in batch(joint_model(tokenizer).config.n_items))
    inputs[:, 5:], targets[:, 5:] = 0, 0  # padding is no item of the step
    alone, both = (joint_model(tokenizer, joint_tokenizer_weight=w) for w in (0.0, 2.0))
    items = torch.unique(torch.cat([inputs[:, :5], targets[:, :5]]))
    with torch.no_grad():
        expected = both.joint.tokenizer_loss(items)
        everything = both.joint.tokenizer_loss(torch.arange(1, both.config.n_items + 1))
        assert expected > 0 and expected.item() != pytest.approx(everything.item(), rel=1e-3)
        difference = both.loss(inputs, targets) - alone.loss(inputs, targets)
    assert difference.item() == pytest.approx(2.0 * expected.item(), rel=1e-5)


def test_joint_model_checkpoint_round_trip_scores_the_same(tokenizer):
    model = joint_model(tokenizer)
    inputs, targets = batch(model.config.n_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.loss(inputs, targets).backward()
    optimizer.step()  # moves the codes away from those the loss set
    saved = model.checkpoint()
    with torch.no_grad():
        assert torch.equal(saved["state_dict"]["similarity.item_codes"], model.joint().codes)
    model.eval()
    restored = SASRec.from_checkpoint(saved).eval()
    with torch.no_grad():
        assert torch.equal(restored.score(inputs[:5]), model.score(inputs[:5]))
        assert torch.equal(restored.similarity.item_codes, model.similarity.item_codes)


def test_two_stage_is_the_default_and_joint_needs_the_tokenizer(tokenizer):
    quantize_dir, embeddings, n_items, *_ = tokenizer
    assert TrainConfig().tokenizer_training == "two_stage"
    with pytest.raises(InputError, match="tokenizer_training joint needs the trained tokenizer.*--quantize-dir"):
        build_model("bbqrec", TrainConfig.from_dict(JOINT), n_items)
    with pytest.raises(InputError, match=r"tokenizer_training: expected one of \('two_stage', 'joint'\)"):
        TrainConfig.from_dict({"tokenizer_training": "one_stage"})
    # the ID-only and continuous-input variants have no tokenizer: the option does not apply to them
    text = embeddings / "text.parquet"
    baseline = build_model("sasrec-mm", TrainConfig.from_dict(JOINT), n_items, text_embeddings=text)
    assert baseline.joint is None
    with pytest.raises(InputError, match="tokenizer.pt: missing tokenizer checkpoint"):
        load_joint_quantizer(embeddings, embeddings, None, n_items)


class Killed(Exception):
    pass


def test_a_resumed_joint_run_ends_exactly_like_an_uninterrupted_one(tokenizer, tmp_path):
    """The tokenizer's weights, and so the codes, come back from the checkpoint with the rest of the model."""
    *_, data = tokenizer
    train = TrainingSequences.from_frame(pl.read_parquet(data / "train.parquet").head(300), 50)
    valid = EvalSet.from_frame(pl.read_parquet(data / "valid.parquet").head(300), 50)
    options = {"max_epochs": 3, "batch_size": 64, "dropout": 0.2}
    config = TrainConfig.from_dict({**JOINT, **options})

    def run(checkpoint, on_epoch=None):
        model = joint_model(tokenizer, **options)
        return model, fit(model, train, valid, config, seed=3, checkpoint_path=checkpoint, on_epoch=on_epoch)

    def kill(row):
        if row["epoch"] == 2:
            raise Killed

    straight_model, straight = run(tmp_path / "straight.pt")
    with pytest.raises(Killed):
        run(tmp_path / "resumed.pt", kill)
    resumed_model, resumed = run(tmp_path / "resumed.pt")
    timing = ["seconds", "valid_seconds"]
    assert straight.log.height == 3 and straight.log.drop(timing).equals(resumed.log.drop(timing))
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), resumed_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_the_bias_table_of_a_joint_model_is_exported_with_its_own_stream_names(tokenizer, tmp_path, stage_script):
    *_, sids, _ = tokenizer
    model = joint_model(tokenizer)
    with torch.no_grad():
        model.similarity.tables.normal_()
    torch.save({**model.checkpoint(), "variant": "bbqrec"}, tmp_path / "model.pt")
    sids.with_columns((pl.col("c1") + 1) % 32).write_parquet(tmp_path / "sids.parquet")  # not the model's codes
    export = stage_script("export_similarity_bias")
    out = tmp_path / "bias.parquet"
    args = ["--model", tmp_path / "model.pt", "--sids", tmp_path / "sids.parquet", "--out", out]
    assert export.main(list(map(str, args))) == 0
    table = pl.read_parquet(out)
    assert set(table["query_stream"]) == {"text", "image", "behavior"}
    assert sorted(table["bias"].to_list()) == pytest.approx(sorted(model.similarity.tables.flatten().tolist()))
