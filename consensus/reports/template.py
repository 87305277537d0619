"""The jinja2 template of the HTML report (:mod:`consensus.reports.html` fills it).

Self-contained by construction: the Content-Security-Policy allows inline styles and the inline
script only (``default-src 'none'``), so nothing can be fetched when the page is viewed; the
script only switches the heat map's measure and sorts tables.
"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>consensus · {{ s.scenario }} · {{ s.strategy }}</title>
<style>
 :root { --ok:#2e7d32; --bad:#c62828; --mid:#f9a825; --ink:#1d2330; --mute:#6b7280; --line:#e5e7eb; }
 body { font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; color: var(--ink);
        margin: 0 auto; max-width: 1100px; padding: 24px; }
 h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 30px 0 8px; border-top: 1px solid var(--line); padding-top: 14px; }
 .sub { color: var(--mute); margin-bottom: 16px; }
 .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
 .card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
 .card .v { font-size: 22px; font-weight: 600; } .card .k { color: var(--mute); font-size: 12px; }
 .warn { background: #fef3c7; border: 1px solid #f59e0b; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
 table { border-collapse: collapse; width: 100%; } td, th { padding: 4px 8px;
   border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
 th { font-weight: 600; font-size: 12px; color: var(--mute); }
 table.sortable th { cursor: pointer; } table.sortable th:hover { color: var(--ink); }
 .num { text-align: right; font-variant-numeric: tabular-nums; }
 .action { display: inline-block; padding: 1px 6px; border-radius: 4px; font-size: 12px; color: white; }
 .a-accept { background: var(--ok); } .a-block { background: var(--bad); }
 .a-flag, .a-revise, .a-regenerate { background: var(--mid); color: var(--ink); }
 .a-escalate { background: #6d28d9; }
 .row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
 .row > div { flex: 0 1 auto; } .chart { max-width: 100%; height: auto; }
 .toggle button { border: 1px solid var(--line); background: white; border-radius: 4px; padding: 2px 10px; cursor: pointer; }
 .toggle button.on { background: var(--ink); color: white; }
 details { margin: 2px 0; } pre { white-space: pre-wrap; margin: 4px 0; font-size: 12px; }
 .mute { color: var(--mute); } .empty { color: var(--mute); font-style: italic; }
</style></head><body>
<h1>{{ s.scenario }} <span class="mute">· {{ s.strategy }}</span></h1>
<div class="sub">run {{ s.run_id }} · {{ s.status }} · {{ s.n_requests }} requests · {{ s.per_judge|length }} judges
 · {{ "%.1f"|format(s.wall_time_s) }} s{% if s.disabled_judges %} · not run:
 {% for n, why in s.disabled_judges.items() %}{{ n }} ({{ why }}){% if not loop.last %}, {% endif %}{% endfor %}{% endif %}
 {% if s.fitted_on %} · strategy fitted on {{ s.fitted_on }}{% endif %}
 <br>report made {{ generated }}{% if origin %} from {{ origin }}{% endif %}</div>
{% for w in s.warnings %}<div class="warn">{{ w }}</div>{% endfor %}

<section id="summary"><h2>Summary</h2>
<div class="cards">
{% for k, v in cards %}<div class="card"><div class="v">{{ v }}</div><div class="k">{{ k }}</div></div>
{% endfor %}</div>

<h3>Actions</h3>
<svg width="100%" height="{{ 26 * actions|length + 4 }}" role="img" aria-label="actions taken">
{% for a, n, w in actions %}
 <text x="0" y="{{ 26 * loop.index0 + 17 }}" font-size="13">{{ a }}</text>
 <rect x="90" y="{{ 26 * loop.index0 + 4 }}" width="{{ w }}%" height="18" rx="3" fill="{{ colours.get(a, '#64748b') }}"></rect>
 <text x="92" y="{{ 26 * loop.index0 + 17 }}" font-size="12" fill="white">{{ n }}</text>
{% endfor %}
</svg></section>

<section id="judges"><h2>Judges: accuracy and abstention</h2>
{% if judges %}<div class="row"><div><div class="mute">accuracy against gold</div>{{ accuracy_bars }}</div>
<div><div class="mute">abstention</div>{{ abstain_bars }}</div></div>
<table class="sortable"><thead><tr><th>judge</th><th class="num">accuracy</th><th class="num">agreement with consensus</th>
<th class="num">abstention</th><th class="num">votes</th><th>abstentions by kind</th><th class="num">mean latency s</th><th class="num">cost $</th></tr></thead><tbody>
{% for name, j in judges %}<tr><td>{{ name }}</td><td class="num">{{ fmt(j.accuracy) }}</td>
<td class="num">{{ fmt(j.agreement_with_consensus) }}</td><td class="num">{{ fmt(j.abstention_rate) }}</td>
<td class="num">{{ j.n_votes }}</td><td class="mute">{% for k, n in j.abstentions.items() %}{{ k }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}</td>
<td class="num">{{ "%.3f"|format(j.mean_latency_s) }}</td><td class="num">{{ "%.4f"|format(j.cost_usd) }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p class="empty">no judge voted</p>{% endif %}
{% if s.recused %}<div class="mute">Recused (own model family or model): {% for j, n in s.recused.items() %}{{ j }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}.</div>{% endif %}
</section>

<section id="agreement"><h2>Judge × judge agreement</h2>
{% if agreement %}<div class="toggle" role="group" aria-label="measure">
<button type="button" class="on" data-group="agree" data-show="agree-kappa">Cohen's κ</button>
<button type="button" data-group="agree" data-show="agree-raw">raw agreement</button></div>
<div data-pane="agree" id="agree-kappa">{{ agreement.kappa }}<div class="mute">Cohen's κ: blue = agreement beyond chance, red = below chance, grey = undefined (too few shared ballots, or no variation).</div></div>
<div data-pane="agree" id="agree-raw" hidden>{{ agreement.raw }}<div class="mute">Share of the ballots both judges voted on where they gave the same label.</div></div>
{% else %}<p class="empty">no votes to compare</p>{% endif %}</section>

<section id="interventions"><h2>Intervention mix by principle</h2>
{% set mix = s.interventions %}{% if principles %}{{ principles }}
<table><tr><th>principle</th>{% for a in mix_actions %}<th class="num">{{ a }}</th>{% endfor %}</tr>
{% for pid, row in mix.by_principle.items() %}<tr><td>{{ pid }}</td>{% for a in mix_actions %}<td class="num">{{ row.get(a, "") }}</td>{% endfor %}</tr>{% endfor %}
{% for sev, row in mix.by_severity.items() %}<tr class="mute"><td>severity {{ sev }}</td>{% for a in mix_actions %}<td class="num">{{ row.get(a, "") }}</td>{% endfor %}</tr>{% endfor %}
</table>{% else %}<p class="empty">no principle chose an action in this run</p>{% endif %}
{% if mix %}<div class="mute">{% for a in ("revise", "regenerate") %}{% set x = mix.get(a) %}{% if x and x.chosen %}{{ a }}: chosen {{ x.chosen }}, delivered {{ x.delivered }} (success {{ fmt(x.success_rate) }}), {{ x.drafts }} draft(s), rounds {{ x.rounds }}. {% endif %}{% endfor %}
{% if mix.escalations %}Escalated to review: {{ mix.escalations }}. {% endif %}{% if mix.screened %}Prompts stopped by input screening: {{ mix.screened }}.{% endif %}</div>{% endif %}
</section>

<section id="calibration"><h2>Calibration</h2>
{% if calibration %}<div class="row"><div>{{ calibration.chart }}</div><div>
<table><tr><th>judge</th><th class="num">votes with gold</th><th class="num">expected calibration error</th></tr>
{% for n, count, ece in calibration.rows %}<tr><td>{{ n }}</td><td class="num">{{ count }}</td><td class="num">{{ fmt(ece) }}</td></tr>{% endfor %}</table>
<div class="mute">Stated confidence (binned in tenths) against the share of votes equal to gold; the dashed line is perfect calibration, larger dots are fuller bins. "panel" is the strategy's probability of its decision.</div></div></div>
{% else %}<p class="empty">no gold labels with stated confidences in this run: no calibration curve</p>{% endif %}</section>

<section id="families"><h2>Cross-model validation: generator × judge family</h2>
{% if family %}{{ family.chart }}
<div class="mute">Share of accept votes each judge family gave each generator's candidates{% if family.own %}; outlined cells: judges of the generator's own family (self-preference shows there){% endif %}. "gold": the share gold accepts. Judges without a model family (rules, classifiers, replays) are columns of their own.</div>
{% else %}<p class="empty">no verdict votes on candidates with a known request</p>{% endif %}</section>

<section id="competence"><h2>Competence history (learned from reviews)</h2>
{% if competence %}<div class="row"><div>{{ competence.chart }}</div><div>
<table><tr><th>judge · label</th><th class="num">updates</th><th class="num">now</th></tr>
{% for n, k, v in competence.rows %}<tr><td>{{ n }}</td><td class="num">{{ k }}</td><td class="num">{{ fmt(v) }}</td></tr>{% endfor %}</table>
<div class="mute">Posterior mean α/(α+β) of each judge's competence per label after each review ({{ competence.changes }} changes).</div></div></div>
{% elif competence_read %}<p class="empty">no reviews yet</p>
{% else %}<p class="empty">no reviews yet in this report: the review history is in the store (<code>consensus report STORE</code> shows it)</p>{% endif %}</section>

<section id="disputed"><h2>Most disputed items</h2>
{% if disputed %}<table><tr><th>request</th><th class="num">dispute</th><th>action</th><th>votes</th></tr>
{% for o, score, r in disputed %}<tr><td>{{ o.request_id }}{% if r and r.category %}<br><span class="mute">{{ r.category }}</span>{% endif %}</td>
<td class="num">{{ "%.2f"|format(score) }}</td><td><span class="action a-{{ o.action }}">{{ o.action }}</span></td>
<td>{% for d in o.decisions %}{% if d.agreement %}<b>{{ d.subject }}</b>: {% for lab, sh in d.agreement.shares.items() %}{{ lab }} {{ pct(sh) }}{% if not loop.last %}, {% endif %}{% endfor %} → {{ d.label or "no consensus" }}<br>{% endif %}{% endfor %}
<details><summary>prompt, candidates and votes</summary>
{% if r %}<pre><b>prompt</b> {{ r.prompt[:1500] | redact }}</pre>
{% for cid, cand in r.candidates.items() %}<pre><b>{{ cid }}</b>{% if cand[1] %} ({{ cand[1] }}){% endif %}{% if r.gold and cid in r.gold %} gold {{ r.gold[cid] }}{% endif %} {{ cand[0][:1500] | redact }}</pre>{% endfor %}{% endif %}
<table>{% for v in o.votes %}<tr><td>{{ v.judge }}</td><td>{{ v.candidate_id }}</td><td>{{ v.label or ("abstain: " ~ v.abstain_kind) }}</td><td class="mute">{{ (v.critique or v.abstain_reason or "")[:300] }}</td></tr>{% endfor %}</table>
</details></td></tr>{% endfor %}</table>
<div class="mute">Dispute: 1 − the margin between the two most voted labels (1 for no consensus); uncontested decisions are left out.</div>
{% else %}<p class="empty">no decision was contested: every panel that voted agreed</p>{% endif %}</section>

{% set deb = s.debate %}{% if deb and deb.rounds %}<section id="debate"><h2>Debate convergence</h2>
<table><tr><th>round</th><th class="num">accuracy</th><th class="num">α</th><th class="num">effective judges</th><th class="num">unanimous</th><th class="num">changed</th><th class="num">wrong→right</th><th class="num">right→wrong</th><th class="num">calls</th><th class="num">cost $</th></tr>
{% for r in deb.rounds %}<tr><td>{{ r.round }}</td><td class="num">{{ fmt(r.accuracy) }}</td><td class="num">{{ fmt(r.krippendorff_alpha) }}</td><td class="num">{{ fmt(r.effective_judges) }}</td><td class="num">{{ fmt(r.unanimous) }}</td><td class="num">{{ r.changed }}</td><td class="num">{{ r.wrong_to_right }}</td><td class="num">{{ r.right_to_wrong }}</td><td class="num">{{ r.calls }}</td><td class="num">{{ "%.4f"|format(r.cost_usd) }}</td></tr>{% endfor %}</table>
<div class="mute">Round 1 is the independent poll. Decisions that differ from round 1: {{ deb.flipped_from_round1.n }} ({{ deb.flipped_from_round1.fixed }} fixed, {{ deb.flipped_from_round1.broken }} broken). Lone right answers against a wrong round-1 decision: {{ deb.lone_right.kept }} kept, {{ deb.lone_right.lost }} lost. Stops: {% for k, n in deb.stop_reasons.items() %}{{ k }} {{ n }}{% if not loop.last %}, {% endif %}{% endfor %}. Calls: {{ deb.calls.total }} ({{ deb.calls.extra_calls }} beyond round 1).</div></section>{% endif %}

{% if s.by_category %}<section id="categories"><h2>By category</h2>
<table class="sortable"><thead><tr><th>category</th><th class="num">requests</th><th class="num">accuracy</th><th class="num">intervention rate</th></tr></thead><tbody>
{% for c, f in s.by_category.items() %}<tr><td>{{ c }}</td><td class="num">{{ f.n }}</td>
<td class="num">{{ fmt(f.accuracy) }}</td><td class="num">{{ fmt(f.intervention_rate) }}</td></tr>{% endfor %}
</tbody></table></section>{% endif %}

<section id="not-accepted"><h2>Interventions{% if shown < total %} <span class="mute">(first {{ shown }} of {{ total }})</span>{% endif %}</h2>
{% if rows %}<table><tr><th>request</th><th>action</th><th>why</th></tr>
{% for o, r in rows %}<tr><td>{{ o.request_id }}{% if r and r.category %}<br><span class="mute">{{ r.category }}</span>{% endif %}</td>
<td><span class="action a-{{ o.action }}">{{ o.action }}</span>{% if o.chosen_action %}<br><span class="mute">chosen: {{ o.chosen_action }}</span>{% endif %}</td>
<td>{{ o.reason }}
<details><summary>prompt, candidates and votes</summary>
{% if r %}<pre><b>prompt</b> {{ r.prompt[:1500] | redact }}</pre>
{% for cid, cand in r.candidates.items() %}<pre><b>{{ cid }}</b>{% if r.gold and cid in r.gold %} (gold {{ r.gold[cid] }}){% endif %} {{ cand[0][:1500] | redact }}</pre>{% endfor %}{% endif %}
<table>{% for v in o.votes %}<tr><td>{{ v.judge }}</td><td>{{ v.candidate_id }}</td>
<td>{{ v.label or ("abstain: " ~ v.abstain_kind) }}</td><td class="mute">{{ (v.critique or v.abstain_reason or "")[:300] }}
{% for x in v.violations %}<br>⚑ {{ x.principle }}: {{ x.detail }}{% endfor %}</td></tr>{% endfor %}</table>
{% for d in o.drafts %}<pre><b>{{ d.id }}</b> ({{ d.kind }} {{ d.round }}, {{ d.source }}, {{ "accepted" if d.accepted else "rejected" }}){% if d.error %} {{ d.error }}{% endif %} {{ d.text[:1500] | redact }}</pre>{% endfor %}
</details></td></tr>
{% endfor %}</table>{% else %}<p class="empty">every request was accepted</p>{% endif %}</section>
<script>
(function () {
  "use strict";
  document.querySelectorAll("button[data-group]").forEach(function (button) {
    button.addEventListener("click", function () {
      var group = button.getAttribute("data-group");
      document.querySelectorAll('[data-pane="' + group + '"]').forEach(function (pane) {
        pane.hidden = pane.id !== button.getAttribute("data-show");
      });
      document.querySelectorAll('button[data-group="' + group + '"]').forEach(function (b) {
        b.classList.toggle("on", b === button);
      });
    });
  });
  function key(cell) {
    var text = cell.textContent.trim();
    var n = parseFloat(text.replace(/[%$,]/g, ""));
    return isNaN(n) ? text.toLowerCase() : n;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var body = table.tBodies[0];
    table.querySelectorAll("thead th").forEach(function (th) {
      th.addEventListener("click", function () {
        var col = th.cellIndex, down = th.getAttribute("data-dir") !== "down";
        th.setAttribute("data-dir", down ? "down" : "up");
        Array.prototype.slice.call(body.rows).sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          var c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
          return down ? -c : c;
        }).forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
</script>
</body></html>
"""
