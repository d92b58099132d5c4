"""Simulated peak memory of a tuning step against what the real step holds (issue 19, part 4).

For each case (model, method, window, activation bits) this runs the real step twice on CPU:

* ``workloads.trace.measure.measure_step_memory``: the step with no recording hook, under
  ``torch.profiler`` with ``profile_memory=True``; the running sum of the CPU allocator's
  events gives the most bytes the step held at once (plus what was resident before it);
* ``workloads.trace.record_trace`` at ``a_bits = 32``, so the trace's floating tensors are at
  the run's own precision (float32); its weight, adapter and gradient rows, which the trace
  lists at the device's 16 bits, are counted at 32 bits too. ``sim.footprint`` then takes the
  peak of the tensor table's liveness timeline.

Same step, same precision: the ratio is the simulator's memory model against the allocator.
It also reports the old rule (every tensor of the table live at once, the sum) for contrast.

    python benchmarks/bench_sim_memory.py                       # tiny model, all cases
    python benchmarks/bench_sim_memory.py --model smollm2-135m  # the real model (slow)
    python benchmarks/bench_sim_memory.py --render-only         # page and JSON from the results

Results accumulate in docs/results/sim_memory.json (one entry per model and case, replaced when
run again); the section of docs/results/sim.md and the ``peak_memory`` rows of
docs/results/sim_peers.json are written from it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BEGIN, END = "<!-- sim_memory: begin -->", "<!-- sim_memory: end -->"
HOST_BITS = 32  # the CPU run's float32
RESULTS = ROOT / "docs/results/sim_memory.json"
TARGET = 0.10  # issue 19: within 10% of the measured peak
# (name, method, window, act_bits); the DSE's traces are adaptive windows of 4 layers.
CASES = {
    "vanilla": ("vanilla", None, 16),
    "adaptive_w4": ("adaptive", 4, 16),
    "adaptive_w4_a8": ("adaptive", 4, 8),
}
HOST_KINDS = ("weight", "lora_weight", "gradient")  # listed at device bits, float32 on the host


def host_tensors(tensors):  # type: ignore[no-untyped-def]
    """The tensor table at the host run's precision: weight, adapter and gradient rows at 32
    bits (the other floating rows already are, recorded at ``a_bits = 32``)."""
    out = tensors.copy()
    rows = out["kind"].isin(HOST_KINDS)
    out.loc[rows, "bits"] = HOST_BITS
    out.loc[rows, "bytes"] = out.loc[rows, "numel"] * HOST_BITS // 8
    return out


def simulated(tensors, n_ops: int) -> dict:  # type: ignore[no-untyped-def]
    """Peak of the liveness timeline, its parts, and the sum of the table."""
    from sim.config import load_hw
    from sim.footprint import footprint, live_bytes
    from sim.trace import validate_tensors

    table = validate_tensors(tensors)
    fp = footprint(table, load_hw(ROOT / "hwconfigs/edge_llm.yaml"))
    live = live_bytes(table, n_ops)
    whole = (table["first_op"] == 0) & (table["last_op"] == n_ops - 1)
    resident = int(table.loc[whole & table["kind"].isin(["weight", "lora_weight", "optimizer"]),
                             "bytes"].sum())
    return {"peak_bytes": fp.peak_memory_bytes, "resident_bytes": resident,
            "step_peak_bytes": fp.peak_memory_bytes - resident,
            "all_tensors_bytes": fp.all_tensors_bytes, "peak_by_kind": fp.by_kind,
            "peak_fraction": (fp.peak_op or 0) / max(1, n_ops), "ops": n_ops,
            "tensor_rows": len(table),
            "saved_bytes": int(table.loc[table["kind"] == "activation", "bytes"].sum()),
            "table_by_kind": {str(k): int(v) for k, v in table.groupby("kind")["bytes"].sum().items()},
            "live_at_end_bytes": int(live[-1])}


def run_case(loaded, name: str, *, seq_len: int, batch: int, seed: int) -> dict:  # type: ignore[no-untyped-def]
    from workloads.trace.measure import measure_step_memory
    from workloads.trace.record import record_trace

    method, window, act_bits = CASES[name]
    kw = {"method": method, "window": window, "seq_len": seq_len, "batch": batch,
          "act_bits": act_bits, "seed": seed}
    t0 = time.perf_counter()
    measured = measure_step_memory(loaded, **kw)
    t1 = time.perf_counter()
    trace = record_trace(loaded, a_bits=HOST_BITS, **kw)
    t2 = time.perf_counter()
    sim = simulated(host_tensors(trace.tensors), len(trace.ops))
    meas = {"peak_bytes": measured.peak_bytes, "resident_bytes": measured.resident_bytes,
            "step_peak_bytes": measured.step_peak_bytes, "end_bytes": measured.end_bytes,
            "saved_bytes": measured.saved_bytes, "events": measured.events,
            "peak_fraction": measured.peak_fraction}
    return {"model": loaded.name, "case": name, "method": method, "window": window,
            "act_bits": act_bits, "seq_len": seq_len, "batch": batch, "seed": seed,
            "measured": meas, "simulated": sim,
            "ratio": sim["peak_bytes"] / meas["peak_bytes"],
            "step_ratio": sim["step_peak_bytes"] / meas["step_peak_bytes"],
            "sum_ratio": sim["all_tensors_bytes"] / meas["peak_bytes"],
            "measure_s": round(t1 - t0, 1), "record_s": round(t2 - t1, 1)}


def old_rule(sim: dict) -> int:
    """The peak by the rule before lifetimes: the sum of the table as it was then (weights,
    adapters, their gradients, AdamW's moments and the saved activations, all live at once;
    no activation gradients or temporaries). The adapters' gradients are as large as the
    adapters, which are live at every row, so they are read off the peak's breakdown."""
    return sim["resident_bytes"] + sim["saved_bytes"] + sim["peak_by_kind"].get("lora_weight", 0)


