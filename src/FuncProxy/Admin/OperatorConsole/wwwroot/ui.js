// Pieces the views share: error panels, confirmation dialogs, the key-shown-once panel.
import { h, show } from './dom.js';

/** An error as the API described it: its problem+json detail, each bad field, and the request id for the logs. */
export function errorPanel(error) {
  const problem = error?.problem ?? {};
  const fields = Array.isArray(problem.errors) ? problem.errors : [];
  return h('div', { class: 'error', role: 'alert' },
    h('p', { class: 'error-detail' }, error?.message || 'Something went wrong.'),
    fields.length > 0 && h('ul', {}, fields.map((f) => h('li', {}, h('code', {}, String(f.field)), ': ', String(f.message)))),
    (problem.code || problem.requestId) && h('p', { class: 'muted small' },
      problem.code ? `code ${problem.code}` : '', problem.code && problem.requestId ? ' · ' : '',
      problem.requestId ? `request ${problem.requestId}` : ''));
}

/** Shows an error in a slot (an element kept for it) and moves focus there so it is read out. */
export function showError(slot, error) {
  show(slot, errorPanel(error));
  slot.querySelector('[role=alert]')?.setAttribute('tabindex', '-1');
  slot.querySelector('[role=alert]')?.focus();
}

/**
 * A modal dialog (the native <dialog>: focus moves in, Escape cancels, focus returns to the opener). content: nodes;
 * confirm: label of the confirming button; danger: styles it red. Resolves to the form's data when confirmed, else null.
 */
export function dialog({ heading, content, confirm, danger, onConfirm }) {
  return new Promise((resolve) => {
    const opener = document.activeElement;
    const slot = h('div', { class: 'error-slot' });
    const headingId = `dlg-${Math.random().toString(36).slice(2)}`;
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => close(null) }, 'Cancel');
    const submit = h('button', { type: 'submit', class: danger ? 'danger' : 'primary' }, confirm);
    const form = h('form', { method: 'dialog' },
      h('h2', { id: headingId }, heading), content, slot, h('div', { class: 'actions' }, cancel, submit));
    const element = h('dialog', { 'aria-labelledby': headingId }, form);
    let result = null;
    function close(value) {
      result = value;
      element.close();
    }
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      try {
        const data = new FormData(form);
        const value = onConfirm ? await onConfirm(data) : data;
        close(value ?? data);
      } catch (error) {
        showError(slot, error);
      } finally {
        submit.disabled = false;
      }
    });
    element.addEventListener('close', () => {
      element.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      resolve(result);
    });
    document.body.append(element);
    element.showModal();
    (element.querySelector('input, select, textarea') ?? cancel).focus();
  });
}

/** The key value, shown once: a clear warning, the value, a copy button. */
export function keyShownOnce(key, note) {
  const output = h('input', { type: 'text', readonly: true, value: key, class: 'key-value', id: 'new-key', 'aria-label': 'New key value' });
  // Its own status region: the copy result is announced once (not also through the page's live region).
  const copied = h('span', { class: 'muted small', role: 'status' });
  const copy = h('button', {
    type: 'button',
    class: 'primary',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(key);
        copied.textContent = 'Copied.';
      } catch {
        output.select();
        copied.textContent = 'Selected: press Ctrl+C (or Cmd+C) to copy.';
      }
    },
  }, 'Copy key');
  return h('section', { class: 'key-once', 'aria-labelledby': 'key-once-heading' },
    h('h2', { id: 'key-once-heading' }, 'Store this key now'),
    h('p', { class: 'warning' }, 'This is the only time the key is shown. Only its hash is stored: it cannot be shown again. ',
      'If it is lost, rotate the key to get a new one.'),
    note && h('p', { class: 'muted small' }, note),
    h('div', { class: 'key-row' }, output, copy), copied);
}

export function statusBadge(status) {
  return h('span', { class: ['badge', `status-${status}`] }, String(status));
}

/** A labelled form field. */
export function field(labelText, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2)}`;
  control.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) control.setAttribute('aria-describedby', hintId);
  return h('div', { class: 'field' }, h('label', { for: id }, labelText), control, hint && h('p', { class: 'hint', id: hintId }, hint));
}
