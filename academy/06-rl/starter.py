"""Lab 6: policy gradient (REINFORCE with a baseline) on CartPole-v1.

A cart carries a pole on a hinge; the agent pushes the cart left or right (actions 0 and 1), gets a reward
of 1 for every step the pole stays up, and the episode ends when it falls or after 500 steps. Fill in every
TODO, top to bottom, and run `shoal academy check 6` after each one (`shoal academy hint 6` when stuck): the
checks go in the same order as this file. README.md explains the ideas; each function's docstring says exactly
what it must return.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch
import torch.nn as nn
import torch.nn.functional as F  # noqa: F401  (F.log_softmax, F.mse_loss)
from torch import Tensor
from torch.distributions import Categorical  # noqa: F401  (Categorical(logits=...).sample())

# ---------------------------------------------------------------------------------------------- 1. returns


def rewards_to_go(rewards: list[float], gamma: float) -> Tensor:
    """G_t = r_t + gamma * r_{t+1} + gamma^2 * r_{t+2} + ...: the discounted reward from step t on. (T,) floats.

    Example: rewards [1, 1, 1] with gamma 1 -> [3, 2, 1].
    """
    # TODO: G_t is the reward at t plus gamma times G_{t+1} (and 0 after the last step): one pass over the
    #       rewards suffices, if you take them in the right direction. (T,) floats in, (T,) out.
    #       README: "Return".
    raise NotImplementedError("TODO: rewards_to_go: the discounted sum of the rewards from each step to the end")


# ---------------------------------------------------------------------------------------------- 2. the networks


class Policy(nn.Module):
    """pi(a | s): observations (B, obs_dim) -> logits over the actions (B, n_actions)."""

    def __init__(self, obs_dim: int = 4, n_actions: int = 2, hidden: int = 64) -> None:
        super().__init__()
        # TODO: a small MLP from the obs_dim numbers of a state to one logit per action, with one hidden layer
        #       of `hidden` units and a smooth non-linearity. README: "Policy".
        raise NotImplementedError("TODO: create the Policy's layers (obs_dim -> hidden -> n_actions)")

    def forward(self, obs: Tensor) -> Tensor:
        # TODO: (B, obs_dim) -> (B, n_actions) logits (not probabilities: sampling and the loss take logits).
        raise NotImplementedError("TODO: Policy.forward: return the logits, (B, n_actions)")


class Baseline(nn.Module):
    """V(s), the expected return from a state: observations (B, obs_dim) -> (B,)."""

    def __init__(self, obs_dim: int = 4, hidden: int = 64) -> None:
        super().__init__()
        # TODO: the same kind of MLP as the Policy, with one output: the return it expects from a state.
        #       README: "Baseline and advantage".
        raise NotImplementedError("TODO: create the Baseline's layers (obs_dim -> hidden -> 1)")

    def forward(self, obs: Tensor) -> Tensor:
        # TODO: (B, obs_dim) -> (B,), one value per state.
        raise NotImplementedError("TODO: Baseline.forward: return one value per state, squeezed to (B,)")


# ---------------------------------------------------------------------------------------------- 3. the policy gradient


def advantages(returns: Tensor, values: Tensor) -> Tensor:
    """How much better than expected each step went: G_t - V(s_t), scaled to mean 0 and std 1. (T,) -> (T,).

    Detach the values: the policy's loss must not move the baseline (it learns from its own loss).
    """
    # TODO: each step's return minus what the baseline expected there, with no gradient flowing into the
    #       baseline from here; then scaled to mean 0 and std 1 over the batch (a tiny constant keeps a batch of
    #       equal values finite). README: "Baseline and advantage".
    raise NotImplementedError("TODO: advantages: returns minus the detached values, normalized")


def policy_loss(logits: Tensor, actions: Tensor, advantages: Tensor) -> Tensor:
    """The REINFORCE surrogate: -mean_t log pi(a_t | s_t) * A_t. Its gradient is the policy gradient.

    logits: (T, n_actions), actions: (T,) int64, advantages: (T,) -> a scalar.
    """
    # TODO: the log-probability of the action actually taken at each step, (T, n_actions) -> (T,), computed
    #       stably from the logits; weighted by the advantages and averaged. The optimizer *minimises*: mind the
    #       sign, so that a step makes good actions more likely. README: "The policy gradient (REINFORCE)".
    raise NotImplementedError("TODO: policy_loss: from (T, n_actions) logits, (T,) actions and (T,) advantages, the "
                              "scalar whose descent makes the actions that did better than expected more likely "
                              "(README: \"The policy gradient (REINFORCE)\")")


# ---------------------------------------------------------------------------------------------- 4. acting


@dataclass
class Episode:
    """One episode: what the agent saw, what it did, what it got."""

    observations: Tensor  # (T, obs_dim) float32: the state *before* each action
    actions: Tensor  # (T,) int64
    rewards: list[float]  # T rewards

    @property
    def total(self) -> float:
        return float(sum(self.rewards))


@torch.no_grad()  # acting needs no graph: log-probabilities are recomputed in one batch when learning
def run_episode(env: gym.Env, policy: nn.Module, seed: int | None = None) -> Episode:
    """Play one episode, sampling each action from the policy."""
    # TODO: reset the environment with the seed, then step until the pole falls (terminated) or time runs out
    #       (truncated). At each step *sample* the action from the policy's distribution (not the most likely
    #       one: exploring is how it learns) and record the observation, the action and the reward.
    #       Episode fields: observations (T, obs_dim) float, actions (T,) int64, rewards: T floats.
    #       README: "Policy", "On-policy batches".
    raise NotImplementedError("TODO: run_episode: reset with the seed, sample actions until the episode ends")


# ---------------------------------------------------------------------------------------------- 5. learning


def train(seed: int = 0) -> tuple[Policy, list[float]]:
    """REINFORCE with a learned baseline; returns the policy and the return of every training episode.

    The check evaluates your policy greedily on 100 new episodes: it needs an average return >= 195,
    with training and evaluation within 120 seconds. It follows your run_episode and policy_loss while train
    runs: play every training episode with run_episode, and learn from policy_loss.
    """
    # TODO: the REINFORCE loop, seeded (torch, and each episode's reset, so that a run repeats). Each update:
    #       play a batch of episodes with the current policy, join their steps into one batch (T_total rows),
    #       compute each step's discounted return (gamma a little below 1), and take one optimizer step on the
    #       policy-gradient loss plus the baseline's regression loss towards the returns (scaled so that neither
    #       drowns the other). Stop when the recent returns are near CartPole's maximum of 500; keep within the
    #       check's time limit. README: "Baseline and advantage", "On-policy batches".
    raise NotImplementedError("TODO: train: the REINFORCE loop with a batch of episodes per update")


# ---------------------------------------------------------------------------------------------- 6. the learning curve


def plot_returns(returns: list[float], path: Path) -> None:
    """Save the return of each training episode (and a moving average) as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    # TODO: the return of each training episode against the episode number, with a moving average to see the
    #       trend, labelled axes; save it as a PNG at `path` and close it. The grader reads the figure.
    raise NotImplementedError("TODO: plot_returns: plot the returns per episode and save the PNG")
