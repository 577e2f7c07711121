/* A `tqstar trace view` page: each prompt with its answers side by side, every token opening its step. */
"use strict";
(function () {
  const {el, num, legend, renderTokens} = window.TQInspector;
  const data = JSON.parse(document.getElementById("tqstar-answers").textContent);
  const main = document.querySelector("main");

  function meta(answer) {
    const parts = [answer.method];
    if (answer.reward !== null && answer.reward !== undefined) parts.push(`reward ${num(answer.reward)}`);
    if (answer.seconds !== null && answer.seconds !== undefined) parts.push(`${num(answer.seconds, 2)} s`);
    if (answer.forward_tokens !== null && answer.forward_tokens !== undefined) parts.push(`${answer.forward_tokens} forward tokens`);
    parts.push(`${answer.steps.length} traced tokens`);
    return parts.join(" · ");
  }

  function card(answer) {
    const tokens = el("div"), inspector = el("div", {class: "tq-inspector", "aria-live": "polite"});
    const details = [answer.id, answer.time, answer.source].filter(Boolean).join(" · ");
    const node = el("section", {class: "tq-card", data: {method: answer.method}}, [
      el("h2", {text: answer.method}),
      el("p", {class: "tq-meta", text: meta(answer)}),
      details ? el("p", {class: "tq-meta", text: details}) : null,
      answer.options ? el("details", {}, [el("summary", {text: "options"}),
        el("pre", {class: "tq-meta", text: JSON.stringify(answer.options, null, 1)})]) : null,
      tokens, inspector]);
    renderTokens(tokens, answer, inspector);
    if (answer.text !== null && answer.text !== undefined && !answer.steps.length) {
      tokens.prepend(el("div", {class: "tq-answer", text: answer.text}));
    }
    return node;
  }

  main.appendChild(el("h1", {text: data.title}));
  main.appendChild(legend());
  for (const group of data.groups) {
    main.appendChild(el("h2", {text: group.label}));
    if (group.prompt !== null) main.appendChild(el("div", {class: "tq-prompt", text: group.prompt}));
    main.appendChild(el("div", {class: "tq-grid"}, group.answers.map(card)));
  }
})();
