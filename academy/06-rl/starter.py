"""Lab 6: policy gradient (REINFORCE with a baseline) on CartPole-v1.

A cart carries a pole on a hinge; the agent pushes the cart left or right (actions 0 and 1), gets a reward
of 1 for every step the pole stays up, and the episode ends when it falls or after 500 steps. Fill in every
TODO, top to bottom, and run `shoal academy check 6` after each one: the checks go in the same order as
this file. README.md explains the ideas; each function's docstring says exactly what it must return.
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
    # TODO: walk the rewards back to front, keeping a running G: G_t = r_t + gamma * G_{t+1}
    raise NotImplementedError("TODO: rewards_to_go: the discounted sum of the rewards from each step to the end")


# ---------------------------------------------------------------------------------------------- 2. the networks


class Policy(nn.Module):
    """pi(a | s): observations (B, obs_dim) -> logits over the actions (B, n_actions)."""

    def __init__(self, obs_dim: int = 4, n_actions: int = 2, hidden: int = 64) -> None:
        super().__init__()
        # TODO: a small MLP: Linear(obs_dim, hidden) -> Tanh -> Linear(hidden, n_actions)
        raise NotImplementedError("TODO: create the Policy's layers (obs_dim -> hidden -> n_actions)")

    def forward(self, obs: Tensor) -> Tensor:
        raise NotImplementedError("TODO: Policy.forward: return the logits, (B, n_actions)")


class Baseline(nn.Module):
    """V(s), the expected return from a state: observations (B, obs_dim) -> (B,)."""

    def __init__(self, obs_dim: int = 4, hidden: int = 64) -> None:
        super().__init__()
        # TODO: the same kind of MLP, with one output
        raise NotImplementedError("TODO: create the Baseline's layers (obs_dim -> hidden -> 1)")

    def forward(self, obs: Tensor) -> Tensor:
        raise NotImplementedError("TODO: Baseline.forward: return one value per state, squeezed to (B,)")


# ---------------------------------------------------------------------------------------------- 3. the policy gradient


def advantages(returns: Tensor, values: Tensor) -> Tensor:
    """How much better than expected each step went: G_t - V(s_t), scaled to mean 0 and std 1. (T,) -> (T,).

    Detach the values: the policy's loss must not move the baseline (it learns from its own loss).
    """
    # TODO: a = returns - values.detach(); return (a - a.mean()) / (a.std() + 1e-8)
    raise NotImplementedError("TODO: advantages: returns minus the detached values, normalized")


def policy_loss(logits: Tensor, actions: Tensor, advantages: Tensor) -> Tensor:
    """The REINFORCE surrogate: -mean_t log pi(a_t | s_t) * A_t. Its gradient is the policy gradient.

    logits: (T, n_actions), actions: (T,) int64, advantages: (T,) -> a scalar.
    """
    # TODO: log-probabilities with F.log_softmax(logits, dim=-1), pick each taken action's
    #       (log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)), weight by the advantages, mean, negate
    raise NotImplementedError("TODO: policy_loss: -mean(log pi(a_t | s_t) * A_t)")


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
    # TODO: obs, _ = env.reset(seed=seed); then until terminated or truncated:
    #         o = torch.as_tensor(obs, dtype=torch.float32)
    #         action = int(Categorical(logits=policy(o)).sample())
    #         record o and action; obs, reward, terminated, truncated, _ = env.step(action); record reward
    #       return Episode(torch.stack(observations), torch.tensor(actions), rewards)
    raise NotImplementedError("TODO: run_episode: reset with the seed, sample actions until the episode ends")


# ---------------------------------------------------------------------------------------------- 5. learning


def train(seed: int = 0) -> tuple[Policy, list[float]]:
    """REINFORCE with a learned baseline; returns the policy and the return of every training episode.

    The check evaluates your policy greedily on 100 new episodes: it needs an average return >= 195,
    with training and evaluation within 240 seconds.
    """
    # TODO: torch.manual_seed(seed); env = gym.make("CartPole-v1"); a Policy, a Baseline and one Adam
    #       optimizer over both (lr 1e-2 works). Repeat until the last 20 returns average >= 475:
    #         play a batch of ~8 episodes (seed each: seed * 100_000 + episode number)
    #         concatenate their observations, actions and rewards_to_go (gamma 0.99)
    #         values = baseline(obs); loss = policy_loss(policy(obs), actions, advantages(returns, values))
    #         add the baseline's regression loss, F.mse_loss(values, returns) / (returns.var() + 1), times 0.5
    #         zero_grad, backward, step
    raise NotImplementedError("TODO: train: the REINFORCE loop with a batch of episodes per update")


# ---------------------------------------------------------------------------------------------- 6. the learning curve


def plot_returns(returns: list[float], path: Path) -> None:
    """Save the return of each training episode (and a moving average) as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: F401

    raise NotImplementedError("TODO: plot_returns: plot the returns per episode and save the PNG")