def device_case(loaded, name: str, *, seq_len: int, batch: int, seed: int) -> dict:  # type: ignore[no-untyped-def]
    """The DSE's view of the same step: the trace at device precision (``a_bits`` 16, weights
    and adapters at 16 bits) on edge_llm, timeline peak against the old rule."""
    from sim.config import load_hw
    from sim.footprint import footprint
    from sim.trace import validate_tensors
    from workloads.trace.record import record_trace

    method, window, act_bits = CASES[name]
    trace = record_trace(loaded, method=method, window=window, seq_len=seq_len, batch=batch,
                         act_bits=act_bits, seed=seed)
    table = validate_tensors(trace.tensors)
    fp = footprint(table, load_hw(ROOT / "hwconfigs/edge_llm.yaml"))
    old = int(table.loc[~table["kind"].isin(["temporary", "activation_grad"]), "bytes"].sum())
    return {"model": loaded.name, "case": name, "seq_len": seq_len, "batch": batch,
            "peak_bytes": fp.peak_memory_bytes, "old_rule_bytes": old,
            "peak_by_kind": fp.by_kind}


def device_markdown(device: list[dict]) -> list[str]:
    if not device:
        return []
    lines = ["", "On the device (`a_bits` 16, weights and adapters at 16 bits: what `dse` "
             "simulates; `python benchmarks/bench_sim_memory.py --model smollm2-135m --device`), "
             "the timeline raises the step's peak over the old rule by the head's chunks in "
             "flight:", "",
             "| model | case | tokens | old rule MiB | timeline peak MiB | change |",
             "|---|---|---|---|---|---|"]
    for d in device:
        lines.append(f"| {d['model']} | {d['case']} | {d['batch']} x {d['seq_len']} | "
                     f"{_mib(d['old_rule_bytes'])} | {_mib(d['peak_bytes'])} | "
                     f"{d['peak_bytes'] / d['old_rule_bytes'] - 1:+.1%} |")
    return lines


def _mib(x: float) -> str:
    return f"{x / 2**20:,.2f}"


