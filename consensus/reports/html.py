"""A self-contained HTML report of a run (no script, no external asset): open it in a browser.

Headline figures, the actions taken, each judge's accuracy and agreement as bars, the pairwise
Cohen's kappa matrix as a heat map, the per-category breakdown and the decisions that were not
accepted, with their reasons and votes. Rendered with jinja2 (autoescaped: candidate texts are
data, never markup).

Example:
    >>> from consensus.redact import redact
from consensus.types import RunSummary
    >>> html = render_report(RunSummary(scenario="s", strategy="majority", n_requests=0), [], {})
    >>> "<svg" in html and "majority" in html
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from jinja2 import Environment, select_autoescape

from consensus.redact import redact
from consensus.types import Outcome, Request, RunSummary

MAX_ROWS = 200

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>consensus · {{ s.scenario }} · {{ s.strategy }}</title>
<style>
 :root { --ok:#2e7d32; --bad:#c62828; --mid:#f9a825; --ink:#1d2330; --mute:#6b7280; --line:#e5e7eb; }
 body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; color: var(--ink);
        margin: 0 auto; max-width: 1100px; padding: 24px; }
 h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
 .sub { color: var(--mute); margin-bottom: 16px; }
 .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
 .card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
 .card .v { font-size: 22px; font-weight: 600; } .card .k { color: var(--mute); font-size: 12px; }
 table { border-collapse: collapse; width: 100%; } td, th { padding: 4px 8px;
   border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
 th { font-weight: 600; font-size: 12px; color: var(--mute); }
 .num { text-align: right; font-variant-numeric: tabular-nums; }
 .bar { height: 10px; background: #dbeafe; border-radius: 3px; position: relative; min-width: 120px; }
 .bar > span { position: absolute; left: 0; top: 0; bottom: 0; background: #3b82f6; border-radius: 3px; }
 .action { display: inline-block; padding: 1px 6px; border-radius: 4px; font-size: 12px; color: white; }
 .a-accept { background: var(--ok); } .a-block { background: var(--bad); }
 .a-flag, .a-revise, .a-regenerate { background: var(--mid); color: var(--ink); }
 .a-escalate { background: #6d28d9; }
 table.heat { width: auto; }
 .heat td { width: 26px; height: 22px; padding: 0; text-align: center; font-size: 10px; border: 1px solid white; }
 details { margin: 2px 0; } pre { white-space: pre-wrap; margin: 4px 0; font-size: 12px; }
 .mute { color: var(--mute); }
</style></head><body>
<h1>{{ s.scenario }} <span class="mute">· {{ s.strategy }}</span></h1>
<div class="sub">run {{ s.run_id }} · {{ s.n_requests }} requests · {{ s.per_judge|length }} judges
 · {{ "%.1f"|format(s.wall_time_s) }} s{% if s.disabled_judges %} · not run:
 {% for n, why in s.disabled_judges.items() %}{{ n }} ({{ why }}){% if not loop.last %}, {% endif %}{% endfor %}{% endif %}
 {% if s.fitted_on %} · strategy fitted on {{ s.fitted_on }}{% endif %}</div>

<div class="cards">
{% for k, v in cards %}<div class="card"><div class="v">{{ v }}</div><div class="k">{{ k }}</div></div>
{% endfor %}</div>

<h2>Actions</h2>
<svg width="100%" height="{{ 26 * actions|length + 4 }}" role="img" aria-label="actions taken">
{% for a, n, w in actions %}
 <text x="0" y="{{ 26 * loop.index0 + 17 }}" font-size="13">{{ a }}</text>
 <rect x="90" y="{{ 26 * loop.index0 + 4 }}" width="{{ w }}%" height="18" rx="3" class="a-{{ a }}"
  fill="{{ colours.get(a, '#64748b') }}"></rect>
 <text x="{{ 92 }}" y="{{ 26 * loop.index0 + 17 }}" font-size="12" fill="white">{{ n }}</text>
{% endfor %}
</svg>

{% set mix = s.interventions %}{% if mix and mix.by_principle %}<h2>Intervention mix</h2>
<table><tr><th>principle</th>{% for a in mix_actions %}<th class="num">{{ a }}</th>{% endfor %}</tr>
{% for pid, row in mix.by_principle.items() %}<tr><td>{{ pid }}</td>{% for a in mix_actions %}<td class="num">{{ row.get(a, "") }}</td>{% endfor %}</tr>{% endfor %}
{% for sev, row in mix.by_severity.items() %}<tr class="mute"><td>severity {{ sev }}</td>{% for a in mix_actions %}<td class="num">{{ row.get(a, "") }}</td>{% endfor %}</tr>{% endfor %}
</table>
<div class="mute">{% for a in ("revise", "regenerate") %}{% set x = mix.get(a) %}{% if x and x.chosen %}{{ a }}: chosen {{ x.chosen }}, delivered {{ x.delivered }} (success {{ fmt(x.success_rate) }}), {{ x.drafts }} draft(s), rounds {{ x.rounds }}. {% endif %}{% endfor %}
{% if mix.escalations %}Escalated to review: {{ mix.escalations }}. {% endif %}{% if mix.screened %}Prompts stopped by input screening: {{ mix.screened }}.{% endif %}</div>
{% endif %}

<h2>Judges</h2>
<table><tr><th>judge</th><th>accuracy vs gold</th><th class="num"></th>
<th>agreement with consensus</th><th class="num"></th><th class="num">abstention</th>
<th class="num">mean latency</th><th class="num">cost</th></tr>
{% for name, j in judges %}<tr><td>{{ name }}</td>
<td><div class="bar"><span style="width:{{ (100 * (j.accuracy or 0))|round(1) }}%"></span></div></td>
<td class="num">{{ fmt(j.accuracy) }}</td>
<td><div class="bar"><span style="width:{{ (100 * (j.agreement_with_consensus or 0))|round(1) }}%"></span></div></td>
<td class="num">{{ fmt(j.agreement_with_consensus) }}</td><td class="num">{{ fmt(j.abstention_rate) }}</td>
<td class="num">{{ "%.3f"|format(j.mean_latency_s) }} s</td><td class="num">${{ "%.4f"|format(j.cost_usd) }}</td></tr>
{% endfor %}</table>

{% if kappa_judges %}<h2>Pairwise Cohen's kappa</h2>
<table class="heat"><tr><td></td>{% for j in kappa_judges %}<td title="{{ j }}">{{ loop.index }}</td>{% endfor %}</tr>
{% for a in kappa_judges %}<tr><td title="{{ a }}" style="width:auto;text-align:right;padding-right:6px">{{ loop.index }} {{ a[:28] }}</td>
{% for b in kappa_judges %}{% set k = s.cohen_kappa.get(a, {}).get(b) %}
<td style="background:{{ heat(k) }}" title="{{ a }} / {{ b }}: {{ fmt(k) }}">{{ "" if k is none else (k * 100)|round|int }}</td>{% endfor %}</tr>
{% endfor %}</table><div class="mute">κ × 100; blue = agreement beyond chance, red = below chance, grey = undefined.</div>{% endif %}

{% set deb = s.debate %}{% if deb and deb.rounds %}<h2>Debate convergence</h2>
<table><tr><th>round</th><th class="num">accuracy</th><th class="num">α</th><th class="num">effective judges</th><th class="num">unanimous</th><th class="num">changed</th><th class="num">wrong→right</th><th class="num">right→wrong</th><th class="num">calls</th><th class="num">cost $</th></tr>
{% for r in deb.rounds %}<tr><td>{{ r.round }}</td><td class="num">{{ fmt(r.accuracy) }}</td><td class="num">{{ fmt(r.krippendorff_alpha) }}</td><td class="num">{{ fmt(r.effective_judges) }}</td><td class="num">{{ fmt(r.unanimous) }}</td><td class="num">{{ r.changed }}</td><td class="num">{{ r.wrong_to_right }}</td><td class="num">{{ r.right_to_wrong }}</td><td class="num">{{ r.calls }}</td><td class="num">{{ "%.4f"|format(r.cost_usd) }}</td></tr>{% endfor %}</table>
<div class="mute">Round 1 is the independent poll. Decisions that differ from round 1: {{ deb.flipped_from_round1.n }} ({{ deb.flipped_from_round1.fixed }} fixed, {{ deb.flipped_from_round1.broken }} broken). Lone right answers against a wrong round-1 decision: {{ deb.lone_right.kept }} kept, {{ deb.lone_right.lost }} lost. Stops: {% for k, n in deb.stop_reasons.items() %}{{ k }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}. Calls: {{ deb.calls.total }} ({{ deb.calls.extra_calls }} beyond round 1).</div>{% endif %}
{% if s.recused %}<div class="mute">Recused (own model family or model): {% for j, n in s.recused.items() %}{{ j }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}.</div>{% endif %}
{% if s.by_category %}<h2>By category</h2>
<table><tr><th>category</th><th class="num">requests</th><th class="num">accuracy</th><th class="num">intervention rate</th></tr>
{% for c, f in s.by_category.items() %}<tr><td>{{ c }}</td><td class="num">{{ f.n }}</td>
<td class="num">{{ fmt(f.accuracy) }}</td><td class="num">{{ fmt(f.intervention_rate) }}</td></tr>{% endfor %}
</table>{% endif %}

<h2>Interventions{% if shown < total %} <span class="mute">(first {{ shown }} of {{ total }})</span>{% endif %}</h2>
<table><tr><th>request</th><th>action</th><th>why</th></tr>
{% for o, r in rows %}<tr><td>{{ o.request_id }}{% if r and r.category %}<br><span class="mute">{{ r.category }}</span>{% endif %}</td>
<td><span class="action a-{{ o.action }}">{{ o.action }}</span>{% if o.chosen_action %}<br><span class="mute">chosen: {{ o.chosen_action }}</span>{% endif %}</td>
<td>{{ o.reason }}
<details><summary>prompt, candidates and votes</summary>
{% if r %}<pre><b>prompt</b> {{ r.prompt[:1500] | redact }}</pre>
{% for c in r.candidates %}<pre><b>{{ c.id }}</b>{% if r.gold and c.id in r.gold %} (gold {{ r.gold[c.id] }}){% endif %} {{ c.text[:1500] | redact }}</pre>{% endfor %}{% endif %}
<table>{% for v in o.votes %}<tr><td>{{ v.judge }}</td><td>{{ v.candidate_id }}</td>
<td>{{ v.label or ("abstain: " ~ v.abstain_kind) }}</td><td class="mute">{{ (v.critique or v.abstain_reason or "")[:300] }}
{% for x in v.violations %}<br>⚑ {{ x.principle }}: {{ x.detail }}{% endfor %}</td></tr>{% endfor %}</table>
{% for d in o.drafts %}<pre><b>{{ d.id }}</b> ({{ d.kind }} {{ d.round }}, {{ d.source }}, {{ "accepted" if d.accepted else "rejected" }}){% if d.error %} {{ d.error }}{% endif %} {{ d.text[:1500] | redact }}</pre>{% endfor %}
</details></td></tr>
{% endfor %}</table>
</body></html>
"""

