"""The three-model tour behind ``make demo`` (``videogen demo --model all``): brief runs of the LaMD, CMD and
LVDM CPU demos, one after the other, and one summary page of what each generated next to its numbers.

Each model's demo runs with its ``brief()`` configuration (fewer training steps than its full demo, so
the three fit in about 15 minutes on 2 cores) into ``OUT/<model>/``, with one progress bar per training
stage.  Then ``OUT/index.html`` shows, per model, its contact sheet, its generated videos and a table of
its metrics, and ``OUT/summary.json`` gathers the metrics.  ``videogen demo --model lamd|cmd|lvdm`` runs
one model's full demo instead.  Toy-setting numbers (synthetic moving shapes, a CPU), not paper numbers.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videogen.core.files import atomic_write_text

__all__ = ["HEADLINES", "demo_runners", "run_tour", "write_summary_page"]

#: Per model: what its demo shows, and the metrics the summary table lists (key in metrics.json, label).
HEADLINES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "lamd": ("LaMD: image-to-video. Each row: the given first frame, then the frames generated for a "
             "requested direction (the class label).",
             [("motion_accuracy", "motion accuracy (chance 0.25)"),
              ("recon_psnr", "MCD-VAE held-out PSNR, dB")]),
    "cmd": ("CMD: text-to-video from held-out captions (\"the red circle moves left\"). Each row: the "
            "generated content frame, then the frames.",
            [("motion_accuracy", "motion accuracy (chance 0.25)"),
             ("caption_accuracy", "caption accuracy, colour and shape (chance 0.067)"),
             ("recon_psnr", "autoencoder held-out PSNR, dB")]),
    "lvdm": ("LVDM: long videos of a bouncing shape. Rows: every 16th frame of hierarchical samples, then of "
             "autoregressive ones.",
             [("num_frames", "frames per video"),
              ("long_motion_accuracy.hierarchical", "long motion accuracy, hierarchical"),
              ("long_motion_accuracy.autoregressive", "long motion accuracy, autoregressive"),
              ("recon_psnr", "3D autoencoder held-out PSNR, dB")]),
}
_VIDEOS = {"lamd": ["samples.gif"], "cmd": ["samples.gif"],
           "lvdm": ["hierarchical.mp4", "autoregressive.mp4"]}


def _lookup(metrics: dict[str, Any], dotted: str) -> Any:
    value: Any = metrics
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def demo_runners() -> dict[str, tuple[Callable[..., dict[str, Any]], type]]:
    """Each model's demo: ``name -> (run(out_dir, seed=, config=) -> metrics, its config class)``."""
    from videogen.toy import cmd, lamd, lvdm

    return {"lamd": (lamd.run_demo, lamd.LaMDDemoConfig), "cmd": (cmd.run_demo, cmd.CMDDemoConfig),
            "lvdm": (lvdm.run_demo, lvdm.LVDMDemoConfig)}


def run_tour(out_dir: str | Path = "outputs/demo", seed: int = 0, fast: bool = False) -> dict[str, Any]:
    """Run the three demos briefly (``fast``: their seconds-long smoke versions) and write the summary
    page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results: dict[str, Any] = {}
    for name, (run, config) in demo_runners().items():
        print(f"[demo] ==== {name.upper()} ({'smoke' if fast else 'brief'} run) ====", flush=True)
        results[name] = run(out / name, seed=seed, config=config.fast() if fast else config.brief())
    summary = {"models": results, "wall_seconds": round(time.perf_counter() - start, 1), "seed": seed,
               "mode": "smoke" if fast else "brief",
               "setting": "toy: synthetic moving shapes, CPU; not paper numbers"}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    write_summary_page(out, results, summary["wall_seconds"])
    print(f"[demo] three models in {summary['wall_seconds']} s -> {out / 'index.html'}")
    return summary


def write_summary_page(out: Path, results: dict[str, dict[str, Any]], wall_seconds: float) -> Path:
    """``out/index.html``: per model its contact sheet, videos and headline metrics (files relative to
    ``out``)."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>videogen demo</title>",
             "<style>body{font-family:sans-serif;max-width:70em;margin:2em "
             "auto}img,video{image-rendering:pixelated;max-width:100%}"
             "table{border-collapse:collapse}td{border:1px solid #ccc;padding:.2em .6em}</style>",
             "</head><body><h1>videogen: three models on synthetic moving shapes</h1>",
             f"<p>Trained and sampled on this machine's CPU in {wall_seconds:.0f} s. Toy setting: small "
             "models, minutes of training; the numbers show that each pipeline learns, not the papers' "
             "quality.</p>"]
    for name, metrics in results.items():
        what, keys = HEADLINES[name]
        rows = "".join(f"<tr><td>{html.escape(label)}</td>"
                       f"<td>{html.escape(str(_lookup(metrics, key)))}</td></tr>"
                       for key, label in keys)
        rows += f"<tr><td>wall time, s</td><td>{metrics.get('wall_seconds')}</td></tr>"
        media = "".join(f"<p><img src='{name}/{f}' alt='{f}'></p>" if f.endswith(".gif") else
                        f"<p>{f}<br><video src='{name}/{f}' controls loop muted autoplay></video></p>"
                        for f in _VIDEOS[name] if (out / name / f).is_file())
        parts += [f"<h2>{name.upper()}</h2><p>{html.escape(what)}</p><table>{rows}</table>",
                  f"<p><img src='{name}/contact_sheet.png' alt='contact sheet'></p>{media}",
                  f"<p>Files: <code>{name}/</code> (the trained pipeline is in <code>{name}/{name}/</code>: "
                  f"<code>videogen sample --model {name}/{name}</code>).</p>"]
    parts.append("</body></html>")
    page = out / "index.html"
    page.write_text("\n".join(parts))
    return page
