"""The PPO loss on a batch built by hand, with the expected numbers worked out below."""

import math

import pytest
import torch
import torch.nn as nn

from distrl.algos.interface import Progress
from distrl.algos.ppo import PPO, PPOConfig, ppo_loss
from distrl.models.heads import Categorical


class FixedPolicy(nn.Module):
    """pi(.|s) = softmax(logits) and V(s) = value for every s: the loss is then a function of
    these few numbers only."""

    def __init__(self, logits, value):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits, dtype=torch.float64))
        self.value = nn.Parameter(torch.tensor(value, dtype=torch.float64))

    def forward(self, obs):
        n = obs.shape[0]
        return self.logits.expand(n, -1), self.value.expand(n)

    # The categorical head's math; its weights play no part in it.
    def log_prob(self, params, actions):
        return Categorical(1, 2).log_prob(params, actions)

    def entropy(self, params):
        return Categorical(1, 2).entropy(params).mean()


def hand_batch():
    # Two actions with equal probability: log pi(a|s) = ln 0.5 for either action.
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1], dtype=torch.float64)
    return {
        "obs": torch.zeros(5, 1),
        "actions": torch.tensor([0, 1, 0, 1, 0]),
        "old_logp": math.log(0.5) - ratios.log(),  # so that pi / pi_old equals `ratios`
        "old_values": torch.tensor([0.5, 1.0, 1.5, 0.95, 0.0], dtype=torch.float64),
        "advantages": torch.tensor([2.0, 2.0, -2.0, -2.0, 1.0], dtype=torch.float64),
        "returns": torch.tensor([2.0, 0.0, 1.0, 1.0, 3.0], dtype=torch.float64),
    }


def test_ppo_loss_on_hand_built_batch():
    config = PPOConfig(normalize_advantages=False, clip_value_loss=True, vf_coef=0.5, ent_coef=0.01)
    model = FixedPolicy([0.0, 0.0], 1.0)
    b = hand_batch()
    loss, stats = ppo_loss(
        model, b["obs"], b["actions"], b["old_logp"], b["old_values"], b["advantages"], b["returns"], 0.2, config
    )
    # Surrogate terms -min(r A, clip(r, 0.8, 1.2) A):
    #   r=1.5 A=2: -min(3, 2.4) = -2.4     r=0.5 A=2: -min(1, 1.6) = -1
    #   r=1.5 A=-2: -min(-3, -2.4) = 3     r=0.5 A=-2: -min(-1, -1.6) = 1.6
    #   r=1.1 A=1: -1.1                    mean = 0.1 / 5 = 0.02
    assert stats["policy_loss"].item() == pytest.approx(0.02, abs=1e-12)
    # Value terms max((V-R)^2, (V_clipped-R)^2), V = 1, V_clipped = old + clamp(V-old, +-0.2):
    #   old .5 -> .7, R 2: max(1, 1.69) = 1.69     old 1 -> 1, R 0: 1
    #   old 1.5 -> 1.3, R 1: max(0, .09) = .09     old .95 -> 1, R 1: 0
    #   old 0 -> .2, R 3: max(4, 7.84) = 7.84      0.5 * mean = 0.5 * 2.124 = 1.062
    assert stats["value_loss"].item() == pytest.approx(1.062, abs=1e-12)
    assert stats["entropy"].item() == pytest.approx(math.log(2), abs=1e-12)
    assert loss.item() == pytest.approx(0.02 + 0.5 * 1.062 - 0.01 * math.log(2), abs=1e-12)
    # approx KL = mean((r - 1) - ln r); four of five ratios lie outside [0.8, 1.2].
    expected_kl = sum((r - 1) - math.log(r) for r in [1.5, 0.5, 1.5, 0.5, 1.1]) / 5
    assert stats["approx_kl"].item() == pytest.approx(expected_kl, abs=1e-12)
    assert stats["clip_fraction"].item() == pytest.approx(0.8)


def test_unclipped_value_loss():
    config = PPOConfig(normalize_advantages=False, clip_value_loss=False)
    b = hand_batch()
    _, stats = ppo_loss(
        FixedPolicy([0.0, 0.0], 1.0),
        b["obs"],
        b["actions"],
        b["old_logp"],
        b["old_values"],
        b["advantages"],
        b["returns"],
        0.2,
        config,
    )
    # 0.5 * mean((1-2)^2, (1-0)^2, 0, 0, (1-3)^2) = 0.5 * 6 / 5
    assert stats["value_loss"].item() == pytest.approx(0.6, abs=1e-12)


