// A small terminal model for stream output: lines of styled segments, no DOM, no markup.
//
// Notebook output is written for a terminal: tqdm redraws its bar with "\r", some tools
// use "\b", "ESC[K" (erase line) and "ESC[A" (cursor up) for multi-line bars, and colours
// come as SGR sequences (16, 256 and 24-bit). Applying them here, instead of appending
// text, is what turns a thousand progress updates into one line. Everything else that
// starts with ESC (OSC hyperlinks and titles included) is dropped: the view only ever
// inserts segment text as text, so no sequence can become markup or a link.
"use strict";

const NAMES = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
const CUBE = [0, 95, 135, 175, 215, 255];
// CSI (parameters, intermediates, final byte), OSC (ended by BEL or ST), or a 2-byte escape.
const ESCAPE = /\x1b(?:\[([0-?]*)[ -\/]*([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/y;
const INCOMPLETE = /\x1b(?:\[[0-?]*[ -\/]*|\][^\x07\x1b]*\x1b?)?$/;
export const MAX_LINES = 5000;  // kept per stream; older lines are counted in `trimmed`
// Every count is bounded, as on a real terminal, whose screen has edges. Unbounded,
// "ESC[9999999999C" asked for ten billion spaces (the page threw, and a smaller count crashed
// the tab), "ESC[9999999999B" for as many lines, and a line of thousands of colours redrawn
// with "\r" took time quadratic in the output: writing over a line costs a pass over it.
export const COLUMNS = 1000;  // cursor moves stop at this right edge, and pad at most this much
export const WIDTH = 10_000;  // text wraps here, into rows that text() joins again
export const SEGMENTS = 256;  // styles per row; past it, the row's last style goes on
export const SGR_PARAMS = 32;  // parameters read per SGR sequence; terminals cap them too

export const PLAIN = Object.freeze({});

function color256(n) {
  if (n < 8) return { name: NAMES[n] };
  if (n < 16) return { name: "bright-" + NAMES[n - 8] };
  if (n < 232) {
    n -= 16;
    return { rgb: [CUBE[Math.floor(n / 36)], CUBE[Math.floor(n / 6) % 6], CUBE[n % 6]] };
  }
  const level = 8 + (n - 232) * 10;
  return { rgb: [level, level, level] };
}

// The style after an SGR sequence ("ESC[...m"); styles are immutable and shared.
export function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(/[;:]/, SGR_PARAMS).map((p) => (p === "" ? 0 : Number(p)));
  let next = { ...style };
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    if (c === 0) next = {};
    else if (c === 1) next.bold = true;
    else if (c === 2) next.dim = true;
    else if (c === 3) next.italic = true;
    else if (c === 4) next.underline = true;
    else if (c === 7) next.inverse = true;
    else if (c === 22) { delete next.bold; delete next.dim; }
    else if (c === 23) delete next.italic;
    else if (c === 24) delete next.underline;
    else if (c === 27) delete next.inverse;
    else if (c >= 30 && c <= 37) next.fg = { name: NAMES[c - 30] };
    else if (c >= 90 && c <= 97) next.fg = { name: "bright-" + NAMES[c - 90] };
    else if (c >= 40 && c <= 47) next.bg = { name: NAMES[c - 40] };
    else if (c >= 100 && c <= 107) next.bg = { name: "bright-" + NAMES[c - 100] };
    else if (c === 39) delete next.fg;
    else if (c === 49) delete next.bg;
    else if (c === 38 || c === 48) {
      const key = c === 38 ? "fg" : "bg";
      if (codes[i + 1] === 5 && i + 2 < codes.length) {
        next[key] = color256(codes[i + 2] & 255);
        i += 2;
      } else if (codes[i + 1] === 2 && i + 4 < codes.length) {
        next[key] = { rgb: codes.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v))) };
        i += 4;
      }
    }
  }
  return Object.keys(next).length ? Object.freeze(next) : PLAIN;
}

function lineLength(line) {
  let n = 0;
  for (const seg of line) n += seg.text.length;
  return n;
}

// The segments of `line` between columns a and b.
function slice(line, a, b) {
  const out = [];
  let pos = 0;
  for (const seg of line) {
    const end = pos + seg.text.length;
    if (end > a && pos < b) {
      out.push({ text: seg.text.slice(Math.max(0, a - pos), Math.min(seg.text.length, b - pos)), style: seg.style });
    }
    pos = end;
  }
  return out;
}

// `line` in at most SEGMENTS segments (changed in place: only its last few are merged).
function capped(line) {
  if (line.length > SEGMENTS) {
    const tail = line.splice(SEGMENTS - 1);
    line.push({ text: tail.map((seg) => seg.text).join(""), style: tail[0].style });
  }
  return line;
}

