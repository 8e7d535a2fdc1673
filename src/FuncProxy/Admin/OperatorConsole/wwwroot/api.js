// The management API beside the console: /api/admin/ (this file is /api/admin/console/api.js), whatever the host's
// route prefix. The credential lives only in sessionStorage: gone when the tab closes, never in a URL or in local storage.
const base = new URL('../', import.meta.url);
const storageKey = 'funcproxy.console.credential';

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `The management API answered ${status}.`);
    this.status = status;
    this.problem = problem ?? {};
  }
}

/** { kind: 'adminKey' | 'entraToken', value } or null. */
export function credential() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(storageKey) ?? 'null');
    return stored && typeof stored.value === 'string' ? stored : null;
  } catch {
    return null;
  }
}

export function signIn(kind, value) {
  sessionStorage.setItem(storageKey, JSON.stringify({ kind, value }));
}

export function signOut() {
  sessionStorage.removeItem(storageKey);
}

function authHeaders(cred) {
  if (!cred) return {};
  return cred.kind === 'entraToken' ? { Authorization: `Bearer ${cred.value}` } : { 'X-Admin-Key': cred.value };
}

/**
 * One management call. query: { name: value } (empty values left out); body: JSON; patch: true sends a JSON merge
 * patch. Returns the parsed JSON; throws ApiError carrying the problem+json document on any error status.
 */
export async function call(method, path, { query, body, patch, headers, anonymous } = {}) {
  const url = new URL(path, base);
  for (const [name, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(name, String(v));
  }
  const init = {
    method,
    headers: { Accept: 'application/json, application/problem+json', ...(anonymous ? {} : authHeaders(credential())), ...headers },
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
    referrerPolicy: 'no-referrer',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = patch ? 'application/merge-patch+json' : 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, { detail: 'The gateway could not be reached.' });
  }
  const type = response.headers.get('Content-Type') ?? '';
  const json = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) {
    throw new ApiError(response.status, json);
  }
  return json;
}

/** The limit names the API documents (schema Limits in openapi.json), so new limits get a field without code changes. */
let limitNames;
export async function documentedLimitNames() {
  if (!limitNames) {
    limitNames = call('GET', 'openapi.json', { anonymous: true })
      .then((doc) => Object.keys((doc?.components?.schemas?.Limits ?? doc?.components?.schemas?.KeyLimits)?.properties ?? {}))
      .catch(() => []);
  }
  return limitNames;
}
