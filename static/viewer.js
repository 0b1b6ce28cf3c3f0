// The nbrelay viewer: a list of kernels, and the selected kernel's output as a notebook shows
// it. A kernel opens at its latest output (the last records, read backwards), then follows
// /ws/view live from there; after any disconnect it resumes after the last seq it rendered,
// so nothing is shown twice and nothing is skipped. All URLs are relative to the page, so
// it works under any path prefix.
"use strict";

import { KernelView } from "./outputs.js";

const TAIL = 1000;  // records loaded when a kernel opens, and per "load earlier"
const KEPT = 20 * TAIL;  // records a followed view holds before it starts over from its last TAIL
const POLL_MS = 2000;  // the kernel list (who connected, exited, unloaded): a small GET
const MAX_DELAY_MS = 5000;
const NO_LIMIT = Number.MAX_SAFE_INTEGER;
const $ = (selector) => document.querySelector(selector);

// The URL that nbrelay prints carries #token=..., and a Jupyter extension's link #code=... (a
// single-use login code): either logs this browser in once, with an HttpOnly cookie that this
// page cannot read, and leaves the address bar. Plain links work after that.
async function logIn() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token") || new URLSearchParams(location.search).get("token");
  const code = fragment.get("code");
  if (!token && !code) return;
  const url = new URL(location.href);
  url.hash = "";
  url.searchParams.delete("token");
  history.replaceState(null, "", url.pathname + url.search);
  await fetch(new URL("api/login", url), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(token ? { token } : { code }),
  });
}

// What a browser that is not logged in sees instead of output: how to log in.
function showLogin() {
  const box = document.createElement("div");
  box.id = "login";
  const title = document.createElement("h2");
  title.textContent = "This browser is not logged in to nbrelay";
  const how = document.createElement("p");
  how.append(
    "Run ", Object.assign(document.createElement("code"), { textContent: "nbrelay status" }),
    " in a terminal and open the login URL that it prints, once: plain links work after that.",
  );
  box.append(title, how);
  $("#view").replaceChildren(box);
}

