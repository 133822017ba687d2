"""The algorithms' losses against slow references written from the papers' definitions, one
time step at a time with plain Python numbers (in the style of TorchBeast's vtrace_test).

Every reference runs the model on one observation at a time, walks each fragment column
step by step, and builds the loss as a sum of per-step terms, so it shares no vectorised code
with the implementation. Where gradients are compared, the reference loss is a sum of torch
scalars over the same per-row forward passes, differentiated by autograd.
"""

import copy
import math

import gymnasium
import numpy as np
import pytest
import torch

from distrl.algos.a2c import A2C, A2CConfig, actor_critic_loss
from distrl.algos.a3c import A3C, A3CConfig
from distrl.algos.appo import APPOConfig, appo_loss
from distrl.algos.dqn import DQNConfig, initial_priorities
from distrl.algos.impala import IMPALA, IMPALAConfig, impala_loss, vtrace_targets
from distrl.algos.interface import Progress
from distrl.config import ModelConfig
from distrl.models import build_model

OBS_DIM, NUM_ACTIONS = 3, 3


# ----------------------------------------------------------------------------- fixtures


def make_model(seed):
    """A small actor-critic whose parameters are drawn wide enough that its policy is far
    from uniform and its values far from 0 (the default init gives near-uniform logits)."""
    torch.manual_seed(seed)
    model = build_model(
        ModelConfig(kind="mlp", hidden_sizes=[8]),
        gymnasium.spaces.Box(-1, 1, (OBS_DIM,)),
        gymnasium.spaces.Discrete(NUM_ACTIONS),
    )
    generator = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.8 * torch.randn(p.shape, generator=generator))
    return model


def make_batch(seed, model, T=6, B=3, behaviour_noise=0.5):
    """A time-major batch with every kind of episode end: a terminal step, a time-limit cut
    inside the fragment (with V(final obs) recorded), a cut on the fragment's last step, and a
    step that is both terminal and cut (terminal wins). ``logp`` is the model's own
    log-probability plus noise, so pi / mu lies on both sides of 1."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(T, B, OBS_DIM, generator=g)
    actions = torch.randint(0, NUM_ACTIONS, (T, B), generator=g)
    rewards = 1.5 * torch.randn(T, B, generator=g)
    terminated = torch.zeros(T, B, dtype=torch.bool)
    truncated = torch.zeros(T, B, dtype=torch.bool)
    timeout_value = torch.zeros(T, B)
    terminated[1, 0] = True
    truncated[3, 1] = True
    timeout_value[3, 1] = 2.5
    truncated[T - 1, 2 % B] = True
    timeout_value[T - 1, 2 % B] = -1.7
    terminated[3, 0] = truncated[3, 0] = True
    timeout_value[3, 0] = 0.9  # must be ignored: the state is terminal
    if B > 3:
        terminated[T - 1, 3] = True
    last_obs = torch.randn(B, OBS_DIM, generator=g)
    with torch.no_grad():
        logits, values = model(obs.flatten(0, 1))
        logp = logits.log_softmax(-1).gather(-1, actions.flatten().unsqueeze(-1)).view(T, B)
        bootstrap_value = model(last_obs)[1]
    logp = logp + behaviour_noise * torch.randn(T, B, generator=g)
    return {
        "obs": obs,
        "actions": actions,
        "logp": logp,
        "values": values.view(T, B),
        "rewards": rewards,
        "terminated": terminated,
        "truncated": truncated,
        "timeout_value": timeout_value,
        "last_obs": last_obs,
        "bootstrap_value": bootstrap_value,
    }


# ----------------------------------------------------------------------------- references


def clip(x, c):
    return x if c is None else max(-c, min(c, x))


def per_row_outputs(model, batch):
    """Runs the model on one observation at a time. Returns, for every (t, b), the list of
    log-probabilities (torch float64 scalars with gradient), the value (same), and the value of
    every last observation as a float."""
    T, B = batch["actions"].shape
    logps, values = {}, {}
    for t in range(T):
        for b in range(B):
            logits, value = model(batch["obs"][t, b].unsqueeze(0))
            row = [logits[0, a].double() for a in range(NUM_ACTIONS)]
            log_norm = torch.log(sum(torch.exp(x) for x in row))
            logps[t, b] = [x - log_norm for x in row]
            values[t, b] = value[0].double()
    with torch.no_grad():
        bootstrap = [float(model(batch["last_obs"][b].unsqueeze(0))[1][0]) for b in range(B)]
    return logps, values, bootstrap


def row_entropy(logp_row):
    return -sum(torch.exp(lp) * lp for lp in logp_row)


def normalized(xs):
    """(x - mean) / (sample std + 1e-8), as a list."""
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    return [(x - mean) / (std + 1e-8) for x in xs]


def slow_returns_and_advantages(rewards, values, bootstrap, terminated, truncated, timeout_value, gamma, lam):
    """For one fragment column (lists over t). With lam = 1, A3C's n-step return (Mnih et al.
    2016, Algorithm S3), walked forward: R_t = sum_j gamma^j r_{t+j} + gamma^k V(next), up to
    the episode's or the fragment's end. With lam < 1, GAE (Schulman et al. 2016, eq. 16):
    A_t = sum_l (gamma lam)^l delta_{t+l}, walked forward to the episode's end."""
    T = len(rewards)

    def next_value(u):
        if terminated[u]:
            return 0.0
        if truncated[u]:
            return timeout_value[u]
        return bootstrap if u == T - 1 else values[u + 1]

    returns, advantages = [], []
    for t in range(T):
        if lam == 1.0:
            total, discount = 0.0, 1.0
            for u in range(t, T):
                total += discount * rewards[u]
                discount *= gamma
                if terminated[u] or truncated[u] or u == T - 1:
                    total += discount * next_value(u)
                    break
            returns.append(total)
            advantages.append(total - values[t])
        else:
            total, weight = 0.0, 1.0
            for u in range(t, T):
                total += weight * (rewards[u] + gamma * next_value(u) - values[u])
                if terminated[u] or truncated[u]:
                    break
                weight *= gamma * lam
            advantages.append(total)
            returns.append(total + values[t])
    return returns, advantages


