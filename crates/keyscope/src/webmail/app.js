'use strict';
// Keyscope's built-in mail client: authorization code flow with PKCE, then JMAP (RFC 8620/8621).
// Mail is rendered with textContent only: nothing from a message is ever parsed as HTML.

let config = null;
let token = null;
let session = null;

const $ = (id) => document.getElementById(id);

function status(text) { $('status').textContent = text; }

function b64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n) {
  const a = new Uint8Array(n);
  crypto.getRandomValues(a);
  return b64url(a);
}

async function signIn() {
  const verifier = random(32);
  const state = random(16);
  sessionStorage.setItem('keyscope-pkce', JSON.stringify({ verifier, state }));
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: config.client_id,
    redirect_uri: config.redirect_uri,
    scope: 'openid',
    state,
    code_challenge: b64url(digest),
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

async function redeem(params) {
  const saved = JSON.parse(sessionStorage.getItem('keyscope-pkce') || 'null');
  sessionStorage.removeItem('keyscope-pkce');
  // The code leaves the address bar (and the history) at once.
  history.replaceState(null, '', location.pathname);
  if (params.has('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (!saved || saved.state !== params.get('state')) throw new Error('the sign-in did not start here; sign in again');
  const response = await fetch(config.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: config.redirect_uri,
      client_id: config.client_id,
      code_verifier: saved.verifier,
    }),
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error_description || answer.error || 'token request refused');
  token = answer.access_token;
}

async function jmap(calls) {
  const response = await fetch(session.apiUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer ' + token },
    body: JSON.stringify({ using: ['urn:ietf:params:jmap:core', 'urn:ietf:params:jmap:mail'], methodCalls: calls }),
  });
  if (!response.ok) throw new Error('JMAP request refused: HTTP ' + response.status);
  return (await response.json()).methodResponses;
}

async function openMailbox() {
  const response = await fetch(config.jmap_session, { headers: { authorization: 'Bearer ' + token } });
  if (!response.ok) throw new Error('the mail service refused the token: ' + (response.headers.get('www-authenticate') || response.status));
  session = await response.json();
  const accountId = session.primaryAccounts['urn:ietf:params:jmap:mail'];
  $('who').textContent = session.username;
  const inboxIds = (await jmap([
    ['Mailbox/query', { accountId, filter: { role: 'inbox' } }, 'm'],
  ]))[0][1].ids;
  if (inboxIds.length === 0) throw new Error('this account has no Inbox');
  const ids = (await jmap([
    ['Email/query', { accountId, filter: { inMailbox: inboxIds[0] }, sort: [{ property: 'receivedAt', isAscending: false }], limit: 50 }, 'q'],
  ]))[0][1].ids;
  const emails = (await jmap([
    ['Email/get', { accountId, ids, properties: ['subject', 'from', 'receivedAt', 'preview'] }, 'g'],
  ]))[0][1].list;
  const list = $('messages');
  list.replaceChildren();
  for (const email of emails) {
    const item = document.createElement('li');
    const subject = document.createElement('div');
    subject.className = 'subject';
    subject.textContent = email.subject || '(no subject)';
    const preview = document.createElement('div');
    preview.className = 'preview';
    preview.textContent = email.preview || '';
    item.append(subject, preview);
    item.addEventListener('click', () => show(accountId, email.id).catch((e) => status(e.message)));
    list.append(item);
  }
  if (emails.length === 0) status('The Inbox is empty.');
  $('signed-out').hidden = true;
  $('mail').hidden = false;
}

async function show(accountId, id) {
  const email = (await jmap([
    ['Email/get', { accountId, ids: [id], properties: ['subject', 'from', 'receivedAt', 'textBody', 'bodyValues'], fetchTextBodyValues: true }, 'g'],
  ]))[0][1].list[0];
  $('subject').textContent = email.subject || '(no subject)';
  const from = (email.from || []).map((a) => a.name ? a.name + ' <' + a.email + '>' : a.email).join(', ');
  $('meta').textContent = from + ' — ' + email.receivedAt;
  $('body').textContent = (email.textBody || []).map((part) => (email.bodyValues[part.partId] || {}).value || '').join('\n');
  $('message').hidden = false;
}

async function start() {
  $('sign-in').addEventListener('click', () => signIn().catch((e) => status(e.message)));
  const response = await fetch('/mail/config.json');
  config = await response.json();
  if (!response.ok) throw new Error(config.error);
  const params = new URLSearchParams(location.search);
  if (params.has('code') || params.has('error')) {
    await redeem(params);
    await openMailbox();
  }
}

start().catch((e) => status(e.message));
