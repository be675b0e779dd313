// rwfix playground: plain JavaScript, no framework (see README, "Web page").
// The page's state lives in the URL: series, config (when not the running
// one) and interval.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), series = $("series"), config = $("config"), interval = $("interval");
  const exportBtn = $("export"), share = $("share"), state = $("state");
  let lastTest = "";

  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

  // fmtLabels prints a label set as Prometheus does, marking the names in
  // mark (a Set) with the class cls.
  function fmtLabels(ls, mark, cls) {
    if (!ls) return '<span class="muted">— (dropped)</span>';
    const name = ls.__name__ || "";
    const pairs = Object.keys(ls).filter((k) => k !== "__name__").sort().map((k) => {
      const p = esc(k) + "=" + esc(JSON.stringify(ls[k]));
      return mark && mark.has(k) ? '<mark class="' + cls + '">' + p + "</mark>" : p;
    });
    return "<code>" + esc(name) + "{" + pairs.join(", ") + "}</code>";
  }

  function fmtValues(vals) {
    return vals.map((v) => esc(v[1]) + ' <span class="muted">@' + v[0] + "s</span>").join(", ");
  }

  function updateURL() {
    const p = new URLSearchParams();
    p.set("series", series.value);
    if (config.value !== config.dataset.default) p.set("config", config.value);
    if (interval.value && interval.value !== "15s") p.set("interval", interval.value);
    history.replaceState(null, "", "/playground?" + p.toString());
    share.href = location.href;
  }

  function render(d) {
    const tbody = $("series-table").querySelector("tbody");
    tbody.innerHTML = "";
    for (const s of d.series) {
      const changed = new Set();
      const rules = s.rules.map((r) => {
        if (r.dropped) return '<div><b>' + esc(r.rule) + "</b>: dropped the series</div>";
        return "<div><b>" + esc(r.rule) + "</b>: " + r.changes.map((c) => {
          changed.add(c.label);
          return "<code>" + esc(c.label) + "</code> " + (c.from === "" ? "(none)" : "<code>" + esc(JSON.stringify(c.from)) + "</code>") +
            " → " + (c.to === "" ? "(removed)" : "<code>" + esc(JSON.stringify(c.to)) + "</code>");
        }).join("; ") + "</div>";
      }).join("");
      const tr = document.createElement("tr");
      tr.className = "series-row";
      tr.innerHTML = "<td>" + s.line + "</td><td>" + fmtLabels(s.labels, changed, "from") + ' <span class="muted">' + esc(s.values) + "</span></td>" +
        '<td class="action ' + s.action + '">' + s.action + "</td><td>" + fmtLabels(s.output, changed, "to") + "</td><td>" +
        (rules || '<span class="muted">no rule applies</span>') + "</td>";
      tbody.appendChild(tr);
    }
    const col = $("collisions");
    col.innerHTML = d.collisions.length ? "" : '<p class="muted">none: no two inputs became one output</p>';
    for (const c of d.collisions) {
      const div = document.createElement("div");
      div.className = "collision";
      div.innerHTML = "<div>" + c.inputs.map((i) => fmtLabels(i)).join("<br>") + "</div><div>→ " + fmtLabels(c.output) +
        ' <span class="muted">(merged: ' + (c.merge === "min"
          ? "the earliest creation time, the smallest value of its sources at each step"
          : "the sum of its sources at each step") + ')</span></div><div class="values">' + fmtValues(c.values) + "</div>";
      col.appendChild(div);
    }
    $("output-text").textContent = d.text;
    lastTest = d.test;
    exportBtn.disabled = false;
    $("result").hidden = false;
  }

  async function run() {
    updateURL();
    $("error").hidden = true;
    state.textContent = "running…";
    try {
      const resp = await fetch("/api/v1/repair", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ series: series.value, config: config.value, interval: interval.value }),
      });
      const body = await resp.json();
      if (body.status !== "success") throw new Error(body.error || "HTTP " + resp.status);
      render(body.data);
      state.textContent = body.data.series.length + " series, " + body.data.steps + " steps of " + body.data.interval;
    } catch (e) {
      $("result").hidden = true;
      exportBtn.disabled = true;
      $("error").textContent = e.message;
      $("error").hidden = false;
      state.textContent = "";
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
  exportBtn.addEventListener("click", () => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([lastTest], { type: "application/yaml" }));
    a.download = "playground_test.yml";
    document.body.appendChild(a);
    a.click();
    a.remove();
  });

  const p = new URLSearchParams(location.search);
  if (p.has("config")) config.value = p.get("config");
  if (p.has("interval")) interval.value = p.get("interval");
  share.href = location.href;
  if (p.get("series")) {
    series.value = p.get("series");
    run();
  }
})();