def reference_actor_critic(model, batch, cfg):
    """The A2C/A3C loss, term by term. Returns (loss with gradient, stats as floats, returns,
    advantages before normalisation)."""
    T, B = batch["actions"].shape
    logps, values, bootstrap = per_row_outputs(model, batch)
    returns, advantages = {}, {}
    for b in range(B):

        def column(key, b=b):
            return [float(batch[key][t, b]) for t in range(T)]

        rets, advs = slow_returns_and_advantages(
            [clip(r, cfg.reward_clip) for r in column("rewards")],
            [float(values[t, b].detach()) for t in range(T)],
            bootstrap[b],
            [bool(x) for x in column("terminated")],
            [bool(x) for x in column("truncated")],
            column("timeout_value"),
            cfg.gamma,
            cfg.gae_lambda,
        )
        for t in range(T):
            returns[t, b], advantages[t, b] = rets[t], advs[t]
    keys = sorted(advantages)
    used = dict(zip(keys, normalized([advantages[k] for k in keys]))) if cfg.normalize_advantages else advantages
    n = len(keys)
    policy_loss = -sum(used[t, b] * logps[t, b][int(batch["actions"][t, b])] for t, b in keys) / n
    value_loss = 0.5 * sum((returns[k] - values[k]) ** 2 for k in keys) / n
    policy_entropy = sum(row_entropy(logps[k]) for k in keys) / n
    loss = policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * policy_entropy
    stats = {
        "policy_loss": float(policy_loss.detach()),
        "value_loss": float(value_loss.detach()),
        "entropy": float(policy_entropy.detach()),
    }
    return loss, stats, returns, advantages


