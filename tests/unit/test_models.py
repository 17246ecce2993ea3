"""Every registered kind x backbone: shapes, pixel range, checkpoint round trip, one step of learning."""

import dataclasses

import pytest
import torch

from explorer import models
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.errors import ConfigError
from explorer.models.backbones import BACKBONES

SHAPES = [(1, 28, 28), (3, 32, 32)]


def small_config(kind: str, backbone: str, shape=(1, 28, 28)):
    cls = models.config_class(kind)
    kwargs = {"input_shape": shape, "backbone": backbone, "latent_dim": 8}
    kwargs["hidden"] = (8, 16) if backbone == "conv" else (32,)
    if "k" in {f.name for f in dataclasses.fields(cls)}:  # a sparse dictionary: many features, few active
        kwargs.update(latent_dim=64, k=4)
    return cls(**kwargs)


TRAINABLE = models.trainable_kinds()  # imported-only kinds are built from their files (tests of their own)
FROM_CONFIG = [b for b, body in BACKBONES.items() if body.trainable_from_config]  # not those read from files
CASES = [(k, b, s) for k in TRAINABLE for b in FROM_CONFIG for s in SHAPES]
IDS = [f"{k}-{b}-{s[0]}x{s[1]}" for k, b, s in CASES]


@pytest.mark.parametrize(("kind", "backbone", "shape"), CASES, ids=IDS)
def test_shapes_and_range(kind, backbone, shape):
    model = models.build(small_config(kind, backbone, shape)).eval()
    x = torch.rand(5, *shape)
    z = model.encode(x)
    assert z.shape == (5, model.latent_dim)
    assert torch.equal(z, model.encode(x)), "encode must be deterministic"
    x_hat = model.decode(z * 50)  # far-out latents must still decode to valid pixels
    assert x_hat.shape == (5, *shape)
    assert x_hat.min() >= 0 and x_hat.max() <= 1
    assert model.kind == kind and model.input_shape == shape
    terms = model.loss(x)
    assert "loss" in terms and terms["loss"].ndim == 0 and torch.isfinite(terms["loss"])


@pytest.mark.parametrize(("kind", "backbone", "shape"), CASES, ids=IDS)
def test_checkpoint_round_trip_is_bit_exact(kind, backbone, shape):
    model = models.build(small_config(kind, backbone, shape))
    meta = {"dataset": {"name": "unit"}, "training": {"device": "cpu", "epochs": 3}, "metrics": {"mse": 0.5}}
    loaded = load_checkpoint(checkpoint_bytes(model, **meta))
    assert loaded.config == model.config
    assert loaded.info == meta
    assert not loaded.training
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("kind", "backbone"), [(k, b) for k in TRAINABLE for b in FROM_CONFIG])
def test_one_training_step_lowers_the_loss(kind, backbone):
    model = models.build(small_config(kind, backbone))
    x = torch.rand(16, 1, 28, 28).round()  # binary images: an easy, well-defined target
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    torch.manual_seed(1)
    before = model.loss(x)["recon"].item()
    for _ in range(5):
        torch.manual_seed(1)  # same noise (dae) and eps (vae) every step: compare like with like
        loss = model.loss(x)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step(step=1, x=x, since_fired=None)
    torch.manual_seed(1)
    assert model.loss(x)["recon"].item() < before


def test_classic_mlp_layout():
    """The design source's PyTorch model: Linear 784-128-64-32 with ReLU, back to 784 with a sigmoid."""
    model = models.build(models.config_class("ae")(hidden=(128, 64), latent_dim=32))
    enc = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    dec = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc] == [(784, 128), (128, 64), (64, 32)]
    assert [(m.in_features, m.out_features) for m in dec] == [(32, 64), (64, 128), (128, 784)]


def test_vae_posterior_and_prior():
    model = models.build(small_config("vae", "mlp")).eval()
    x = torch.rand(4, 1, 28, 28)
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == (4, 8)
    assert torch.equal(model.encode(x), mu)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    z1, z2 = model.sample_prior(6, 0.5, generator=g1), model.sample_prior(6, 0.5, generator=g2)
    assert z1.shape == (6, 8) and torch.equal(z1, z2)
    assert model.sample_prior(4000, 0.5).std().item() == pytest.approx(0.5, rel=0.05)


def test_sae_sparsity_and_unit_atoms():
    model = models.build(small_config("sae", "mlp"))
    x = torch.rand(32, 1, 28, 28)
    z = model.encode(x)
    assert ((z > 0).sum(1) <= 4).all()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.loss(x)["loss"].backward()
    opt.step()
    model.after_step(step=1, x=x, since_fired=None)
    assert torch.allclose(model.atoms.norm(dim=1), torch.ones(64), atol=1e-5)
    assert model.loss(x)["l0"].item() <= 4

    l1 = models.build(dataclasses.replace(small_config("sae", "mlp"), sparsity="l1"))
    terms = l1.loss(x)
    assert "l1" in terms and terms["loss"] > terms["recon"]


def test_dae_corrupts_only_while_training():
    from explorer.models.dae import corrupt

    x = torch.full((2, 1, 28, 28), 0.5)
    sp = corrupt(x, "salt_pepper", 0.3, generator=torch.Generator().manual_seed(0))
    changed = (sp != 0.5).float().mean().item()
    assert 0.25 < changed < 0.35 and set(sp.unique().tolist()) <= {0.0, 0.5, 1.0}
    g = corrupt(x, "gaussian", 0.2, generator=torch.Generator().manual_seed(0))
    assert g.min() >= 0 and g.max() <= 1 and (g - x).std() > 0.1