function ago(iso) {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return "";  // none yet, or not a time (a token holder sends any)
  const seconds = Math.max(0, (Date.now() - then) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

class App {
  constructor() {
    this.base = new URL(".", location.href);
    this.kernels = new Map();  // id -> {info, item, view}
    this.selected = new URLSearchParams(location.search).get("kernel");
    this.chosen = Boolean(this.selected);  // by the user: a click, or the URL
    this.order = [];  // kernel ids as the daemon lists them: newest first
    this.ws = null;
    this.delay = 500;
    this.follow = true;
    this.frame = 0;
    this.scroller = $("#outputs");
  }

  async api(path, params = {}) {
    const url = new URL(path, this.base);
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
    const response = await fetch(url);
    if (response.status === 401) {
      this.loggedOut();
      throw new Error("unauthorized");
    }
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  loggedOut() {
    this.setState("not logged in", "error");
    showLogin();
  }

  setState(text, kind) {
    const state = $("#connection");
    state.textContent = text;
    state.dataset.kind = kind;
  }

  async start() {
    this.scroller.addEventListener("scroll", () => this.onScroll());
    $("#jump").addEventListener("click", () => this.jump());
    $("#earlier").addEventListener("click", () => this.loadEarlier());
    $("#search").addEventListener("submit", (e) => { e.preventDefault(); this.search(); });
    $("#download").addEventListener("click", () => this.download());
    // A bookmarked kernel opens at once; the list fills in beside it.
    const listed = this.refreshKernels();
    try {
      if (!this.selected) await listed;
    } catch {
      return;
    }
    setInterval(() => this.refreshKernels().then(() => this.followPreferred()).catch(() => {}), POLL_MS);
    if (!this.selected) this.selected = this.preferred();
    if (this.selected) await this.open(this.selected);
    else this.connect();  // nothing yet: wait for the first kernel to speak
    await listed.catch(() => {});
  }

  entry(id) {
    let entry = this.kernels.get(id);
    if (!entry) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.addEventListener("click", () => { this.chosen = true; this.open(id); });
      item.append(button);
      $("#kernels").prepend(item);  // one that speaks before the list has it is the newest
      entry = { info: { kernel_id: id }, item, button, view: null };
      this.kernels.set(id, entry);
    }
    return entry;
  }

  async refreshKernels() {
    const { kernels } = await this.api("api/kernels");
    for (const info of kernels) this.entry(info.kernel_id).info = info;
    this.order = kernels.map((info) => info.kernel_id);
    $("#kernels").append(...this.order.map((id) => this.kernels.get(id).item));  // newest first
    for (const entry of this.kernels.values()) this.drawEntry(entry);
  }

  // The kernel to show while the user has chosen none: the newest connected one, else the
  // newest. A kernel's buffered output can reach the daemon after the page opened.
  preferred() {
    const infos = this.order.map((id) => this.kernels.get(id).info);
    return (infos.find((info) => info.connected) || infos[0] || {}).kernel_id || null;
  }

  // Until the user picks a kernel, one that is not connected gives way to one that is.
  followPreferred() {
    const shown = this.kernels.get(this.selected);
    if (this.chosen || (shown && shown.info.connected)) return;
    const id = this.preferred();
    if (id && id !== this.selected) this.open(id);
  }

  drawEntry(entry) {
    const info = entry.info;
    const said = ["exited", "unloaded"].includes(info.execution_state); // the hook said why
    const gone = said ? info.execution_state : "disconnected";
    const state = info.connected === false ? gone : (entry.view && entry.view.state) || info.execution_state || "";
    entry.button.replaceChildren();
    const title = document.createElement("span");
    title.className = "name";
    title.textContent = info.notebook ? info.notebook.split("/").pop() : info.kernel_id;
    entry.button.title = info.notebook || info.kernel_id;  // the whole path, on hover
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = [info.hostname, ago(info.last_time)].filter(Boolean).join(" · ");
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = state;
    entry.item.dataset.state = state;
    entry.button.append(title, badge, meta);
    entry.item.classList.toggle("selected", info.kernel_id === this.selected);
    entry.button.setAttribute("aria-current", info.kernel_id === this.selected ? "true" : "false");
  }

  async open(id) {
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
    clearTimeout(this.retry);
    this.selected = id;
    const url = new URL(location.href);
    url.searchParams.set("kernel", id);
    history.replaceState(null, "", url.pathname + url.search);
    const entry = this.entry(id);
    for (const other of this.kernels.values()) this.drawEntry(other);
    if (!entry.view) {
      entry.view = new KernelView(id);
      this.setState("loading the latest output", "replaying");
      const { messages } = await this.api("api/messages", { kernel_id: id, before: NO_LIMIT, limit: TAIL });
      entry.view.add(messages);
      entry.view.hasEarlier = messages.length === TAIL;
    }
    $("#view").replaceChildren(entry.view.root);
    $("#earlier").hidden = !entry.view.hasEarlier;
    this.follow = true;
    this.render();
    this.connect();
  }

  get view() {
    const entry = this.kernels.get(this.selected);
    return entry ? entry.view : null;
  }

  connect() {
    const view = this.view;
    const url = new URL("ws/view", this.base);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const params = { since: view ? view.lastSeq : 0 };
    if (view) params.kernel_id = view.id;
    url.search = new URLSearchParams(params);
    const ws = new WebSocket(url);
    this.ws = ws;
    const from = params.since;
    const target = view ? this.entry(view.id).info.last_seq || 0 : 0;
    this.setState("replaying", "replaying");
    ws.onmessage = (event) => {
      const data = JSON.parse(event.data);
      if (!Array.isArray(data)) {
        if (data.type === "caught_up") { this.delay = 500; this.setState("live", "live"); }
        return;
      }
      if (!this.view) {  // the first kernel to speak becomes the selection
        this.open(data[0].kernel_id);
        return;
      }
      this.view.add(data);
      // Every record is kept for "load earlier": a page left open on a chatty kernel would
      // grow without end. While following, the view starts over from its latest records.
      if (this.follow && this.view.records.length > KEPT) this.rebuild(this.view.records.slice(-TAIL), true);
      if ($("#connection").dataset.kind === "replaying" && target > from) {
        const done = Math.min(100, Math.round((100 * (this.view.lastSeq - from)) / (target - from)));
        this.setState(`replaying ${done}%`, "replaying");
      }
      this.scheduleRender();
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      if (event.code === 1008) {
        this.loggedOut();
        return;
      }
      this.reconnectIn(this.delay * (0.5 + Math.random()));
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    };
  }

  reconnectIn(ms) {
    const until = Date.now() + ms;
    const tick = () => {
      const left = until - Date.now();
      if (left <= 0) { this.connect(); return; }
      this.setState(`reconnecting in ${Math.ceil(left / 1000)} s`, "reconnecting");
      this.retry = setTimeout(tick, Math.min(left, 1000));
    };
    tick();
  }

  scheduleRender() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    const view = this.view;
    if (!view) return;
    view.render();
    document.body.dataset.lastSeq = view.lastSeq;
    const entry = this.kernels.get(view.id);
    if (entry && view.state) this.drawEntry(entry);
    if (this.follow) this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  onScroll() {
    const atBottom = this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 40;
    this.follow = atBottom;
    $("#jump").hidden = atBottom;
  }

  jump() {
    this.follow = true;
    $("#jump").hidden = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  async loadEarlier() {
    const old = this.view;
    const { messages } = await this.api("api/messages", { kernel_id: old.id, before: old.firstSeq, limit: TAIL });
    if (this.view !== old) return;  // another kernel was opened, or this one started over
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this.rebuild([...messages, ...old.records], messages.length === TAIL).render();
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }

  // The selected kernel's view made anew from `records`, in place of the current one.
  rebuild(records, hasEarlier) {
    const old = this.view;
    const view = new KernelView(old.id);
    view.add(records);
    view.state = old.state;
    view.hasEarlier = hasEarlier;
    this.entry(old.id).view = view;
    $("#view").replaceChildren(view.root);
    $("#earlier").hidden = !hasEarlier;
    return view;
  }

  search() {
    const query = $("#search input").value.toLowerCase();
    const view = this.view;
    for (const old of document.querySelectorAll(".hit")) old.classList.remove("hit");
    if (!query || !view) { $("#hits").textContent = ""; return; }
    const hits = [...view.root.querySelectorAll(".line, .ename, summary, .display pre")]
      .filter((node) => node.textContent.toLowerCase().includes(query));
    if (!hits.length) { $("#hits").textContent = "no match"; return; }
    this.hit = query === this.lastQuery ? (this.hit + 1) % hits.length : 0;
    this.lastQuery = query;
    const node = hits[this.hit];
    node.classList.add("hit");
    node.scrollIntoView({ block: "center" });
    this.follow = false;
    $("#jump").hidden = false;
    $("#hits").textContent = `${this.hit + 1} of ${hits.length}`;
  }

  // The whole history of the kernel as text, read page by page (more than what is shown).
  async download() {
    const view = this.view;
    if (!view) return;
    const button = $("#download");
    const transcript = new KernelView(view.id);  // never rendered: text only
    let since = 0;
    for (;;) {
      const { messages } = await this.api("api/messages", { kernel_id: view.id, since });
      if (!messages.length) break;
      transcript.add(messages);
      since = messages[messages.length - 1].seq;
      button.textContent = `Downloading… ${transcript.records.length} records`;
    }
    button.textContent = "Download transcript";
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([transcript.text()], { type: "text/plain" }));
    link.download = `${(this.entry(view.id).info.notebook || view.id).split("/").pop()}.txt`;
    link.click();
    URL.revokeObjectURL(link.href);
  }
}

logIn().finally(() => new App().start());