COLOURS = {"accept": "#2e7d32", "block": "#c62828", "flag": "#f9a825", "revise": "#f9a825",
           "regenerate": "#f9a825", "escalate": "#6d28d9"}


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _heat(k: float | None) -> str:
    if k is None:
        return "#e5e7eb"
    k = max(-1.0, min(1.0, k))
    if k >= 0:
        return f"rgba(59,130,246,{0.12 + 0.88 * k:.2f})"
    return f"rgba(220,38,38,{0.12 + 0.88 * -k:.2f})"


def render_report(
    summary: RunSummary, outcomes: Sequence[Outcome], requests: Mapping[str, Request]
) -> str:
    """The report as an HTML string."""
    s = summary
    pct = (lambda x: "—" if x is None else f"{100 * x:.1f}%")
    cards = [("accuracy", pct(s.accuracy)), ("intervention rate", pct(s.intervention_rate)),
             ("over-refusal rate", pct(s.over_refusal_rate)),
             ("false-block rate", pct(s.false_block_rate)), ("safety score", pct(s.safety_score)),
             ("no consensus", pct(s.no_consensus_rate)), ("Fleiss' κ", _fmt(s.fleiss_kappa)),
             ("Krippendorff's α", _fmt(s.krippendorff_alpha)),
             ("effective judges", _fmt(s.effective_judges)),
             ("latency p50", "—" if s.latency_p50_s is None else f"{1000 * s.latency_p50_s:.0f} ms"),
             ("cost", f"${s.cost_usd:.4f}")]
    most = max(s.actions.values(), default=1)
    actions = [(a, n, max(2.0, 85.0 * n / most)) for a, n in sorted(s.actions.items())]
    judges = sorted(s.per_judge.items(), key=lambda kv: -(kv[1].accuracy or 0))
    kappa_judges = [j for j, _ in judges][:40]
    flagged = [o for o in outcomes if o.action != "accept"]
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["redact"] = redact  # a report is for people: keys in prompts and candidates too
    return env.from_string(_TEMPLATE).render(
        s=s, cards=cards, actions=actions, judges=judges, kappa_judges=kappa_judges,
        rows=[(o, requests.get(o.request_id)) for o in flagged[:MAX_ROWS]],
        shown=min(MAX_ROWS, len(flagged)), total=len(flagged), fmt=_fmt, heat=_heat,
        colours=COLOURS, mix_actions=sorted({a for row in s.interventions.get(
            "by_principle", {}).values() for a in row}),
    )


def write_report(
    path: Path, summary: RunSummary, outcomes: Sequence[Outcome], requests: Sequence[Request]
) -> None:
    """Write ``report.html``."""
    path.write_text(render_report(summary, outcomes, {r.id: r for r in requests}),
                    encoding="utf-8")