def test_registry_lists_names_and_refuses_duplicates():
    with pytest.raises(ConfigError, match="known kinds: " + ", ".join(models.kinds())):
        models.model_class("gan")
    with pytest.raises(ConfigError, match="registered twice"):
        models.KINDS.register(models.model_class("ae"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backbone": "rnn"}, "unknown backbone 'rnn'; known: mlp, conv"),
        ({"input_shape": (2, 28, 28)}, "1 or 3 channels"),
        ({"backbone": "conv", "hidden": (8, 8, 8), "input_shape": (1, 28, 28)}, "divisible by 8"),
        ({"recon_loss": "l1"}, "recon_loss must be one of bce, mse"),
        ({"activation": "swishy"}, "unknown activation 'swishy'"),
    ],
)
def test_config_errors_are_specific(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        models.config_class("ae")(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    data = models.config_class("vae")().to_dict()
    assert models.config_from_dict(data) == models.config_class("vae")()
    data["gamma"] = 2
    with pytest.raises(ConfigError, match="unknown config key\\(s\\) gamma for kind 'vae'"):
        models.config_from_dict(data)


def test_sae_dead_features_get_a_gradient_through_the_aux_loss():
    model = models.build(dataclasses.replace(small_config("sae", "mlp"), dead_steps=1, aux_k=8))
    model.train()
    x = torch.rand(8, 1, 28, 28)
    since_fired = torch.full((model.latent_dim,), 5.0)  # the trainer's counters: every feature looks dead
    terms = model.loss(x, since_fired)
    assert "dead" in terms and terms["fired"].shape == (model.latent_dim,)
    terms["loss"].backward()
    alive = (model.encode(x) > 0).any(0)
    assert torch.equal(terms["fired"], alive)
    grads = model.W_dec.grad.abs().sum(1)
    assert (grads[~alive] > 0).any(), "dead atoms must receive gradient from the aux loss"
    assert "dead" not in model.loss(x)  # without the trainer's counters there is no aux loss
    assert not any(k.startswith("since") for k in model.state_dict()), "training state lives in the trainer"


def test_sae_resamples_dead_features_towards_badly_reconstructed_inputs():
    model = models.build(dataclasses.replace(small_config("sae", "mlp"), dead_steps=1, resample_every=2))
    model.train()
    x = torch.rand(8, 1, 28, 28)
    since_fired = torch.zeros(model.latent_dim)
    since_fired[:10] = 5.0
    before = model.W_dec.detach().clone()
    model.after_step(step=1, x=x, since_fired=since_fired)  # not a resampling step: only renormalised
    assert torch.allclose(model.W_dec[:10], before[:10], atol=1e-6)
    model.after_step(step=2, x=x, since_fired=since_fired)
    assert not torch.allclose(model.W_dec[:10], before[:10])
    assert torch.allclose(model.W_dec[10:], before[10:], atol=1e-6)
    assert torch.allclose(model.W_dec[:10].norm(dim=1), torch.ones(10), atol=1e-5)


@pytest.mark.parametrize("kind", TRAINABLE)
def test_every_kind_answers_the_hooks(kind):
    model = models.build(small_config(kind, "mlp")).eval()
    x = torch.rand(6, 1, 28, 28)
    z, stats = model.image_stats(x)
    assert torch.equal(z, model.encode(x)), "image_stats returns the same codes as encode"
    assert set(stats) == set(model.stat_titles) and set(model.summary_stats) <= set(stats)
    assert all(v.shape == (6,) for v in stats.values())
    if model.has_prior:
        assert model.sample_prior(3).shape == (3, model.latent_dim)
    else:
        with pytest.raises(ConfigError, match="no prior"):
            model.sample_prior(3)
    k = model.sample_sparsity(z.detach().numpy())
    assert (k is not None) == model.sparse_codes
    if model.sparse_codes:
        assert (z >= 0).all() and 1 <= k <= model.latent_dim
    assert 1 <= model.baseline_components({"l0": 3.2}) <= model.latent_dim


def test_a_fifth_kind_is_one_class_and_one_registration():
    """A kind the rest of the explorer has never heard of encodes, evaluates and samples through the hooks."""
    import numpy as np

    from explorer.maps import ops
    from explorer.maps.encode import encode_dataset
    from explorer.models.ae import AE, AEConfig
    from explorer.quality.metrics import evaluate
    from explorer.registry import KindRegistry

    @dataclasses.dataclass
    class TiedConfig(AEConfig):
        kind = "tied"

    class Tied(AE):  # an AE that reports the norm of its code as a per-image statistic
        kind = "tied"
        config_class = TiedConfig
        stat_titles = {"norm": "code norm"}
        summary_stats = ("norm",)

        def image_stats(self, x):
            z = self.encode(x)
            return z, {"norm": z.norm(dim=1)}

    table = KindRegistry()
    table.register(Tied)
    model = table.build(TiedConfig(hidden=(16,), latent_dim=4)).eval()
    images = (np.random.default_rng(0).random((12, 28, 28)) * 255).astype(np.uint8)
    enc = encode_dataset(model, images)
    assert set(enc.stats) == {"norm"} and enc.title("norm") == "code norm"
    assert "norm" in evaluate(model, torch.rand(5, 1, 28, 28))
    post = ops.AggregatePosterior.for_model(model, np.random.default_rng(0).normal(size=(60, 4)))
    assert ops.sample(model, 3, posterior=post).shape == (3, 4)
