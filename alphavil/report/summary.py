"""Per-checkpoint evaluation records summarised into metrics/summary.json: per method the
final and best-on-dev target metric over seeds, αVIL's weights, α and ranking scores (also
per epoch), and αVIL paired with each baseline."""

from __future__ import annotations

from collections import defaultdict

from alphavil.config import Params
from alphavil.report.stats import holm, mean_estimated, mean_std, paired_comparison, ranking_score
from alphavil.report.verdict import cumulative_alpha, verdict


def primary_metric(record: dict, declared: str | None = None) -> str:
    """The metric the tables report: the target's declared one (NLU tasks carry GLUE's
    choice in meta.json), else accuracy, else the first one recorded."""
    keys = [k for k in record["dev"] if k != "loss"]
    if declared is not None:
        if declared not in keys:
            raise ValueError(f"metric {declared!r} was not recorded (have {keys})")
        return declared
    return "acc" if "acc" in keys else keys[0]


def aux_roles(params: Params) -> dict[str, str]:
    """Roles of the auxiliary tasks, or {} unless a suite has both a helpful and a harmful
    one (the ranking score is then undefined)."""
    roles = {t: s.role for t, s in params.tasks.items() if t != params.target and s.role}
    return roles if {"helpful", "harmful"} <= set(roles.values()) else {}


def ranked_by(params: Params, records: list[dict]) -> tuple[str, list[dict[str, list]]]:
    """report.rank_by's key suffix (ranking_<suffix>) and, per seed in params.seeds, per
    task its values of that quantity after each epoch (epoch 1 first)."""
    if params.report.rank_by == "cumulative_alpha":
        cum = cumulative_alpha(params, records)
        return "cumulative_alpha", [cum[s] for s in params.seeds]
    rows = {(r["seed"], r["epoch"]): r["weights"] for r in records if r["method"] == "alphavil"}
    return "weights", [{t: [rows[(s, ep.id)][t] for ep in params.epochs] for t in params.tasks}
                       for s in params.seeds]


def _at(values: dict[str, list], i: int) -> dict:
    return {t: v[i] for t, v in values.items()}


def _by_epoch(params: Params, by_run: dict, roles: dict[str, str], ranked) -> dict:
    """αVIL after each epoch: per task the mean weight and mean α over seeds (α: over the
    seeds that estimated it), and with a suite's roles the ranking score per seed, so
    `dvc exp show` can follow how the weights move (per seed values: per_epoch.json)."""
    by, values = ranked
    out = {}
    for i, ep in enumerate(params.epochs):
        rows = [next(r for r in by_run[("alphavil", s)] if r["epoch"] == ep.id)
                for s in params.seeds]
        e = {"weight": {t: mean_std([r["weights"][t] for r in rows])[0] for t in params.tasks},
             "alpha": {t: mean_estimated([r["alpha"][t] for r in rows])[0]
                       for t in params.tasks}}
        if roles:
            e[f"ranking_{by}_per_seed"] = {str(s): ranking_score(_at(v, i), roles)
                                           for s, v in zip(params.seeds, values)}
        out[ep.id] = e
    return out


def summarise(params: Params, records: list[dict], metric: str | None = None,
              majority: dict | None = None) -> dict:
    """majority: the target's majority-class share of dev and test (evaluate), reported
    where the metric is accuracy."""
    metric = primary_metric(records[0], metric)
    last = params.epochs[-1].id
    by_run: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in records:
        by_run[(r["method"], r["seed"])].append(r)

    summary: dict = {"target": params.target, "metric": metric, "epochs": len(params.epochs),
                     "seeds": len(params.seeds), "methods": {}}
    if metric == "acc" and majority and majority.get("test") is not None:
        summary["majority"] = majority
    finals: dict[str, list[float]] = {}
    # alpha.split dev_half: epochs are chosen on the dev part α was not fitted on
    select = "dev_select" if "dev_select" in records[0] else "dev"
    for method in params.methods:
        final_test, final_dev, best_test, best_dev = [], [], [], []
        final_sel, best_sel = [], []
        for seed in params.seeds:
            run = [r for r in by_run[(method, seed)] if r["epoch"] != "base"]
            final = next(r for r in run if r["epoch"] == last)
            # best on dev; ties go to the earliest epoch
            best = max(run, key=lambda r: (r[select][metric], -r["n"]))
            final_test.append(final["test"][metric])
            final_dev.append(final["dev"][metric])
            best_test.append(best["test"][metric])
            best_dev.append(best["dev"][metric])
            final_sel.append(final[select][metric])
            best_sel.append(best[select][metric])
        m, s = mean_std(final_test)
        bm, bs = mean_std(best_test)
        entry = {"test": m, "test_std": s, "dev": mean_std(final_dev)[0],
                 "best_dev": {"test": bm, "test_std": bs, "dev": mean_std(best_dev)[0]},
                 "per_seed_test": dict(zip(map(str, params.seeds), final_test))}
        if select != "dev":  # only under dev_half: the default summary keeps its keys
            entry["dev_select"] = mean_std(final_sel)[0]
            entry["best_dev"]["dev_select"] = mean_std(best_sel)[0]
        # train.on_divergence: mark. Only present when a seed diverged, so a run without
        # divergence writes the same summary as before the option existed.
        diverged = {str(seed): r["diverged"] for seed in params.seeds
                    for r in by_run[(method, seed)] if r["epoch"] == last and "diverged" in r}
        if diverged:
            entry["diverged"] = diverged
        if method == "alphavil":
            finals_state = [next(r for r in by_run[(method, s)] if r["epoch"] == last)
                            for s in params.seeds]
            entry["final_weight"] = {t: mean_std([r["weights"][t] for r in finals_state])[0]
                                     for t in params.tasks}
            alpha = {t: mean_estimated([r["alpha"][t] for r in finals_state])
                     for t in params.tasks}
            # null where no seed estimated it; final_alpha_seeds: how many seeds did
            entry["final_alpha"] = {t: a for t, (a, _) in alpha.items()}
            entry["final_alpha_seeds"] = {t: k for t, (_, k) in alpha.items()}
            roles = aux_roles(params)
            ranked = ranked_by(params, records)
            if roles:  # ground truth of the suite (tasks.<name>.role)
                by_values = {ranked[0]: [_at(v, -1) for v in ranked[1]],
                             "alpha": [r["alpha"] for r in finals_state]}
                for by, values in by_values.items():
                    per_seed = [ranking_score(v, roles) for v in values]
                    entry[f"ranking_{by}"] = mean_estimated(per_seed)[0]
                    entry[f"ranking_{by}_per_seed"] = dict(zip(map(str, params.seeds), per_seed))
            entry["by_epoch"] = _by_epoch(params, by_run, roles, ranked)
            if params.alpha.guard:
                refused = [f"s{r['seed']} {r['epoch']}" for seed in params.seeds
                           for r in by_run[(method, seed)] if r.get("merge_rejected")]
                entry["merges_rejected"] = len(refused)
                entry["merges_rejected_at"] = refused
        summary["methods"][method] = entry
        finals[method] = final_test
    if "alphavil" in finals:
        vs = {m: paired_comparison(finals["alphavil"], v)
              for m, v in finals.items() if m != "alphavil"}
        for m, p in holm({m: c["p_value"] for m, c in vs.items()}).items():
            vs[m]["p_holm"] = p
        summary["alphavil_vs"] = vs
    summary["verdict"] = verdict(params, records)
    return summary
