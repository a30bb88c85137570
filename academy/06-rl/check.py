"""Lab 6's grader: `shoal academy check 6` runs these checks, in order, against your lab.py."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from shoal.academy.figures import expect_series_plot
from shoal.academy.grader import (
    Check,
    CheckFailed,
    LabContext,
    expect_floats,
    expect_tensor,
)

REQUIRES = ("gymnasium", "matplotlib")
RETURN_TARGET = 195.0  # CartPole's classic "solved" bar: average return >= 195 over 100 consecutive episodes
EVAL_EPISODES = 100
EVAL_SEED = 10_000  # evaluation episodes use seeds 10_000 ... 10_099, never seen in training (seed=0)
LEARNS_LIMIT_S = 120  # the reference trains and is evaluated in ~20 s on 2 cores
WATCHED = ("the check follows run_episode and policy_loss while train runs, to see that the policy it grades "
           "learned from the episodes it played; play every training episode with run_episode and compute each "
           "update's loss with policy_loss")


def _reference_rtg(rewards: list[float], gamma: float) -> Tensor:
    out, running = [], 0.0
    for r in reversed(rewards):
        running = r + gamma * running
        out.append(running)
    return torch.tensor(out[::-1])


def check_rewards_to_go(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(0)
    cases = [([1.0, 1.0, 1.0], 1.0), ([1.0, 0.0, 2.0], 0.5), (torch.rand(50, generator=g).tolist(), 0.99)]
    for rewards, gamma in cases:
        expected = _reference_rtg(rewards, gamma)
        got = expect_tensor(ctx.lab.rewards_to_go(rewards, gamma), f"rewards_to_go({len(rewards)} rewards, gamma)",
                            (len(rewards),))
        if torch.allclose(got.float(), expected, atol=1e-4):
            continue
        if torch.allclose(got.float().flip(0), expected, atol=1e-4):
            raise CheckFailed("your returns come out in reverse order: G_t belongs at index t (compute back to "
                              "front, then store G_t at position t)")
        shown = ", ".join(f"{v:g}" for v in rewards[:3])
        raise CheckFailed(f"rewards_to_go([{shown}], gamma={gamma}) returned {got[:3].tolist()}, expected "
                          f"{expected[:3].tolist()}: G_t = r_t + gamma * G_(t+1), the rewards from t to the end")
    return "G_t = r_t + gamma * G_(t+1)"


def _net(ctx: LabContext, name: str) -> nn.Module:
    try:
        net = getattr(ctx.lab, name)()
    except TypeError as err:
        raise CheckFailed(f"{name}() should work with its default arguments (obs_dim=4 for CartPole): {err}") from None
    if not isinstance(net, nn.Module):
        raise CheckFailed(f"{name} should be a torch.nn.Module, got {type(net).__name__}")
    return net


def check_networks(ctx: LabContext) -> str:
    policy, baseline = _net(ctx, "Policy"), _net(ctx, "Baseline")
    obs = torch.randn(7, 4)
    logits = expect_tensor(policy(obs), "Policy()(obs) for obs of shape (7, 4)", (7, 2))
    values = baseline(obs)
    if isinstance(values, Tensor) and tuple(values.shape) == (7, 1):
        raise CheckFailed("Baseline returned shape (7, 1): squeeze the last dimension to get one value per state, (B,)")
    values = expect_tensor(values, "Baseline()(obs) for obs of shape (7, 4)", (7,))
    (logits.sum() + values.sum()).backward()
    for owner, net in (("Policy", policy), ("Baseline", baseline)):
        for name, p in net.named_parameters():
            if p.grad is None:
                raise CheckFailed(f"{owner} parameter {name} got no gradient: does forward use every layer?")
    return "Policy (7, 4) -> (7, 2) logits, Baseline (7, 4) -> (7,) values"


def check_advantages(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(1)
    returns = torch.rand(20, generator=g) * 100
    values = (torch.rand(20, generator=g) * 50).requires_grad_()
    got = expect_tensor(ctx.lab.advantages(returns, values), "advantages(returns, values) for 20 steps", (20,))
    if got.requires_grad:
        raise CheckFailed("the advantages carry a gradient into the baseline: use values.detach(), the baseline "
                          "learns from its own (regression) loss, not from the policy's")
    raw = returns - values.detach()
    if not (abs(got.mean().item()) < 1e-4 and abs(got.std().item() - 1) < 0.05):
        raise CheckFailed(f"normalize the advantages to mean 0 and std 1 (got mean {got.mean().item():.3f}, std "
                          f"{got.std().item():.3f}): (a - a.mean()) / (a.std() + 1e-8)")
    if not torch.allclose(got, (raw - raw.mean()) / raw.std(), atol=0.05):
        raise CheckFailed("the advantage of step t is returns[t] - values[t], then normalized")
    return "G_t - V(s_t), detached, mean 0, std 1"


def check_policy_loss(ctx: LabContext) -> str:
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 2, generator=g).requires_grad_()
    actions = torch.tensor([0, 1, 1, 0, 1, 0])
    adv = torch.randn(6, generator=g)
    expected = -(F.log_softmax(logits, dim=-1)[torch.arange(6), actions] * adv).mean()
    (expected_grad,) = torch.autograd.grad(expected, logits)
    got = expect_tensor(ctx.lab.policy_loss(logits, actions, adv), "policy_loss(logits, actions, advantages)", ())
    if torch.allclose(got, -expected, atol=1e-5):
        raise CheckFailed("wrong sign: we *maximize* log pi(a|s) * A, so the loss to minimize is its negative")
    if torch.allclose(got, expected * 6, atol=1e-5):
        raise CheckFailed("average over the steps (.mean()), not a sum: the step size should not grow with length")
    if not torch.allclose(got, expected, atol=1e-5):
        raise CheckFailed(f"policy_loss returned {got.item():.4f}, expected {expected.item():.4f}: "
                          "-mean(log_softmax(logits)[t, actions[t]] * advantages[t])")
    if not got.requires_grad:
        raise CheckFailed("policy_loss has no gradient: compute it from the logits with torch operations")
    (grad,) = torch.autograd.grad(got, logits)
    if not torch.allclose(grad, expected_grad, atol=1e-5):
        raise CheckFailed("the value is right but the gradient is not: do not detach the log-probabilities")
    return "value and gradient match -mean(log pi(a|s) * A)"


def check_episode(ctx: LabContext) -> str:
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    first, _ = env.reset(seed=0)
    policy = _net(ctx, "Policy")
    episode = ctx.lab.run_episode(env, policy, seed=0)
    env.close()
    for name in ("observations", "actions", "rewards"):
        if not hasattr(episode, name):
            raise CheckFailed(f"run_episode should return an Episode with .observations, .actions and .rewards; "
                              f"{type(episode).__name__} has no .{name}")
    n = len(episode.rewards)
    if not 8 <= n <= 500:
        raise CheckFailed(f"the episode lasted {n} steps; a CartPole episode ends when the pole falls "
                          "(terminated) or after 500 steps (truncated): stop when either is True")
    obs = expect_tensor(episode.observations, f"Episode.observations of a {n}-step episode", (n, 4))
    actions = expect_tensor(episode.actions, f"Episode.actions of a {n}-step episode", (n,))
    if not torch.allclose(obs[0].float(), torch.as_tensor(first, dtype=torch.float32)):
        raise CheckFailed("observations[0] should be what env.reset(seed=seed) returned: record each state "
                          "*before* acting on it, and pass the seed to env.reset")
    if not set(actions.tolist()) <= {0, 1} or not set(episode.rewards) <= {1.0}:
        raise CheckFailed("actions should be 0 or 1 (sampled from the policy) and every CartPole reward is 1.0")
    return f"{n} steps"


def _weights(policy: Any) -> list[Tensor]:
    return [p.detach().clone() for p in policy.parameters()] if isinstance(policy, nn.Module) else []


def _same(a: list[Tensor], b: list[Tensor]) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b, strict=True))


class _Watch:
    """Follows the learner's run_episode and policy_loss while their train runs, to see that the policy it returns
    (or a copy of it) played the training episodes and was moved by the REINFORCE loss."""

    def __init__(self, lab: ModuleType) -> None:
        self.lab = lab
        self.played: list[tuple[Any, list[Tensor], float]] = []  # (policy, its weights as it played, the return)
        self.losses = 0  # calls of policy_loss on logits that carry a gradient

    @contextmanager
    def watching(self) -> Iterator[None]:
        run_episode, policy_loss = self.lab.run_episode, self.lab.policy_loss

        def watched_episode(env: Any, policy: Any, *args: Any, **kwargs: Any) -> Any:
            weights = _weights(policy)
            episode = run_episode(env, policy, *args, **kwargs)
            self.played.append((policy, weights, float(sum(getattr(episode, "rewards", [])))))
            return episode

        def watched_loss(logits: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(logits, Tensor) and logits.requires_grad:
                self.losses += 1
            return policy_loss(logits, *args, **kwargs)

        self.lab.run_episode, self.lab.policy_loss = watched_episode, watched_loss
        try:
            yield
        finally:
            self.lab.run_episode, self.lab.policy_loss = run_episode, policy_loss

    def expect_trained(self, policy: nn.Module, returns: list[float]) -> None:
        """Fail with a hint unless ``policy`` played training episodes through run_episode (it, or the policy it is
        a copy of), learned from policy_loss (its weights moved), and ``returns`` are those episodes' returns."""
        if not self.played:
            raise CheckFailed(f"train never called your run_episode: {WATCHED}")
        if not self.losses:
            raise CheckFailed("train never computed your policy_loss on the policy's logits: each update is an "
                              f"optimizer step on it ({WATCHED})")
        mine = _weights(policy)
        if not mine:
            raise CheckFailed("the Policy train returns has no parameters to learn: build it from nn.Linear layers")
        player = next((p for p, weights, _ in self.played if _same(weights, mine)), None)  # a copy, as it played
        if player is None:  # the policy itself, or a copy of it as it ended
            player = next((p for p, _, _ in self.played if _same(_weights(p), mine)), None)
        if player is None:
            raise CheckFailed("the policy train returns is not the one that played the training episodes (nor a copy "
                              f"of it): return the Policy that played them with run_episode and learned ({WATCHED})")
        first = next(weights for p, weights, _ in self.played if p is player)
        if _same(first, mine):
            raise CheckFailed("the policy's parameters are the same as when it played its first episode: the "
                              "optimizer must hold policy.parameters() and step after each policy_loss backward")
        totals = iter(total for _, _, total in self.played)
        if not all(any(math.isclose(r, total) for total in totals) for r in returns):
            raise CheckFailed("the returns train gives back are not those of the episodes your run_episode played: "
                              "append each training episode's total reward, in the order they were played")


