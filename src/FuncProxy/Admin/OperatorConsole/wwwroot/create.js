// Create a key. The answer holds the key value once: it is shown with a warning and a copy button, and never again.
import { call } from './api.js';
import { h, show, title, announce } from './dom.js';
import { errorPanel, field, keyShownOnce } from './ui.js';
import { limitsEditor, metadataEditor } from './key.js';

export async function createView() {
  // One Idempotency-Key per form: a double submit or a retry after a lost answer cannot mint two keys.
  const idempotencyKey = crypto.randomUUID();
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '100', autocomplete: 'off' });
  const owner = h('input', { type: 'text', name: 'owner', maxlength: '100', autocomplete: 'off' });
  const upstreams = h('input', { type: 'text', name: 'upstreams', required: true, autocomplete: 'off' });
  const expires = h('input', { type: 'text', name: 'expiresAt', placeholder: '2027-01-31T00:00:00Z', autocomplete: 'off' });
  const [limitsElement, readLimits] = await limitsEditor(null);
  const [metadataElement, readMetadata] = metadataEditor({});
  const slot = h('div', { class: 'error-slot' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create key');
  const form = h('form', { class: 'card' },
    field('Name', name), field('Owner', owner, 'Optional: a team or person, to filter by.'),
    field('Allowed upstreams', upstreams, 'Comma separated upstream names, or * for all.'),
    field('Expires at', expires, 'Optional. RFC 3339 with an offset; empty: never expires.'),
    limitsElement, metadataElement, slot,
    h('div', { class: 'actions' }, submit));
  const root = h('section', {}, title('Create key'), form);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = {
      name: name.value,
      allowedUpstreams: upstreams.value.split(',').map((u) => u.trim()).filter(Boolean),
    };
    if (owner.value.trim()) body.owner = owner.value.trim();
    if (expires.value.trim()) body.expiresAt = expires.value.trim();
    const limits = Object.fromEntries(Object.entries(readLimits()).filter(([, v]) => v !== null));
    if (Object.keys(limits).length > 0) body.limits = limits;
    const metadata = readMetadata();
    if (Object.keys(metadata).length > 0) body.metadata = metadata;
    submit.disabled = true;
    try {
      const created = await call('POST', 'keys', { body, headers: { 'Idempotency-Key': idempotencyKey } });
      const record = created.record;
      const panel = created.keyShown && created.key
        ? keyShownOnce(created.key, created.note)
        : h('p', { class: 'warning' }, created.note ?? 'The key was already created; its value cannot be shown again.');
      show(root,
        title(`Key ${record.name} created`),
        panel,
        h('div', { class: 'actions' },
          h('a', { href: `#/keys/${encodeURIComponent(record.id)}`, class: 'button primary', id: 'open-created' }, 'I have stored it: open the key'),
          h('a', { href: '#/create', class: 'button secondary' }, 'Create another')));
      announce('Key created. Store it now: it is shown only once.');
      root.querySelector('.view-title').focus();
    } catch (error) {
      show(slot, errorPanel(error));
      slot.querySelector('[role=alert]')?.setAttribute('tabindex', '-1');
      slot.querySelector('[role=alert]')?.focus();
      submit.disabled = false;
    }
  });
  return root;
}
