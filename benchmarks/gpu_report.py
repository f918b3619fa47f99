"""benchmarks/gpu_check.py's results (OUT/gpu_check.json) as OUT/gpu_check.md."""

from __future__ import annotations


def _f(x, fmt="{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def markdown(res: dict) -> str:
    env = res.get("env", {})
    lines = [f"# GPU check, {res['date']}", "",
             f"device {res['args']['device']}{' (quick)' if res['args']['quick'] else ''}; "
             f"{env.get('gpu') or 'no GPU'} {env.get('nvidia_smi', '')}; torch "
             f"{env.get('torch')} (CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}); Python "
             f"{env.get('python')}; {env.get('cpu_count')} CPUs; {env.get('dvc')}; "
             f"commit {env.get('commit')}; wall {res.get('wall_seconds', 0):.0f} s", ""]
    for size in ("tiny", "default"):
        part = res.get(size)
        if not part:
            continue
        lines += [f"## Pipeline `{size}` through `dvc repro` on {part.get('device')}", ""]
        if "error" in part or "skipped" in part:
            lines += [f"{part.get('error') or part.get('skipped')}", ""]
            continue
        lines.append(f"shape {part.get('shape')}, data {part.get('data_source')}")
        agree = part.get("agreement")
        if agree:
            lines += ["", "| vs the CPU | max abs diff | tolerance | agree |", "|---|---|---|---|",
                      f"| α, every epoch and task | {agree['alpha_max_abs_diff']:.2e} | "
                      f"{agree['alpha_tolerance']} | {'yes' if agree['agree'] else 'NO'} |",
                      f"| final test accuracy, every method | "
                      f"{agree['test_acc_max_abs_diff']:.4f} | {agree['acc_tolerance']:.4f} | |"]
            if agree["null_mismatch"] or agree["missing"]:
                lines.append(f"mismatch: {agree['null_mismatch']} missing: {agree['missing']}")
        else:
            lines.append(f"no comparison (CPU run: {part.get('cpu_in_process', {}).get('error')})")
        d = part.get("dvc", {})
        if "error" in d:
            lines += ["", f"dvc repro failed: {d['error']}"]
        if d.get("stages"):
            lines += ["", f"`dvc repro` {_f(d.get('repro_wall'), '{:.1f}')} s for "
                      f"{d.get('stages_run')} stages; their processes "
                      f"{_f(d.get('processes_wall'), '{:.1f}')} s; DVC's own "
                      f"{_f(d.get('dvc_overhead'), '{:.1f}')} s. Heavy modules seen in a stage: "
                      f"{d.get('heavy_modules_seen') or 'none'}", "",
                      "| stage | n | process wall s | start-up s (interpreter + imports / "
                      "params, CUDA init, model) | of which CUDA init | work s (own compute "
                      "and I/O) | start-up share |", "|---|---|---|---|---|---|---|"]
            for kind, r in d["stages"].items():
                lines.append(f"| {kind} | {r['n']} | {r['wall']:.2f} | {r['startup']:.2f} "
                             f"({r['imports']:.2f} / {r['setup']:.2f}) | {r['cuda_init']:.2f} |"
                             f" {r['work']:.2f} | {_f(r['startup_share'], '{:.0%}')} |")
        lines.append("")
    st = res.get("startup")
    if st:
        lines += ["## Start-up, each in a fresh process", "",
                  "| what | seconds (in-process) | process wall s | imports compiler stack / "
                  "transformers |", "|---|---|---|---|"]
        for name, r in st.items():
            if not isinstance(r, dict):
                continue
            extra = r.get("error") or r.get("skipped")
            lines.append(f"| {name} | {_f(r.get('seconds'))} | {_f(r.get('process_wall'))} | "
                         f"{', '.join(r.get('heavy', [])) or ('-' if 'heavy' not in r else 'no')}"
                         f"{' ' + extra.splitlines()[-1] if extra else ''} |")
        lines.append("")
    c = res.get("compute")
    if c:
        lines += [f"## Compute on {res['args']['device']} (default data size, "
                  f"{c.get('train_examples')} training examples of the target)", ""]
        if "error" in c or "skipped" in c:
            lines += [c.get("error") or c.get("skipped"), ""]
        tp = c.get("throughput", {})
        if "error" in tp or "skipped" in tp:
            lines += [f"throughput: {tp.get('error') or tp.get('skipped')}", ""]
        elif tp:
            lines += ["| batch | bare loop steps/s | train_pass | + step log | loss read "
                      "every step |", "|---|---|---|---|---|"]
            for b, r in tp.items():
                s, v = r["steps_per_s"], r["vs_bare"]
                lines.append(f"| {b} | {s['bare']:.0f} | {s['train_pass']:.0f} "
                             f"({v['train_pass']:.2f}×) | {s['train_pass + step log']:.0f} "
                             f"({v['train_pass + step log']:.2f}×) | "
                             f"{s['train_pass, loss read every step']:.0f} "
                             f"({v['train_pass, loss read every step']:.2f}×) |")
            lines.append("")
        det = c.get("determinism", {})
        if det and "error" not in det and "skipped" not in det:
            cost = ", ".join(f"batch {b}: {r['on_vs_off']:.2f}× ({r['on']:.3f} s vs "
                             f"{r['off']:.3f} s)" for b, r in det.items() if b.isdigit())
            lines += [f"Determinism settings on vs off (train_pass time): {cost}; a fine-tune "
                      f"repeats bit for bit: on {det['finetune_repeats_bitwise']['on']}, off "
                      f"{det['finetune_repeats_bitwise']['off']}", ""]
        elif det:
            lines += [f"determinism: {det.get('error') or det.get('skipped')}", ""]
        pr = c.get("precision", {})
        if pr and "error" not in pr and "skipped" not in pr:
            lines += [f"αVIL epoch fp32 {pr['fp32']['epoch_seconds']:.2f} s, bf16 "
                      f"{pr['bf16']['epoch_seconds']:.2f} s; α fp32 {pr['fp32']['alpha']} vs "
                      f"bf16 {pr['bf16']['alpha']} (max diff {pr['alpha_max_abs_diff']:.3f}); "
                      f"merged test acc fp32 {pr['fp32']['test']['acc']:.3f}, bf16 "
                      f"{pr['bf16']['test']['acc']:.3f}", ""]
        elif pr:
            lines += [f"precision: {pr.get('error') or pr.get('skipped')}", ""]
        ev = c.get("epoch_vs_cpu", {})
        if ev and "speedup" in ev:
            lines += [f"αVIL epoch (compute only): {ev['device_seconds']:.2f} s on "
                      f"{res['args']['device']}, {ev['cpu_seconds']:.2f} s on the CPU "
                      f"(1 thread): {ev['speedup']:.1f}×", ""]
        elif ev:
            lines += [f"epoch vs CPU: {ev.get('error') or ev.get('skipped')}", ""]
    py = res.get("pytest")
    if py:
        lines += [f"GPU tests (tests/test_device.py, tests/test_optim.py): "
                  f"{py.get('summary') or py.get('error') or py.get('skipped')}", ""]
        if py.get("tail"):
            lines += ["```", py["tail"], "```", ""]
    for name in ("env", "startup"):
        part = res.get(name, {})
        if "error" in part or "skipped" in part:
            lines += [f"{name}: {part.get('error') or part.get('skipped')}", ""]
    return "\n".join(lines) + "\n"
