// One kernel's output as a notebook shows it: cells (one per execution), and in each its
// streams, rich displays and errors. Records go in with add(); the DOM is brought up to
// date once per animation frame, and only where something changed.
"use strict";

import { Terminal } from "./terminal.js";
import { Widgets, shownModel } from "./widgets.js";

export const SHOWN_LINES = 2000;  // stream lines in the DOM at first; "show earlier" adds more
// Inlined into each HTML output's frame, not loaded from a URL: a sandboxed frame's requests
// carry no cookie, and behind jupyter-server-proxy a request without one gets Jupyter's login
// page instead. The page's CSP allows this one inline script by its hash (relay/guard.py).
// Fetched once, without holding up the page (the viewer takes the token out of the address
// bar as soon as it runs).
const FRAME_SCRIPT = fetch(new URL("frame.js", import.meta.url)).then((response) => response.text());

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // text, never markup
  return node;
}

function joined(value) {
  return Array.isArray(value) ? value.join("") : String(value ?? "");
}

// Records follow Jupyter's messaging spec, but the daemon checks only their frame: a token
// holder can send any content. Where this page relies on a shape, it checks it, and a record
// of another shape is shown as an error box (KernelView.add) instead of stopping the view.
function need(condition, why) {
  if (!condition) throw new Error(why);
}

function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

// A display's mime bundle.
function bundle(content) {
  const data = content.data ?? {};
  need(isObject(data), "its data is not an object");
  return data;
}

// Terminal segments as DOM: spans with classes for the 16 colours, inline colours otherwise.
function renderLine(line) {
  const div = el("div", "line");
  for (const seg of line) {
    const s = seg.style;
    if (!s.fg && !s.bg && !s.bold && !s.dim && !s.italic && !s.underline && !s.inverse) {
      div.append(seg.text);
      continue;
    }
    const span = el("span", "", seg.text);
    let [fg, bg] = s.inverse ? [s.bg, s.fg] : [s.fg, s.bg];
    if (s.inverse) span.classList.add("ansi-inverse");
    for (const [color, prop] of [[fg, "color"], [bg, "backgroundColor"]]) {
      if (!color) continue;
      if (color.name) span.classList.add(`ansi-${prop === "color" ? "fg" : "bg"}-${color.name}`);
      else span.style[prop] = `rgb(${color.rgb.join(",")})`;
    }
    for (const flag of ["bold", "dim", "italic", "underline"]) if (s[flag]) span.classList.add(`ansi-${flag}`);
    div.append(span);
  }
  return div;
}

// A terminal's lines as a <pre>, re-rendering only the lines changed since last time.
class TerminalView {
  constructor(className) {
    this.term = new Terminal();
    this.pre = el("pre", className);
    this.more = el("button", "show-earlier");
    this.more.type = "button";
    this.more.hidden = true;
    this.more.addEventListener("click", () => { this.shown += SHOWN_LINES; this.rebuild(); });
    this.root = el("div", "terminal");
    this.root.append(this.more, this.pre);
    this.shown = SHOWN_LINES;
    this.first = 0;  // index in term.lines of the first line in the DOM
  }

  write(text) { this.term.write(text); }

  lines() {
    const lines = this.term.lines;
    // A stream that ends with "\n" has an empty last line; a notebook does not show it.
    return lines.length > 1 && lines[lines.length - 1].length === 0 ? lines.slice(0, -1) : lines;
  }

  rebuild() {
    this.pre.replaceChildren();
    this.term.dirty = 0;
    this.render();
  }

