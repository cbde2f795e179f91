"""The dense optimizer (``trainer.dense_optimizer``) and its learning-rate schedule (``trainer.lr_schedule``).

The embedding tables have their own optimizer, fused into the backward pass by TorchRec
(``trainer.embedding_optimizer``, ``pipelines/sharding.py``); the schedule applies to the dense one.
Adam at a constant 1e-3 is paper 001's official default; paper 000 (AutoMTL v1) trains with SGD and
a cosine decay, as DARTS does.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchrec.optim.keyed import KeyedOptimizerWrapper

DENSE_OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")


def adam(
    parameters: dict[str, nn.Parameter], lr: float, weight_decay: float = 0.0, wrapper: type[KeyedOptimizerWrapper] = KeyedOptimizerWrapper
) -> KeyedOptimizerWrapper:
    """A keyed Adam over ``parameters`` (``wrapper`` may be a subclass that changes when it steps)."""
    return wrapper(parameters, lambda params: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay))


def dense_optimizer(parameters: dict[str, nn.Parameter], kind: str, lr: float, weight_decay: float, momentum: float) -> KeyedOptimizerWrapper:
    """A keyed ``adam`` or ``sgd`` (with ``momentum``) over ``parameters``."""
    if kind == "adam":
        return adam(parameters, lr, weight_decay)
    if kind == "sgd":
        return KeyedOptimizerWrapper(parameters, lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay))
    raise ValueError(f"trainer.dense_optimizer must be one of {DENSE_OPTIMIZERS}, got '{kind}'")


class LearningRateSchedule:
    """Sets the optimizer's learning rate for every step, as a function of the step number alone.

    ``constant`` keeps ``lr``; ``cosine`` decays it from ``lr`` to ``min_lr`` over ``total_steps``
    (half a cosine period, per step) and stays at ``min_lr`` after. Because the rate depends only on
    ``step``, a resumed run continues the schedule from the saved step count.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, kind: str, lr: float, min_lr: float, total_steps: int, step: int = 0) -> None:
        if kind not in LR_SCHEDULES:
            raise ValueError(f"trainer.lr_schedule must be one of {LR_SCHEDULES}, got '{kind}'")
        self.optimizer, self.kind, self.lr, self.min_lr = optimizer, kind, lr, min_lr
        self.total_steps, self.step = max(1, total_steps), step
        self._apply()

    def rate(self, step: int) -> float:
        """The learning rate of step ``step`` (counted from 0)."""
        if self.kind == "constant":
            return self.lr
        progress = min(step / self.total_steps, 1.0)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def advance(self) -> None:
        """Count a finished step and set the rate of the next one."""
        self.step += 1
        self._apply()

    def _apply(self) -> None:
        rate = self.rate(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
