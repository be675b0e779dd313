// rwfix playground: plain JavaScript, no framework (see docs/web.md).
// The page's state lives in the URL: series, config (when not the running
// one) and interval.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("form"), series = $("series"), config = $("config"), interval = $("interval");
  const exportBtn = $("export"), share = $("share"), state = $("state");
  let lastTest = "";

  // el builds an element; children are nodes or strings, and strings
  // become text nodes. The page never builds markup from strings, so
  // nothing pasted into the form (or returned by the API) can become HTML.
  function el(tag, cls, ...children) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  }
  const muted = (text) => el("span", "muted", text);

  // fmtLabels prints a label set as Prometheus does, marking the names in
  // mark (a Set) with the class cls.
  function fmtLabels(ls, mark, cls) {
    if (!ls) return muted("— (dropped)");
    const code = el("code", "", (ls.__name__ || "") + "{");
    Object.keys(ls).filter((k) => k !== "__name__").sort().forEach((k, i) => {
      if (i > 0) code.append(", ");
      const p = k + "=" + JSON.stringify(ls[k]);
      code.append(mark && mark.has(k) ? el("mark", cls, p) : p);
    });
    code.append("}");
    return code;
  }

  function fmtValues(vals) {
    const d = el("div", "values");
    vals.forEach((v, i) => {
      if (i > 0) d.append(", ");
      d.append(String(v[1]), " ", muted("@" + v[0] + "s"));
    });
    return d;
  }

  function fmtRule(r, changed) {
    if (r.dropped) return el("div", "", el("b", "", r.rule), ": dropped the series");
    const d = el("div", "", el("b", "", r.rule), ": ");
    r.changes.forEach((c, i) => {
      changed.add(c.label);
      if (i > 0) d.append("; ");
      d.append(el("code", "", c.label), " ",
        c.from === "" ? "(none)" : el("code", "", JSON.stringify(c.from)), " → ",
        c.to === "" ? "(removed)" : el("code", "", JSON.stringify(c.to)));
    });
    return d;
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
    tbody.replaceChildren();
    for (const s of d.series) {
      const changed = new Set();
      const rules = s.rules.map((r) => fmtRule(r, changed));
      const tr = el("tr", "series-row",
        el("td", "", s.line),
        el("td", "", fmtLabels(s.labels, changed, "from"), " ", muted(s.values)),
        el("td", "action " + s.action, s.action),
        el("td", "", fmtLabels(s.output, changed, "to")),
        el("td", "", ...(rules.length ? rules : [muted("no rule applies")])));
      tbody.appendChild(tr);
    }
    const col = $("collisions");
    col.replaceChildren();
    if (!d.collisions.length) col.append(el("p", "muted", "none: no two inputs became one output"));
    for (const c of d.collisions) {
      const inputs = el("div", "");
      c.inputs.forEach((i, n) => {
        if (n > 0) inputs.append(el("br", ""));
        inputs.append(fmtLabels(i));
      });
      const how = c.merge === "min"
        ? "the earliest creation time, the smallest value of its sources at each step"
        : "the sum of its sources at each step";
      col.appendChild(el("div", "collision", inputs,
        el("div", "", "→ ", fmtLabels(c.output), " ", muted("(merged: " + how + ")")),
        fmtValues(c.values)));
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
