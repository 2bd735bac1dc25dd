"""Rewards for preference RL: one typed protocol, one file per reward, a weighted composite (docs/style.md P10).

See ``composite.py`` for the list of rewards, which are the paper's and which run offline here.
"""

from .composite import DEFAULT_PROMPT, PAPER_WEIGHTS, REWARD_NAMES, CompositeReward, build_reward
from .protocol import Reward, RewardInputs, as_scores

__all__ = [
    "CompositeReward",
    "DEFAULT_PROMPT",
    "PAPER_WEIGHTS",
    "REWARD_NAMES",
    "Reward",
    "RewardInputs",
    "as_scores",
    "build_reward",
]