  render() {
    const term = this.term;
    if (term.dirty === Infinity) return;
    const lines = this.lines();
    const first = Math.max(0, lines.length - this.shown);
    if (first !== this.first || term.dirty < first) {
      this.pre.replaceChildren();  // the window moved: redraw it
      this.first = first;
      term.dirty = first;
    }
    // Drop the DOM lines from the first changed one on, then draw them again.
    const keep = Math.max(0, term.dirty - this.first);
    while (this.pre.childNodes.length > keep) this.pre.lastChild.remove();
    for (let i = this.first + keep; i < lines.length; i++) this.pre.append(renderLine(lines[i]));
    term.dirty = Infinity;
    const hidden = first + term.trimmed;
    this.more.hidden = hidden === 0;
    this.more.disabled = first === 0;
    if (hidden) {
      this.more.textContent = first === 0
        ? `${hidden} earlier lines are no longer kept (download the transcript for all)`
        : `show ${Math.min(SHOWN_LINES, first)} earlier lines (${hidden} hidden)`;
    }
  }

  text() { return this.term.text(); }
}

// Rich output, best representation first, as Jupyter picks it.
function renderMime(data) {
  if (data["text/html"] !== undefined) return sandboxed(joined(data["text/html"]));
  for (const type of ["image/svg+xml", "image/png", "image/jpeg", "image/gif"]) {
    if (data[type] === undefined) continue;
    const img = el("img");
    img.alt = joined(data["text/plain"]) || type;
    // An SVG as an image is inert: no scripts, no access to this page.
    const payload = type === "image/svg+xml" ? btoa(unescape(encodeURIComponent(joined(data[type])))) : joined(data[type]);
    img.src = `data:${type};base64,${payload.replace(/\s/g, "")}`;
    return img;
  }
  if (data["text/markdown"] !== undefined) {
    // The markdown parser loads the first time a notebook shows markdown, not before.
    const slot = el("div", "markdown");
    import("./vendor/marked/marked.esm.js").then(({ marked }) => {
      slot.append(sandboxed(marked.parse(joined(data["text/markdown"]))));
    });
    return slot;
  }
  if (data["application/json"] !== undefined) return el("pre", "json", JSON.stringify(data["application/json"], null, 2));
  const view = new TerminalView("plain");
  view.write(joined(data["text/plain"]));
  view.render();
  return view.root;
}

// Kernel HTML in an iframe with an opaque origin: no access to this page, its storage or
// the login. It inherits this page's CSP, so the kernel's own scripts do not run; only
// frame.js (ours, allowed by its hash) does, to report the content's height.
function sandboxed(html) {
  const frame = el("iframe", "html");
  frame.sandbox = "allow-scripts";
  frame.title = "kernel output";
  FRAME_SCRIPT.then((script) => {
    frame.srcdoc = `<!doctype html><meta charset=utf-8><base target=_blank><script>${script}</script>${html}`;
  });
  return frame;
}

window.addEventListener("message", (event) => {
  const height = event.data && event.data.nbrelayHeight;
  if (typeof height !== "number") return;
  for (const frame of document.querySelectorAll("iframe.html")) {
    if (frame.contentWindow === event.source) frame.style.height = `${Math.min(Math.max(height, 20), 4000)}px`;
  }
});

class Display {
  constructor(content, prompt) {
    this.root = el("div", "display");
    this.prompt = prompt;
    this.update(content);
  }
  update(content) {
    const shown = renderMime(bundle(content));  // first: a bad update leaves the display as it was
    this.content = content;
    this.root.replaceChildren();
    if (this.prompt) this.root.append(el("span", "prompt", this.prompt));
    this.root.append(shown);
  }
  render() {}
  text() { return joined(bundle(this.content)["text/plain"]); }
}

// A display that shows a widget: drawn from the model's latest state on each frame it
// changed in, or as its text/plain fallback, marked, if widgets.js cannot show it.
class WidgetDisplay extends Display {
  constructor(content, prompt, widgets) {
    super(content, prompt);
    this.widgets = widgets;
  }
  update(content) {
    this.model = shownModel(bundle(content));
    this.content = content;
  }
  render() {
    const shown = this.widgets.render(this.model, renderOutputs);
    this.shownAsWidget = shown !== null;
    this.root.replaceChildren();
    if (this.prompt) this.root.append(el("span", "prompt", this.prompt));
    if (shown) {
      this.root.append(shown);
      return;
    }
    const { "application/vnd.jupyter.widget-view+json": _, ...rest } = bundle(this.content);
    this.root.append(renderMime(rest), el("div", "notice", "an interactive widget: shown as text"));
  }
  text() { return this.shownAsWidget ? this.root.textContent : super.text(); }
}

