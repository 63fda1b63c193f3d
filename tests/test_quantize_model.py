"""The tokenizer's maths on real item vectors (amazon-scientific-mm text and image features).

Residual quantization (argmin codes, shrinking error, straight-through gradients, seeded k-means, dead-code
re-seeding), the balanced last level (capacities, optimality, fewer collisions), the CLUB bound, shared vs separate codebooks, the tokenizer presets and items missing a modality.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bbqrec.io import InputError
from bbqrec.quantize.club import CLUB
from bbqrec.quantize.residual import ResidualQuantizer, balanced_last_codes
from bbqrec.quantize.tokenizer import BBQTokenizer, tokenizer_config
from bbqrec.quantize.train import TokenizerInputs, train_tokenizer


@pytest.fixture(autouse=True)
def single_thread():
    """One thread: the machine is shared, and small matrices run faster without thread hand-offs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def features(shared_data) -> dict[str, torch.Tensor]:
    """The real 512-d text and image features of the 1,585 items (row k = item_id k + 1)."""
    folder = shared_data / "amazon-scientific-mm"
    return {
        name: torch.from_numpy(np.fromfile(folder / f"Scientific.{suffix}", dtype=np.float32).reshape(-1, 512))
        for name, suffix in (("text", "feat1CLS"), ("image", "feat3CLS"))
    }


@pytest.fixture(scope="module")
def unit_text(features) -> torch.Tensor:
    return F.normalize(features["text"] - features["text"].mean(0), dim=-1)


def fitted_quantizer(z: torch.Tensor, levels: int, size: int, seed: int = 0) -> ResidualQuantizer:
    quantizer = ResidualQuantizer(levels, size, z.shape[1])
    quantizer.kmeans_init(z, seed=seed, iterations=10)
    return quantizer


def test_codes_are_the_brute_force_argmin_of_each_residual(unit_text):
    quantizer = fitted_quantizer(unit_text, levels=3, size=32)
    out = quantizer(unit_text)
    codebooks = quantizer.codebooks.detach().double().numpy()
    residual = unit_text.double().numpy()
    exact = 0
    for level in range(3):
        distances = ((residual[:, None, :] - codebooks[level][None]) ** 2).sum(-1)  # [N, K] brute force
        chosen = out.codes[:, level].numpy()
        np.testing.assert_allclose(out.residuals[:, level].numpy(), residual, atol=1e-5)
        # Float32 ties may pick another code at the same distance, never a farther one.
        np.testing.assert_allclose(distances[np.arange(len(chosen)), chosen], distances.min(1), rtol=1e-5, atol=1e-6)
        exact += (chosen == distances.argmin(1)).sum()
        residual = residual - codebooks[level][chosen]
    assert exact >= 0.999 * 3 * len(unit_text)
    summed = codebooks[np.arange(3)[None, :], out.codes.numpy()].sum(1)
    np.testing.assert_allclose(out.quantized.detach().numpy(), summed, atol=1e-5)


