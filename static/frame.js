// Runs inside the sandboxed iframe of a kernel HTML output (an opaque origin): it only tells
// the viewer how tall the content is, so the frame can fit it.
"use strict";

const report = () => parent.postMessage({ nbrelayHeight: document.documentElement.scrollHeight }, "*");
new ResizeObserver(report).observe(document.documentElement);
addEventListener("load", report);