// An Output widget's captured outputs (nbformat) as DOM.
function renderOutputs(outputs) {
  return outputs.filter(isObject).map((output) => {
    if (output.output_type === "stream" || output.output_type === "error") {
      const view = new TerminalView(output.output_type === "stream" ? `stream ${output.name}` : "traceback");
      view.write(output.output_type === "stream" ? joined(output.text) : joined((output.traceback || []).join("\n")));
      view.render();
      return view.root;
    }
    return renderMime(isObject(output.data) ? output.data : {});
  });
}

class ErrorOutput {
  constructor(content) {
    need(content.traceback === undefined || Array.isArray(content.traceback), "its traceback is not a list");
    this.content = content;
    this.root = el("div", "error");
    this.root.append(el("div", "ename", `${content.ename}: ${content.evalue}`));
    this.tb = new TerminalView("traceback");
    this.tb.write((content.traceback || []).join("\n"));
    this.root.append(this.tb.root);
  }
  render() { this.tb.render(); }
  text() { return this.tb.text(); }
}

class Stream {
  constructor(name) {
    this.name = name;
    this.view = new TerminalView(`stream ${name}`);
    this.root = this.view.root;
  }
  render() { this.view.render(); }
  text() { return this.view.text(); }
}

// In place of a record that could not be shown: says which, so that it can be found in the
// transcript or the API, and lets the records after it show.
class BrokenRecord {
  constructor(record, error) {
    const why = error instanceof Error ? error.message : String(error);
    this.message = `record ${record.seq} (${record.msg_type}) could not be shown: ${why}`;
    this.root = el("div", "broken", this.message);
  }
  render() {}
  text() { return `[${this.message}]`; }
}

class Cell {
  constructor(kernel, id) {
    this.id = id;
    this.outputs = [];
    this.clearPending = false;
    this.root = el("section", "cell");
    this.head = el("div", "head");
    this.outputsEl = el("div", "outputs");
    const copy = el("button", "copy", "copy output");
    copy.type = "button";
    copy.addEventListener("click", () => navigator.clipboard.writeText(this.text()));
    this.head.append(copy);
    this.root.append(this.head, this.outputsEl);
  }

  input(content) {
    need(typeof content.code === "string", "its code is not a string");
    const code = el("details", "code");
    code.open = content.code.split("\n").length <= 12;
    const summary = el("summary");
    summary.append(el("span", "count", `[${content.execution_count}]`), " ", el("span", "first", content.code.split("\n")[0]));
    code.append(summary, el("pre", "", content.code));
    this.head.prepend(code);
  }

  clear() {
    this.outputs = [];
    this.outputsEl.replaceChildren();
  }

  add(output) {
    this.outputs.push(output);
    this.outputsEl.append(output.root);
    return output;
  }

  text() { return this.outputs.map((o) => o.text()).join("\n"); }
}

export class KernelView {
  constructor(id) {
    this.id = id;
    this.cells = new Map();
    this.displays = new Map();  // display_id -> [Display]
    this.widgets = new Widgets();
    this.widgetDisplays = new Set();
    this.dirty = new Set();
    this.root = el("div", "kernel");
    this.root.dataset.kernel = id;
    this.firstSeq = Infinity;  // the records shown run from here...
    this.lastSeq = 0;  // ...to here
    this.records = [];
  }

  cell(parentId) {
    const key = parentId || "";
    let cell = this.cells.get(key);
    if (!cell) {
      cell = new Cell(this, key);
      this.cells.set(key, cell);
      this.root.append(cell.root);
    }
    return cell;
  }

