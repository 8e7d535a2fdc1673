// Keys: filter by owner, status and upstream; pages exactly as the API pages (its continuation token, in the hash).
import { call } from './api.js';
import { h, title, time, table } from './dom.js';
import { field, statusBadge } from './ui.js';

const filters = ['owner', 'status', 'upstream', 'limit'];

function hashFor(params) {
  const query = new URLSearchParams();
  for (const [name, v] of params) if (v) query.set(name, v);
  const text = query.toString();
  return `#/keys${text ? `?${text}` : ''}`;
}

export async function keysView(params) {
  const query = Object.fromEntries(filters.map((n) => [n, params.get(n) ?? '']));
  query.limit ||= '25';
  const page = await call('GET', 'keys', { query: { ...query, continuationToken: params.get('page') ?? '' } });

  const owner = h('input', { type: 'search', name: 'owner', value: query.owner, autocomplete: 'off' });
  const status = h('select', { name: 'status' },
    ['', 'active', 'disabled', 'revoked'].map((v) => h('option', { value: v, selected: v === query.status }, v || 'any')));
  const upstream = h('input', { type: 'search', name: 'upstream', value: query.upstream, autocomplete: 'off' });
  const limit = h('select', { name: 'limit' },
    ['10', '25', '50', '100'].map((v) => h('option', { value: v, selected: v === query.limit }, v)));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter keys' },
    field('Owner', owner), field('Status', status), field('Upstream', upstream, "A name, or * for keys allowed everywhere"),
    field('Per page', limit),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Filter'),
      h('a', { href: '#/keys', class: 'button secondary' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = hashFor(new FormData(form));
  });

  const rows = page.items.map((key) => h('tr', {},
    h('td', {}, h('a', { href: `#/keys/${encodeURIComponent(key.id)}` }, key.name)),
    h('td', {}, h('code', {}, key.id)),
    h('td', {}, key.owner ?? '—'),
    h('td', {}, statusBadge(key.status)),
    h('td', {}, (key.allowedUpstreams ?? []).join(', ')),
    h('td', {}, time(key.createdAt)),
    h('td', {}, key.expiresAt ? time(key.expiresAt) : 'never')));

  const paging = h('nav', { class: 'paging', 'aria-label': 'Pages' },
    params.get('page') && h('a', { href: hashFor(Object.entries(query)), class: 'button secondary' }, 'First page'),
    page.continuationToken && h('a', {
      href: hashFor([...Object.entries(query), ['page', page.continuationToken]]),
      class: 'button secondary',
    }, 'Next page'));

  return h('section', {},
    h('div', { class: 'view-head' }, title('Keys'), h('a', { href: '#/create', class: 'button primary' }, 'Create key')),
    form,
    page.items.length === 0
      ? h('p', { class: 'empty' }, 'No keys match.')
      : table('Keys', ['Name', 'Id', 'Owner', 'Status', 'Upstreams', 'Created', 'Expires'], rows),
    paging);
}