def slow_vtrace(batch, target_logp, values, bootstrap, gamma, clip_rho, clip_c, reward_clip):
    """V-trace (Espeholt et al. 2018, eq. 1), summed forward from each s:

        v_s = V(x_s) + sum_{t >= s} (prod_{i=s}^{t-1} gamma_i c_i) rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t))
        pg_adv_s = rho_s (r_s + gamma_s v_{s+1} - V(x_s))

    gamma_t = 0 after a terminal or cut step; a cut step (time limit, not terminal) gets
    gamma * V(final obs) added to its reward. ``target_logp`` and ``values``: dicts (t, b) ->
    float; ``bootstrap``: list over b. Returns dicts (t, b) -> float: vs, pg_adv, rho."""
    T, B = batch["actions"].shape
    vs, pg_adv, rhos = {}, {}, {}
    for b in range(B):
        r, disc, rho, c = [], [], [], []
        for t in range(T):
            terminal, cut = bool(batch["terminated"][t, b]), bool(batch["truncated"][t, b])
            reward = clip(float(batch["rewards"][t, b]), reward_clip)
            if cut and not terminal:
                reward += gamma * float(batch["timeout_value"][t, b])
            r.append(reward)
            disc.append(0.0 if terminal or cut else gamma)
            ratio = math.exp(target_logp[t, b] - float(batch["logp"][t, b]))
            rho.append(min(clip_rho, ratio))
            c.append(min(clip_c, ratio))
            rhos[t, b] = ratio
        V = [values[t, b] for t in range(T)] + [bootstrap[b]]
        for s in range(T):
            total, coef = V[s], 1.0
            for t in range(s, T):
                total += coef * rho[t] * (r[t] + disc[t] * V[t + 1] - V[t])
                coef *= disc[t] * c[t]
            vs[s, b] = total
        for s in range(T):
            next_vs = vs[s + 1, b] if s + 1 < T else bootstrap[b]
            pg_adv[s, b] = rho[s] * (r[s] + disc[s] * next_vs - V[s])
    return vs, pg_adv, rhos


def reference_vtrace_for(model, batch, cfg):
    logps, values, bootstrap = per_row_outputs(model, batch)
    target_logp = {k: float(logps[k][int(batch["actions"][k])].detach()) for k in logps}
    vs, pg_adv, rhos = slow_vtrace(
        batch,
        target_logp,
        {k: float(v.detach()) for k, v in values.items()},
        bootstrap,
        cfg.gamma,
        cfg.clip_rho,
        cfg.clip_c,
        cfg.reward_clip,
    )
    return logps, values, vs, pg_adv, rhos


def as_grid(d, T, B):
    return torch.tensor([[d[t, b] for b in range(B)] for t in range(T)], dtype=torch.float64)


def flat_grads(model):
    return [p.grad.detach().double().clone() for p in model.parameters()]


def global_norm(grads):
    return math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))


def assert_stats(got, expected, rtol=1e-5, atol=1e-6):
    for key, value in expected.items():
        assert float(got[key]) == pytest.approx(value, rel=rtol, abs=atol), key


# ----------------------------------------------------------------------------- A2C


A2C_CASES = [
    # gamma, gae_lambda, normalize_advantages, reward_clip
    (0.9, 0.8, False, 1.0),
    (0.95, 1.0, False, 1.0),
    (0.9, 0.7, True, None),
    (1.0, 1.0, True, 0.5),
]


