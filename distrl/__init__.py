"""distrl: distributed actor-learner reinforcement learning on Ray and PyTorch."""

__version__ = "0.1.0"
