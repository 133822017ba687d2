"""Playing whole episodes with a checkpoint's policy, in this process (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

from distrl import checkpoint
from distrl.algos import ALGORITHMS
from distrl.config import resolve
from distrl.envs import family_of, make_env
from distrl.errors import CheckpointError
from distrl.models import build_model


def evaluate(path: str | Path, episodes: int, greedy: bool = False, seed: int = 12345) -> tuple[list[float], Path]:
    """Returns the game score of each of ``episodes`` episodes, and the checkpoint used.

    Evaluation plays whole games: training-only shortcuts (life loss as terminal) are off,
    and the score is the raw reward, not the clipped one the learner sees.
    """
    folder, state = checkpoint.load(path)
    config = resolve(yaml.safe_load(state["config_yaml"]) or {})
    options = {**config.env.options, **family_of(config.env.id).eval_options}
    env = make_env(config.env.id, seed=seed, **options)
    model = build_model(config.model, env.observation_space, env.action_space, ALGORITHMS[config.algo].model_head)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(
            f"The weights in {str(folder)!r} do not fit the {config.algo} model its config describes "
            f"({str(error).splitlines()[0]}). The checkpoint may come from another distrl version."
        ) from None
    model.eval()
    torch.manual_seed(seed)

    returns: list[float] = []
    obs, _ = env.reset()
    while len(returns) < episodes:
        with torch.inference_mode():
            action = model.act(torch.from_numpy(np.asarray(obs)[None]), greedy=greedy)["actions"][0]
        obs, _, terminated, truncated, info = env.step(int(action))
        if "episode_return" in info:
            returns.append(float(info["episode_return"]))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return returns, folder
