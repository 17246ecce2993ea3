"""Every registered kind x backbone: shapes, pixel range, checkpoint round trip, one step of learning."""

import dataclasses

import pytest
import torch

from explorer import registry
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.errors import ConfigError
from explorer.models.backbones import BACKBONES

SHAPES = [(1, 28, 28), (3, 32, 32)]


def small_config(kind: str, backbone: str, shape=(1, 28, 28)):
    cls = registry.config_class(kind)
    kwargs = {"input_shape": shape, "backbone": backbone, "latent_dim": 8}
    kwargs["hidden"] = (8, 16) if backbone == "conv" else (32,)
    if kind == "sae":
        kwargs.update(latent_dim=64, k=4)
    return cls(**kwargs)


CASES = [(k, b, s) for k in registry.kinds() for b in BACKBONES for s in SHAPES]
IDS = [f"{k}-{b}-{s[0]}x{s[1]}" for k, b, s in CASES]


@pytest.mark.parametrize(("kind", "backbone", "shape"), CASES, ids=IDS)
def test_shapes_and_range(kind, backbone, shape):
    model = registry.build(small_config(kind, backbone, shape)).eval()
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
    model = registry.build(small_config(kind, backbone, shape))
    meta = {"dataset": {"name": "unit"}, "training": {"device": "cpu", "epochs": 3}, "metrics": {"mse": 0.5}}
    loaded = load_checkpoint(checkpoint_bytes(model, **meta))
    assert loaded.config == model.config
    assert loaded.info == meta
    assert not loaded.training
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("kind", "backbone"), [(k, b) for k in registry.kinds() for b in BACKBONES])
def test_one_training_step_lowers_the_loss(kind, backbone):
    model = registry.build(small_config(kind, backbone))
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
        model.post_step()
    torch.manual_seed(1)
    assert model.loss(x)["recon"].item() < before


def test_classic_mlp_layout():
    """The design source's PyTorch model: Linear 784-128-64-32 with ReLU, back to 784 with a sigmoid."""
    model = registry.build(registry.config_class("ae")(hidden=(128, 64), latent_dim=32))
    enc = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    dec = [m for m in model.decoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc] == [(784, 128), (128, 64), (64, 32)]
    assert [(m.in_features, m.out_features) for m in dec] == [(32, 64), (64, 128), (128, 784)]


def test_vae_posterior_and_prior():
    model = registry.build(small_config("vae", "mlp")).eval()
    x = torch.rand(4, 1, 28, 28)
    mu, logvar = model.posterior(x)
    assert mu.shape == logvar.shape == (4, 8)
    assert torch.equal(model.encode(x), mu)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    z1, z2 = model.sample_prior(6, 0.5, generator=g1), model.sample_prior(6, 0.5, generator=g2)
    assert z1.shape == (6, 8) and torch.equal(z1, z2)
    assert model.sample_prior(4000, 0.5).std().item() == pytest.approx(0.5, rel=0.05)


def test_sae_sparsity_and_unit_atoms():
    model = registry.build(small_config("sae", "mlp"))
    x = torch.rand(32, 1, 28, 28)
    z = model.encode(x)
    assert ((z > 0).sum(1) <= 4).all()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.loss(x)["loss"].backward()
    opt.step()
    model.post_step()
    assert torch.allclose(model.atoms.norm(dim=1), torch.ones(64), atol=1e-5)
    assert model.loss(x)["l0"].item() <= 4

    l1 = registry.build(dataclasses.replace(small_config("sae", "mlp"), sparsity="l1"))
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
    with pytest.raises(ConfigError, match="known kinds: ae, dae, sae, vae"):
        registry.model_class("gan")
    with pytest.raises(ConfigError, match="registered twice"):
        registry.register(registry.model_class("ae"))


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
        registry.config_class("ae")(**kwargs)


def test_config_from_dict_rejects_unknown_keys():
    data = registry.config_class("vae")().to_dict()
    assert registry.config_from_dict(data) == registry.config_class("vae")()
    data["gamma"] = 2
    with pytest.raises(ConfigError, match="unknown config key\\(s\\) gamma for kind 'vae'"):
        registry.config_from_dict(data)


def test_sae_dead_features_get_a_gradient_through_the_aux_loss():
    model = registry.build(dataclasses.replace(small_config("sae", "mlp"), dead_steps=1, aux_k=8))
    model.train()
    x = torch.rand(8, 1, 28, 28)
    model.since_fired.fill_(5.0)  # every feature counts as dead before this step
    terms = model.loss(x)
    assert "dead" in terms
    terms["loss"].backward()
    alive = (model.encode(x) > 0).any(0)
    grads = model.W_dec.grad.abs().sum(1)
    assert (grads[~alive] > 0).any(), "dead atoms must receive gradient from the aux loss"
    assert "since_fired" not in model.state_dict(), "bookkeeping is not saved in checkpoints"


def test_sae_resamples_dead_features_towards_badly_reconstructed_inputs():
    model = registry.build(dataclasses.replace(small_config("sae", "mlp"), dead_steps=1, resample_every=1))
    model.train()
    x = torch.rand(8, 1, 28, 28)
    model.loss(x)
    model.since_fired[:10] = 5.0
    before = model.W_dec[:10].clone()
    assert model.resample_dead() == 10
    assert not torch.allclose(model.W_dec[:10], before)
    assert torch.allclose(model.W_dec[:10].norm(dim=1), torch.ones(10), atol=1e-5)
    assert (model.since_fired[:10] == 0).all()
