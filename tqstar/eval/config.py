"""What ``tqstar eval`` runs: its options, the presets, and the method rows parsed from
``NAME[:key=value,...]`` strings and ``--sweep`` expansions."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..decoding.config import SIZE_BOUNDS, SIZE_WHY, DecodeConfig, RolesConfig
from ..errors import ConfigError, RewardError
from ..options import at_least, between, check_field_types, coerce, option
from ..rewards.loading import check_reward_spec

RUN_WIDE = ("reference", "reward", "device", "dtype")  # one per run: methods are compared on them
#: Decode options eval sets for every method from its own flags: chunks are its unit of batching and seeding.
RUN_DECODE = ("max_new_tokens", "batch_size", "seed")
MAX_WORKERS = 64

#: Labelled method lists. Options follow each name: NAME[:key=value,...]; 'label' names the row.
_INDIRECT = "tq-indirect:baseline=bl-sentiment,baseline_reward=sentiment,rollout_temperature=1,label=tq-indirect"
#: α = 10 for every value-guided method, the library default: the best of 1, 3, 10 for both TQ* and ARGS
#: on 24 `dev` prompts for helpful_harmless (docs/reward.md), as it was for the earlier proxy reward.
_TUNED = "alpha=10"
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"limit": 3, "max_new_tokens": 6, "methods": [
        "greedy", "sample", "sample:proposal=baseline,label=dpo-baseline", "best-of-n:best_of=2,label=best-of-n",
        "args:top_k=3,label=args", "cd:top_k=3,horizon=3,label=cd", "tq-direct:top_k=3,horizon=3,label=tq-direct",
        f"{_INDIRECT},top_k=3,horizon=3,num_rollouts=2"]},
    # Sized to finish within 45 minutes on 2 CPU cores: indirect transfer gets k=4 and N=2 sampled
    # rollouts (8 rollout rows per prompt; CD and TQ* direct have 10: k=10, N=1), since scoring and
    # weighting sampled rollouts costs about half as much again per row.
    "quick": {"limit": None, "max_new_tokens": 32, "methods": [
        "greedy", "sample", "sample:proposal=baseline,label=dpo-baseline", "best-of-n:best_of=8,label=best-of-n",
        f"args:{_TUNED},label=args", f"cd:{_TUNED},label=cd", f"tq-direct:{_TUNED},label=tq-direct",
        f"{_INDIRECT},{_TUNED},top_k=4,num_rollouts=2"]},
    "full": {"limit": None, "max_new_tokens": 128, "methods": [
        "greedy", "sample", "sample:proposal=baseline,label=dpo-baseline", "best-of-n:best_of=16,label=best-of-n",
        f"args:{_TUNED},label=args", f"cd:{_TUNED},horizon=20,label=cd", f"tq-direct:{_TUNED},horizon=20,label=tq-direct",
        f"{_INDIRECT},{_TUNED},horizon=20,num_rollouts=4"]},
}


@dataclass
class EvalConfig:
    """What ``tqstar eval`` runs, on which prompts, and where it writes."""

    output: str = option("", "Run directory: config.json, records.jsonl (one record per method and prompt), "
                             "traces.jsonl (their per-token traces).")
    preset: str | None = option(None, "smoke (3 prompts, tests), quick (shipped test split, < 45 min on 2 CPU "
                                      "cores), full (paper-sized responses).", choices=tuple(PRESETS))
    methods: list[str] = option([], "A method to run, repeatable: NAME[:key=value,...] with DecodeConfig or "
                                    "baseline options and an optional label=..., e.g. "
                                    "'tq-indirect:baseline=bl-sentiment,baseline_reward=sentiment'.")
    sweep: list[str] = option([], "Extra runs of one method, repeatable: LABEL:option=v1,v2,... "
                                  "e.g. 'tq-direct:alpha=0,0.5,2' or 'best-of-n:best_of=2,4,16'.")
    prompts: str = option("tqstar", "Prompt source: 'tqstar' (shipped), a JSONL/CSV file, or a dataset name.")
    prompt_field: str | None = option(None, "Field holding the prompt in a file or dataset.")
    split: str = option("test", "Prompt split (tune on 'dev', report on 'test').")
    limit: int | None = option(None, "Use only the first N prompts.")
    reference: str = option("smollm2", "Reference model for every method.")
    reward: str = option("helpful_harmless", "Target reward every method is judged by.")
    judge_rewards: list[str] = option([], "A reward every response is also scored by but no method steers by: a "
                                          "spec as for --reward, e.g. 'nontoxic' or 'relevance+0.5*sentiment'. The "
                                          "report shows its mean beside the target reward's.", flag="--judge-reward")
    baseline: str | None = option(None, "Default baseline of the methods that use one.")
    max_new_tokens: int | None = option(None, "Most tokens per response (preset: smoke 6, quick 32, full 128).")
    batch_size: int = option(8, "Prompts decoded together: the unit of work, of seeding and of resuming.")
    seed: int = option(0, "Base seed; a chunk's seed is seed + its first prompt index.")
    workers: int = option(1, "Processes on this machine (or Ray actors with --ray), each loading its models once.")
    ray: str | None = option(None, "Ray cluster address ('auto', 'local' or HOST:PORT) to spread chunks over.")
    judge_url: str | None = option(None, "OpenAI-compatible base URL of an LLM judge (e.g. https://api.openai.com/v1).")
    judge_model: str | None = option(None, "Model name the judge endpoint serves.")
    judge_key_env: str = option("OPENAI_API_KEY", "Environment variable holding the judge's API key.")
    judge_against: str | None = option(None, "Label judged against every other method (default: the first tq-* one).")
    no_traces: bool = option(False, "Keep no per-token traces (traces.jsonl: about 1 kB per token of a "
                                    "value-guided method at top_k=10, 2 kB with tq-indirect's weights); the "
                                    "report's prompt pages then show the responses alone.")
    device: str | None = option(None, "Device for every model.")
    dtype: str | None = option(None, "Model dtype for every model.")

    def __post_init__(self):
        check_field_types(self)
        if not self.output:
            raise ConfigError("eval needs a run directory. Pass --output DIR.")
        if self.preset is not None:
            if self.preset not in PRESETS:
                raise ConfigError(f"Unknown preset {self.preset!r}. Use one of: {', '.join(PRESETS)}.")
            preset = PRESETS[self.preset]
            self.methods = list(self.methods) or list(preset["methods"])
            self.limit = self.limit if self.limit is not None else preset["limit"]
            self.max_new_tokens = self.max_new_tokens or preset["max_new_tokens"]
        if not self.methods:
            raise ConfigError("No methods to run. Name them with --methods NAME (repeatable) or pick --preset quick.")
        self.max_new_tokens = self.max_new_tokens or 32
        for name in ("max_new_tokens", "batch_size"):
            between(name, getattr(self, name), 1, SIZE_BOUNDS[name], SIZE_WHY)
        between("workers", self.workers, 1, MAX_WORKERS, "each loads its own copy of the models")
        if self.limit is not None:
            at_least("limit", self.limit, 1)
        if bool(self.judge_url) != bool(self.judge_model):
            raise ConfigError("An LLM judge needs both --judge-url and --judge-model.")
        self.judge_rewards = [spec.strip() for spec in self.judge_rewards]
        for spec in self.judge_rewards:
            try:
                check_reward_spec(spec)
            except RewardError as exc:
                raise ConfigError(f"--judge-reward {spec!r}: {exc}") from None
        if len(set(self.judge_rewards)) < len(self.judge_rewards):
            raise ConfigError("A --judge-reward is given twice. Name each judge reward once.")

    @property
    def run_identity(self) -> dict:
        """The options a resumed run must share with the one it continues (not where it runs, nor whether it
        keeps traces: neither changes a record, so a run may be resumed with traces turned on or off)."""
        where = {"output", "workers", "ray", "judge_url", "judge_model", "judge_key_env", "judge_against", "no_traces"}
        return {k: v for k, v in asdict(self).items() if k not in where}


@dataclass
class MethodSpec:
    """One row of the comparison: a label and the configs that build its decoder."""

    label: str
    decode: DecodeConfig
    roles: RolesConfig
    sweep: dict | None = None  # {"of": label, "option": name, "value": v} for a sweep point

    def as_record(self) -> dict:
        return {"decode": asdict(self.decode), "roles": asdict(self.roles), "sweep": self.sweep}


def method_specs(config: EvalConfig) -> list[MethodSpec]:
    """Parse ``--methods`` and expand ``--sweep``; refuse unknown names, clashes and duplicates."""
    specs = [_parse_method(text, config) for text in config.methods]
    for text in config.sweep:
        specs.extend(_expand_sweep(text, specs))
    labels = [s.label for s in specs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ConfigError(f"Method label(s) {', '.join(duplicates)} appear twice. Give each a distinct "
                          "label=... option.")
    return specs


def _parse_method(text: str, config: EvalConfig) -> MethodSpec:
    name, _, rest = str(text).partition(":")
    options = _parse_options(rest, text)
    label = str(options.pop("label", None) or name + _suffix(options))
    if "method" in options:
        raise ConfigError(f"Method {text!r} sets method={options['method']!r}; the method is the name before ':'. "
                          "Write e.g. 'tq-direct:top_k=5'.")
    clash = sorted(set(options) & {*RUN_WIDE, *RUN_DECODE})
    if clash:
        raise ConfigError(f"Method {text!r} sets {', '.join(clash)}, which is one per run so that methods are "
                          f"compared on the same models, reward, budget and seeds. Use --{clash[0].replace('_', '-')} instead.")
    decode_names, role_names = {f.name for f in fields(DecodeConfig)}, {f.name for f in fields(RolesConfig)}
    unknown = sorted(set(options) - decode_names - role_names)
    if unknown:
        raise ConfigError(f"Method {text!r}: unknown option(s) {', '.join(unknown)}. Use DecodeConfig options "
                          "(see 'tqstar generate --help'), baseline, baseline_reward or label.")
    try:
        typed = {k: coerce(DecodeConfig if k in decode_names else RolesConfig, k, v) for k, v in options.items()}
    except ConfigError as exc:
        raise ConfigError(f"Method {text!r}: {exc}") from None
    decode = DecodeConfig(method=name, max_new_tokens=config.max_new_tokens, batch_size=config.batch_size,
                          seed=config.seed, **{k: v for k, v in typed.items() if k in decode_names})
    roles = RolesConfig(**{**{k: getattr(config, k) for k in RUN_WIDE}, "baseline": config.baseline,
                           **{k: v for k, v in typed.items() if k in role_names}})
    return MethodSpec(label, decode, roles)


def _parse_options(text: str, whole: str) -> dict[str, str]:
    """``key=value,...`` as written (values stay text until their option is known)."""
    options = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Method {whole!r}: option {item!r} is not key=value. Write e.g. 'tq-direct:top_k=5'.")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _suffix(options: dict) -> str:
    return "[" + ",".join(f"{k}={v}" for k, v in options.items()) + "]" if options else ""


def _expand_sweep(text: str, specs: list[MethodSpec]) -> list[MethodSpec]:
    label, _, assignment = text.partition(":")
    option_name, sep, values = assignment.partition("=")
    base = next((s for s in specs if s.label == label), None)
    if base is None or not sep or not values:
        raise ConfigError(f"Sweep {text!r} must read LABEL:option=v1,v2 with LABEL one of the methods "
                          f"({', '.join(s.label for s in specs)}).")
    option_name = option_name.strip().replace("-", "_")
    if not hasattr(base.decode, option_name):
        raise ConfigError(f"Sweep {text!r}: {option_name!r} is not a decoding option. See 'tqstar generate --help'.")
    base.sweep = {"of": label, "option": option_name, "value": getattr(base.decode, option_name)}
    points = []
    for written in (v.strip() for v in values.split(",")):
        try:
            value = coerce(DecodeConfig, option_name, written)
        except ConfigError as exc:
            raise ConfigError(f"Sweep {text!r}: {exc}") from None
        if value == getattr(base.decode, option_name):
            continue  # the method itself is this point
        decode = replace(base.decode, **{option_name: value})
        points.append(MethodSpec(f"{label}[{option_name}={written}]", decode, base.roles,
                                 {"of": label, "option": option_name, "value": value}))
    return points
