"""The ready-made configs that ship inside the package (``distrl/configs/``), found by name.

They are package data, not a folder of the checkout: after ``pip install distrl`` there is no
``configs/`` next to the user, so ``--config ppo_pong`` must find them wherever the package
lies. A name is the file's path below ``distrl/configs/`` without ``.yaml``
(``ppo_pong``, ``tutorials/catch_dqn``).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional

import yaml

ROOT = Path(__file__).resolve().parent / "configs"


def names() -> list[str]:
    """Every shipped config's name, the top-level ones first, then the tutorials'."""
    found = [path.relative_to(ROOT).with_suffix("").as_posix() for path in ROOT.glob("**/*.yaml")]
    return sorted(found, key=lambda name: (name.count("/"), name))


def find(name: str) -> Optional[Path]:
    """The shipped file called ``name`` (with or without ``.yaml``, with or without a leading
    ``configs/``), or None."""
    stem = name.removesuffix(".yaml").removeprefix("configs/")
    path = ROOT / f"{stem}.yaml"
    return path if stem and path.is_file() and ROOT in path.resolve().parents else None


def close_matches(name: str) -> list[str]:
    stem = name.removesuffix(".yaml").removeprefix("configs/")
    every = names()
    by_base = {n.rsplit("/", 1)[-1]: n for n in every}
    hits = difflib.get_close_matches(stem, every, n=3, cutoff=0.6)
    hits += [by_base[b] for b in difflib.get_close_matches(stem, list(by_base), n=3, cutoff=0.6)]
    return list(dict.fromkeys(hits))[:3]


def summary(name: str) -> str:
    """One line about a shipped config: its algorithm, its env, and the first sentence of its
    leading comment (each file opens with a comment saying what it is for)."""
    path = ROOT / f"{name}.yaml"
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    words = " ".join(comment)
    end = words.find(". ")
    sentence = words if end < 0 else words[: end + 1]
    if len(sentence) > 110:
        sentence = sentence[:107].rstrip() + "..."
    algo = data.get("algo", "ppo")
    env = (data.get("env") or {}).get("id", "CartPole-v1")
    return f"{algo} on {env}: {sentence}" if sentence else f"{algo} on {env}"
