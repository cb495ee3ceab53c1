"""Training recipe, Keras-style callbacks and the aligned control (galaxai.morphology.training)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from galaxai.morphology import training
from galaxai.morphology.training import (EarlyStopping, ReduceLROnPlateau, ClassifierTrainConfig, augment,
                                         predict, train_control, train_model)


def test_plateau_follows_keras_on_a_scripted_sequence():
    p = ReduceLROnPlateau(factor=0.5, patience=5, min_delta=1e-4)
    # improves for 2 epochs, then 5 epochs within min_delta of the best -> one reduction
    losses = [1.0, 0.9] + [0.89995] * 5 + [0.5] + [0.6] * 5
    reduced = [p.step(v) for v in losses]
    assert reduced == [False] * 6 + [True] + [False] * 5 + [True]
    assert p.scale == 0.25


def test_early_stopping_patience_10_without_min_delta():
    s = EarlyStopping(patience=10)
    stops = [s.step(v) for v in [1.0, 0.9] + [0.95] * 9 + [0.8999] + [0.95] * 10]
    assert not any(stops[:-1]) and stops[-1]
    assert len(stops) == 22 and s.best == pytest.approx(0.8999)


class _Tiny(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                                 nn.Flatten(), nn.Linear(4, k), nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 16, 16, 3)).astype(np.float32)
    bright = x.mean(axis=(1, 2, 3))
    y = np.stack([bright, 1 - bright], 1)
    return x, y


def test_training_reduces_loss_and_is_seeded():
    x, y = _data()
    cfg = ClassifierTrainConfig(epochs=8, batch_size=16, lr=1e-2, rotation=0, shift=0.0, flips=False,
                      brightness=(1, 1), augment_validation=False)
    torch.manual_seed(0)
    h = train_model(_Tiny(), x, y, x, y, cfg).history
    assert h["val_loss"].iloc[-1] < 0.5 * h["val_loss"].iloc[0]
    assert np.allclose(h["rmse"], np.sqrt(h["loss"]))
    torch.manual_seed(0)
    h2 = train_model(_Tiny(), x, y, x, y, cfg).history
    assert h.equals(h2)
    # the per-step decay on top of the plateau scale: lr_t = lr·scale / (1 + 5e-4 t), 4 steps
    # per epoch; the last epoch trained with the scale set after the one before
    scale = h["lr_scale"].iloc[-2]
    assert h["lr_last"].iloc[-1] == pytest.approx(1e-2 * scale / (1 + 5e-4 * (8 * 4 - 1)))


def test_early_stop_keeps_last_weights(monkeypatch):
    """Keras ``restore_best_weights=False``: the model of the last epoch, not of the best one.

    A real learning rate changes the weights every epoch; a scripted validation sequence makes
    epoch 2 the best and stops at epoch 4 (patience 2), so restoring the best weights would
    return the epoch-2 snapshot.
    """
    x, y = _data(32)
    cfg = ClassifierTrainConfig(epochs=50, batch_size=16, lr=1e-2, stop_patience=2, plateau_patience=1,
                      augment_validation=False)
    losses = iter([1.0, 0.5, 0.9, 0.8] + [0.7] * 46)
    snapshots = []

    def scripted_val_loss(model, *args, **kwargs):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return next(losses)

    monkeypatch.setattr(training, "_mse", scripted_val_loss)
    torch.manual_seed(1)
    res = train_model(_Tiny(), x, y, x, y, cfg)
    h = res.history
    assert list(h["val_loss"]) == [1.0, 0.5, 0.9, 0.8] and len(snapshots) == 4
    assert h["stopped"].tolist() == [False, False, False, True]
    assert h["reduced"].tolist() == [False, False, True, True] and h["lr_scale"].iloc[-1] == 0.25
    final = res.model.state_dict()
    best, last = snapshots[1], snapshots[-1]
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert not all(torch.equal(final[k], best[k]) for k in final)
    assert not res.model.training


class _TinyBN(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, momentum=0.01),
                                 nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, k),
                                 nn.Sigmoid())

    def forward(self, x):
        return self.net(x)


def test_batchnorm_statistics_are_those_of_the_training_images():
    """Keras moving averages (momentum 0.99, initial variance 1) still hold ~0.99^t of the initial
    variance after a short run; on dark images (display sky ~0.05) the true variance is far below
    1, so eval mode (validation, predict, SmoothGrad) would barely see the image. The trained
    model must carry the training images' own batch-norm statistics."""
    x, y = _data(32)
    x = 0.05 * x
    cfg = ClassifierTrainConfig(epochs=2, batch_size=8, lr=1e-2, augment_validation=False)
    torch.manual_seed(0)
    model = train_model(_TinyBN(), x, y, x, y, cfg).model
    bn = model.net[1]
    xt = torch.as_tensor(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        h = model.net[0](xt)
    per_batch = h.reshape(4, 8, 4, 16, 16).transpose(1, 2).reshape(4, 4, -1)
    torch.testing.assert_close(bn.running_mean, per_batch.mean(-1).mean(0), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(bn.running_var, per_batch.var(-1).mean(0), rtol=1e-4, atol=1e-9)
    assert bn.momentum == 0.01 and not model.training
    with torch.no_grad():  # eval mode now matches what training optimised (batch statistics)
        evaluated = model(xt)
        model.train()
        batched = torch.cat([model(xt[i:i + 8]) for i in range(0, 32, 8)])
    torch.testing.assert_close(evaluated, batched, atol=2e-3, rtol=0)
    # recalibrate_bn=False keeps the Keras moving averages, still near the initial variance 1
    torch.manual_seed(0)
    keras = train_model(_TinyBN(), x, y, x, y,
                        ClassifierTrainConfig(**{**cfg.__dict__, "recalibrate_bn": False})).model
    assert float(keras.net[1].running_var.min()) > 10 * float(bn.running_var.max())


def test_augment_preserves_range_shape_and_seed():
    x = torch.rand(6, 3, 20, 20)
    cfg = ClassifierTrainConfig()
    a = augment(x, cfg, torch.Generator().manual_seed(3))
    b = augment(x, cfg, torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    ident = ClassifierTrainConfig(rotation=0, flips=False, brightness=(1, 1), shift=0.0)
    torch.testing.assert_close(augment(x, ident, torch.Generator().manual_seed(0)), x,
                               atol=1e-5, rtol=0)


def test_control_predictions_are_aligned_by_id():
    x, _ = _data(24, seed=2)
    lengths = np.linspace(0.1, 0.7, 24)
    cfg = ClassifierTrainConfig.preset("tiny", epochs=1, batch_size=8)
    big = np.repeat(np.repeat(x, 2, 1), 2, 2)  # 32² images
    model = train_control(big, lengths, big[:8], lengths[:8], preset="tiny", config=cfg).model
    ids = [f"gal{i}" for i in range(24)]
    p = predict(model, big, ids, columns=["length_scaled"])
    perm = np.random.default_rng(0).permutation(24)
    q = predict(model, big[perm], [ids[i] for i in perm], columns=["length_scaled"])
    assert list(q.index) == [ids[i] for i in perm]
    np.testing.assert_allclose(q.loc[ids].to_numpy(), p.to_numpy(), rtol=1e-5, atol=1e-6)
    assert math.isfinite(float(p.iloc[0, 0]))
    with pytest.raises(ValueError, match="unique"):
        predict(model, big, ["a"] * 24)
