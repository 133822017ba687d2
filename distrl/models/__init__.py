"""Networks: an MLP for vector observations, the Nature CNN for stacked frames, and an
actor-critic that puts a policy and a value head on either."""

from distrl.models.actor_critic import ActorCritic, build_model, model_notes
from distrl.models.cnn import NatureCNN
from distrl.models.mlp import MLP
from distrl.models.q_network import QNetwork, QTable

__all__ = ["ActorCritic", "MLP", "NatureCNN", "QNetwork", "QTable", "build_model", "model_notes"]
