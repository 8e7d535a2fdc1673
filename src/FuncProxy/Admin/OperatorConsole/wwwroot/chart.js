// Usage per hour as small bar charts (requests, tokens, cost when the API reports one), drawn as SVG with DOM APIs:
// no chart library, nothing inline for the CSP to refuse. Each bar has a <title>; a table below carries the same numbers.
import { h, s, number, time, table } from './dom.js';

const HOUR = 3600 * 1000;
const costField = (name) => /cost/i.test(name);

/** Sums the API's rows (one per hour and upstream, maybe per model) into one point per hour of [from, to). */
export function perHour(rows, from, to) {
  const start = Math.floor(new Date(from).getTime() / HOUR) * HOUR;
  const end = new Date(to).getTime();
  const points = new Map();
  for (let t = start; t < end; t += HOUR) points.set(t, { hour: t, requests: 0, tokens: 0, cost: 0 });
  let hasCost = false;
  for (const row of rows) {
    const t = Math.floor(new Date(row.hour).getTime() / HOUR) * HOUR;
    const point = points.get(t) ?? { hour: t, requests: 0, tokens: 0, cost: 0 };
    points.set(t, point);
    point.requests += Number(row.requests ?? 0);
    point.tokens += Number(row.inputTokens ?? 0) + Number(row.outputTokens ?? 0);
    for (const [name, v] of Object.entries(row)) {
      if (costField(name) && typeof v === 'number') {
        point.cost += v;
        hasCost = true;
      }
    }
  }
  return { points: [...points.values()].sort((a, b) => a.hour - b.hour), hasCost };
}

function hourLabel(t, span) {
  const iso = new Date(t).toISOString();
  return span > 24 ? `${iso.slice(5, 10)} ${iso.slice(11, 13)}h` : `${iso.slice(11, 13)}:00`;
}

function barChart(name, unit, points, pick, format) {
  const width = 640;
  const height = 150;
  const left = 48;
  const bottom = 22;
  const top = 10;
  const plotW = width - left - 8;
  const plotH = height - top - bottom;
  const values = points.map(pick);
  const max = Math.max(0, ...values);
  const total = values.reduce((a, b) => a + b, 0);
  const peakIndex = values.indexOf(max);
  const slot = plotW / Math.max(points.length, 1);
  const summary = `${name} per hour: total ${format(total)}${max > 0 ? `, peak ${format(max)} at ${time(points[peakIndex].hour)}` : ''}.`;

  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': summary, class: 'chart' },
    s('title', {}, summary),
    s('line', { x1: left, y1: top + plotH, x2: width - 8, y2: top + plotH, class: 'axis' }),
    s('line', { x1: left, y1: top, x2: left, y2: top + plotH, class: 'axis' }),
    s('text', { x: left - 6, y: top + 4, class: 'tick', 'text-anchor': 'end' }, format(max)),
    s('text', { x: left - 6, y: top + plotH, class: 'tick', 'text-anchor': 'end' }, '0'));
  points.forEach((point, i) => {
    const v = pick(point);
    const barH = max > 0 ? (v / max) * plotH : 0;
    svg.append(s('rect', {
      x: (left + i * slot + slot * 0.12).toFixed(2),
      y: (top + plotH - barH).toFixed(2),
      width: Math.max(slot * 0.76, 0.5).toFixed(2),
      height: barH.toFixed(2),
      class: v > 0 ? 'bar' : 'bar zero',
    }, s('title', {}, `${time(point.hour)}: ${format(v)} ${unit}`)));
  });
  const span = points.length;
  const labelAt = span <= 1 ? [0] : [0, Math.floor((span - 1) / 2), span - 1];
  for (const i of labelAt) {
    svg.append(s('text', {
      x: (left + i * slot + slot / 2).toFixed(2), y: height - 6, class: 'tick',
      'text-anchor': i === 0 ? 'start' : i === span - 1 ? 'end' : 'middle',
    }, hourLabel(points[i].hour, span)));
  }
  return h('figure', { class: 'chart-figure' }, h('figcaption', {}, `${name} per hour`, h('span', { class: 'muted' }, ` · total ${format(total)}`)), svg);
}

/** The charts and the table for one usage answer of the API. */
export function usageCharts(usage) {
  const { points, hasCost } = perHour(usage.hours ?? [], usage.from, usage.to);
  const count = (v) => number(v);
  const usd = (v) => `$${v.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 6 })}`;
  const charts = [
    barChart('Requests', 'requests', points, (p) => p.requests, count),
    barChart('Tokens', 'tokens', points, (p) => p.tokens, count),
    hasCost && barChart('Cost', 'USD', points, (p) => p.cost, usd),
  ];
  const rows = (usage.hours ?? []).map((row) => h('tr', {},
    h('td', {}, time(row.hour)),
    h('td', {}, Object.entries(row).filter(([n]) => !['hour', 'requests', 'inputTokens', 'outputTokens'].includes(n) && !costField(n))
      .map(([n, v]) => `${n} ${v}`).join(', ')),
    h('td', {}, number(row.requests ?? 0)),
    h('td', {}, number(row.inputTokens ?? 0)),
    h('td', {}, number(row.outputTokens ?? 0)),
    hasCost && h('td', {}, usd(Object.entries(row).filter(([n, v]) => costField(n) && typeof v === 'number').reduce((a, [, v]) => a + v, 0)))));
  return h('div', { class: 'usage' },
    h('div', { class: 'charts' }, charts),
    rows.length > 0
      ? h('details', {}, h('summary', {}, 'Usage rows'),
        table('Usage per hour', ['Hour', 'Where', 'Requests', 'Input tokens', 'Output tokens', hasCost && 'Cost'].filter(Boolean), rows))
      : h('p', { class: 'muted' }, 'No metered use in this range. Calls appear after the next usage flush.'));
}
