"""core.training: per-rank, per-step random streams, the finite-loss guard and LDM's lr scaling."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from videogen.core.training import TrainingModule, derived_seed, effective_lr


def _module_on(rank: int, batches: int, epoch: int = 0, world: int = 2) -> TrainingModule:
    """A TrainingModule attached to a stand-in trainer at ``rank`` after ``batches`` training batches."""
    module = TrainingModule(seed=7)
    progress = SimpleNamespace(total=SimpleNamespace(ready=batches))
    module._trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=epoch,
                                      global_step=batches,
                                      fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)))
    return module


def _draw(rank: int, batches: int) -> torch.Tensor:
    _module_on(rank, batches).on_train_batch_start(None, 0)
    return torch.randn(4)


def test_ranks_draw_different_reproducible_noise_at_every_step():
    assert not torch.equal(_draw(0, 5), _draw(1, 5))  # ranks differ (seed_everything alone made them equal)
    assert not torch.equal(_draw(0, 5), _draw(0, 6))  # steps differ
    assert torch.equal(_draw(1, 5), _draw(1, 5))  # a function of (seed, rank, step) only: resumable
    seeds = {derived_seed(7, r, 2, n) for r in range(8) for n in range(1000)}
    assert len(seeds) == 8000  # no collisions between (rank, step) pairs


def test_epoch_start_reseeds_per_rank_and_epoch():
    a, b = _module_on(0, 0, epoch=3), _module_on(0, 0, epoch=4)
    a.on_train_epoch_start()
    x = torch.rand(3)
    b.on_train_epoch_start()
    assert not torch.equal(x, torch.rand(3))


def test_nonfinite_loss_raises_naming_step_and_term_or_skips_on_one_device():
    module = _module_on(0, 12, world=1)
    assert module.finite_or_skip(loss=torch.tensor(1.0))
    with pytest.raises(FloatingPointError, match=r"global step 12.*kl=nan"):
        module.finite_or_skip(rec=torch.tensor(1.0), kl=torch.tensor(float("nan")))
    module.nan_policy = "skip"
    module.log = lambda *a, **k: None
    assert not module.finite_or_skip(loss=torch.tensor(float("inf")))
    assert module.skipped_nonfinite == 1
    ddp = _module_on(0, 3, world=2)
    ddp.nan_policy = "skip"
    with pytest.raises(FloatingPointError, match="one device only"):
        ddp.finite_or_skip(loss=torch.tensor(float("nan")))


def test_effective_lr_is_ldm_rule():
    # Table 2 MUG/NATOPS DMG: base 2e-6 x 6 GPUs x 16 = 1.92e-4
    assert effective_lr(2e-6, batch_size=16, devices=6) == pytest.approx(1.92e-4)
    assert effective_lr(1e-4, batch_size=4, devices=2, num_nodes=2,
                        accumulate_grad_batches=3) == pytest.approx(4.8e-3)
    with pytest.raises(ValueError, match="nan_policy"):
        TrainingModule(nan_policy="ignore")
