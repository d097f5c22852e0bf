"""The report's "Network" section and ``soxai spectral``: the spectral stage's files read for a person.

Layer spectra (a plot and a table), the frequency content of each concept against its class (a plot), and
the surrogate formulas: the baseline's (from ``spectral/surrogate.json``) and, where the run has retrained
it, the pruned model's over the same concept shares (:func:`soxai.spectral.runner.variant_surrogate`), with
the flagged concepts' weights side by side. A surrogate whose agreement with its model is below
:data:`soxai.spectral.surrogate.TRUSTWORTHY` is shown, marked as not trustworthy.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soxai.config import Config
from soxai.data.class_names import class_text, read_class_names
from soxai.run_dir import RunDir, read_json, read_parquet

log = logging.getLogger("soxai")

CORRECTED = "pruned"  # the retrained variant whose surrogate is set beside the baseline's


@dataclass
class NetworkView:
    """What the spectral stage wrote, with the flags of the bias stage and the retrained model's surrogates."""

    layers: pd.DataFrame
    network: dict[str, Any]
    frequency: pd.DataFrame
    surrogate: dict[str, Any]
    flagged: dict[int, str]
    corrected: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> surrogate entry
    class_names: tuple[str, ...] = ()  # the data's, for the text ("class round")

    @property
    def baseline(self) -> dict[str, Any]:
        return self.surrogate["models"]["baseline"]

    def concept_weight(self, entry: dict[str, Any], concept_id: int, label: int) -> float:
        """The weight of ``concept_id`` in the formula of class ``label`` (0 where the lasso left it out)."""
        return float(entry["weights"][label].get(str(concept_id), 0.0))


def read_network(cfg: Config, run: RunDir, with_corrected: bool = True) -> NetworkView | None:
    """The run's spectral view, or None when its spectral stage has not run (a run made before it existed)."""
    from soxai.bias.decide import flagged_concepts

    if not run.spectral_surrogate.is_file():
        return None
    scores = read_parquet(run.bias_scores) if run.bias_scores.is_file() else pd.DataFrame()
    view = NetworkView(
        layers=read_parquet(run.spectral_layers), network=read_json(run.spectral_network),
        frequency=read_parquet(run.spectral_frequency), surrogate=read_json(run.spectral_surrogate),
        flagged=flagged_concepts(scores, cfg.bias.min_flags) if len(scores) else {},
        class_names=read_class_names(run),
    )
    if with_corrected:
        view.corrected = corrected_surrogates(cfg, run)
    return view


def corrected_surrogates(cfg: Config, run: RunDir) -> dict[int, dict[str, Any]]:
    """The surrogate of every retrained :data:`CORRECTED` model of the run, by seed (none before retraining)."""
    from soxai.spectral.runner import variant_surrogate

    out = {}
    for seed in cfg.retrain.seeds:
        if run.variant_model(CORRECTED, seed).is_file():
            out[seed] = variant_surrogate(cfg, run, CORRECTED, seed)
    return out


def flagged_weights(view: NetworkView) -> list[dict[str, Any]]:
    """Per flagged concept: its class, its weight in the baseline's formula of that class and the mean over the
    corrected models' (NaN where none was retrained), and their ratio."""
    labels = dict(zip(view.frequency["concept_id"], view.frequency["label"], strict=True))
    rows = []
    for cid in sorted(view.flagged):
        if cid not in labels:
            continue
        label = int(labels[cid])
        base = view.concept_weight(view.baseline, cid, label)
        after = [view.concept_weight(e, cid, label) for e in view.corrected.values()]
        mean_after = float(np.mean(after)) if after else float("nan")
        rows.append({"concept_id": cid, "label": label, "baseline": base, CORRECTED: mean_after,
                     "per_seed": after, "ratio": mean_after / base if after and base else float("nan")})
    return rows