def check_learns(ctx: LabContext) -> str:
    import gymnasium as gym

    watch = _Watch(ctx.lab)
    with watch.watching():
        out = ctx.lab.train(seed=0)
    if not isinstance(out, tuple) or len(out) != 2:
        raise CheckFailed("train should return a pair: (the trained policy, the list of training-episode returns)")
    policy, history = out
    if not isinstance(policy, ctx.lab.Policy):
        raise CheckFailed(f"train should return your Policy, trained by REINFORCE, got {type(policy).__name__}: the "
                          "check grades the network that learned, not a controller written by hand")
    ctx.state["returns"] = expect_floats(history, "the returns train gives back")
    watch.expect_trained(policy, ctx.state["returns"])
    env = gym.make("CartPole-v1")
    policy.eval()
    total = 0.0
    with torch.no_grad():  # the grader plays greedily: the most probable action in every state
        for i in range(EVAL_EPISODES):
            obs, _ = env.reset(seed=EVAL_SEED + i)
            done = False
            while not done:
                action = int(policy(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)).argmax())
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
    env.close()
    average = total / EVAL_EPISODES
    if average < RETURN_TARGET:
        last = ctx.state["returns"][-20:]
        raise CheckFailed(f"average return {average:.1f} < {RETURN_TARGET:.0f} over {EVAL_EPISODES} evaluation "
                          f"episodes (training ended at {sum(last) / len(last):.0f} over its last {len(last)}): "
                          "train for more episodes, batch several episodes per update, or try lr 1e-2")
    return (f"average return {average:.1f} >= {RETURN_TARGET:.0f} over {EVAL_EPISODES} greedy episodes, after "
            f"{len(history)} training episodes")


