// facewatch web UI: session check, token form, hash routing between the pages.
import {api, onUnauthorized} from './api.js';
import {clear, errText, toast} from './dom.js';
import {createEventsPage} from './events.js';
import {createGalleryPage} from './gallery.js';
import {connectStream, createLivePage, disconnectStream} from './live.js';
import {createSettingsPage} from './settings.js';

const ROUTES = {live: createLivePage, events: createEventsPage, gallery: createGalleryPage, settings: createSettingsPage};
let pages = null; // route -> page, while the app runs
let current = null;

const $ = (id) => document.getElementById(id);

function route() {
  if (!pages) return;
  const name = (location.hash.replace(/^#\/?/, '').split(/[/?]/)[0]) || 'live';
  const target = ROUTES[name] ? name : 'live';
  for (const [n, p] of Object.entries(pages)) {
    p.el.hidden = n !== target;
    if (n !== target) p.hide();
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === target) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  current = target;
  document.title = `facewatch · ${target[0].toUpperCase()}${target.slice(1)}`;
  pages[target].show();
}

/** true when the session may use the API; otherwise the token form is shown. */
async function checkAuth() {
  try {
    const s = await api('/api/session', {handle401: true});
    if (s.auth_required && !s.authenticated) {
      showLogin('Your session has ended: enter the API token again.');
      return false;
    }
    return true;
  } catch (e) {
    return true; // the server is unreachable: keep retrying the stream, the banner says it is down
  }
}

function startApp() {
  stopApp();
  $('login').hidden = true;
  $('topbar').hidden = false;
  const root = clear($('pages'));
  pages = {};
  for (const [name, make] of Object.entries(ROUTES)) {
    pages[name] = make();
    pages[name].el.hidden = true;
    root.append(pages[name].el);
  }
  connectStream(checkAuth);
  route();
}

function stopApp() {
  disconnectStream();
  if (pages) for (const p of Object.values(pages)) p.stop();
  pages = null;
  current = null;
  clear($('pages'));
  $('stream-banner').hidden = true;
}

function showLogin(message) {
  stopApp();
  $('topbar').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message || '';
  $('login-token').value = '';
  $('login-token').focus();
}

async function login(ev) {
  ev.preventDefault();
  const token = $('login-token').value;
  const btn = $('login-submit');
  btn.disabled = true;
  $('login-error').textContent = '';
  try {
    await api('/api/login', {method: 'POST', json: {token}, handle401: true});
    startApp();
  } catch (e) {
    $('login-error').textContent = e.status === 401 ? 'That token is not accepted.' : `Sign-in failed: ${errText(e)}`;
  } finally {
    btn.disabled = false;
  }
}

async function boot() {
  $('login-form').addEventListener('submit', login);
  window.addEventListener('hashchange', route);
  onUnauthorized(() => showLogin('The server asked for the API token (401): sign in again.'));
  for (;;) {
    try {
      const s = await api('/api/session', {handle401: true});
      if (s.auth_required && !s.authenticated) showLogin();
      else startApp();
      return;
    } catch (e) {
      $('boot-msg').hidden = false;
      $('boot-msg').textContent = `Cannot reach the facewatch server: ${errText(e)}. Retrying…`;
      await new Promise((r) => setTimeout(r, 3000));
    }
  }
}

window.addEventListener('unhandledrejection', (e) => toast(`Unexpected error: ${errText(e.reason)}`));
boot().then(() => { $('boot-msg').hidden = true; });