def markdown(results: list[dict], device: list[dict] | None = None) -> str:
    ok = all(abs(r["ratio"] - 1) <= TARGET for r in results)
    lines = [BEGIN, "## Peak memory: the liveness timeline against the real step", "",
             "Generated by `python benchmarks/bench_sim_memory.py` (tiny model) and "
             "`python benchmarks/bench_sim_memory.py --model smollm2-135m` (real model; "
             "niced, one thread); data in docs/results/sim_memory.json, rows also in "
             "docs/results/sim_peers.json (`metric: peak_memory`).", "",
             "The tensor table now says when each tensor lives (`first_op`, `last_op`: "
             "docs/trace.md), recorded from the real step: weights, adapters and AdamW's moments "
             "for the whole step; each saved activation from the operator that made it until "
             "backward frees it; the adapters' gradients from backward to the update; and, as "
             "rows of their own, every other storage the step makes: activation gradients "
             "(`activation_grad`), the head's logits chunk and other temporaries "
             "(`temporary`). `sim.footprint` takes the peak of the live bytes over the ops rows "
             "instead of the sum of the table.", "",
             "Reference: the same step run again without any recording hook under "
             "`torch.profiler(profile_memory=True)`; the running sum of the CPU allocator's "
             "events on top of the storages resident before the step (parameters, buffers, "
             "optimizer state, token ids). Both sides at the run's precision (float32): the "
             "trace recorded at `a_bits = 32`, its weight, adapter and gradient rows counted "
             "at 32 bits. Activation packing (`act_bits = 8`) stores int8 values and a "
             "bfloat16 scale per 64 on the host exactly as the trace counts them.", "",
             f"Target (issue 19): simulated peak within {TARGET:.0%} of the measured peak: "
             f"**{'met' if ok else 'not met'}** in every case below.", "",
             "| model | case | tokens | measured peak MiB | simulated peak MiB | ratio | "
             "measured - simulated MiB | step part: measured / simulated MiB (ratio) | "
             "old rule MiB (ratio) | saved activations MiB: hooks / trace |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m, s = r["measured"], r["simulated"]
        lines.append(
            f"| {r['model']} | {r['case']} | {r['batch']} x {r['seq_len']} | "
            f"{_mib(m['peak_bytes'])} | {_mib(s['peak_bytes'])} | {r['ratio']:.3f} | "
            f"{_mib(m['peak_bytes'] - s['peak_bytes'])} | "
            f"{_mib(m['step_peak_bytes'])} / {_mib(s['step_peak_bytes'])} "
            f"({r['step_ratio']:.3f}) | {_mib(old_rule(s))} ({old_rule(s) / m['peak_bytes']:.3f}) | "
            f"{_mib(m['saved_bytes'])} / {_mib(s['saved_bytes'])} |")
    lines += ["", "Cases: `vanilla` (adapters on and backward through every layer), `adaptive_w4` "
              "(a window of 4 layers ending at the last, the DSE's traces), `adaptive_w4_a8` (the "
              "same with the saved activations packed to 8 bits). The tiny model has 4 layers, so "
              "its window is the whole model and its first two rows are one step.", "",
              "At the simulated peak, bytes by kind (MiB):", "",
              "| model | case | " + " | ".join(KINDS) + " |",
              "|---|---|" + "---|" * len(KINDS)]
    for r in results:
        by = r["simulated"]["peak_by_kind"]
        lines.append(f"| {r['model']} | {r['case']} | "
                     + " | ".join(_mib(by.get(k, 0)) for k in KINDS) + " |")
    old = [old_rule(r["simulated"]) / r["measured"]["peak_bytes"] for r in results]
    sums = [r["sum_ratio"] for r in results]
    text = (f"- **The old rule.** Before lifetimes, the peak was the sum of a table without "
            f"temporaries: weights, adapters, gradients, moments and saved activations, all "
            f"live between forward and backward. It misses what is in flight at the real peak "
            f"(the head's logits chunks, the gradients in flight): {min(old):.3f} to "
            f"{max(old):.3f} x the measured peak (column 'old rule'). Summing the new table, "
            f"temporaries included, would overstate {min(sums):.1f} to {max(sums):.1f} x: the "
            f"step's temporaries never live at once.")
    lines += device_markdown(device or [])
    lines += ["", *(text if line == "{old_rule}" else line for line in EXPLANATION), END]
    return "\n".join(lines)


KINDS = ("weight", "lora_weight", "optimizer", "activation", "gradient", "activation_grad",
         "temporary")
EXPLANATION = [
    "Why the two differ, systematically:",
    "",
    "- **Kernel workspace (the whole gap on SmolLM2).** The trace sees the storages operators "
    "return (a dispatch mode); memory a kernel allocates and frees inside itself reaches the "
    "allocator but no tensor. torch's CPU `logsumexp` is one: it materializes `exp(x - max)` "
    "over its whole input, so over a head chunk of 256 positions x 49,152 logits it holds "
    "another 48.0 MiB of float32 (`torch.logsumexp` of a [256, 49152] tensor under the same "
    "profiler peaks at 48.00 MiB for a 1 KiB result). The head's chunk is where SmolLM2's "
    "steps peak, and measured minus simulated is 48.0 MiB in each SmolLM2 case above. A device "
    "that runs the head's log-sum-exp as the trace's vector rows (max, exp, sum per row) needs "
    "no such buffer, so the simulator does not charge it. At 1 x 256 tokens the head has 255 "
    "positions, so the buffer is 47.8 MiB (gap 47.3 MiB). The tiny model's vocabulary (259) "
    "makes it 0.25 MiB, below the op-granularity surplus.",
    "- **Resident storages.** The measured resident set also counts the model's buffers "
    "(rotary frequencies) and the token ids, which the tensor table does not list (they exist "
    "before the step): a few KiB.",
    "- **Op granularity.** A tensor lives from the row of the operator that made it to the "
    "last row recorded before its free, so storages made and freed between two rows (inside "
    "one torch operator) are charged during the next row: the simulated peak can only be "
    "later or larger by them, never miss them.",
    "{old_rule}",
    "",
    "Where the step peaks: SmolLM2's steps peak in the head, every saved activation still "
    "held. With more than one chunk (4 x 256 tokens: four chunks of up to 256 positions) two "
    "logits chunks are alive there: `_ChunkedLMLoss` keeps the previous chunk's probabilities "
    "(`probs`, the same storage as `logits`, which `del logits` does not free) while the next "
    "chunk's logits are computed. Trace and allocator both see it; deleting `probs` with "
    "`logits` in workloads/tuning/head.py would save one chunk (48 MiB at float32, 24 MiB on "
    "the float16 device). The tiny model peaks at the start of backward. The step part (peak "
    "minus the resident weights, adapters and moments) is off by the same 48 MiB, a larger "
    "share of it when activations are packed (0.75 with act_bits 8).",
    "",
    "Simulation speed is unchanged in kind: the timeline is one `numpy.add.at` and one "
    "cumulative sum over the tensor rows (a few thousand for a SmolLM2 step).",
]


def write_outputs(results: list[dict], out: Path, device: list[dict] | None = None) -> None:
    results = sorted(results, key=lambda r: (r["model"] != "tiny", r["model"],
                                             list(CASES).index(r["case"]), r["batch"]))
    payload = {"command": "python benchmarks/bench_sim_memory.py [--model smollm2-135m] [--device]",
               "units": {"bytes": "bytes", "ratio": "simulated / measured"},
               "target": f"simulated peak within {TARGET:.0%} of the measured peak",
               "results": results, "device": device or []}
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, out)
    page = out.parent / "sim.md"
    from benchmarks.bench_sim_peers import patch_section

    patch_section(page, markdown(results, device), BEGIN, END)
    peers = out.parent / "sim_peers.json"
    if peers.is_file():
        data = json.loads(peers.read_text())
        data["rows"] = [r for r in data["rows"] if r.get("metric") != "peak_memory"] + memory_rows(results)
        data.setdefault("units", {})["peak_memory"] = "bytes"
        peers.write_text(json.dumps(data, indent=2) + "\n")


