"""tqstar.eval: comparing methods over a prompt set — run options, the resumable run directory, workers
(processes or Ray), metrics, the reward-hacking guard, the LLM judge and the report. Names load on first use,
so importing the package stays cheap."""

from ..lazy import lazy_getattr

_EXPORTS = {
    **dict.fromkeys(["EvalConfig", "MethodSpec", "method_specs", "PRESETS"], "config"),
    **dict.fromkeys(["records_path", "traces_path", "read_records", "read_traces"], "rundir"),
    **dict.fromkeys(["Chunk", "ChunkOutput", "ChunkWorker", "run_chunks"], "workers"),
    "run_eval": "run",
    **dict.fromkeys(["diversity", "response_kls", "trace_kl", "path_log_prob", "best_of_n_kl", "bootstrap_mean",
                     "duel", "summarise", "mean_token_logprobs", "mean_ess", "KL_STEPWISE", "KL_PATH",
                     "KL_BEST_OF_N"], "metrics"),
    **dict.fromkeys(["guard_fields", "guard_summary", "reward_terms", "ended_early", "repeats"], "guard"),
    **dict.fromkeys(["judge_run", "summarise_judgements"], "judge"),
    "write_report": "report",
    "merge_runs": "merge",
    **dict.fromkeys(["frontier_summary", "pareto_labels", "method_families"], "frontier"),
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = list(_EXPORTS)
