// DOM helpers. Every string that reaches the page goes through textContent / text nodes / setAttribute:
// names, cameras and messages come from users and from the server, never from innerHTML.

/** Create an element: h('div', {class: 'x', onclick: fn}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'style') Object.assign(el.style, v); // CSSOM, not a style attribute: the CSP allows no inline styles
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'src' || k === 'href') el.setAttribute(k, safeUrl(v));
    else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'multiple' || k === 'hidden') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, ...children);
  return el;
}

/** Append children: nodes as they are, anything else as text; null/false/undefined skipped. */
export function append(el, ...children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace an element's children (same rules as append). */
export function fill(el, ...children) {
  return append(clear(el), ...children);
}

/** Only same-origin paths and http(s) URLs become src/href (no javascript: or data: from the server). */
export function safeUrl(u) {
  const s = String(u);
  if (s.startsWith('/') && !s.startsWith('//')) return s;
  if (s.startsWith('#')) return s;
  try {
    const url = new URL(s, location.href);
    if (url.protocol === 'http:' || url.protocol === 'https:' || url.protocol === 'blob:') return url.href;
  } catch (_) { /* fall through */ }
  return 'about:blank';
}

/** Add a cache-busting query parameter. */
export function bust(u) {
  return u + (u.includes('?') ? '&' : '?') + '_=' + Date.now();
}

// ----------------------------------------------------------------------------- formatting
export function fmtTime(ts) {
  if (ts === null || ts === undefined) return '—';
  return new Date(ts * 1000).toLocaleString();
}

export function fmtDate(ts) {
  if (ts === null || ts === undefined) return '—';
  return new Date(ts * 1000).toLocaleDateString();
}

/** The time when it is today, else date and time. */
export function fmtShort(ts) {
  if (ts === null || ts === undefined) return '—';
  const d = new Date(ts * 1000);
  return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
}

export function fmtClock(ts) {
  if (ts === null || ts === undefined) return '—';
  return new Date(ts * 1000).toLocaleTimeString();
}

export function fmtAgo(ts) {
  if (ts === null || ts === undefined) return 'never';
  const s = Date.now() / 1000 - ts;
  if (s < 0) return 'just now';
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} d ago`;
}

export function fmtNum(x, digits = 3) {
  return (x === null || x === undefined || Number.isNaN(x)) ? '—' : Number(x).toFixed(digits);
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** The name shown for an event: the identity (or who an unknown face was relabelled as), else its visitor group. */
export function who(ev) {
  if (ev.identity) return ev.identity;
  if (ev.relabel_name) return ev.relabel_name;
  if (ev.unknown_id !== null && ev.unknown_id !== undefined) return `Unknown visitor #${ev.unknown_id}`;
  return 'Unknown visitor';
}

/** Score against threshold as text plus a small bar with a threshold mark. */
export function scoreView(score, threshold) {
  const pct = (x) => `${Math.max(0, Math.min(1, x)) * 100}%`;
  if (score === null || score === undefined || score <= -1) {
    // -1 is what the pipeline stores when there was no candidate at all (nobody enrolled, or vetoed)
    return h('div', {class: 'score under', title: `no gallery candidate (threshold ${fmtNum(threshold)})`},
      h('span', {class: 'score-text muted'}, 'no candidate'));
  }
  const over = score >= threshold;
  return h('div', {class: 'score ' + (over ? 'over' : 'under'), title: `score ${fmtNum(score)} vs threshold ${fmtNum(threshold)}`},
    h('span', {class: 'score-text'}, fmtNum(score), h('span', {class: 'muted'}, over ? ' ≥ ' : ' < ', fmtNum(threshold))),
    h('span', {class: 'bar'}, h('span', {class: 'fill', style: {width: pct(score)}}),
      h('span', {class: 'mark', style: {left: pct(threshold)}})));
}

/** An <img> that says so when it cannot be loaded, instead of a broken-image icon. */
export function img(src, attrs = {}) {
  if (!src) return h('div', {class: 'noimg ' + (attrs.class || '')}, 'no image');
  const el = h('img', {loading: 'lazy', ...attrs, src});
  el.addEventListener('error', () => {
    el.classList.add('failed');
    el.alt = 'image unavailable';
    el.title = 'image unavailable';
  });
  return el;
}

// ----------------------------------------------------------------------------- messages
const toastRoot = () => document.getElementById('toasts');

/** A visible message; errors stay until closed or 12 s. */
export function toast(message, kind = 'error') {
  const close = h('button', {class: 'toast-close', 'aria-label': 'dismiss', type: 'button'}, '×');
  const el = h('div', {class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status'},
    h('span', {class: 'toast-text'}, message), close);
  close.addEventListener('click', () => el.remove());
  toastRoot().prepend(el);
  setTimeout(() => el.remove(), kind === 'error' ? 12000 : 5000);
  return el;
}

/** Text of an error for the operator: "message (code)". */
export function errText(e) {
  if (e && e.code && e.message) return `${e.message} (${e.code})`;
  return String(e && e.message ? e.message : e);
}

// ----------------------------------------------------------------------------- lightbox
export function lightbox(src, caption) {
  const close = () => { box.remove(); document.removeEventListener('keydown', onKey); };
  const onKey = (ev) => { if (ev.key === 'Escape') close(); };
  const box = h('div', {class: 'lightbox', role: 'dialog', 'aria-label': caption || 'image', onclick: close},
    img(src, {class: 'lightbox-img', alt: caption || 'frame', loading: 'eager'}),
    caption ? h('div', {class: 'lightbox-caption'}, caption) : null,
    h('button', {class: 'lightbox-close', type: 'button', 'aria-label': 'close'}, '×'));
  document.addEventListener('keydown', onKey);
  document.body.append(box);
  return box;
}