// `text` written over `line` from column `col` (inside the line), in place: the segments
// before and after the ones it covers are kept as they are, not copied.
function overwrite(line, col, text, style) {
  const end = col + text.length;
  let i = 0;
  let pos = 0;  // where segment i starts
  while (pos + line[i].text.length <= col) pos += line[i++].text.length;
  let j = i;
  let at = pos;  // where segment j starts
  while (j < line.length && at + line[j].text.length <= end) at += line[j++].text.length;
  const pieces = [
    { text: line[i].text.slice(0, col - pos), style: line[i].style },
    { text, style },
    ...(j < line.length ? [{ text: line[j].text.slice(end - at), style: line[j].style }] : []),
  ];
  line.splice(i, Math.min(j + 1, line.length) - i, ...pieces.filter((seg) => seg.text));
}

export class Terminal {
  constructor() {
    this.lines = [[]];
    this.row = 0;
    this.col = 0;
    this.style = PLAIN;
    this.pending = "";  // an escape sequence cut in two by the kernel's flushes
    this.dirty = 0;  // first line changed since the view last rendered
    this.trimmed = 0;  // lines dropped from the top to stay within MAX_LINES
  }

  write(text) {
    text = this.pending + text;
    this.pending = "";
    this.dirty = Math.min(this.dirty, this.row);
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch !== 10 && ch !== 13 && ch !== 8 && ch !== 27) continue;
      if (i > start) this.put(text.slice(start, i));
      start = i + 1;
      if (ch === 10) this.newline();
      else if (ch === 13) this.col = 0;
      else if (ch === 8) this.col = Math.max(0, this.col - 1);
      else {
        ESCAPE.lastIndex = i;
        const m = ESCAPE.exec(text);
        if (!m) {
          const tail = text.slice(i);
          if (tail.length < 256 && INCOMPLETE.test(tail)) { this.pending = tail; return; }
          continue;  // a lone ESC: drop it
        }
        if (m[2] !== undefined) this.csi(m[1], m[2]);
        i = ESCAPE.lastIndex - 1;
        start = ESCAPE.lastIndex;
      }
    }
    if (start < text.length) this.put(text.slice(start));
    this.trim();
  }

  newline() {
    this.row++;
    this.col = 0;
    while (this.lines.length <= this.row) this.lines.push([]);
  }

  // Cursor moves stop at the screen's edges: the right one at COLUMNS, the top and the bottom
  // at the first and last lines, as a terminal's cursor-down never scrolls (only "\n" adds a
  // line). A vertical move keeps the column within the screen, so that text written after it
  // pads at most COLUMNS spaces, however long the line it came from.
  csi(params, final) {
    const n = Math.max(1, parseInt(params, 10) || 1);  // may be Infinity: only ever clamped
    const line = this.lines[this.row];
    if (final === "m") this.style = applySgr(this.style, params);
    else if (final === "K") {
      const mode = parseInt(params, 10) || 0;
      const blank = { text: " ".repeat(this.col), style: PLAIN };
      // In place: a row keeps its `wrapped` mark.
      if (mode === 0) line.splice(0, line.length, ...slice(line, 0, this.col));
      else if (mode === 1) line.splice(0, line.length, ...capped([blank, ...slice(line, this.col, Infinity)]));
      else line.length = 0;
    } else if (final === "A") {
      this.row = Math.max(0, this.row - n);
      this.col = Math.min(this.col, COLUMNS - 1);
      this.dirty = Math.min(this.dirty, this.row);
    } else if (final === "B") {
      this.row = Math.min(this.lines.length - 1, this.row + n);
      this.col = Math.min(this.col, COLUMNS - 1);
    } else if (final === "C") this.col = Math.max(this.col, Math.min(this.col + n, COLUMNS - 1));
    else if (final === "D") this.col = Math.max(0, this.col - n);
    else if (final === "G") this.col = Math.min(n, COLUMNS) - 1;
    // Anything else (screen clears, modes, queries) has no meaning in a transcript.
  }

  // Text past WIDTH goes on in the next row, as a terminal wraps it; the row is marked so that
  // text() gives the line back whole.
  put(text) {
    while (this.col + text.length > WIDTH) {
      const room = WIDTH - this.col;
      if (room) this.putInRow(text.slice(0, room));
      text = text.slice(room);
      this.lines[this.row].wrapped = true;
      this.newline();
    }
    this.putInRow(text);
  }

  putInRow(text) {
    const line = this.lines[this.row];
    const length = lineLength(line);
    if (this.col > length) line.push({ text: " ".repeat(this.col - length), style: PLAIN });
    if (this.col >= length) {
      const last = line[line.length - 1];
      if (last && last.style === this.style) last.text += text;
      else line.push({ text, style: this.style });
    } else overwrite(line, this.col, text, this.style);  // as a terminal does after "\r"
    capped(line);
    this.col += text.length;
  }

  trim() {
    const extra = this.lines.length - MAX_LINES;
    if (extra > 0) {
      this.lines.splice(0, extra);
      this.row -= extra;
      this.trimmed += extra;
      this.dirty = 0;
    }
  }

  text() {
    const rows = this.lines.map((line) => line.map((seg) => seg.text).join("") + (line.wrapped ? "" : "\n"));
    return rows.join("").slice(0, -1);  // the last row is never wrapped: its "\n" is not text
  }
}
