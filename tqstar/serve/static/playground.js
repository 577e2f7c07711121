/* The playground: methods side by side on one prompt, streamed through this server's OpenAI-compatible
 * endpoint, each token opening its step in the token inspector. Text goes in through textContent only. */
"use strict";
(function () {
  const {el, num, legend, renderTokens} = window.TQInspector;
  const KEY = "tqstar-api-key";  // sessionStorage: kept for this tab only
  const LABELS = {top_k: "k", alpha: "α", beta: "β", horizon: "H", num_rollouts: "N", best_of: "N"};
  const $ = id => document.getElementById(id);
  let methods = {};  // method → its options with the server's defaults (GET /v1/models)

  function headers() {
    const key = sessionStorage.getItem(KEY);
    return Object.assign({"Content-Type": "application/json"}, key ? {Authorization: `Bearer ${key}`} : {});
  }

  async function errorMessage(response) {  // the API's own message, whatever the status
    const text = await response.text();
    try { return `${response.status}: ${JSON.parse(text).error.message}`; }
    catch (_) { return `${response.status}: ${text || response.statusText}`; }
  }

  function askForKey(message) {
    $("key-message").textContent = message;
    $("key-form").hidden = false;
    $("key").focus();
  }

  async function loadMethods() {
    let response;
    try { response = await fetch("v1/models", {headers: headers()}); }
    catch (error) { $("status").textContent = `The server could not be reached: ${error.message}`; return; }
    if (response.status === 401) return askForKey(await errorMessage(response));
    if (!response.ok) { $("status").textContent = await errorMessage(response); return; }
    $("key-form").hidden = true;
    methods = {};
    for (const card of (await response.json()).data) if (card.tqstar) methods[card.tqstar.method] = card.tqstar.options;
    if (!$("columns").children.length) ["greedy", "tq-direct"].filter(m => m in methods).forEach(addColumn);
  }

  function addColumn(method) {
    const select = el("select", {"aria-label": "method"}, Object.keys(methods).map(name =>
      el("option", {value: name, text: name})));
    select.value = method in methods ? method : Object.keys(methods)[0];
    const options = el("div", {class: "pg-options"});
    const column = el("section", {class: "tq-card pg-column"});
    const remove = el("button", {type: "button", "aria-label": "remove this method", text: "×"});
    remove.addEventListener("click", () => column.remove());
    const showOptions = () => {
      options.replaceChildren(...Object.entries(methods[select.value]).map(([name, value]) =>
        el("label", {}, [document.createTextNode(`${LABELS[name] || name} `),
          el("input", {type: "number", step: "any", name, placeholder: value === null ? "default" : String(value),
                       "aria-label": `${name} of ${select.value}`})])));
    };
    select.addEventListener("change", showOptions);
    showOptions();
    column.append(el("div", {class: "pg-head"}, [select, remove]), options,
      el("p", {class: "tq-meta pg-meta"}), el("div", {class: "pg-answer tq-answer"}),
      el("div", {class: "tq-inspector", "aria-live": "polite"}));
    $("columns").appendChild(column);
  }

  function request(column) {
    const body = {model: `tqstar/${column.querySelector("select").value}`, stream: true, trace: true,
      stream_options: {include_usage: true}, max_tokens: Number($("max-tokens").value) || undefined,
      messages: [{role: "user", content: $("prompt").value}]};
    for (const input of column.querySelectorAll(".pg-options input")) {
      if (input.value !== "") body[input.name] = Number(input.value);
    }
    return body;
  }

  function showError(column, message) {
    column.querySelector(".pg-answer").replaceChildren(el("p", {class: "tq-error", role: "alert", text: message}));
  }

  function finish(column, evidence) {
    column.querySelector(".pg-meta").textContent = [`reward ${num(evidence.reward)}`,
      `${num(evidence.seconds, 2)} s`, `${evidence.forward_tokens} forward tokens`].join(" · ");
    column.dataset.state = "done";
    const trace = evidence.trace || [];
    const answer = column.querySelector(".pg-answer");
    if (!trace.length && !answer.textContent.trim()) {
      answer.replaceChildren(el("p", {class: "tq-note", text: `(only whitespace: ${JSON.stringify(answer.textContent)})`}));
    }
    if (trace.length) {
      renderTokens(column.querySelector(".pg-answer"), {method: evidence.method, steps: trace},
                   column.querySelector(".tq-inspector"));
    }
  }

  async function run(column) {
    const answer = column.querySelector(".pg-answer");
    answer.replaceChildren();
    column.querySelector(".tq-inspector").replaceChildren();
    column.querySelector(".pg-meta").textContent = "…";
    column.dataset.state = "running";
    let response;
    try {
      response = await fetch("v1/chat/completions", {method: "POST", headers: headers(), body: JSON.stringify(request(column))});
    } catch (error) { column.dataset.state = "error"; return showError(column, `The server could not be reached: ${error.message}`); }
    if (!response.ok) {
      const message = await errorMessage(response);
      column.dataset.state = "error";
      column.querySelector(".pg-meta").textContent = "";
      if (response.status === 401) askForKey(message);
      return showError(column, message);
    }
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "", text = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end).replace(/^data: /, "");
        buffer = buffer.slice(end + 2);
        if (event === "[DONE]") continue;
        const chunk = JSON.parse(event);
        if (chunk.error) { column.dataset.state = "error"; return showError(column, chunk.error.message); }
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) { text += delta.content; answer.textContent = text; }
        if (chunk.tqstar) finish(column, chunk.tqstar);
      }
    }
  }

  $("run-form").addEventListener("submit", async event => {
    event.preventDefault();
    const columns = [...document.querySelectorAll(".pg-column")];
    $("status").textContent = `Running ${columns.length} method(s)…`;
    await Promise.all(columns.map(run));
    $("status").textContent = "Done. Click or focus a token to see why it was chosen.";
  });
  $("add-column").addEventListener("click", () => addColumn(Object.keys(methods)[0]));
  $("change-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); askForKey(""); });
  $("key-form").addEventListener("submit", event => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    loadMethods();
  });
  $("legend").appendChild(legend());
  loadMethods();
})();
