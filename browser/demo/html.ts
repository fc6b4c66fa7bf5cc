/**
 * The demo page's markup and style (served as index.html by browser/demo/serve.ts); page.ts binds to its
 * element ids. Offline: no fonts, scripts or styles from anywhere but the page's own origin.
 *
 * Contract for automated checks: `document.body.dataset.status` is "idle", "loading", "running", "done"
 * or "error"; `[data-testid=output]` holds exactly the committed text; `[data-testid=error]` the error.
 */
export const demoHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sirius-ts — Sirius in the browser</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg: #f6f7f9; --panel: #fff; --ink: #1d2330; --muted: #6b7385; --line: #dde1e8; --accent: #3554d1;
          --draft: #8a93a6; --reject: #c0392b; --correct: #fde68a; --bonus: #bbf7d0; --sparse: #e0e7ff; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
  header { padding: 14px 22px 10px; border-bottom: 1px solid var(--line); background: var(--panel); }
  header h1 { margin: 0; font-size: 19px; }
  header p { margin: 4px 0 0; color: var(--muted); max-width: 980px; }
  main { display: grid; grid-template-columns: 330px 1fr; gap: 16px; padding: 16px 22px; align-items: start; }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  h2 { margin: 0 0 8px; font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
  label { display: grid; grid-template-columns: 110px 1fr; align-items: center; gap: 6px; margin: 5px 0; font-size: 13px; }
  label.disabled { opacity: .45; }
  select, input { font: inherit; padding: 3px 5px; border: 1px solid var(--line); border-radius: 4px; background: #fff; min-width: 0; }
  textarea { width: 100%; height: 92px; font: 13px/1.35 ui-monospace, SFMono-Regular, Menlo, monospace; padding: 6px; border: 1px solid var(--line); border-radius: 4px; resize: vertical; }
  .buttons { display: flex; gap: 8px; margin-top: 10px; }
  button { font: inherit; padding: 6px 14px; border-radius: 5px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button.secondary { background: #fff; color: var(--accent); }
  button:disabled { opacity: .5; cursor: default; }
  #status { margin-top: 10px; font-size: 13px; color: var(--muted); min-height: 1.4em; }
  #error { color: var(--reject); white-space: pre-wrap; font-size: 13px; }
  #error:empty { display: none; }
  .right { display: grid; gap: 16px; }
  pre#output { margin: 0; min-height: 2.4em; white-space: pre-wrap; font: 15px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; }
  .promptline { color: var(--muted); white-space: pre-wrap; font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; margin-bottom: 6px; }
  #trace { font: 14px/2.1 ui-monospace, SFMono-Regular, Menlo, monospace; max-height: 260px; overflow-y: auto; word-break: break-all; }
  .tok { white-space: pre; padding: 1px 0; border-radius: 2px; }
  .tok.draft { color: var(--draft); font-style: italic; }
  .tok.rejected { color: var(--reject); text-decoration: line-through; text-decoration-thickness: 2px; }
  .tok.correction { background: var(--correct); outline: 1px solid #d4a72c; }
  .tok.bonus { background: var(--bonus); }
  .tok.sparse { background: var(--sparse); }
  .window { border: 1px dashed var(--line); border-radius: 4px; padding: 1px 3px; margin: 0 2px; }
  .window.drafting { border-color: var(--draft); }
  .window.verifying { border-color: var(--accent); }
  .window.done { border-style: solid; border-color: #c6cbd6; }
  .legend { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 8px; font-size: 12px; color: var(--muted); }
  .stats { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 8px; }
  .stat { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px; }
  .stat b { display: block; font-size: 18px; }
  .stat span { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
  #traffic { margin-top: 8px; font-size: 12px; color: var(--muted); }
  .chart { display: grid; grid-template-columns: minmax(0, 1.5fr) minmax(0, 1fr); gap: 12px; align-items: start; }
  .chart img { width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
  table { border-collapse: collapse; font-size: 12px; width: 100%; }
  th, td { border-bottom: 1px solid var(--line); padding: 3px 5px; text-align: right; }
  th:first-child, td:first-child { text-align: left; }
  #run-point { margin-top: 8px; font-size: 13px; }
</style>
</head>
<body data-status="idle">
<header>
  <h1>sirius-ts: contextual sparsity with Sirius correction, in your browser</h1>
  <p>A sparse model (only part of each MLP computed per token) drafts; every <i>k</i> tokens the full model verifies the
  window in one parallel pass, keeps the drafts it finds likely, and writes its own token where it rejects one
  (Zhou et al., arXiv 2409.03856). The model is <code>sirius-tiny-arith</code> (1M parameters, multi-step arithmetic),
  run by the real engine on the backend you choose: nothing is generated on the server.</p>
</header>
<main>
  <section>
    <h2>Request</h2>
    <label style="grid-template-columns: 110px 1fr">example <select id="examples"><option value="">—</option></select></label>
    <textarea id="prompt" spellcheck="false" aria-label="prompt"></textarea>
    <label>backend <select id="backend"></select></label>
    <label>mode <select id="mode"><option>full</option><option>sparse</option><option>sirius</option></select></label>
    <label data-knob="sparsity">sparsity <select id="sparsity"><option>coarse</option><option>fine</option></select></label>
    <label data-knob="density">density ρ <input id="density" type="number" min="0.05" max="1" step="0.05"></label>
    <label data-knob="period">period k <input id="period" type="number" min="1" max="64" step="1"></label>
    <label data-knob="acceptance">acceptance <select id="acceptance"><option>threshold</option><option>greedy-exact</option><option>speculative</option></select></label>
    <label data-knob="threshold">threshold <input id="threshold" type="number" min="0" max="1" step="0.05"></label>
    <label data-knob="treeWidth">tree width <input id="treeWidth" type="number" min="1" max="8" step="1"></label>
    <label data-knob="temperature">temperature <input id="temperature" type="number" min="0" max="2" step="0.1"></label>
    <label data-knob="seed">seed <input id="seed" type="number" min="0" step="1"></label>
    <label data-knob="maxTokens">max tokens <input id="maxTokens" type="number" min="1" max="160" step="1"></label>
    <div class="buttons"><button id="run" type="button">Generate</button><button id="stop" type="button" class="secondary" disabled>Stop</button></div>
    <div id="status"></div>
    <div id="error" data-testid="error"></div>
  </section>
  <div class="right">
    <section>
      <h2>Committed output</h2>
      <div class="promptline" id="prompt-echo"></div>
      <pre id="output" data-testid="output"></pre>
    </section>
    <section>
      <h2>Sirius at work</h2>
      <div id="trace" data-testid="trace"></div>
      <div class="legend">
        <span><span class="tok draft">draft</span> sparse model, not yet verified</span>
        <span><span class="tok accepted">accepted</span> draft the full model kept</span>
        <span><span class="tok rejected">rejected</span> draft rolled back</span>
        <span><span class="tok correction">correction</span> full model's token at a rejection</span>
        <span><span class="tok bonus">bonus</span> full model's token after a fully accepted window</span>
        <span><span class="tok sparse">sparse</span> sparse decoding, uncorrected</span>
        <span><span class="window done">&nbsp;…&nbsp;</span> one verification window</span>
      </div>
    </section>
    <section>
      <h2>Live</h2>
      <div class="stats">
        <div class="stat"><b id="stat-aal">—</b><span>AAL (of k)</span></div>
        <div class="stat"><b id="stat-density">—</b><span>effective density</span></div>
        <div class="stat"><b id="stat-tps">—</b><span>tokens / s</span></div>
        <div class="stat"><b id="stat-windows">—</b><span>verifications · rollbacks</span></div>
      </div>
      <div id="traffic"></div>
    </section>
    <section>
      <h2>Accuracy vs density (the paper's table, on this model)</h2>
      <div class="chart">
        <img id="chart" src="/results/accuracy-vs-density.svg" alt="accuracy against effective density for full, sparse and Sirius decoding">
        <div><table id="paper"><thead><tr><th>setting</th><th>accuracy</th><th>eff. density</th><th>AAL</th></tr></thead><tbody></tbody></table>
        <div id="run-point"></div></div>
      </div>
    </section>
  </div>
</main>
<script type="module" src="/demo.js"></script>
</body>
</html>
`
