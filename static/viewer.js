// The nbrelay viewer: replays every record from /ws/view, groups it by kernel and cell,
// then follows live output. After a disconnect it resumes after the last seq it rendered,
// so nothing is shown twice and nothing is skipped. All URLs are relative to the page.
"use strict";

const TOKEN_KEY = "nbrelay.token";
const ANSI = /\x1b\[[0-9;?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g;

function takeToken() {
  // The URL nbrelay prints carries #token=...; keep it for this tab, then drop it from the bar.
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token")
    || new URLSearchParams(location.search).get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    const url = new URL(location.href);
    url.hash = "";
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search);
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // text, never markup
  return node;
}

class Kernel {
  constructor(id, viewer) {
    this.id = id;
    this.cells = new Map();  // parent msg_id -> {root, outputs, clearPending}
    this.root = el("div", "kernel");
    this.root.dataset.kernel = id;
    this.item = el("li", "", id);
    this.item.tabIndex = 0;
    const select = () => viewer.select(id);
    this.item.addEventListener("click", select);
    this.item.addEventListener("keydown", (e) => { if (e.key === "Enter") select(); });
    this.state = "";
  }

  label(content) {
    const name = content.notebook || this.id;
    this.item.textContent = `${name} (${content.hostname || "?"})`;
  }

  cell(parentId) {
    const key = parentId || "";
    let cell = this.cells.get(key);
    if (!cell) {
      const root = el("div", "cell");
      const outputs = el("div", "outputs");
      root.append(outputs);
      this.root.append(root);
      cell = { root, outputs, clearPending: false };
      this.cells.set(key, cell);
    }
    return cell;
  }

  add(record) {
    const c = record.content;
    switch (record.msg_type) {
      case "nbrelay.start":
        this.label(c);
        this.root.append(el("div", "notice", `kernel process ${c.pid} started on ${c.hostname} at ${c.started}`));
        return;
      case "nbrelay.gap":
        this.root.append(el("div", "notice", `${c.dropped} messages were lost: the kernel's buffer was full`));
        return;
      case "status":
        this.state = c.execution_state;
        this.item.dataset.state = this.state;
        return;
      case "execute_input": {
        const cell = this.cell(record.parent_msg_id);
        const head = el("div", "head");
        head.append(el("span", "count", `[${c.execution_count}] `));
        cell.root.insertBefore(head, cell.outputs);
        cell.root.insertBefore(el("pre", "code", c.code), cell.outputs);
        return;
      }
    }
    const cell = this.cell(record.parent_msg_id);
    if (record.msg_type === "clear_output") {
      if (c.wait) cell.clearPending = true; else cell.outputs.replaceChildren();
      return;
    }
    if (cell.clearPending) { cell.outputs.replaceChildren(); cell.clearPending = false; }
    if (record.msg_type === "stream") {
      const last = cell.outputs.lastElementChild;
      if (last && last.tagName === "PRE" && last.dataset.stream === c.name) {
        last.textContent += c.text.replace(ANSI, "");
      } else {
        const pre = el("pre", c.name, c.text.replace(ANSI, ""));
        pre.dataset.stream = c.name;
        cell.outputs.append(pre);
      }
    } else if (record.msg_type === "error") {
      const box = el("div", "error");
      box.append(el("div", "ename", `${c.ename}: ${c.evalue}`));
      box.append(el("pre", "traceback", (c.traceback || []).join("\n").replace(ANSI, "")));
      cell.outputs.append(box);
    } else if (record.msg_type === "update_display_data") {
      const id = c.transient && c.transient.display_id;
      for (const node of this.root.querySelectorAll("[data-display-id]")) {
        if (node.dataset.displayId === id) node.replaceChildren(renderMime(c.data || {}));
      }
    } else {  // display_data, execute_result
      const box = el("div", "display");
      const id = c.transient && c.transient.display_id;
      if (id) box.dataset.displayId = id;
      box.append(renderMime(c.data || {}));
      cell.outputs.append(box);
    }
  }
}

function renderMime(data) {
  for (const type of ["image/png", "image/jpeg"]) {
    if (data[type]) {
      const img = el("img");
      img.alt = data["text/plain"] || type;
      img.src = `data:${type};base64,${data[type]}`;
      return img;
    }
  }
  for (const type of ["text/html", "image/svg+xml"]) {
    if (data[type]) {
      // Kernel HTML runs in an opaque origin: it cannot reach this page, its storage or the token.
      const frame = el("iframe", "html");
      frame.sandbox = "allow-scripts";
      frame.srcdoc = [].concat(data[type]).join("");
      return frame;
    }
  }
  const text = [].concat(data["text/plain"] || "").join("");
  return el("pre", "plain", text);
}

class Viewer {
  constructor() {
    this.token = takeToken();
    this.kernels = new Map();
    this.lastSeq = 0;
    this.delay = 500;
    this.selected = new URLSearchParams(location.search).get("kernel");
    this.connection = document.getElementById("connection");
  }

  kernel(id) {
    let k = this.kernels.get(id);
    if (!k) {
      k = new Kernel(id, this);
      this.kernels.set(id, k);
      document.getElementById("kernels").append(k.item);
      document.getElementById("outputs").append(k.root);
      if (!this.selected || this.selected === id) this.select(id);
    }
    return k;
  }

  select(id) {
    this.selected = id;
    for (const k of this.kernels.values()) {
      const on = k.id === id;
      k.root.classList.toggle("selected", on);
      k.item.classList.toggle("selected", on);
    }
    const url = new URL(location.href);
    url.searchParams.set("kernel", id);
    history.replaceState(null, "", url.pathname + url.search);
  }

  setState(text, live) {
    this.connection.textContent = text;
    this.connection.classList.toggle("live", live);
  }

  connect() {
    const url = new URL("ws/view", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = new URLSearchParams({ since: this.lastSeq, token: this.token });
    const ws = new WebSocket(url);
    this.setState("replaying", false);
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => {
      if (event.code === 1008) {
        this.setState("the token was refused: open the URL that `nbrelay` printed", false);
        return;
      }
      const wait = this.delay * (0.5 + Math.random());
      this.delay = Math.min(this.delay * 2, 5000);
      this.setState(`reconnecting in ${Math.round(wait / 1000)} s`, false);
      setTimeout(() => this.connect(), wait);
    };
  }

  receive(data) {
    if (!Array.isArray(data)) {
      if (data.type === "caught_up") { this.delay = 500; this.setState("live", true); }
      return;
    }
    for (const record of data) {
      if (record.seq <= this.lastSeq) continue;  // never render a record twice
      this.kernel(record.kernel_id).add(record);
      this.lastSeq = record.seq;
    }
    document.body.dataset.lastSeq = this.lastSeq;
  }
}

new Viewer().connect();