def test_reconstruction_error_falls_with_every_level(unit_text):
    quantizer = fitted_quantizer(unit_text, levels=4, size=32)
    codes = quantizer(unit_text).codes
    errors = [unit_text.pow(2).sum(-1).mean().item()]  # zero levels: ẑ = 0
    for levels in range(1, 5):
        partial = sum(quantizer.codebooks[l][codes[:, l]] for l in range(levels))
        errors.append((unit_text - partial).pow(2).sum(-1).mean().item())
    assert all(a > b for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < 0.6 * errors[0]


def test_straight_through_passes_the_gradient_unchanged_to_the_encoder(unit_text):
    quantizer = fitted_quantizer(unit_text[:512], levels=2, size=16)
    z = unit_text[:64].clone().requires_grad_(True)
    weights = torch.randn(64, 512, generator=torch.Generator().manual_seed(0))
    out = quantizer(z)
    torch.testing.assert_close(out.straight_through, out.quantized.detach())  # value is ẑ ...
    (out.straight_through * weights).sum().backward()
    assert torch.equal(z.grad, weights)  # ... gradient is the identity
    assert quantizer.codebooks.grad is None  # straight-through does not train the codebook


def test_quantizer_loss_is_codebook_plus_beta_commitment_per_level(unit_text):
    quantizer = fitted_quantizer(unit_text, levels=2, size=16)
    z = unit_text[:100]
    out = quantizer(z)
    first = quantizer.codebooks[0][out.codes[:, 0]]
    second = quantizer.codebooks[1][out.codes[:, 1]]
    squared = (z - first).pow(2).sum(-1) + (z - first - second).pow(2).sum(-1)
    torch.testing.assert_close(out.loss, 1.25 * squared)


def test_kmeans_init_is_seeded(unit_text):
    a, b, c = (fitted_quantizer(unit_text, 2, 32, seed=s).codebooks for s in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_dead_codes_are_reseeded_from_batch_residuals_and_live_ones_kept(unit_text):
    quantizer = fitted_quantizer(unit_text, levels=2, size=16)
    before = quantizer.codebooks.detach().clone()
    usage = torch.ones(2, 16, dtype=torch.long)
    usage[0, [3, 7]] = 0
    usage[1, 5] = 0
    pool = quantizer(unit_text[:50]).residuals
    assert quantizer.reseed_dead_codes(usage, pool, torch.Generator().manual_seed(0)) == 3
    after = quantizer.codebooks.detach()
    changed = (after != before).any(-1)
    assert changed.nonzero().tolist() == [[0, 3], [0, 7], [1, 5]]
    for level, code in ((0, 3), (0, 7), (1, 5)):
        assert (pool[:, level] == after[level, code]).all(-1).any()  # a batch item's residual at that level
    assert not torch.equal(after[0, 3], after[0, 7])


def argmin_codes(quantizer: ResidualQuantizer, z: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes [N, L], last-level input [N, d], last codebook [K, d]) as numpy, what `balanced_last_codes` takes."""
    with torch.no_grad():
        out = quantizer(z)
    return out.codes.numpy(), out.residuals[:, -1].numpy(), quantizer.codebooks[-1].detach().numpy()


def collision_share(codes: np.ndarray) -> float:
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return float((counts[inverse.ravel()] > 1).mean())


def test_balanced_last_level_gives_identical_vectors_distinct_codes_and_leaves_the_rest(unit_text):
    quantizer = fitted_quantizer(unit_text, levels=3, size=16)
    # 10 copies of item 0 among 300 other items.
    z = torch.cat([unit_text[:1].expand(10, -1), unit_text[100:400]])
    codes, last_input, codebook = argmin_codes(quantizer, z)
    assert (codes[:10] == codes[0]).all()  # argmin: one tuple for all copies
    last = balanced_last_codes(codes, last_input, codebook)
    assert len(set(last[:10])) == 10  # distinct last codes for the copies ...
    balanced = np.column_stack([codes[:, :-1], last])
    assert (balanced[:10, :-1] == codes[0, :-1]).all()  # ... under their shared prefix
    # No collision is left where a prefix holds at most K = 16 items; a prefix of n in (16, 32] keeps n − 16 pairs.
    _, prefix_of, prefix_size = np.unique(codes[:, :-1], axis=0, return_inverse=True, return_counts=True)
    assert prefix_size.max() <= 32
    assert collision_share(balanced) * len(z) == 2 * np.clip(prefix_size - 16, 0, None).sum()
    # Items in prefixes without a collision keep their argmin code.
    _, prefix = np.unique(codes[:, :-1], axis=0, return_inverse=True)
    prefix = prefix.ravel()
    _, tuple_of, tuple_count = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    colliding_prefixes = set(prefix[tuple_count[tuple_of.ravel()] > 1])
    untouched = ~np.isin(prefix, list(colliding_prefixes))
    assert untouched.sum() >= 50
    np.testing.assert_array_equal(last[untouched], codes[untouched, -1])
    np.testing.assert_array_equal(balanced_last_codes(codes, last_input, codebook), last)  # deterministic


def test_balanced_last_level_fills_each_code_at_most_to_capacity(unit_text):
    quantizer = fitted_quantizer(unit_text, levels=2, size=16)
    z = unit_text[5:6].expand(40, -1)  # 40 identical items, 16 codes: capacity ⌈40/16⌉ = 3
    codes, last_input, codebook = argmin_codes(quantizer, z)
    last = balanced_last_codes(codes, last_input, codebook)
    counts = np.bincount(last, minlength=16)
    # Every code takes two items before any takes a third: 16 · 2 + 8 = 40.
    assert sorted(counts) == [2] * 8 + [3] * 8
    # The third items go to the nearest codes.
    cost = ((last_input[0].astype(np.float64) - codebook) ** 2).sum(1)
    assert cost[counts == 3].max() <= cost[counts == 2].min() + 1e-6


def test_balanced_last_level_is_the_cheapest_assignment_with_distinct_codes():
    rng = np.random.default_rng(0)
    codebook = rng.normal(size=(5, 3))
    residual = codebook[[2, 2, 2, 4]] + 0.3 * rng.normal(size=(4, 3))  # three items near code 2
    codes = np.column_stack([np.zeros(4, dtype=np.int64), np.array([2, 2, 2, 4])])  # one prefix, argmin-like
    last = balanced_last_codes(codes, residual, codebook)
    cost = ((residual[:, None] - codebook[None]) ** 2).sum(-1)  # [4, 5]
    best = min(itertools.permutations(range(5), 4), key=lambda p: cost[np.arange(4), list(p)].sum())
    assert len(set(last)) == 4
    assert cost[np.arange(4), last].sum() == pytest.approx(cost[np.arange(4), list(best)].sum())
    # A second prefix without a collision is left alone, even where its argmin code is taken in the first.
    both = np.concatenate([codes, [[1, 2]]])
    np.testing.assert_array_equal(
        balanced_last_codes(both, np.concatenate([residual, residual[:1]]), codebook)[4:], [2]
    )


def test_balanced_last_level_lowers_collisions_on_real_image_features(features):
    # 113 of the 1,585 items share an identical image vector with another item (SOURCE.md quirk): argmin codes
    # cannot separate them, the balanced last level can.
    image = F.normalize(features["image"][1:] - features["image"][1:].mean(0), dim=-1)  # row 0: no item
    quantizer = fitted_quantizer(image, levels=3, size=32)
    codes, last_input, codebook = argmin_codes(quantizer, image)
    balanced = np.column_stack([codes[:, :-1], balanced_last_codes(codes, last_input, codebook)])
    argmin_rate, balanced_rate = collision_share(codes), collision_share(balanced)
    assert argmin_rate >= 113 / 1585
    assert balanced_rate < 0.01, (argmin_rate, balanced_rate)
    np.testing.assert_array_equal(balanced[:, :-1], codes[:, :-1])


def test_club_bound_matches_its_definition_over_all_pairs(features):
    torch.manual_seed(0)
    club = CLUB(8, 4, 16)
    b, s = features["text"][:40, :8], features["image"][:40, :4]
    mu, log_var = club.mean(b), club.log_var(b)
    # log N(s_j | μ_i, σ_i²) for every (i, j), normaliser included: it cancels in the bound.
    log_q = torch.distributions.Normal(mu[:, None], (log_var / 2).exp()[:, None]).log_prob(s[None]).sum(-1)
    expected = log_q.diagonal().mean() - log_q.mean()
    torch.testing.assert_close(club.upper_bound(b, s), expected)


def fit_club(b: torch.Tensor, s: torch.Tensor, steps: int = 100) -> CLUB:
    torch.manual_seed(0)
    club = CLUB(b.shape[1], s.shape[1], 64)
    optimiser = torch.optim.Adam(club.parameters(), lr=3e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        club.fit_loss(b, s).backward()
        optimiser.step()
    return club


def test_club_bound_is_higher_for_paired_text_image_than_for_shuffled(features):
    # PCA-32 of each modality, standardised; q fitted on 1,200 items, the bound measured on the other 385.
    reduced = {}
    for name, x in features.items():
        x = x - x.mean(0)
        _, _, v = torch.linalg.svd(x, full_matrices=False)
        y = x @ v[:32].T
        reduced[name] = y / y.std(0)
    text, image = reduced["text"], reduced["image"]
    shuffled = image[torch.randperm(len(image), generator=torch.Generator().manual_seed(0))]
    train, held = slice(0, 1200), slice(1200, None)
    paired_club = fit_club(text[train], image[train])
    shuffled_club = fit_club(text[train], shuffled[train])
    with torch.no_grad():
        paired = paired_club.upper_bound(text[held], image[held]).item()
        unpaired = shuffled_club.upper_bound(text[held], shuffled[held]).item()
    # The CLIP-like features of one item are strongly dependent (≈ 14 nats); shuffled pairs are not (≈ 0).
    assert paired > 5.0, paired
    assert abs(unpaired) < 1.0, unpaired


def test_presets_switch_club_codebook_and_behaviour():
    assert tokenizer_config("bbq").club_weight > 0
    assert tokenizer_config("bbq-no-club").club_weight == 0
    fragmented = tokenizer_config("bbq-no-behavior", {"codebook": "shared", "levels": 2})
    assert (fragmented.codebook, fragmented.use_behavior, fragmented.seq_weight, fragmented.levels) == (
        "separate",
        False,
        0.0,
        2,
    )  # the preset's switches win over the config block, the rest is kept
    assert fragmented.streams == ("text", "image")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("bbq-best", {}, "tokenizer 'bbq-best'"),
        ("bbq", {"levls": 3}, "levls"),
        ("bbq", {"codebook": "joint"}, "config key `codebook`"),
        ("bbq", {"modalities": ["audio"]}, "config key `modalities`"),
        ("bbq", {"codebook_size": 0}, "config key `codebook_size`"),
        ("bbq", {"epochs": -1}, r"config key `epochs`: expected an integer >= 0, got -1"),
    ],
)
def test_bad_tokenizer_options_name_the_key(name, options, message):
    with pytest.raises(InputError, match=message):
        tokenizer_config(name, options)


def content_inputs(features, n_items: int = 400) -> TokenizerInputs:
    return TokenizerInputs(
        item_ids=np.arange(1, n_items + 1, dtype=np.int32),
        features={m: features[m][:n_items].clone() for m in ("text", "image")},
        present={m: torch.ones(n_items, dtype=torch.bool) for m in ("text", "image")},
    )


@pytest.mark.parametrize("book", ["shared", "separate"])
def test_shared_and_separate_codebooks_are_switched(features, book):
    inputs = content_inputs(features)
    config = tokenizer_config("bbq", {"use_behavior": False, "codebook": book, "codebook_size": 16, "epochs": 1})
    model, _ = train_tokenizer(inputs, config, seed=0)
    assert sorted(model.quantizers) == (["shared"] if book == "shared" else ["image", "text"])
    with torch.no_grad():
        encoded = model.encode(inputs.features, inputs.present)
    for stream in ("text", "image"):
        codebooks = model.quantizers["shared" if book == "shared" else stream].codebooks
        summed = codebooks[torch.arange(config.levels)[None, :], encoded[stream].quant.codes].sum(1)
        torch.testing.assert_close(encoded[stream].quant.quantized, summed)
    if book == "separate":
        assert not torch.equal(model.quantizers["text"].codebooks, model.quantizers["image"].codebooks)


def test_items_missing_a_modality_are_masked_out_of_its_losses(features):
    inputs = content_inputs(features)
    missing = torch.zeros(400, dtype=torch.bool)
    missing[::5] = True  # every fifth item has no image
    inputs.present["image"] = ~missing
    inputs.features["image"][missing] = 0.0
    config = tokenizer_config("bbq", {"use_behavior": False, "codebook_size": 16, "epochs": 2, "batch_size": 128})
    model, log = train_tokenizer(inputs, config, seed=0)
    assert np.isfinite(log.drop("epoch").to_numpy()).all()
    with torch.no_grad():
        encoded = model.encode(inputs.features, inputs.present)
        before = model.losses(encoded, inputs.features).terms
        # What the missing rows hold must not matter: they enter as the learned "missing" vector.
        scrambled = {m: f.clone() for m, f in inputs.features.items()}
        scrambled["image"][missing] = features["image"][400:480]
        encoded_scrambled = model.encode(scrambled, inputs.present)
        after = model.losses(encoded_scrambled, scrambled).terms
        # ... and neither does the missing vector itself: masked out of the image stream's losses.
        model.missing["image"].add_(5.0)
        shifted = model.losses(model.encode(inputs.features, inputs.present), inputs.features).terms
    for name in before:
        torch.testing.assert_close(before[name], after[name])
        torch.testing.assert_close(before[name], shifted[name])
    assert torch.equal(encoded["image"].z[missing][0], encoded["image"].z[missing][1])


def test_encoder_gets_gradients_through_the_quantizer(features):
    inputs = content_inputs(features, 256)
    config = tokenizer_config(
        "bbq",
        {
            "use_behavior": False,
            "codebook_size": 16,
            "club_weight": 0.0,
            "align_text_image_weight": 0.0,
            "quantizer_weight": 0.0,
        },
    )
    model = BBQTokenizer(config, inputs.input_dims)
    model.set_input_statistics(inputs.features, inputs.present)
    model.kmeans_init(inputs.features, inputs.present, seed=0)
    loss = model.losses(model.encode(inputs.features, inputs.present), inputs.features)
    assert set(loss.terms) == {"quantizer", "recon", "club"}
    loss.total.backward()  # reconstruction only: reaches the aligned encoder through the straight-through ẑ
    assert model.aligned["text"][0].weight.grad.abs().sum() > 0
    assert (
        model.quantizers["shared"].codebooks.grad is None or model.quantizers["shared"].codebooks.grad.abs().sum() == 0
    )