def test_clipped_samples_carry_no_policy_gradient():
    """Where the ratio is clipped on the side the advantage pushes to, the surrogate is flat."""
    config = PPOConfig(normalize_advantages=False, ent_coef=0.0, vf_coef=0.0)
    model = FixedPolicy([0.3, -0.2], 0.0)
    b = hand_batch()
    with torch.no_grad():
        logp = torch.log_softmax(model.logits, -1)[b["actions"]]
    ratios = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.1], dtype=torch.float64)
    old_logp = logp - ratios.log()
    clipped = [0, 3]  # r=1.5 with A>0 and r=0.5 with A<0
    loss, _ = ppo_loss(
        model,
        b["obs"][clipped],
        b["actions"][clipped],
        old_logp[clipped],
        b["old_values"][clipped],
        b["advantages"][clipped],
        b["returns"][clipped],
        0.2,
        config,
    )
    loss.backward()
    assert torch.count_nonzero(model.logits.grad) == 0

    model.logits.grad = None
    unclipped = [1, 2, 4]
    loss, _ = ppo_loss(
        model,
        b["obs"][unclipped],
        b["actions"][unclipped],
        old_logp[unclipped],
        b["old_values"][unclipped],
        b["advantages"][unclipped],
        b["returns"][unclipped],
        0.2,
        config,
    )
    loss.backward()
    assert torch.count_nonzero(model.logits.grad) > 0


def test_learn_moves_probability_towards_advantaged_action():
    """One PPO update on a batch where action 1 is always followed by reward 1 and action 0
    by reward 0 makes action 1 more likely, and keeps the schedule's learning rate."""
    torch.manual_seed(0)
    model = FixedPolicy([0.0, 0.0], 0.0).float()
    T, B = 16, 4
    actions = torch.randint(0, 2, (T, B))
    batch = {
        "obs": torch.zeros(T, B, 1),
        "actions": actions,
        "logp": torch.full((T, B), math.log(0.5)),
        "values": torch.zeros(T, B),
        "rewards": actions.float(),
        "terminated": torch.ones(T, B, dtype=torch.bool),
        "truncated": torch.zeros(T, B, dtype=torch.bool),
        "timeout_value": torch.zeros(T, B),
        "bootstrap_value": torch.zeros(B),
    }
    ppo = PPO(PPOConfig(lr=0.01, epochs=4, num_minibatches=2, ent_coef=0.0), model, budget_env_steps=1000)
    stats = ppo.learn(batch, Progress(env_steps=500)).stats
    probs = torch.softmax(model.logits, -1)
    assert probs[1] > 0.5 > probs[0]
    assert stats["learning_rate"] == pytest.approx(0.005)  # half-way through the annealing
    assert stats["gradient_steps"] == 8


def test_a_recurrent_models_minibatches_are_whole_env_columns():
    """Each minibatch unrolls whole fragment columns from their recorded states: the learner
    sees every column of every epoch once, as a sequence."""
    import gymnasium as gym
    import numpy as np

    from distrl.algos import common
    from distrl.config import resolve
    from distrl.models import build_model

    torch.manual_seed(0)
    config = resolve({"model": {"recurrent": "gru", "recurrent_size": 8}})
    model = build_model(config.model, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2))
    T, B = 6, 4
    batch = {
        "obs": torch.randn(T, B, 3),
        "episode_start": torch.rand(T, B) < 0.2,
        "initial_state": torch.randn_like(model.initial_state(B)),
        "actions": torch.randint(0, 2, (T, B)),
        "logp": torch.full((T, B), math.log(0.5)),
        "values": torch.zeros(T, B),
        "rewards": torch.ones(T, B),
        "terminated": torch.zeros(T, B, dtype=torch.bool),
        "truncated": torch.zeros(T, B, dtype=torch.bool),
        "timeout_value": torch.zeros(T, B),
        "bootstrap_value": torch.zeros(B),
    }
    seen = []
    unroll = common.unroll

    def spy(model, batch, columns=None):
        seen.append(sorted(columns.tolist()))
        return unroll(model, batch, columns)

    ppo_config = PPOConfig(epochs=3, num_minibatches=2)
    algorithm = PPO(ppo_config, model, 1000)
    import distrl.algos.ppo as ppo_module

    ppo_module.unroll, original = spy, ppo_module.unroll
    try:
        update = algorithm.learn(batch, Progress(env_steps=0))
    finally:
        ppo_module.unroll = original
    assert update.stats["gradient_steps"] == 6 and len(seen) == 6
    for epoch in range(3):
        assert sorted(seen[2 * epoch] + seen[2 * epoch + 1]) == [0, 1, 2, 3]


