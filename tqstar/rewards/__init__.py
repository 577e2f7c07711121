"""tqstar.rewards: the reward role — its protocol, the built-in rewards, classifier and trained reward models,
and loading a reward from a spec. Names load on first use, so importing the package stays cheap."""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["Reward", "reward_name", "checked_scores", "CallableReward", "WeightedSum"], "protocol"),
    **dict.fromkeys(["SentimentReward", "NontoxicReward", "RelevanceReward"], "builtin"),
    **dict.fromkeys(["helpful_harmless", "upbeat_relevant"], "composite"),
    "HFRewardModel": "classifier",
    "load_reward": "loading",
    "check_reward_spec": "loading",
    **dict.fromkeys(["TrainedRewardModel", "HarmlessReward", "is_trained_reward_model_dir"], "trained"),
    **dict.fromkeys(["StanceReward", "is_stance_model_dir"], "stance"),
    **dict.fromkeys(["StanceModelConfig", "train_stance_model"], "stance_training"),
    **dict.fromkeys(["RewardModelConfig", "train_reward_model", "load_preference_pairs"], "training"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
