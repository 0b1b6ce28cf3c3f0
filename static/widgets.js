// Jupyter widgets from the comm messages nbrelay kept (#22), shown from each model's latest
// state: what progress reporting uses (IntProgress and FloatProgress with bar_style, HTML,
// Label, HBox and VBox, and the Output widget's captured outputs). Any other widget shows
// its display's text/plain fallback, marked as an interactive widget (KernelView).
//
// Not @jupyter-widgets/html-manager, which nbconvert and Voilà use: its embed.js is 1.9 MB
// (and 2 MB of fonts), and it puts HTML widgets' markup into this page, which holds the
// daemon's token; here an HTML widget's markup is parsed inert and only its text shown.
// The viewer has no build step: this file is the whole renderer.
"use strict";

const REFERENCE = "IPY_MODEL_";
const MAX_DEPTH = 16;  // boxes in boxes: records may name models in a cycle
const BAR_STYLES = new Set(["success", "info", "warning", "danger"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function* references(value) {
  if (typeof value === "string") {
    if (value.startsWith(REFERENCE)) yield value.slice(REFERENCE.length);
  } else if (Array.isArray(value)) {
    for (const item of value) yield* references(item);
  } else if (isObject(value)) {
    for (const item of Object.values(value)) yield* references(item);
  }
}

// An HTML widget's value as text: parsed in an inert document (no script runs, nothing
// loads), markup dropped. tqdm's are text with entities and figure spaces.
function htmlText(value) {
  if (typeof value !== "string") return "";
  return new DOMParser().parseFromString(value, "text/html").body.textContent ?? "";
}

// The model a display shows, if it shows a widget.
export function shownModel(data) {
  const view = isObject(data) ? data["application/vnd.jupyter.widget-view+json"] : undefined;
  return isObject(view) && typeof view.model_id === "string" ? view.model_id : null;
}

// One kernel's widget models, updated in seq order; a model's many updates are one object.
export class Widgets {
  constructor() {
    this.models = new Map();  // comm id -> its traits, merged
  }

  // A comm record; the id of the model it changed, or null.
  apply(msgType, content) {
    const id = content.comm_id;
    if (typeof id !== "string") return null;
    if (msgType === "comm_close") return this.models.delete(id) ? id : null;
    const data = content.data;
    if (!isObject(data) || !isObject(data.state)) return null;
    if (msgType === "comm_open") {
      if (content.target_name !== "jupyter.widget") return null;
      this.models.set(id, structuredClone(data.state));  // its own: outputs go in it
      return id;
    }
    const model = this.models.get(id);
    if (!model || (data.method !== "update" && data.method !== "echo_update")) return null;
    Object.assign(model, structuredClone(data.state));
    return id;
  }

  // The id of the Output widget whose `with out:` block the request ``parent`` runs in, if
  // any: the frontend puts that request's outputs in it, not in the cell.
  capturing(parent) {
    if (!parent) return null;
    for (const [id, model] of this.models) {
      if (model._model_name === "OutputModel" && model.msg_id === parent) return id;
    }
    return null;
  }

  // An output message of a `with out:` block, into the Output widget ``id``'s outputs, as
  // nbformat outputs (consecutive stream text merged, as Jupyter merges it).
  capture(id, msgType, content) {
    const model = this.models.get(id);
    if (!Array.isArray(model.outputs)) model.outputs = [];
    const outputs = model.outputs;
    if (msgType === "clear_output") {
      outputs.length = 0;
      return;
    }
    const last = outputs[outputs.length - 1];
    if (msgType === "stream") {
      if (isObject(last) && last.output_type === "stream" && last.name === content.name) last.text = String(last.text) + String(content.text);
      else outputs.push({ output_type: "stream", name: content.name, text: String(content.text) });
    } else if (msgType === "error") {
      outputs.push({ output_type: "error", traceback: Array.isArray(content.traceback) ? content.traceback : [] });
    } else if (msgType === "display_data" || msgType === "execute_result") {
      outputs.push({ output_type: msgType, data: isObject(content.data) ? content.data : {} });
    }
  }

  // Whether ``changed`` is ``id`` or a model it shows, directly or not.
  uses(id, changed, depth = 0) {
    if (id === changed) return true;
    const model = this.models.get(id);
    if (!model || depth > MAX_DEPTH) return false;
    for (const child of references(model)) if (this.uses(child, changed, depth + 1)) return true;
    return false;
  }

  // The DOM of model ``id``, or null if this renderer cannot show it (or a part of it).
  // ``renderOutputs`` turns an Output widget's nbformat outputs into DOM (outputs.js).
  render(id, renderOutputs, depth = 0) {
    const model = this.models.get(id);
    if (!model || depth > MAX_DEPTH) return null;
    const name = model._model_name;
    if (name === "IntProgressModel" || name === "FloatProgressModel") return this.progress(model);
    if (name === "HTMLModel" || name === "LabelModel") {
      const text = name === "HTMLModel" ? htmlText(model.value) : String(model.value ?? "");
      return this.labelled(model, el("span", "widget-text", text));
    }
    if (name === "HBoxModel" || name === "VBoxModel") {
      const box = el("div", `widget-box ${name === "HBoxModel" ? "widget-hbox" : "widget-vbox"}`);
      for (const child of references(Array.isArray(model.children) ? model.children : [])) {
        const shown = this.render(child, renderOutputs, depth + 1);
        if (!shown) return null;
        box.append(shown);
      }
      return box;
    }
    if (name === "OutputModel") {
      const box = el("div", "widget-output");
      box.append(...renderOutputs(Array.isArray(model.outputs) ? model.outputs : []));
      return box;
    }
    return null;
  }

  labelled(model, shown) {
    const description = typeof model.description === "string" ? model.description : "";
    if (!description) return shown;
    const wrap = el("span", "widget-labelled");
    wrap.append(el("span", "widget-description", description), shown);
    return wrap;
  }

  progress(model) {
    const [value, min, max] = [model.value, model.min ?? 0, model.max ?? 100].map(Number);
    const share = max > min ? Math.min(1, Math.max(0, (value - min) / (max - min))) : 1;
    const bar = el("div", "widget-progress");
    bar.setAttribute("role", "progressbar");
    bar.setAttribute("aria-valuemin", String(min));
    bar.setAttribute("aria-valuemax", String(max));
    bar.setAttribute("aria-valuenow", String(value));
    if (BAR_STYLES.has(model.bar_style)) bar.dataset.barStyle = model.bar_style;
    const fill = el("div", "widget-progress-fill");
    fill.style.width = `${(share * 100).toFixed(2)}%`;
    bar.append(fill);
    return this.labelled(model, bar);
  }
}