def test_one_minibatch_updates_on_the_whole_batch_as_the_shuffled_reference_does():
    """With num_minibatches=1 PPO steps on the batch as it is; a reference that shuffles it
    each epoch (the order a mean loss does not see) and steps with torch's own gradient
    clipping ends at the same weights."""
    import copy

    import gymnasium as gym
    import numpy as np

    from distrl.algos.returns import gae
    from distrl.config import resolve
    from distrl.models import build_model

    torch.manual_seed(0)
    config = resolve({"model": {"hidden_sizes": [16, 16]}})
    model = build_model(config.model, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2))
    T, B = 8, 4
    batch = {
        "obs": torch.randn(T, B, 3),
        "actions": torch.randint(0, 2, (T, B)),
        "logp": torch.full((T, B), math.log(0.5)),
        "values": torch.randn(T, B),
        "rewards": torch.randn(T, B),
        "terminated": torch.rand(T, B) < 0.1,
        "truncated": torch.zeros(T, B, dtype=torch.bool),
        "timeout_value": torch.zeros(T, B),
        "bootstrap_value": torch.randn(B),
    }
    ppo_config = PPOConfig(lr=0.01, epochs=5, num_minibatches=1, max_grad_norm=0.1, lr_schedule="constant")
    reference = copy.deepcopy(model)
    PPO(ppo_config, model, None).learn(batch, Progress(env_steps=0))

    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01, eps=ppo_config.adam_eps)
    advantages, returns = gae(
        batch["rewards"],
        batch["values"],
        batch["bootstrap_value"],
        batch["terminated"],
        batch["truncated"],
        ppo_config.gamma,
        ppo_config.gae_lambda,
        timeout_values=batch["timeout_value"],
    )
    flat = [batch["obs"], batch["actions"], batch["logp"], batch["values"], advantages, returns]
    flat = [value.flatten(0, 1) for value in flat]
    clipped = 0
    for _ in range(ppo_config.epochs):
        order = torch.randperm(T * B)
        loss, _ = ppo_loss(reference, *[value[order] for value in flat], ppo_config.clip_coef, ppo_config)
        optimizer.zero_grad()
        loss.backward()
        clipped += float(nn.utils.clip_grad_norm_(reference.parameters(), ppo_config.max_grad_norm)) > 0.1
        optimizer.step()
    assert clipped > 0  # the clipping was exercised
    for mine, theirs in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_norm", [0.05, 1e3])
def test_clip_gradients_matches_torchs_clip_grad_norm(max_norm):
    """The learner's gradient clipping against torch's: the same norm returned and the same
    gradients after it, when it clips and when the norm is already below the limit (a
    parameter without a gradient is left alone)."""
    from distrl.algos.common import clip_gradients

    torch.manual_seed(0)
    mine = [nn.Parameter(torch.randn(shape)) for shape in [(4, 3), (3,), (2, 2), (5,)]]
    theirs = [nn.Parameter(parameter.detach().clone()) for parameter in mine]
    for a, b in zip(mine[:3], theirs[:3]):
        a.grad = torch.randn_like(a)
        b.grad = a.grad.clone()
    norm = clip_gradients(mine, max_norm)
    expected = nn.utils.clip_grad_norm_(theirs, max_norm)
    torch.testing.assert_close(norm, expected)
    for a, b in zip(mine, theirs):
        if b.grad is None:
            assert a.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad)
    assert (float(expected) > max_norm) == (max_norm == 0.05)


def test_fresh_values_take_the_advantages_from_the_learners_value_function():
    """With ``fresh_values`` the recorded values and bootstrap values play no part: an update
    on a batch whose recorded values are noise ends where one on the model's own values does,
    and that is where an update without it ends on the model's own values (so the learner
    computes them as the workers do). Without it, the noise changes the update."""
    import copy

    import gymnasium as gym
    import numpy as np

    from distrl.config import resolve
    from distrl.models import build_model

    torch.manual_seed(0)
    config = resolve({"model": {"hidden_sizes": [16, 16]}})
    model = build_model(config.model, gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2))
    T, B = 8, 4
    obs, last_obs = torch.randn(T, B, 3), torch.randn(B, 3)
    with torch.no_grad():
        own_values, own_bootstrap = model(obs.flatten(0, 1))[1].view(T, B), model(last_obs)[1]
    base = {
        "obs": obs,
        "last_obs": last_obs,
        "actions": torch.randint(0, 2, (T, B)),
        "logp": torch.full((T, B), math.log(0.5)),
        "rewards": torch.randn(T, B),
        "terminated": torch.rand(T, B) < 0.2,
        "truncated": torch.zeros(T, B, dtype=torch.bool),
        "timeout_value": torch.zeros(T, B),
    }
    own = {**base, "values": own_values, "bootstrap_value": own_bootstrap}
    noise = {**base, "values": 10 * torch.randn(T, B), "bootstrap_value": 10 * torch.randn(B)}

    def updated(batch, fresh):
        learner = copy.deepcopy(model)
        ppo_config = PPOConfig(lr=0.01, epochs=3, num_minibatches=1, lr_schedule="constant", fresh_values=fresh)
        PPO(ppo_config, learner, None).learn(batch, Progress(env_steps=0))
        return torch.cat([parameter.detach().flatten() for parameter in learner.parameters()])

    fresh_on_noise = updated(noise, True)
    assert torch.equal(fresh_on_noise, updated(own, True))
    torch.testing.assert_close(fresh_on_noise, updated(own, False), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(updated(noise, False), fresh_on_noise, rtol=1e-3, atol=1e-4)