  notice(text) {
    this.root.append(el("div", "notice", text));
  }

  // Add records in seq order; earlier ones than shown rebuild the whole view.
  add(records) {
    for (const record of records) {
      if (record.seq <= this.lastSeq) continue;  // never render a record twice
      this.records.push(record);
      try {
        this.apply(record);
      } catch (error) {
        this.cell(record.parent_msg_id).add(new BrokenRecord(record, error));
      }
      this.firstSeq = Math.min(this.firstSeq, record.seq);
      this.lastSeq = record.seq;
    }
  }

  apply(record) {
    const c = record.content;
    need(isObject(c), "its content is not an object");
    switch (record.msg_type) {
      case "nbrelay.start":
        this.notice(`kernel process ${c.pid} started on ${c.hostname} at ${c.started}`);
        return;
      case "nbrelay.gap":
        this.notice(`${c.dropped} messages were lost here: the kernel's buffer was full while the daemon was away`);
        return;
      case "status":
        this.state = c.execution_state;
        return;
      case "nbrelay.cell":  // which notebook cell ran: for recover and export, not shown
        return;
      case "execute_input":
        this.cell(record.parent_msg_id).input(c);
        return;
      case "comm_open":
      case "comm_msg":
      case "comm_close": {
        const changed = this.widgets.apply(record.msg_type, c);
        if (changed !== null) this.widgetChanged(changed);
        return;
      }
      case "update_display_data":
        for (const display of this.displays.get(c.transient && c.transient.display_id) || []) {
          display.update(c);
          this.dirty.add(display);  // a widget display draws on render()
        }
        return;
    }
    const capturing = this.widgets.capturing(record.parent_msg_id);
    if (capturing !== null) {  // a `with out:` block's output goes into its Output widget
      this.widgets.capture(capturing, record.msg_type, c);
      this.widgetChanged(capturing);
      return;
    }
    const cell = this.cell(record.parent_msg_id);
    if (record.msg_type === "clear_output") {
      if (c.wait) cell.clearPending = true;
      else cell.clear();
      return;
    }
    if (cell.clearPending) {
      cell.clear();
      cell.clearPending = false;
    }
    let output;
    if (record.msg_type === "stream") {
      const last = cell.outputs[cell.outputs.length - 1];
      need(typeof c.text === "string", "its text is not a string");
      output = last instanceof Stream && last.name === c.name ? last : cell.add(new Stream(c.name));
      output.view.write(c.text);
    } else if (record.msg_type === "error") {
      output = cell.add(new ErrorOutput(c));
    } else {
      const prompt = record.msg_type === "execute_result" ? `Out[${c.execution_count}]:` : "";
      const widget = shownModel(bundle(c)) !== null;
      output = cell.add(widget ? new WidgetDisplay(c, prompt, this.widgets) : new Display(c, prompt));
      if (widget) this.widgetDisplays.add(output);
      const id = c.transient && c.transient.display_id;
      if (id) this.displays.set(id, [...(this.displays.get(id) || []), output]);
    }
    if (c.nbrelay_truncated) {
      output.root.append(el("div", "notice", `this output was ${c.nbrelay_truncated.original_bytes} bytes: it was stored cut`));
    }
    this.dirty.add(output);
  }

  // Redraw, on the next frame, the widget displays that show model ``id``: many updates in
  // one frame are one redraw.
  widgetChanged(id) {
    for (const display of this.widgetDisplays) {
      if (this.widgets.uses(display.model, id)) this.dirty.add(display);
    }
  }

  render() {
    for (const output of this.dirty) output.render();
    this.dirty.clear();
  }

  text() {
    const parts = [];
    for (const cell of this.cells.values()) {
      const code = cell.head.querySelector("pre");
      if (code) parts.push(`${cell.head.querySelector(".count").textContent} ${code.textContent}`);
      const out = cell.text();
      if (out) parts.push(out);
    }
    return parts.join("\n") + "\n";
  }
}