def memory_rows(results: list[dict]) -> list[dict]:
    """``sim_peers.json`` rows (issue 19 part 6) of the peak-memory comparison."""
    return [{"peer": "torch CPU allocator", "accelerator": "host (float32)",
             "shape_or_step": f"{r['model']} {r['case']} {r['batch']}x{r['seq_len']}",
             "metric": "peak_memory", "ours": r["simulated"]["peak_bytes"],
             "peer_value": r["measured"]["peak_bytes"], "ratio": r["ratio"]} for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny",
                        help="tiny, smollm2-135m or a local Hugging Face folder (default: %(default)s)")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES),
                        help="which steps to run (default: all)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per step (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the token ids (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default: %(default)s)")
    parser.add_argument("--device", action="store_true",
                        help="instead of validating: the trace at device precision (a_bits 16) on "
                             "edge_llm, timeline peak against the old rule (no measurement)")
    parser.add_argument("--render-only", action="store_true",
                        help="write the page and the peers' rows from the results JSON, run nothing")
    args = parser.parse_args(argv)
    saved = json.loads(args.out.read_text()) if args.out.is_file() else {}
    old, device = saved.get("results", []), saved.get("device", [])
    if args.device and not args.render_only:
        from workloads.models import load_model

        loaded = load_model(args.model)
        for name in args.cases:
            d = device_case(loaded, name, seq_len=args.seq_len, batch=args.batch, seed=args.seed)
            print(f"{d['model']} {name} on the device: old rule {_mib(d['old_rule_bytes'])} MiB, "
                  f"timeline {_mib(d['peak_bytes'])} MiB", flush=True)
            key = (d["model"], d["case"], d["batch"], d["seq_len"])
            device = [o for o in device if (o["model"], o["case"], o["batch"], o["seq_len"]) != key] + [d]
            write_outputs(old, args.out, device)
    elif not args.render_only:
        import torch

        from workloads.models import load_model

        torch.manual_seed(args.seed)
        loaded = load_model(args.model)
        for name in args.cases:
            r = run_case(loaded, name, seq_len=args.seq_len, batch=args.batch, seed=args.seed)
            print(f"{r['model']} {name}: measured {_mib(r['measured']['peak_bytes'])} MiB, "
                  f"simulated {_mib(r['simulated']['peak_bytes'])} MiB ({r['ratio']:.3f}); "
                  f"{r['measure_s'] + r['record_s']:.0f} s", flush=True)
            key = (r["model"], r["case"], r["batch"], r["seq_len"])
            old = [o for o in old if (o["model"], o["case"], o["batch"], o["seq_len"]) != key] + [r]
            write_outputs(old, args.out, device)
    write_outputs(old, args.out, device)
    print(f"wrote {args.out}, the section of docs/results/sim.md and the peak_memory rows of "
          f"docs/results/sim_peers.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
