"""tqstar.decoding: the decoder role — its contract, the method table, the value estimators, the decoding
options, the decoders (token by token, with lookahead, or blockwise), the loaded roles and
``build_decoder``. Names load on first use, so importing the package stays cheap."""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["Decoder", "OnToken", "GenerationResult", "StepTrace", "ValueQuery", "ValueEstimate",
                     "ValueEstimator", "SELECTIONS"], "protocol"),
    **dict.fromkeys(["Method", "KL", "Need", "METHOD_TABLE", "METHODS", "find_method", "method_of"], "methods"),
    **dict.fromkeys(["PartialReward", "MeanRolloutValue", "BestRolloutValue", "FirstStepsValue", "IndirectValue",
                     "SoftTransferValue", "require_weighted_rollouts"], "values"),
    "RolloutSpec": "rollouts",
    **dict.fromkeys(["DecodeConfig", "RolesConfig", "AUTHORS_SETTINGS", "AUTHORS_BETA", "MODEL_ROLES",
                     "split_options"], "config"),
    **dict.fromkeys(["DecodingSettings", "StepDistribution", "ValueGuidedDecoder", "SamplingDecoder",
                     "write_trace"], "decoder"),
    **dict.fromkeys(["BlockwiseDecoder", "BlockDistribution"], "blocks"),
    "LookaheadDecoder": "lookahead",
    **dict.fromkeys(["Roles", "baseline_spec_for", "IMPLICIT"], "roles"),
    **dict.fromkeys(["build_decoder", "generate"], "build"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