def annotated_formulas(view: NetworkView, entry: dict[str, Any]) -> list[str]:
    """The formulas of one surrogate with each flagged concept marked ``[concept 3 · flagged]``."""
    lines = []
    for line in entry["formula"]:
        for cid in view.flagged:
            line = line.replace(f"[concept {cid}]", f"[concept {cid} · flagged]")
        lines.append(line)
    return lines


def fidelity_text(entry: dict[str, Any], trust_split: str | None) -> str:
    """'agreement 0.995, R² 0.82 on test (600); test_attacked 1.000, ...' and the trust verdict."""
    parts = []
    for split, f in entry["fidelity"].items():
        if split == "train":
            continue
        parts.append(f"{split}: agreement {f['agreement']:.3f}, R² {f['r2']:.2f} (n={f['n']})")
    others = "; the other splits are shown, not judged" if len(parts) > 1 else ""
    verdict = f"trustworthy (agreement on {trust_split} at least {_threshold():.1f}{others})" \
        if entry.get("trustworthy") else f"NOT trustworthy (agreement on {trust_split} below " \
        f"{_threshold():.1f}): read the formula as a rough sketch only"
    return "; ".join(parts) + f" — {verdict}"


def _threshold() -> float:
    from soxai.spectral.surrogate import TRUSTWORTHY

    return TRUSTWORTHY


# ---------------------------------------------------------------- figures


