// Every node is built with DOM APIs; text is always a text node (never parsed as HTML), attributes are set one by one.
const SVG = 'http://www.w3.org/2000/svg';

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'class') {
      element.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (name === 'value' && 'value' in element) {
      element.value = value;
    } else if (name === 'checked' || name === 'selected') {
      element[name] = Boolean(value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h('a', {href: '#/keys'}, 'Keys'): an HTML element; strings become text nodes. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}

/** Replaces a node's children. */
export function show(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
  return parent;
}

/** "requestsPerMinute" -> "Requests per minute"; "budgetPerDayUsd" -> "Budget per day (USD)". */
export function label(name) {
  const usd = /Usd$/.test(name);
  const words = name.replace(/Usd$/, '').replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1) + (usd ? ' (USD)' : '');
}

/** "2026-12-01T04:05:06.123+00:00" -> "2026-12-01 04:05:06 UTC". */
export function time(value) {
  if (!value) return '—';
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

export function number(value) {
  return typeof value === 'number' ? value.toLocaleString('en-US', { maximumFractionDigits: 6 }) : String(value);
}

/** Any JSON value as nodes: new API fields appear without code changes. */
export function value(v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'not set');
  if (Array.isArray(v)) {
    if (v.length === 0) return h('span', { class: 'muted' }, 'none');
    if (v.every((x) => x === null || typeof x !== 'object')) return h('span', {}, v.map(String).join(', '));
    return h('ul', { class: 'plain' }, v.map((x) => h('li', {}, value(x))));
  }
  if (typeof v === 'object') {
    const entries = Object.entries(v);
    if (entries.length === 0) return h('span', { class: 'muted' }, 'none');
    return h('dl', { class: 'nested' }, entries.map(([k, x]) => [h('dt', {}, k), h('dd', {}, value(x))]));
  }
  if (typeof v === 'number') return h('span', {}, number(v));
  return h('span', {}, String(v));
}

/** A visually hidden announcement for screen readers. */
export function announce(text) {
  const region = document.getElementById('announce');
  region.textContent = '';
  setTimeout(() => { region.textContent = text; }, 50);
}

/** A view's title, focused when the view is shown so keyboard and screen reader users start there. */
export function title(text) {
  return h('h1', { tabindex: '-1', class: 'view-title' }, text);
}

export function focusTitle(root) {
  root.querySelector('.view-title')?.focus();
}

/** A table in a scrolling wrapper (narrow screens scroll the table, not the page). */
export function table(caption, headings, rows) {
  return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption },
    h('table', {},
      h('caption', { class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, headings.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
}
