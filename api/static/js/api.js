// Talking to the API: JSON in and out, the token when the server has one, and errors as
// sentences.

import { askForToken, savedToken } from './notices.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Call the API; resolve with the JSON body, or throw an ApiError carrying its sentence. */
export async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const token = savedToken();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'The server cannot be reached. Check that the API is running.');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: the sentence below says what happened
  }
  if (!response.ok) {
    const sentence = data && typeof data.error === 'string' ? data.error : `The server answered HTTP ${response.status}.`;
    if (response.status === 401) askForToken();
    throw new ApiError(response.status, sentence);
  }
  return data;
}

/** A fresh Idempotency-Key, so a repeated click or request starts one run, not two. */
export function newKey() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** Trade the saved token for the session cookie the event stream needs: an EventSource
 *  cannot send the Authorization header. Without a saved token there is nothing to do. */
export async function openSession() {
  if (!savedToken()) return;
  try {
    await api('POST', '/api/session');
  } catch {
    // a wrong token: the request that needs it asks again
  }
}