@pytest.mark.parametrize("gamma, lam, normalize_advantages, reward_clip", A2C_CASES)
def test_actor_critic_loss_matches_step_by_step_reference(gamma, lam, normalize_advantages, reward_clip):
    model = make_model(0)
    batch = make_batch(0, model)
    cfg = A2CConfig(
        gamma=gamma,
        gae_lambda=lam,
        normalize_advantages=normalize_advantages,
        reward_clip=reward_clip,
        vf_coef=0.7,
        ent_coef=0.05,
    )
    loss, stats = actor_critic_loss(model, batch, cfg)
    ref_loss, ref_stats, _, advantages = reference_actor_critic(model, batch, cfg)
    # The inputs are not degenerate: rewards beyond the clip, advantages of both signs.
    if reward_clip is not None:
        assert batch["rewards"].abs().max() > reward_clip
    assert min(advantages.values()) < -0.1 and max(advantages.values()) > 0.1
    assert_stats(stats, ref_stats)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    # The same loss has the same gradient.
    model.zero_grad()
    loss.backward()
    got = flat_grads(model)
    model.zero_grad()
    ref_loss.backward()
    for g, r in zip(got, flat_grads(model)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_episode_ends_change_the_a2c_loss():
    """Guards the reference itself: the episode ends in the batch matter to the returns, so a
    reference (or implementation) that ignored them would not agree by accident."""
    model = make_model(0)
    batch = make_batch(0, model)
    cfg = A2CConfig(gamma=0.9, gae_lambda=0.8)
    _, ref_stats, _, _ = reference_actor_critic(model, batch, cfg)
    no_ends = {
        **batch,
        "terminated": torch.zeros_like(batch["terminated"]),
        "truncated": torch.zeros_like(batch["truncated"]),
    }
    _, stats = actor_critic_loss(model, no_ends, cfg)
    assert abs(float(stats["value_loss"]) - ref_stats["value_loss"]) > 1e-3


def rmsprop_reference(params, grads_per_step, lrs, alpha, eps):
    """torch.optim.RMSprop (no momentum, not centered), written out in float64:
    square_avg = alpha * square_avg + (1 - alpha) g^2;  p -= lr * g / (sqrt(square_avg) + eps).
    A None gradient leaves the parameter and its statistics alone."""
    params = [np.array(p, dtype=np.float64) for p in params]
    square_avg = [np.zeros_like(p) for p in params]
    for grads, lr in zip(grads_per_step, lrs):
        for i, g in enumerate(grads):
            if g is None:
                continue
            g = np.asarray(g, dtype=np.float64)
            square_avg[i] = alpha * square_avg[i] + (1 - alpha) * g * g
            params[i] = params[i] - lr * g / (np.sqrt(square_avg[i]) + eps)
    return params


def test_a2c_learn_reports_reference_stats_and_takes_a_clipped_rmsprop_step():
    model = make_model(3)
    batch = make_batch(3, model)
    cfg = A2CConfig(
        lr=1e-3,
        lr_schedule="constant",
        gamma=0.9,
        gae_lambda=0.9,
        max_grad_norm=0.2,
        optimizer="rmsprop",
        rmsprop_alpha=0.99,
        optimizer_eps=1e-5,
        reward_clip=1.0,
    )
    reference_model = copy.deepcopy(model)
    ref_loss, ref_stats, _, _ = reference_actor_critic(reference_model, batch, cfg)
    ref_loss.backward()
    ref_grads = flat_grads(reference_model)
    norm = global_norm(ref_grads)
    assert norm > 2 * cfg.max_grad_norm  # the clip is active
    before = [p.detach().double().numpy().copy() for p in model.parameters()]

    update = A2C(cfg, model, None).learn(batch, Progress(env_steps=100))

    assert_stats(update.stats, ref_stats)
    assert update.stats["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert update.stats["learning_rate"] == pytest.approx(1e-3)
    scale = cfg.max_grad_norm / (norm + 1e-6)
    expected = rmsprop_reference(before, [[g.numpy() * scale for g in ref_grads]], [cfg.lr], 0.99, 1e-5)
    for p, e, _ in zip(model.parameters(), expected, before):
        np.testing.assert_allclose(p.detach().double().numpy(), e, rtol=0, atol=2e-6)
    assert any(np.abs(p.detach().numpy() - b).max() > 1e-3 for p, b in zip(model.parameters(), before))


# ----------------------------------------------------------------------------- A3C


@pytest.mark.parametrize("max_grad_norm", [1e6, 0.05])
def test_a3c_worker_gradients_are_the_reference_gradients_clipped(max_grad_norm):
    model = make_model(1)
    batch = make_batch(1, model)
    cfg = A3CConfig(gamma=0.9, gae_lambda=1.0, max_grad_norm=max_grad_norm, vf_coef=0.5, ent_coef=0.05, reward_clip=1.0)
    reference_model = copy.deepcopy(model)
    ref_loss, ref_stats, _, _ = reference_actor_critic(reference_model, batch, cfg)
    ref_loss.backward()
    ref_grads = flat_grads(reference_model)
    norm = global_norm(ref_grads)

    grads, stats = A3C.gradients(model, batch, cfg)

    assert_stats(stats, ref_stats)
    assert stats["grad_norm"] == pytest.approx(norm, rel=1e-5)
    assert len(grads) == len(ref_grads) and all(isinstance(g, np.ndarray) for g in grads)
    clipped = norm > max_grad_norm
    scale = max_grad_norm / (norm + 1e-6) if clipped else 1.0
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r.numpy() * scale, rtol=1e-4, atol=1e-7)
    sent_norm = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
    if max_grad_norm < 1:
        assert clipped and norm > 5 * max_grad_norm
        assert sent_norm == pytest.approx(max_grad_norm, rel=1e-5)
    else:
        assert not clipped
        assert sent_norm == pytest.approx(norm, rel=1e-5)


@pytest.mark.parametrize(
    "schedule, budget, env_steps, expected_lr",
    [
        ("constant", None, 500, 0.01),
        ("linear", 1000, 250, 0.0075),
    ],
)
def test_a3c_apply_gradients_is_a_shared_rmsprop_step(schedule, budget, env_steps, expected_lr):
    cfg = A3CConfig(lr=0.01, lr_schedule=schedule, optimizer="rmsprop", rmsprop_alpha=0.9, optimizer_eps=0.1)
    model = make_model(2)
    learner = A3C(cfg, model, budget)
    before = [p.detach().double().numpy().copy() for p in model.parameters()]
    rng = np.random.default_rng(2)
    # Three workers' gradients, applied one after the other with the one optimizer; arrays
    # from the object store are read-only. The second worker's loss did not reach the last
    # parameter: its statistics must not decay then, which the third push shows.
    pushes = []
    for scale in (0.3, 2.0, 0.5):
        grads = [(scale * rng.normal(size=p.shape)).astype(np.float32) for p in model.parameters()]
        for g in grads:
            g.flags.writeable = False
        pushes.append(grads)
    pushes[1][-1] = None
    for grads in pushes:
        update = learner.apply_gradients(grads, Progress(env_steps=env_steps))
        assert update.stats["learning_rate"] == pytest.approx(expected_lr)
    expected = rmsprop_reference(before, pushes, [expected_lr] * len(pushes), alpha=0.9, eps=0.1)
    for p, e in zip(model.parameters(), expected):
        np.testing.assert_allclose(p.detach().double().numpy(), e, rtol=0, atol=1e-6)
    # Non-trivial: each parameter moved by roughly lr-sized steps.
    moved = [np.abs(p.detach().double().numpy() - b).max() for p, b in zip(model.parameters(), before)]
    assert min(moved) > expected_lr / 10


# ----------------------------------------------------------------------------- IMPALA


IMPALA_CASES = [
    # gamma, clip_rho, clip_c, reward_clip
    (0.9, 1.0, 1.0, None),
    (0.95, 2.0, 0.7, 1.0),
    (1.0, 1.2, 1.0, 0.8),
]


@pytest.mark.parametrize("gamma, clip_rho, clip_c, reward_clip", IMPALA_CASES)
def test_vtrace_targets_and_impala_loss_match_step_by_step_reference(gamma, clip_rho, clip_c, reward_clip):
    model = make_model(4)
    batch = make_batch(4, model, T=7, B=4)
    T, B = batch["actions"].shape
    cfg = IMPALAConfig(
        gamma=gamma, clip_rho=clip_rho, clip_c=clip_c, reward_clip=reward_clip, vf_coef=0.7, ent_coef=0.03
    )
    logps, values, vs, pg_adv, ratios = reference_vtrace_for(model, batch, cfg)
    # The importance weights lie on both sides of both truncation levels.
    assert min(ratios.values()) < min(clip_c, 1) and max(ratios.values()) > clip_rho

    targets = vtrace_targets(model, batch, cfg)
    target_logp = {k: float(logps[k][int(batch["actions"][k])].detach()) for k in logps}
    torch.testing.assert_close(
        targets["target_logp"].detach().double(), as_grid(target_logp, T, B), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        targets["values"].detach().double(),
        as_grid({k: float(v.detach()) for k, v in values.items()}, T, B),
        rtol=1e-5,
        atol=1e-6,
    )
    torch.testing.assert_close(targets["vs"].double(), as_grid(vs, T, B), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(targets["pg_advantages"].double(), as_grid(pg_adv, T, B), rtol=1e-5, atol=1e-5)

    # The loss: V-trace targets are constants; gradients reach pi through log pi(a) and the
    # entropy, and V through the value loss.
    keys = sorted(vs)
    n = len(keys)
    ref_policy = -sum(pg_adv[k] * logps[k][int(batch["actions"][k])] for k in keys) / n
    ref_value = 0.5 * sum((vs[k] - values[k]) ** 2 for k in keys) / n
    ref_entropy = sum(row_entropy(logps[k]) for k in keys) / n
    ref_loss = ref_policy + cfg.vf_coef * ref_value - cfg.ent_coef * ref_entropy
    ref_stats = {"policy_loss": ref_policy.item(), "value_loss": ref_value.item(), "entropy": ref_entropy.item()}

    loss, stats = impala_loss(targets, cfg)
    assert_stats(stats, ref_stats)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    model.zero_grad()
    loss.backward()
    got = flat_grads(model)
    model.zero_grad()
    ref_loss.backward()
    for g, r in zip(got, flat_grads(model)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)

    # learn() reports the same numbers (computed before its step) and the mean unclipped rho.
    update = IMPALA(cfg, copy.deepcopy(model), None).learn(batch, Progress(env_steps=0))
    assert_stats(update.stats, ref_stats)
    assert update.stats["mean_rho"] == pytest.approx(sum(ratios.values()) / n, rel=1e-5)


def test_vtrace_with_on_policy_data_and_no_episode_ends_is_the_n_step_return():
    """rho = c = 1 and no episode ends: v_s is the discounted return to the fragment's end plus
    gamma^(T-s) V(x_T) (Espeholt et al. 2018, Remark 1), computed here without V-trace at all."""
    model = make_model(5)
    batch = make_batch(5, model, behaviour_noise=0.0)
    T, B = batch["actions"].shape
    batch["terminated"][:] = False
    batch["truncated"][:] = False
    batch["timeout_value"][:] = 0.0
    gamma = 0.9
    targets = vtrace_targets(model, batch, IMPALAConfig(gamma=gamma))
    expected = torch.zeros(T, B, dtype=torch.float64)
    for b in range(B):
        for s in range(T):
            expected[s, b] = sum(gamma ** (t - s) * float(batch["rewards"][t, b]) for t in range(s, T)) + gamma ** (
                T - s
            ) * float(batch["bootstrap_value"][b])
    torch.testing.assert_close(targets["vs"].double(), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- APPO


@pytest.mark.parametrize("normalize_advantages", [False, True])
def test_appo_loss_matches_elementwise_clipped_surrogate(normalize_advantages):
    model = make_model(6)
    batch = make_batch(6, model, T=6, B=4, behaviour_noise=0.4)
    cfg = APPOConfig(
        gamma=0.9, clip_coef=0.2, normalize_advantages=normalize_advantages, vf_coef=0.6, ent_coef=0.02, reward_clip=1.0
    )
    T = batch["actions"].shape[0]
    columns = torch.tensor([3, 1])
    with torch.no_grad():
        targets = vtrace_targets(model, batch, cfg)

    logps, values, vs, pg_adv, _ = reference_vtrace_for(model, batch, cfg)
    keys = [(t, int(b)) for b in columns for t in range(T)]
    n = len(keys)
    advantages = [pg_adv[k] for k in keys]
    if normalize_advantages:
        advantages = normalized(advantages)
    surrogate, clipped_count, clipped_branch = [], 0, 0
    for k, adv in zip(keys, advantages):
        logp = logps[k][int(batch["actions"][k])]
        ratio = torch.exp(logp - float(batch["logp"][k]))
        r = float(ratio.detach())
        r_clipped = min(max(r, 1 - cfg.clip_coef), 1 + cfg.clip_coef)
        if abs(r - 1) > cfg.clip_coef:
            clipped_count += 1
        if r_clipped * adv < r * adv:  # min() picks the clipped term: a constant, no gradient
            clipped_branch += 1
            surrogate.append(torch.tensor(r_clipped * adv, dtype=torch.float64))
        else:
            surrogate.append(ratio * adv)
    assert 0 < clipped_count < n and 0 < clipped_branch < n
    ref_policy = -sum(surrogate) / n
    ref_value = 0.5 * sum((vs[k] - values[k]) ** 2 for k in keys) / n
    ref_entropy = sum(row_entropy(logps[k]) for k in keys) / n
    ref_loss = ref_policy + cfg.vf_coef * ref_value - cfg.ent_coef * ref_entropy
    ref_stats = {
        "policy_loss": ref_policy.item(),
        "value_loss": ref_value.item(),
        "entropy": ref_entropy.item(),
        "clip_fraction": clipped_count / n,
    }

    loss, stats = appo_loss(model, batch, targets, columns, cfg)
    assert_stats(stats, ref_stats)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    model.zero_grad()
    loss.backward()
    got = flat_grads(model)
    model.zero_grad()
    ref_loss.backward()
    for g, r in zip(got, flat_grads(model)):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- DQN


def dqn_fragment(seed, T=6, K=4):
    """Column 0: no episode end. Column 1: terminal on the fragment's last step. Column 2: a
    terminal step early, then a time-limit cut one step before the end. Column 3: terminal and
    cut at once (terminal wins), then a cut on the last step with V(final obs) != bootstrap."""
    rng = np.random.default_rng(seed)
    terminated = np.zeros((T, K), dtype=bool)
    truncated = np.zeros((T, K), dtype=bool)
    timeout_value = np.zeros((T, K), dtype=np.float32)
    terminated[T - 1, 1] = True
    terminated[1, 2] = True
    truncated[T - 2, 2] = True
    timeout_value[T - 2, 2] = 3.0
    terminated[2, 3] = truncated[2, 3] = True
    timeout_value[2, 3] = 5.0  # must be ignored: the state is terminal
    truncated[T - 1, 3] = True
    timeout_value[T - 1, 3] = -2.0
    return {
        "rewards": (2.0 * rng.normal(size=(T, K))).astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "timeout_value": timeout_value,
        "bootstrap_value": rng.normal(size=K).astype(np.float32) + 4.0,
        "values": rng.normal(size=(T, K)).astype(np.float32),
        "q_taken": rng.normal(size=(T, K)).astype(np.float32),
    }


def slow_priorities(fragment, n, gamma, reward_clip, eps):
    """For each (t, k): walk forward up to n steps inside the fragment, summing gamma^j r; stop
    at a terminal step (bootstrap 0), a cut (bootstrap V(final obs)), or the fragment's end
    (bootstrap V(last obs)); else bootstrap max_a Q(s_{t+n}) = values[t + n]."""
    T, K = fragment["rewards"].shape
    out = np.zeros((T, K))
    for k in range(K):
        for t in range(T):
            total, discount, bootstrap = 0.0, 1.0, None
            for j in range(n):
                u = t + j
                if u == T:
                    bootstrap = float(fragment["bootstrap_value"][k])
                    break
                total += discount * clip(float(fragment["rewards"][u, k]), reward_clip)
                discount *= gamma
                if fragment["terminated"][u, k]:
                    bootstrap = 0.0
                    break
                if fragment["truncated"][u, k]:
                    bootstrap = float(fragment["timeout_value"][u, k])
                    break
            if bootstrap is None:
                u = t + n
                bootstrap = float(fragment["bootstrap_value"][k]) if u == T else float(fragment["values"][u, k])
            target = total + discount * bootstrap
            out[t, k] = abs(target - float(fragment["q_taken"][t, k])) + eps
    return out


@pytest.mark.parametrize("n_step", [1, 3, 8])
@pytest.mark.parametrize("reward_clip", [None, 1.0])
def test_initial_priorities_match_step_by_step_reference(n_step, reward_clip):
    fragment = dqn_fragment(7)
    config = DQNConfig(gamma=0.9, n_step=n_step, reward_clip=reward_clip, priority_eps=0.01)
    expected = slow_priorities(fragment, n_step, 0.9, reward_clip, 0.01)
    got = initial_priorities(fragment, config)["priorities"]
    assert got.shape == fragment["rewards"].shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    if reward_clip is not None:
        assert np.abs(fragment["rewards"]).max() > reward_clip
        # Clipping matters: the same fragment without it gives other priorities.
        assert np.abs(slow_priorities(fragment, n_step, 0.9, None, 0.01) - expected).max() > 0.1