def check_plot(ctx: LabContext) -> str:
    path = ctx.workdir / "returns.png"
    returns = ctx.state["returns"]
    expect_series_plot(ctx.lab.plot_returns, returns, path, "the learning curve",
                       f"the plot does not show the {len(returns)} episode returns it was given: plot them as a "
                       "line against the episode number (a moving average beside it is welcome)")
    return f"{len(returns)} episodes plotted, axes labelled, in {path.name}"


RTG = "returns: rewards_to_go"
NETS = "models: Policy and Baseline shapes"
ADV = "baseline: advantages"
LOSS = "policy gradient: the REINFORCE loss"
EPISODE = "acting: run_episode on CartPole-v1"
LEARNS = f"learning: average return >= {RETURN_TARGET:.0f} over {EVAL_EPISODES} episodes"

CHECKS = [
    Check(RTG, check_rewards_to_go, time_limit_s=10, hints=(
        "Walk the rewards from the last to the first: the return after the last step is 0, and each step's "
        "return is its reward plus gamma times the return of the step after it.",
        "Keep a running G = 0.0; for r in reversed(rewards): G = r + gamma * G, and remember each G; the list you "
        "built is back to front.",
        "torch.tensor(list_of_G[::-1], dtype=torch.float32): index t holds G_t.")),
    Check(NETS, check_networks, time_limit_s=10, hints=(
        "Both are small MLPs over the 4 numbers of a CartPole state: the Policy ends in one logit per action, the "
        "Baseline in one number, the return it expects from that state.",
        "nn.Sequential(nn.Linear(obs_dim, hidden), nn.Tanh(), nn.Linear(hidden, n_actions)) for the Policy; the "
        "same with 1 output for the Baseline.",
        "Baseline.forward returns self.net(obs).squeeze(-1): shape (B,), not (B, 1).")),
    Check(ADV, check_advantages, time_limit_s=10, hints=(
        "An advantage says how much better a step went than the baseline expected: the return minus the value. "
        "The policy must not push the baseline around, so no gradient flows into the values.",
        "a = returns - values.detach(); then scale it: subtract its mean, divide by its standard deviation "
        "(+ 1e-8 so a constant batch does not divide by 0).")),
    Check(LOSS, check_policy_loss, time_limit_s=10, hints=(
        "REINFORCE raises the log-probability of each action taken in proportion to its advantage; an optimizer "
        "minimizes, so the loss is the negative of that, averaged over the steps.",
        "log_probs = F.log_softmax(logits, dim=-1) is (T, n_actions); pick each step's action with "
        "log_probs[torch.arange(len(actions)), actions] (or .gather(1, actions.unsqueeze(1)).squeeze(1)).",
        "return -(picked * advantages).mean(): keep the log-probabilities attached to the graph.")),
    Check(EPISODE, check_episode, time_limit_s=20, needs=(NETS,), hints=(
        "obs, _ = env.reset(seed=seed); then loop: record obs, choose an action from the policy, "
        "obs, reward, terminated, truncated, _ = env.step(action), record the action and reward, stop when "
        "terminated or truncated.",
        "Sample, do not take the argmax, while training: torch.distributions.Categorical(logits=policy(x)).sample() "
        "with x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0); act with int(action), under no_grad.",
        "Keep each state as a float32 tensor before acting on it; at the end return "
        "Episode(torch.stack(states), torch.tensor(actions), rewards).")),
    Check(LEARNS, check_learns, time_limit_s=LEARNS_LIMIT_S, needs=(RTG, NETS, ADV, LOSS, EPISODE), hints=(
        "One update per batch of ~8 episodes, each played by the current policy with your run_episode; seed the "
        "reset of episode k of update u differently (e.g. seed * 100_000 + its number) so that no two are alike.",
        "Join the episodes' observations, actions and rewards_to_go (gamma 0.99); values = baseline(obs); "
        "loss = policy_loss(policy(obs), actions, advantages(returns, values)) + the baseline's loss.",
        "The baseline's loss: 0.5 * F.mse_loss(values, returns) / (returns.var() + 1) (returns reach hundreds); "
        "one Adam over both networks, lr 1e-2; stop when the last 20 returns average >= 475.",
    )),
    Check("plot: returns.png", check_plot, time_limit_s=30, needs=(LEARNS,), hints=(
        "One line: the return of each training episode against its number; label both axes.",
        "fig, ax = plt.subplots(); ax.plot(range(1, len(returns) + 1), returns); ax.set_xlabel('episode'); "
        "ax.set_ylabel('return'); fig.savefig(path); plt.close(fig)")),
]
