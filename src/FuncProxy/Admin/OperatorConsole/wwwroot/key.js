// One key: its record, limits (every field the API returns, so new ones need no code here), metadata, usage per hour
// and audit trail; edit (a JSON merge patch of what changed), rotate with a grace period, disable/enable/revoke.
import { call, documentedLimitNames } from './api.js';
import { h, show, title, label, time, value, table, announce, focusTitle } from './dom.js';
import { dialog, errorPanel, field, keyShownOnce, statusBadge } from './ui.js';
import { usageCharts } from './chart.js';
import { auditRows, auditHeadings } from './audit.js';

const recordFields = ['id', 'redacted', 'name', 'owner', 'status', 'createdAt', 'expiresAt', 'allowedUpstreams', 'previousSecretExpiresAt', 'limits', 'metadata'];
const ranges = { '24h': 24, '7d': 24 * 7, '30d': 24 * 30 };

function definitions(pairs) {
  return h('dl', { class: 'record' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function keyPath(id, verb) {
  return `keys/${encodeURIComponent(id)}${verb ? `/${verb}` : ''}`;
}

async function usageSection(id, range) {
  const hours = ranges[range] ?? 24;
  const to = new Date(Math.ceil(Date.now() / 3600000) * 3600000);
  const from = new Date(to.getTime() - hours * 3600000);
  const select = h('select', { id: 'usage-range' },
    Object.keys(ranges).map((r) => h('option', { value: r, selected: r === range }, `last ${r.replace('h', ' hours').replace('d', ' days')}`)));
  const body = h('div', { class: 'usage-body' });
  async function load() {
    try {
      const usage = await call('GET', keyPath(id, 'usage'), { query: { from: from.toISOString(), to: to.toISOString() } });
      show(body, usageCharts(usage));
    } catch (error) {
      show(body, errorPanel(error));
    }
  }
  const refresh = h('button', { type: 'button', class: 'secondary', onclick: async () => { await load(); announce('Usage refreshed.'); } }, 'Refresh usage');
  select.addEventListener('change', () => { location.hash = `#/keys/${encodeURIComponent(id)}?range=${select.value}`; });
  await load();
  return h('section', { 'aria-labelledby': 'usage-heading', class: 'card' },
    h('div', { class: 'section-head' }, h('h2', { id: 'usage-heading' }, 'Usage'),
      h('div', { class: 'inline' }, h('label', { for: 'usage-range' }, 'Range'), select, refresh)),
    body);
}

async function auditSection(id) {
  let content;
  try {
    const page = await call('GET', 'audit', { query: { keyId: id, limit: 20 } });
    content = page.items.length === 0 ? h('p', { class: 'muted' }, 'No audit events in the last 7 days.')
      : table('Audit trail of this key', auditHeadings, auditRows(page.items));
  } catch (error) {
    content = errorPanel(error);
  }
  return h('section', { 'aria-labelledby': 'audit-heading', class: 'card' },
    h('div', { class: 'section-head' }, h('h2', { id: 'audit-heading' }, 'Audit trail'),
      h('a', { href: `#/audit?keyId=${encodeURIComponent(id)}` }, 'Full audit log of this key')),
    content);
}

function graceDialog(key) {
  const amount = h('input', { type: 'number', name: 'amount', min: '0', step: '1', value: '0', required: true });
  const unit = h('select', { name: 'unit' },
    [['1', 'seconds'], ['60', 'minutes'], ['3600', 'hours'], ['86400', 'days']].map(([v, n]) => h('option', { value: v, selected: n === 'hours' }, n)));
  return dialog({
    heading: `Rotate ${key.name}`,
    content: [
      h('p', {}, 'A new secret is issued for the same key id and shown once. The old secret keeps working for the grace period, then stops.'),
      h('div', { class: 'inline' }, field('Grace period', amount), field('Unit', unit)),
    ],
    confirm: 'Rotate',
    onConfirm: (data) => call('POST', keyPath(key.id, 'rotate'), {
      body: { gracePeriodSeconds: Math.round(Number(data.get('amount')) * Number(data.get('unit'))) },
    }),
  });
}

const statusActions = {
  disable: {
    confirm: 'Disable',
    text: (k) => `Disable ${k.name}? Calls with it are refused (within the key cache bound, 5 s by default) until it is enabled again.`,
  },
  enable: { confirm: 'Enable', text: (k) => `Enable ${k.name} again?` },
  revoke: {
    confirm: 'Revoke',
    danger: true,
    text: (k) => `Revoke ${k.name} for good? This cannot be undone: the key and any rotation grace stop working, and it cannot be enabled again.`,
  },
};

export async function keyView(id, params) {
  const root = h('section', { class: 'key-page' });
  async function render(shownOnce, message) {
    const key = await call('GET', keyPath(id));
    const [usage, audit] = await Promise.all([usageSection(id, params.get('range') ?? '24h'), auditSection(id)]);

    const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Key actions' });
    if (key.status !== 'revoked') {
      actions.append(h('a', { href: `#/keys/${encodeURIComponent(id)}/edit`, class: 'button secondary' }, 'Edit'));
      if (key.status === 'active') {
        actions.append(h('button', {
          type: 'button', class: 'secondary', onclick: async () => {
            const result = await graceDialog(key);
            if (result?.record) await rerender(keyShownOnce(result.key, result.note), 'Key rotated.');
          },
        }, 'Rotate'));
      }
      for (const verb of [key.status === 'disabled' ? 'enable' : 'disable', 'revoke']) {
        const action = statusActions[verb];
        actions.append(h('button', {
          type: 'button', class: action.danger ? 'danger' : 'secondary', onclick: async () => {
            const result = await dialog({
              heading: `${action.confirm} key`, content: h('p', {}, action.text(key)), confirm: action.confirm, danger: action.danger,
              onConfirm: () => call('POST', keyPath(id, verb)),
            });
            if (result?.id) await rerender(null, `Key ${result.status}.`);
          },
        }, action.confirm));
      }
    }

    const limits = key.limits && typeof key.limits === 'object' ? Object.entries(key.limits) : [];
    const others = Object.entries(key).filter(([k]) => !recordFields.includes(k));
    const metadata = Object.entries(key.metadata ?? {});
    show(root,
      h('p', { class: 'crumbs' }, h('a', { href: '#/keys' }, 'Keys'), ' / ', h('code', {}, key.id)),
      h('div', { class: 'view-head' }, title(key.name), statusBadge(key.status)),
      message && h('p', { class: 'notice', role: 'status' }, message),
      shownOnce,
      actions,
      h('div', { class: 'grid' },
        h('section', { class: 'card', 'aria-labelledby': 'record-heading' }, h('h2', { id: 'record-heading' }, 'Record'),
          definitions([
            ['Id', h('code', {}, key.id)],
            ['Key', h('code', {}, key.redacted)],
            ['Owner', key.owner ?? '—'],
            ['Status', statusBadge(key.status)],
            ['Created', time(key.createdAt)],
            ['Expires', key.expiresAt ? time(key.expiresAt) : 'never'],
            ['Allowed upstreams', value(key.allowedUpstreams)],
            key.previousSecretExpiresAt && ['Previous secret works until', time(key.previousSecretExpiresAt)],
            ...others.map(([k, v]) => [label(k), value(v)]),
          ])),
        h('section', { class: 'card', 'aria-labelledby': 'limits-heading' }, h('h2', { id: 'limits-heading' }, 'Limits and budgets'),
          limits.length === 0 ? h('p', { class: 'muted' }, 'None set: the configured defaults apply.')
            : definitions(limits.map(([k, v]) => [label(k), v === null ? h('span', { class: 'muted' }, 'default') : value(v)]))),
        h('section', { class: 'card', 'aria-labelledby': 'metadata-heading' }, h('h2', { id: 'metadata-heading' }, 'Metadata'),
          metadata.length === 0 ? h('p', { class: 'muted' }, 'None.')
            : definitions(metadata.map(([k, v]) => [k, value(v)])))),
      usage,
      audit);
  }
  async function rerender(shownOnce, message) {
    await render(shownOnce, message);
    announce(message);
    if (shownOnce) shownOnce.querySelector('input')?.focus(); else focusTitle(root);
  }
  await render(null, params.get('saved') ? 'Changes saved.' : null);
  return root;
}

function metadataRow(name, text) {
  const nameInput = h('input', { type: 'text', class: 'meta-name', value: name, 'aria-label': 'Metadata name', maxlength: '64' });
  const valueInput = h('input', { type: 'text', class: 'meta-value', value: text, 'aria-label': 'Metadata value', maxlength: '256' });
  const row = h('div', { class: 'meta-row' }, nameInput, valueInput,
    h('button', { type: 'button', class: 'secondary', 'aria-label': `Remove metadata entry`, onclick: () => { row.remove(); } }, 'Remove'));
  return row;
}

/** The metadata editor: name/value rows. Returns [element, read()] where read() gives the entries as an object. */
export function metadataEditor(initial) {
  const rows = h('div', { class: 'meta-rows' }, Object.entries(initial ?? {}).map(([k, v]) => metadataRow(k, v)));
  const add = h('button', {
    type: 'button', class: 'secondary', onclick: () => {
      const row = metadataRow('', '');
      rows.append(row);
      row.querySelector('input').focus();
    },
  }, 'Add metadata entry');
  const element = h('fieldset', {}, h('legend', {}, 'Metadata'), rows, add);
  const read = () => Object.fromEntries([...rows.querySelectorAll('.meta-row')]
    .map((r) => [r.querySelector('.meta-name').value.trim(), r.querySelector('.meta-value').value])
    .filter(([k]) => k !== ''));
  return [element, read];
}

/** Number inputs for every limit the API documents or the record carries. Returns [element, read()]. */
export async function limitsEditor(current) {
  const names = [...new Set([...(await documentedLimitNames()), ...Object.keys(current ?? {})])];
  const inputs = names.map((name) => {
    const v = current?.[name];
    return [name, h('input', { type: 'number', name: `limit-${name}`, min: '0', step: 'any', inputmode: 'decimal', value: v ?? '' })];
  });
  const element = h('fieldset', {}, h('legend', {}, 'Limits and budgets'),
    h('p', { class: 'hint' }, 'Empty: the configured default. 0: no such limit for this key.'),
    h('div', { class: 'limits-grid' }, inputs.map(([name, input]) => field(label(name), input))));
  const read = () => Object.fromEntries(inputs.map(([name, input]) => [name, input.value.trim() === '' ? null : Number(input.value)]));
  return [element, read];
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export async function editView(id) {
  const key = await call('GET', keyPath(id));
  const name = h('input', { type: 'text', name: 'name', required: true, maxlength: '100', value: key.name });
  const owner = h('input', { type: 'text', name: 'owner', maxlength: '100', value: key.owner ?? '' });
  const upstreams = h('input', { type: 'text', name: 'upstreams', required: true, value: (key.allowedUpstreams ?? []).join(', ') });
  const expires = h('input', { type: 'text', name: 'expiresAt', value: key.expiresAt ?? '', placeholder: '2027-01-31T00:00:00Z' });
  const [limitsElement, readLimits] = await limitsEditor(key.limits);
  const [metadataElement, readMetadata] = metadataEditor(key.metadata);
  // Fields this page has no form for (added to the API later, e.g. allowedModels, modelAliases): edited as JSON.
  const others = Object.entries(key).filter(([k]) => !recordFields.includes(k))
    .map(([k, v]) => [k, h('textarea', { name: k, rows: '3', spellcheck: 'false', value: JSON.stringify(v ?? null, null, 2) })]);
  const othersElement = others.length > 0 && h('fieldset', {}, h('legend', {}, 'Other fields (JSON)'),
    h('p', { class: 'hint' }, 'As the API returns them; null removes. Sent only when changed.'),
    others.map(([k, area]) => field(label(k), area)));
  const slot = h('div', { class: 'error-slot' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Save changes');
  const form = h('form', { class: 'card' },
    field('Name', name), field('Owner', owner, 'Empty: no owner.'),
    field('Allowed upstreams', upstreams, 'Comma separated upstream names, or *.'),
    field('Expires at', expires, 'RFC 3339 with an offset; empty: never expires.'),
    limitsElement, metadataElement, othersElement, slot,
    h('div', { class: 'actions' }, submit, h('a', { href: `#/keys/${encodeURIComponent(id)}`, class: 'button secondary' }, 'Cancel')));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    // A JSON merge patch (RFC 7396) of what changed: absent members stay as they are, null removes.
    const patch = {};
    if (name.value !== key.name) patch.name = name.value;
    const ownerValue = owner.value.trim() === '' ? null : owner.value.trim();
    if (ownerValue !== (key.owner ?? null)) patch.owner = ownerValue;
    const upstreamList = upstreams.value.split(',').map((u) => u.trim()).filter(Boolean);
    if (!same(upstreamList, key.allowedUpstreams)) patch.allowedUpstreams = upstreamList;
    const expiresValue = expires.value.trim() === '' ? null : expires.value.trim();
    if (expiresValue !== (key.expiresAt ?? null)) patch.expiresAt = expiresValue;
    const limits = readLimits();
    const before = Object.fromEntries(Object.keys(limits).map((n) => [n, key.limits?.[n] ?? null]));
    if (!same(limits, before)) patch.limits = limits;
    const metadata = readMetadata();
    const oldMetadata = key.metadata ?? {};
    if (!same(metadata, oldMetadata)) {
      patch.metadata = { ...metadata };
      for (const k of Object.keys(oldMetadata)) if (!(k in metadata)) patch.metadata[k] = null;
    }
    for (const [k, area] of others) {
      let parsed;
      try {
        parsed = JSON.parse(area.value.trim() === '' ? 'null' : area.value);
      } catch {
        show(slot, errorPanel({ message: `${label(k)} is not valid JSON.` }));
        area.focus();
        return;
      }
      if (!same(parsed, key[k] ?? null)) patch[k] = parsed;
    }
    if (Object.keys(patch).length === 0) {
      show(slot, h('p', { class: 'notice', role: 'status' }, 'Nothing changed.'));
      return;
    }
    submit.disabled = true;
    try {
      await call('PATCH', keyPath(id), { body: patch, patch: true });
      // Announced once, by the key page's own status notice (not also through the page's live region).
      location.hash = `#/keys/${encodeURIComponent(id)}?saved=1`;
    } catch (error) {
      show(slot, errorPanel(error));
      slot.querySelector('[role=alert]')?.setAttribute('tabindex', '-1');
      slot.querySelector('[role=alert]')?.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return h('section', {},
    h('p', { class: 'crumbs' }, h('a', { href: '#/keys' }, 'Keys'), ' / ', h('a', { href: `#/keys/${encodeURIComponent(id)}` }, key.name), ' / edit'),
    title(`Edit ${key.name}`), form);
}
