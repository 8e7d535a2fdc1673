// The audit log: filter by key, time range; newest first; pages with the API's continuation token.
import { call } from './api.js';
import { h, title, time, table } from './dom.js';
import { field } from './ui.js';

export const auditHeadings = ['Time', 'Action', 'Result', 'Key', 'Actor', 'Client IP', 'Detail', 'Request id'];

export function auditRows(items) {
  return items.map((e) => h('tr', {},
    h('td', { class: 'nowrap' }, time(e.time)),
    h('td', {}, h('code', {}, e.action ?? '')),
    h('td', {}, h('span', { class: ['badge', `result-${e.result}`] }, e.result ?? '')),
    h('td', {}, e.keyId ? h('a', { href: `#/keys/${encodeURIComponent(e.keyId)}` }, e.keyId) : '—'),
    h('td', {}, e.actor ?? ''),
    h('td', {}, e.clientIp ?? ''),
    h('td', {}, e.detail ?? ''),
    h('td', {}, h('code', { class: 'small' }, e.requestId ?? ''))));
}

/** datetime-local (read as UTC) -> RFC 3339. */
function toApiTime(v) {
  return v ? `${v.length === 16 ? `${v}:00` : v}Z` : '';
}

function hashFor(params) {
  const query = new URLSearchParams();
  for (const [name, v] of params) if (v) query.set(name, v);
  const text = query.toString();
  return `#/audit${text ? `?${text}` : ''}`;
}

export async function auditView(params) {
  const filters = { keyId: params.get('keyId') ?? '', from: params.get('from') ?? '', to: params.get('to') ?? '', limit: params.get('limit') ?? '50' };
  const page = await call('GET', 'audit', {
    query: { keyId: filters.keyId, from: toApiTime(filters.from), to: toApiTime(filters.to), limit: filters.limit, continuationToken: params.get('page') ?? '' },
  });
  const keyId = h('input', { type: 'search', name: 'keyId', value: filters.keyId, autocomplete: 'off', maxlength: '16', spellcheck: 'false' });
  const from = h('input', { type: 'datetime-local', name: 'from', value: filters.from });
  const to = h('input', { type: 'datetime-local', name: 'to', value: filters.to });
  const limit = h('select', { name: 'limit' }, ['20', '50', '100', '500'].map((v) => h('option', { value: v, selected: v === filters.limit }, v)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter audit events' },
    field('Key id', keyId), field('From (UTC)', from, 'Default: 7 days before To.'), field('To (UTC)', to, 'Default: now.'),
    field('Per page', limit),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Filter'),
      h('a', { href: '#/audit', class: 'button secondary' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = hashFor(new FormData(form));
  });
  const kept = Object.entries(filters);
  return h('section', {},
    title('Audit log'),
    form,
    page.items.length === 0 ? h('p', { class: 'empty' }, 'No audit events match.') : table('Audit events', auditHeadings, auditRows(page.items)),
    h('nav', { class: 'paging', 'aria-label': 'Pages' },
      params.get('page') && h('a', { href: hashFor(kept), class: 'button secondary' }, 'Newest'),
      page.continuationToken && h('a', { href: hashFor([...kept, ['page', page.continuationToken]]), class: 'button secondary' }, 'Older events')));
}
