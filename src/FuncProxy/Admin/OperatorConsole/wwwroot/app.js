// The console's entry: sign-in and a hash router (#/keys, #/keys/<id>, #/create, #/audit). The hash holds only
// filters and key ids, never a credential.
import { call, credential, signIn, signOut, ApiError } from './api.js';
import { h, show, title, focusTitle, announce } from './dom.js';
import { errorPanel, field } from './ui.js';
import { keysView } from './keys.js';
import { keyView, editView } from './key.js';
import { createView } from './create.js';
import { auditView } from './audit.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signOutButton = document.getElementById('sign-out');
const who = document.getElementById('who');

function signInView(message) {
  const kind = h('select', { name: 'kind' },
    h('option', { value: 'adminKey' }, 'Admin key (X-Admin-Key)'),
    h('option', { value: 'entraToken' }, 'Entra ID access token'));
  const secret = h('input', { type: 'password', name: 'secret', required: true, autocomplete: 'off', spellcheck: 'false' });
  const slot = h('div', { class: 'error-slot' }, message && errorPanel(message));
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'signin-title' },
    field('Credential', kind),
    field('Value', secret, 'Kept only for this tab (sessionStorage) and sent only to this gateway\'s management API.'),
    slot,
    h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    submit.disabled = true;
    const value = secret.value.trim();
    signIn(kind.value, value);
    try {
      // Any authenticated read proves the credential; the API's refusal (401, 403, 429) is shown as it says it.
      await call('GET', 'keys', { query: { limit: 1 } });
      secret.value = '';
      announce('Signed in.');
      if (!location.hash || location.hash === '#/signin') location.hash = '#/keys'; else route();
    } catch (error) {
      signOut();
      show(slot, errorPanel(error));
      secret.focus();
    } finally {
      submit.disabled = false;
    }
  });
  const heading = title('Sign in');
  heading.id = 'signin-title';
  return h('section', {}, heading,
    h('p', { class: 'muted' }, 'Use an admin key (minted with the CLI: admin-keys create) or an Entra ID access token carrying the admin app role.'),
    form);
}

function chrome(signedIn) {
  nav.hidden = !signedIn;
  signOutButton.hidden = !signedIn;
  who.hidden = !signedIn;
  const cred = credential();
  who.textContent = signedIn && cred ? (cred.kind === 'entraToken' ? 'Entra ID token' : `admin key ${cred.value.split('_')[1] ?? ''}`) : '';
  const current = location.hash.split('?')[0];
  for (const link of nav.querySelectorAll('a')) {
    if (current.startsWith(link.getAttribute('href'))) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
}

/** Parses "#/keys/abc?owner=x" into ["keys", "abc"] and URLSearchParams. */
function parseHash() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query ?? '') };
}

let generation = 0;

async function route() {
  const mine = ++generation;
  if (!credential()) {
    chrome(false);
    show(main, signInView());
    focusTitle(main);
    return;
  }
  chrome(true);
  const { parts, params } = parseHash();
  let view;
  try {
    switch (parts[0]) {
      case 'keys':
        view = parts.length === 1 ? keysView(params)
          : parts[2] === 'edit' ? editView(parts[1])
          : keyView(parts[1], params);
        break;
      case 'create':
        view = createView();
        break;
      case 'audit':
        view = auditView(params);
        break;
      default:
        location.replace('#/keys');
        return;
    }
    const node = await view;
    if (mine !== generation) return;
    show(main, node);
    focusTitle(main);
  } catch (error) {
    if (mine !== generation) return;
    if (error instanceof ApiError && error.status === 401) {
      // The credential stopped working (revoked admin key, expired token): back to sign-in, with the API's words.
      signOut();
      chrome(false);
      show(main, signInView(error));
    } else {
      show(main, h('section', {}, title('Something went wrong'), errorPanel(error)));
    }
    focusTitle(main);
  }
}

signOutButton.addEventListener('click', () => {
  signOut();
  announce('Signed out.');
  location.hash = '#/signin';
  route();
});
window.addEventListener('hashchange', route);
route();
