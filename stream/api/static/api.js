// The HTTP API client: JSON in, JSON out, every error an ApiError with the server's code and message.
// A 401 anywhere sends the page back to the token form (see app.js).

export class ApiError extends Error {
  constructor(status, code, message, details, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.body = body;
  }
}

let unauthorized = () => {};

/** Called with the ApiError of any 401 (except where the caller handles it itself). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/**
 * fetch a JSON route.
 * opts: method, json (a body sent as JSON), form (a FormData), ok (extra statuses whose body is returned),
 *       handle401 (the caller deals with 401 itself).
 */
export async function api(path, opts = {}) {
  const init = {method: opts.method || 'GET', headers: {Accept: 'application/json'}, credentials: 'same-origin'};
  if (opts.json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.json);
  } else if (opts.form) {
    init.body = opts.form;
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the facewatch server (${e.message})`);
  }
  const text = await res.text();
  let body = null;
  if (text) {
    try { body = JSON.parse(text); } catch (_) { body = null; }
  }
  if (res.ok || (opts.ok || []).includes(res.status)) return body;
  const err = body && body.error && typeof body.error === 'object' ? body.error : null;
  const e = new ApiError(res.status, err ? err.code : `http_${res.status}`,
    err ? String(err.message) : `${res.status} ${res.statusText}${text && !body ? ': ' + text.slice(0, 200) : ''}`,
    // extra fields of the error (e.g. the per-file results of an upload) travel as details
    err ? (err.details !== undefined ? err.details : err) : undefined, body);
  if (res.status === 401 && !opts.handle401) unauthorized(e);
  throw e;
}

/** Query string from an object, skipping empty values. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === '') continue;
    u.set(k, String(v));
  }
  const s = u.toString();
  return s ? '?' + s : '';
}

export const enc = encodeURIComponent;
