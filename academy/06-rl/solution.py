"""Lab 6, reference solution: policy gradient (REINFORCE with a baseline) on CartPole-v1.

REINFORCE: Williams, "Simple statistical gradient-following algorithms for connectionist reinforcement
learning", 1992; with a learned state-value baseline as in Sutton & Barto, "Reinforcement Learning: An
Introduction", 2nd ed., section 13.4. Trains to an average return near 500 in about 350 episodes (344 with seed 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Categorical

# ---------------------------------------------------------------------------------------------- 1. returns


def rewards_to_go(rewards: list[float], gamma: float) -> Tensor:
    """G_t = r_t + gamma * r_{t+1} + gamma^2 * r_{t+2} + ...: the discounted reward from step t on. (T,) floats.

    An action can only be credited with the rewards that came after it.
    """
    returns = torch.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):  # back to front: G_t = r_t + gamma * G_{t+1}
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


# ---------------------------------------------------------------------------------------------- 2. the networks


class Policy(nn.Module):
    """pi(a | s): observations (B, obs_dim) -> logits over the actions (B, n_actions)."""

    def __init__(self, obs_dim: int = 4, n_actions: int = 2, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, n_actions))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)


class Baseline(nn.Module):
    """V(s), the expected return from a state: observations (B, obs_dim) -> (B,)."""

    def __init__(self, obs_dim: int = 4, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs).squeeze(-1)  # (B, 1) -> (B,)


# ---------------------------------------------------------------------------------------------- 3. the policy gradient


def advantages(returns: Tensor, values: Tensor) -> Tensor:
    """How much better than expected each step went: G_t - V(s_t), scaled to mean 0 and std 1. (T,) -> (T,).

    Detached: the policy's loss must not move the baseline (the baseline learns from its own loss).
    Normalizing keeps the step size the same whether episodes last 10 steps or 500.
    """
    adv = returns - values.detach()
    return (adv - adv.mean()) / (adv.std() + 1e-8)


def policy_loss(logits: Tensor, actions: Tensor, advantages: Tensor) -> Tensor:
    """The REINFORCE surrogate: -mean_t log pi(a_t | s_t) * A_t. Its gradient is the policy gradient.

    logits: (T, n_actions), actions: (T,) int64, advantages: (T,) -> a scalar. Gradient *descent* on it
    raises the probability of actions that did better than expected and lowers the others.
    """
    log_probs = F.log_softmax(logits, dim=-1)  # (T, n_actions)
    taken = log_probs.gather(1, actions.unsqueeze(1)).squeeze(1)  # (T,): log pi(a_t | s_t)
    return -(taken * advantages).mean()


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
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards = [], [], []
    done = False
    while not done:
        o = torch.as_tensor(obs, dtype=torch.float32)  # (obs_dim,)
        action = int(Categorical(logits=policy(o)).sample())
        observations.append(o)
        actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        done = terminated or truncated  # fell over, or reached CartPole-v1's 500-step limit
    return Episode(torch.stack(observations), torch.tensor(actions), rewards)


# ---------------------------------------------------------------------------------------------- 5. learning


def train(seed: int = 0, max_episodes: int = 2_000, batch_episodes: int = 8, gamma: float = 0.99,
          lr: float = 1e-2) -> tuple[Policy, list[float]]:
    """REINFORCE with a learned baseline; returns the policy and the return of every training episode.

    Each update uses a batch of episodes. Training stops once the last 20 episodes average >= 475.
    """
    torch.manual_seed(seed)
    env = gym.make("CartPole-v1")
    policy, baseline = Policy(), Baseline()
    optimizer = torch.optim.Adam([*policy.parameters(), *baseline.parameters()], lr=lr)
    history: list[float] = []
    while len(history) < max_episodes:
        episodes = [run_episode(env, policy, seed=seed * 100_000 + len(history) + i) for i in range(batch_episodes)]
        history += [e.total for e in episodes]
        obs = torch.cat([e.observations for e in episodes])  # (T, 4): every step of the batch
        actions = torch.cat([e.actions for e in episodes])  # (T,)
        returns = torch.cat([rewards_to_go(e.rewards, gamma) for e in episodes])  # (T,)
        values = baseline(obs)  # (T,)
        loss = policy_loss(policy(obs), actions, advantages(returns, values))
        # the baseline regresses the returns; dividing by their variance keeps its gradients on the policy's scale
        value_loss = F.mse_loss(values, returns) / (returns.var() + 1.0)
        optimizer.zero_grad()
        (loss + 0.5 * value_loss).backward()
        optimizer.step()
        if len(history) >= 20 and sum(history[-20:]) / 20 >= 475:
            break
    env.close()
    return policy, history


# ---------------------------------------------------------------------------------------------- 6. the learning curve


def plot_returns(returns: list[float], path: Path) -> None:
    """Save the return of each training episode, and its 20-episode moving average, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = torch.tensor(returns)
    window = min(20, len(returns))
    smooth = r.unfold(0, window, 1).mean(dim=1)  # (len - window + 1,): the moving average
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(r) + 1), r, alpha=0.35, label="episode return")
    ax.plot(range(window, len(r) + 1), smooth, label=f"mean of the last {window}")
    ax.axhline(195, color="grey", linestyle="--", linewidth=1, label="solved (195)")
    ax.set(xlabel="episode", ylabel="return", title="Lab 6: REINFORCE on CartPole-v1")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
