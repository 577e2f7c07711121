/* The token inspector, shared by `tqstar trace view` pages and the playground of `tqstar serve`.
 *
 * An answer is {method, steps, text, prompt, reward, seconds, forward_tokens, id, time}; a step is one
 * StepTrace record: candidates, candidate_texts, prior_logprobs (log π_prior), values (Q̂), probabilities
 * (π_alg), chosen, chosen_text and, for the weighted estimators, weights (k × N) and ess (k). A blockwise
 * decoder's step is a block: its texts are whole blocks, and steps count blocks, not token positions.
 * Every piece of text goes into the page through textContent, never as markup.
 */
"use strict";
(function (root) {
  // How far the value moved the choice from the prior's favourite: log π_prior(favourite) − log π_prior(chosen),
  // in nats (0 when the prior's favourite was chosen). Levels colour the token.
  const SHIFT_LEVELS = [0.05, 0.5, 2];
  const SHIFT_NAMES = ["the prior's favourite", "a small move", "a clear move", "a large move"];

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.appendChild(child);
    return node;
  }

  function num(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (value !== 0 && Math.abs(value) < 1e-3) return value.toExponential(2);
    return Number(value).toFixed(digits === undefined ? 4 : digits);
  }

  function priorProbability(logprob) {
    return logprob === null || logprob === undefined ? 0 : Math.exp(logprob);
  }

  function favourite(step) {
    let best = 0;
    step.prior_logprobs.forEach((lp, j) => {
      if (lp !== null && (step.prior_logprobs[best] === null || lp > step.prior_logprobs[best])) best = j;
    });
    return best;
  }

  function chosenIndex(step) {
    return step.candidates.indexOf(step.chosen);
  }

  function shift(step) {
    const j = chosenIndex(step), f = favourite(step);
    const chosen = step.prior_logprobs[j], best = step.prior_logprobs[f];
    if (j < 0 || j === f) return 0;
    if (chosen === null) return Infinity;
    return best - chosen;
  }

  function shiftLevel(value) {
    let level = 0;
    SHIFT_LEVELS.forEach((bound, i) => { if (value > bound) level = i + 1; });
    return level;
  }

  function shown(text) {  // a token as a quoted string: spaces and newlines visible
    return JSON.stringify(text === null || text === undefined ? "" : text);
  }

  function visible(text) {  // a newline keeps a mark to click on; an empty token too
    return (text || "").replace(/\n/g, "↵\n") || "∅";
  }

  function legend() {
    return el("p", {class: "tq-legend"}, SHIFT_NAMES.map((name, level) =>
      el("span", {class: `tq-token tq-shift-${level}`, text: name})));
  }

  /* The answer's tokens, each a focusable button opening its step in `inspector` (a container). */
  function renderTokens(container, answer, inspector) {
    container.replaceChildren();
    const tokens = el("div", {class: "tq-tokens", role: "group", "aria-label": `${answer.method} answer, per token`});
    answer.steps.forEach((step, t) => {
      const moved = shift(step);
      const token = el("span", {class: `tq-token tq-shift-${shiftLevel(moved)}`, tabindex: "0", role: "button",
        "aria-label": `token ${t + 1}: ${shown(step.chosen_text)}`, text: visible(step.chosen_text),
        data: {step: String(t), shift: String(moved)}});
      token.title = moved > 0 ? `moved ${num(moved, 2)} nats away from the prior's favourite` : "the prior's favourite";
      const open = () => {
        container.querySelectorAll(".tq-token[aria-pressed]").forEach(n => n.removeAttribute("aria-pressed"));
        token.setAttribute("aria-pressed", "true");
        renderStep(inspector, answer, t);
      };
      token.addEventListener("click", open);
      token.addEventListener("keydown", event => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); }
        const next = {ArrowRight: token.nextElementSibling, ArrowLeft: token.previousElementSibling}[event.key];
        if (next) { event.preventDefault(); next.focus(); }
      });
      tokens.appendChild(token);
    });
    container.appendChild(tokens);
    if (!answer.steps.length) {
      container.appendChild(el("p", {class: "tq-note",
        text: "No per-token trace: this method decodes without values (greedy, sample, best-of-n), or the record kept only a digest."}));
    }
  }

  function bar(value, kind) {
    const outer = el("span", {class: `tq-bar tq-bar-${kind}`});
    const inner = el("span", {class: "tq-bar-fill"});
    inner.style.width = `${Math.max(0, Math.min(1, value || 0)) * 100}%`;
    outer.appendChild(inner);
    return outer;
  }

  function cell(value, digits, kind) {
    const td = el("td", {class: "tq-num", data: {value: value === null ? "null" : String(value)}});
    if (kind) td.appendChild(bar(value, kind));
    td.appendChild(el("span", {text: num(value, digits)}));
    return td;
  }

  /* One step: the candidates with prior probability, Q̂, π_alg and, where they exist, ESS and weights. */
  function renderStep(container, answer, t) {
    const step = answer.steps[t], j = chosenIndex(step), f = favourite(step);
    const weighted = Array.isArray(step.ess) && step.ess.length > 0;
    const heading = el("h3", {text: `Step ${t + 1} of ${answer.steps.length}: chose ${shown(step.chosen_text)}`});
    const summary = el("p", {class: "tq-step-summary", text: j === f
      ? "The prior's favourite was chosen."
      : `The prior preferred ${shown(step.candidate_texts[f])}; the value moved the choice ${num(shift(step), 2)} nats away from it.`});
    const head = ["", "candidate", "prior p", "Q̂", "π_alg"].concat(weighted ? ["ESS", "weights"] : []);
    const table = el("table", {class: "tq-step", "aria-label": `candidates of step ${t + 1}`}, [
      el("thead", {}, [el("tr", {}, head.map(h => el("th", {scope: "col", text: h})))])]);
    const body = el("tbody");
    step.candidates.forEach((id, i) => {
      const row = el("tr", {class: i === j ? "tq-chosen" : "", data: {candidate: String(id)}}, [
        el("td", {class: "tq-mark", text: i === j ? "▶ chosen" : (i === f ? "prior's pick" : "")}),
        el("td", {class: "tq-text", text: shown(step.candidate_texts[i])}),
        cell(priorProbability(step.prior_logprobs[i]), 4, "prior"),
        cell(step.values[i], 4),
        cell(step.probabilities[i], 4, "alg")]);
      if (weighted) {
        row.appendChild(cell(step.ess[i], 2));
        const weights = (step.weights && step.weights[i]) || [];
        row.appendChild(el("td", {class: "tq-weights", data: {value: JSON.stringify(weights)}},
          weights.map(w => bar(w, "weight"))));
      }
      body.appendChild(row);
    });
    table.appendChild(body);
    container.replaceChildren(heading, summary, el("div", {class: "tq-scroll"}, [table]));
  }

  root.TQInspector = {el, num, shift, shiftLevel, legend, renderTokens, renderStep};
})(window);