def layer_spectra_figure(layers: pd.DataFrame):
    """Each layer's singular values (normalised to its largest) against their rank (normalised to 1)."""
    from soxai.report.plots import _figure

    fig = _figure((6.0, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    for row in layers.itertuples():
        s = np.asarray(row.singular_values, dtype=float)
        if len(s) == 0 or s[0] <= 0:
            continue
        ax.plot(np.linspace(0, 1, len(s)), s / s[0], marker="." if len(s) < 40 else None,
                label=f"{row.name} ({row.kind}, eff. rank {row.effective_rank:.1f}/{len(s)})")
    ax.set_xlabel("rank / number of singular values")
    ax.set_ylabel("σ / σ_max")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("layer spectra (kernel reshaped to out × rest)", fontsize=9)
    return fig


def frequency_figure(frequency: pd.DataFrame, flagged: dict[int, str]):
    """Left: each concept's radial power spectrum (flagged ones red); right: its high-frequency share against
    the mean share of its class's other concepts."""
    from soxai.report.plots import FLAG_COLOR, _figure

    fig = _figure((8.0, 3.2))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for row in frequency.itertuples():
        power = np.asarray(row.power, dtype=float)
        total = power.sum()
        if total <= 0:
            continue
        red = row.concept_id in flagged
        seen = power > 0  # the lowest bin holds only the removed mean on small maps: nothing to draw on a log axis
        left.plot(np.asarray(row.frequency)[seen], power[seen] / total, color=FLAG_COLOR if red else "#7f7f7f",
                  alpha=1.0 if red else 0.4,
                  lw=2 if red else 1, label=f"concept {row.concept_id} (flagged)" if red else None)
        right.scatter(row.class_hf_share, row.hf_share, color=FLAG_COLOR if red else "#1f77b4", s=30 if red else 15)
        right.annotate(str(row.concept_id), (row.class_hf_share, row.hf_share), fontsize=7)
    left.set_yscale("log")
    left.set_xlabel("spatial frequency (cycles / pixel)")
    left.set_ylabel("share of power")
    if left.get_legend_handles_labels()[0]:  # a flagged concept was drawn
        left.legend(fontsize=7)
    finite = frequency[["hf_share", "class_hf_share"]].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite):
        hi = float(finite.max()) * 1.1
        right.plot([0, hi], [0, hi], color="#c8c8c8", lw=1)
    fig.subplots_adjust(wspace=0.35)
    right.set_xlabel("class's other concepts: high-frequency share")
    right.set_ylabel("concept: high-frequency share")
    return fig


# ---------------------------------------------------------------- the HTML section and the terminal


_SECTION = """
<h2 id="network">Network</h2>
<p class="muted">The network as a whole (spectral stage, docs/SPECTRAL.md): {{ n_layers }} conv/linear/norm layers;
product of their operator norms (a Lipschitz upper bound of the logits for a plain chain of layers):
<b>{{ lipschitz }}</b>.{% if skipped %} Skipped (no spectral rule): {{ skipped }}.{% endif %}</p>
<img alt="layer spectra" src="data:image/png;base64,{{ spectra_png }}">
<table><thead><tr><th>layer</th><th>type</th><th>weight</th><th>input</th><th>kernel σ_max</th><th>operator norm</th>
<th>effective rank</th></tr></thead><tbody>
{% for r in layers %}<tr><td>{{ r.name }}</td><td>{{ r.type }}</td><td>{{ r.weight }}</td><td>{{ r.input }}</td>
<td class="num">{{ r.kernel }}</td><td class="num">{{ r.operator }}</td><td class="num">{{ r.rank }}</td></tr>
{% endfor %}</tbody></table>
<h3 id="network-frequency">Frequency content of the concepts</h3>
<p class="muted">Radially averaged Fourier power of each concept's mean saliency map (mean removed); the
high-frequency share is the power at or above {{ cutoff }} cycles/pixel. A thin mark or a texture sits high, a
shape low. Points above the diagonal are sharper than their class's other concepts (flagged concepts red).</p>
<img alt="concept frequency content" src="data:image/png;base64,{{ frequency_png }}">
<h3 id="network-surrogate">Linear surrogate over concepts</h3>
<p class="muted">Each class's logit (minus the mean over classes) as a sparse weighted sum of the sample's concept
shares (the share of each concept among the {{ k }} reference samples nearest its explanation); at most {{ max_terms }}
terms per class, fitted on the training samples by the lasso.</p>
{% for block in models %}<div class="card"><b>{{ block.title }}</b>{% if not block.trusted %}
<span class="badge flag">not trustworthy</span>{% endif %}<pre>{{ block.formulas }}</pre>
<p class="muted">{{ block.fidelity }}</p></div>{% endfor %}
{% if weights %}<table><thead><tr><th>flagged concept</th><th>class</th><th>weight, baseline</th>
<th>weight, {{ corrected }} (mean over seeds)</th><th>ratio</th></tr></thead><tbody>
{% for w in weights %}<tr><td>{{ w.concept_id }}</td><td>{{ w.label }}</td><td class="num">{{ w.baseline }}</td>
<td class="num">{{ w.after }}</td><td class="num">{{ w.ratio }}</td></tr>{% endfor %}</tbody></table>{% endif %}
"""


def network_section(cfg: Config, run: RunDir) -> str:
    """The report's Network section as HTML ('' for a run without a spectral stage)."""
    import jinja2

    from soxai.report.plots import _b64, figure_png
    from soxai.spectral.frequency import HIGH_FREQUENCY
    from soxai.spectral.surrogate import MAX_TERMS, N_NEIGHBORS

    view = read_network(cfg, run)
    if view is None:
        return ""
    weights = [{"concept_id": w["concept_id"], "label": w["label"], "baseline": f"{w['baseline']:+.2f}",
                "after": _num(w[CORRECTED], "+.2f"), "ratio": _num(w["ratio"], ".2f")} for w in flagged_weights(view)]
    layers = [{"name": r.name, "type": r.type, "weight": "×".join(map(str, r.weight_shape)),
               "input": "×".join(map(str, r.input_size)), "kernel": f"{r.kernel_norm:.3g}",
               "operator": f"{r.operator_norm:.3g}" + ("" if r.operator_norm_exact else " (bound)"),
               "rank": f"{r.effective_rank:.1f} / {len(r.singular_values)}"} for r in view.layers.itertuples()]
    return jinja2.Environment(autoescape=True).from_string(_SECTION).render(
        n_layers=len(view.layers), lipschitz=f"{view.network['lipschitz_bound']:.4g}",
        skipped=", ".join(f"{s['name']} ({s['type']})" for s in view.network["skipped_layers"]),
        spectra_png=_b64(figure_png(layer_spectra_figure(view.layers))),
        frequency_png=_b64(figure_png(frequency_figure(view.frequency, view.flagged))),
        layers=layers, cutoff=HIGH_FREQUENCY, k=N_NEIGHBORS, max_terms=MAX_TERMS, models=_model_blocks(view),
        weights=weights, corrected=CORRECTED,
    )


def _model_blocks(view: NetworkView) -> list[dict[str, Any]]:
    trust = view.surrogate.get("trust_split")
    blocks = [{"title": "baseline", "trusted": view.baseline.get("trustworthy", False),
               "formulas": "\n".join(annotated_formulas(view, view.baseline)),
               "fidelity": fidelity_text(view.baseline, trust)}]
    for seed, entry in view.corrected.items():
        blocks.append({"title": f"{CORRECTED}, seed {seed} (same concept shares, the retrained model's logits)",
                       "trusted": entry.get("trustworthy", False),
                       "formulas": "\n".join(annotated_formulas(view, entry)),
                       "fidelity": fidelity_text(entry, trust)})
    return blocks


def network_lines(cfg: Config, run: RunDir) -> list[str]:
    """``soxai spectral RUN_DIR``: the section as text."""
    from soxai.errors import StageError

    view = read_network(cfg, run)
    if view is None:
        raise StageError(f"{run.spectral_surrogate} is missing: the spectral stage has not run on {run.root}; "
                         "run `soxai run` (or `soxai explain`) on it, which runs the spectral stage after concepts")
    lines = [f"Lipschitz upper bound (product of {len(view.layers)} operator norms): "
             f"{view.network['lipschitz_bound']:.4g}"]
    lines += [f"  skipped: {s['name']} ({s['type']}): {s['why']}" for s in view.network["skipped_layers"]]
    lines.append(f"  {'layer':<24}{'type':<12}{'kernel σ_max':>14}{'operator norm':>16}{'eff. rank':>14}")
    for r in view.layers.itertuples():
        op = f"{r.operator_norm:.3g}" + ("" if r.operator_norm_exact else "*")
        lines.append(f"  {r.name:<24}{r.type:<12}{r.kernel_norm:>14.3g}{op:>16}"
                     f"{f'{r.effective_rank:.1f}/{len(r.singular_values)}':>14}")
    if not view.layers["operator_norm_exact"].all():
        lines.append("  * an upper bound (zero padding or stride: docs/SPECTRAL.md)")
    lines.append("Concepts by high-frequency share, against their class's other concepts:")
    for r in view.frequency.sort_values("hf_excess", ascending=False).itertuples():
        mark = "  flagged" if r.concept_id in view.flagged else ""
        lines.append(f"  concept {r.concept_id:>3} ({class_text(r.label, view.class_names)}): {r.hf_share:.3f} vs "
                     f"{r.class_hf_share:.3f} ({r.hf_excess:+.3f}){mark}")
    trust = view.surrogate.get("trust_split")
    models = [("baseline", view.baseline)] + [(f"{CORRECTED} seed {s}", e) for s, e in view.corrected.items()]
    for title, entry in models:
        lines.append(f"Surrogate of the {title}:")
        lines += [f"  {line}" for line in annotated_formulas(view, entry)]
        lines.append(f"  {fidelity_text(entry, trust)}")
    for w in flagged_weights(view):
        where = f"Flagged concept {w['concept_id']} in the formula of {class_text(w['label'], view.class_names)}"
        if not view.corrected:
            lines.append(f"{where}: baseline {w['baseline']:+.2f}; no {CORRECTED} model retrained yet")
            continue
        lines.append(f"{where}: baseline {w['baseline']:+.2f}, {CORRECTED} {_num(w[CORRECTED], '+.2f')} "
                     f"(ratio {_num(w['ratio'], '.2f')})")
    return lines


def _num(value: float, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)
