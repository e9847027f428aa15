// Vato web client: plain script, no build step, no dependencies.
// Protocol: /PROTOCOL.md (REST + one WebSocket per open conversation, every
// conversation event carries a gap-free `seq`, `?since=` resumes after a drop).
'use strict';
(() => {
  const $ = (sel) => document.querySelector(sel);
  const LS_ACCESS = 'vato.access';
  const LS_REFRESH = 'vato.refresh';
  const PAGE = 50;

  // ---------------------------------------------------------------- state
  const S = {
    access: localStorage.getItem(LS_ACCESS),
    refresh: localStorage.getItem(LS_REFRESH),
    me: null,            // {id, username, display_name}
    convs: [],           // conversation objects from the list endpoint
    chat: null,          // the open conversation, see openConversation()
    refreshTimer: 0,
    listTimer: 0,        // polls the conversation list (only the open one has a socket)
    refreshing: null,    // single-flight promise of a token refresh
  };

  // ---------------------------------------------------------------- helpers
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text; // always textContent: user data is never HTML
    return e;
  }
  function jwtPayload(token) {
    try {
      const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(b64));
    } catch { return null; }
  }
  const nameOf = (u) => (u && (u.display_name || u.username)) || '?';
  const initial = (s) => (s || '?').trim().charAt(0).toUpperCase() || '?';
  // An avatar circle shows the user's photo when they have one (`avatar`
  // is an absolute URL), else the initial of `name`.
  function setAvatar(span, user, name) {
    span.replaceChildren();
    if (user && user.avatar) {
      const img = el('img');
      img.alt = '';
      img.src = user.avatar;
      img.dataset.testid = 'avatar-img';
      span.append(img);
    } else span.textContent = initial(name);
  }
  function avatarOf(user, name) {
    const span = el('span', 'avatar');
    setAvatar(span, user, name);
    return span;
  }
  function hhmm(iso) {
    const d = new Date(iso);
    return isNaN(d) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }
  function newClientId() {
    return (crypto.randomUUID && crypto.randomUUID()) ||
      Date.now().toString(36) + Math.random().toString(36).slice(2);
  }
  let toastTimer = 0;
  function toast(msg) {
    const t = $('#toast');
    t.textContent = msg;
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }
  function firstError(data) {
    // Errors are {"detail"} or DRF's {"field": ["msg"]}: show the first message.
    if (!data || typeof data !== 'object') return 'Request failed';
    if (data.detail) return data.detail;
    if (data.error) return data.error;
    for (const [k, v] of Object.entries(data)) {
      const m = Array.isArray(v) ? v[0] : v;
      return k === 'non_field_errors' ? m : `${k}: ${m}`;
    }
    return 'Request failed';
  }

  // ---------------------------------------------------------------- auth + REST
  function setTokens(access, refresh) {
    S.access = access;
    localStorage.setItem(LS_ACCESS, access);
    if (refresh) { S.refresh = refresh; localStorage.setItem(LS_REFRESH, refresh); }
    scheduleRefresh();
  }
  // Refresh about a minute before the access token expires, so REST calls and
  // socket (re)connects always carry a valid token.
  // (A quarter of the lifetime before, for tokens shorter than four minutes.)
  const leadMs = (p) => Math.min(60000, p.iat ? (p.exp - p.iat) * 250 : 60000);
  function scheduleRefresh() {
    clearTimeout(S.refreshTimer);
    const p = S.access && jwtPayload(S.access);
    if (!p || !p.exp) return;
    const ms = Math.max(1000, p.exp * 1000 - Date.now() - leadMs(p));
    S.refreshTimer = setTimeout(() => refreshAccess().catch(() => {}), ms);
  }
  function accessFresh() {
    const p = S.access && jwtPayload(S.access);
    return !!p && p.exp * 1000 - Date.now() > leadMs(p) / 2;
  }
  function refreshAccess() {
    if (S.refreshing) return S.refreshing;
    S.refreshing = (async () => {
      if (!S.refresh) throw new Error('not logged in');
      const r = await fetch('/api/auth/token/refresh/', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ refresh: S.refresh }),
      });
      if (r.status === 401 || r.status === 400) { logout('Session expired, please log in again'); throw new Error('expired'); }
      if (!r.ok) throw new Error('refresh failed: ' + r.status);
      setTokens((await r.json()).access);
    })().finally(() => { S.refreshing = null; });
    return S.refreshing;
  }
  // JSON request with the bearer token; on a 401 refresh once and retry.
  async function api(method, path, body, retried) {
    const headers = { Accept: 'application/json' };
    if (S.access) headers.Authorization = 'Bearer ' + S.access;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401 && S.refresh && !retried) {
      await refreshAccess();
      return api(method, path, body, true);
    }
    const text = await r.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
    if (!r.ok) { const e = new Error(firstError(data)); e.status = r.status; throw e; }
    return { status: r.status, data };
  }

  async function submitAuth(kind, form) {
    const f = Object.fromEntries(new FormData(form));
    const err = $('[data-testid=auth-error]');
    err.textContent = '';
    if (kind === 'register' && !f.display_name) delete f.display_name;
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      const r = await fetch(`/api/auth/${kind}/`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(f),
      });
      const data = await r.json().catch(() => null);
      if (!r.ok) { err.textContent = firstError(data); return; }
      setTokens(data.access, data.refresh);
      S.me = data.user;
      form.reset();
      enterApp();
    } catch {
      err.textContent = 'Cannot reach the server';
    } finally { btn.disabled = false; }
  }

  function logout(reason) {
    closeChat();
    clearTimeout(S.refreshTimer);
    clearInterval(S.listTimer);
    localStorage.removeItem(LS_ACCESS);
    localStorage.removeItem(LS_REFRESH);
    S.access = S.refresh = S.me = null;
    S.convs = [];
    $('#profile-panel').hidden = true;
    history.replaceState(null, '', '/');
    $('#app-view').hidden = true;
    $('#auth-view').hidden = false;
    document.querySelector('.tab[data-tab=login]').click(); // back to the login form
    $('[data-testid=auth-error]').textContent = reason || '';
    document.body.classList.remove('chat-open');
  }

  // ---------------------------------------------------------------- conversation list
  // The other member of a direct conversation (null for groups).
  function convPartner(c) {
    if (!c || c.conversation_type !== 'direct' || !S.me) return null;
    return (c.members || []).map((m) => m.user).find((u) => u && u.id !== S.me.id) || null;
  }
  function convName(c) {
    const other = convPartner(c);
    if (other) return nameOf(other);
    return c.title || 'Conversation ' + c.id;
  }
  async function loadConversations() {
    try {
      S.convs = (await api('GET', '/api/chat/conversations/')).data || [];
      renderConversations();
    } catch (e) { if (e.status !== 401) console.warn('conversations', e); }
  }
  function renderConversations() {
    const list = $('#conv-list');
    list.replaceChildren();
    // The server orders by recent activity; keep that after local updates too.
    const ts = (c) => (c.last_message && c.last_message.created_at) || c.updated_at || '';
    S.convs.sort((a, b) => (ts(b) > ts(a) ? 1 : ts(b) < ts(a) ? -1 : 0));
    for (const c of S.convs) {
      const li = el('li', 'conv-item');
      li.dataset.testid = 'conv-item';
      li.dataset.convId = c.id;
      if (S.chat && S.chat.id === c.id) li.classList.add('active');
      const name = convName(c);
      const body = el('div', 'conv-body');
      const top = el('div', 'conv-top');
      top.append(el('span', 'conv-name', name));
      if (c.last_message) top.append(el('span', 'conv-time', hhmm(c.last_message.created_at)));
      const bottom = el('div', 'conv-bottom');
      const lm = c.last_message;
      const preview = lm ? (lm.sender && S.me && lm.sender.id === S.me.id ? 'You: ' : '') + lm.content : 'No messages yet';
      bottom.append(el('span', 'conv-last', preview));
      if (ringingIn.has(c.id) && !(S.chat && S.chat.id === c.id)) {
        const r = el('span', 'ringing', 'Incoming call');
        r.dataset.testid = 'conv-ringing';
        bottom.append(r);
      }
      if (c.unread_count > 0 && !(S.chat && S.chat.id === c.id)) {
        const b = el('span', 'unread', String(c.unread_count));
        b.dataset.testid = 'unread-count';
        bottom.append(b);
      }
      body.append(top, bottom);
      li.append(avatarOf(convPartner(c), name), body);
      li.addEventListener('click', () => openConversation(c.id));
      list.append(li);
    }
    $('#conv-empty').hidden = S.convs.length > 0;
  }
  function convTouched(cid, msg) {
    // Keep the sidebar current for the open conversation without a reload.
    const c = S.convs.find((x) => x.id === cid);
    if (!c) { loadConversations(); return; }
    if (msg && !msg.is_deleted && (!c.last_message || msg.id >= c.last_message.id)) c.last_message = msg;
    if (S.chat && S.chat.id === cid) c.unread_count = 0;
    renderConversations();
  }

  // ---------------------------------------------------------------- user search
  let searchTimer = 0;
  function onSearchInput() {
    clearTimeout(searchTimer);
    const q = $('#user-search').value.trim();
    const out = $('#user-results');
    if (q.length < 2) { out.replaceChildren(); return; }
    searchTimer = setTimeout(async () => {
      try {
        const users = (await api('GET', '/api/chat/users/search/?q=' + encodeURIComponent(q))).data || [];
        if ($('#user-search').value.trim() !== q) return; // a newer query is on its way
        out.replaceChildren();
        if (!users.length) out.append(el('li', 'muted', 'Nobody found'));
        for (const u of users) {
          const li = el('li', 'user-result');
          li.dataset.testid = 'user-result';
          li.dataset.userId = u.id;
          li.append(avatarOf(u, nameOf(u)), el('span', '', nameOf(u)));
          if (u.display_name) li.append(el('span', 'muted', '@' + u.username));
          li.addEventListener('click', () => startDirect(u.id));
          out.append(li);
        }
      } catch (e) { toast(e.message); }
    }, 250);
  }
  async function startDirect(userId) {
    try {
      const { data } = await api('POST', '/api/chat/conversations/create-direct/', { user_id: userId });
      $('#user-search').value = '';
      $('#user-results').replaceChildren();
      if (!S.convs.some((c) => c.id === data.id)) S.convs.unshift(data);
      renderConversations();
      openConversation(data.id);
    } catch (e) { toast(e.message); }
  }

  // ---------------------------------------------------------------- groups
  // The id of the user called `name` (exactly, ignoring case), by the search.
  async function userIdByName(name) {
    const users = (await api('GET', '/api/chat/users/search/?q=' + encodeURIComponent(name))).data || [];
    const u = users.find((x) => x.username.toLowerCase() === name.toLowerCase());
    if (!u) throw new Error(`Nobody is called ${name}`);
    return u.id;
  }
  async function createGroup(form) {
    const f = Object.fromEntries(new FormData(form));
    const names = String(f.members || '').split(',').map((x) => x.trim()).filter(Boolean);
    try {
      const member_ids = [];
      for (const n of names) member_ids.push(await userIdByName(n));
      const { data } = await api('POST', '/api/chat/conversations/', { title: f.title, member_ids });
      form.reset();
      form.hidden = true;
      if (!S.convs.some((c) => c.id === data.id)) S.convs.unshift(data);
      renderConversations();
      openConversation(data.id);
    } catch (e) { toast(e.message); }
  }
  function showMembersButton(conv) {
    showCallButtons(conv);
    const group = !!conv && conv.conversation_type !== 'direct';
    $('#chat-members').hidden = !group;
    if (!group) $('#members-panel').hidden = true;
    else if (!$('#members-panel').hidden) renderMembers();
  }
  // The open conversation's object again (members and admins changed).
  async function refreshChatConv(chat) {
    try {
      const { data } = await api('GET', `/api/chat/conversations/${chat.id}/`);
      if (S.chat !== chat) return;
      chat.conv = data;
      const i = S.convs.findIndex((c) => c.id === data.id);
      if (i >= 0) S.convs[i] = Object.assign(S.convs[i], data);
      showMembersButton(data);
    } catch (e) { if (e.status !== 404 && e.status !== 403) toast(e.message); }
  }
  function renderMembers() {
    const chat = S.chat;
    const list = $('#member-list');
    list.replaceChildren();
    if (!chat || !chat.conv) return;
    const members = chat.conv.members || [];
    const amAdmin = members.some((m) => m.user && S.me && m.user.id === S.me.id && m.is_admin);
    for (const m of members) {
      if (!m.user) continue;
      const li = el('li');
      li.dataset.testid = 'member-item';
      li.dataset.userId = m.user.id;
      li.append(avatarOf(m.user, nameOf(m.user)), el('span', '', nameOf(m.user)));
      if (m.is_admin) li.append(el('span', 'admin', 'admin'));
      if (amAdmin && m.user.id !== S.me.id) {
        const b = el('button', 'link', 'Remove');
        b.type = 'button';
        b.dataset.testid = 'member-remove';
        b.addEventListener('click', () => groupCall(chat, 'remove-member', { user_id: m.user.id }));
        li.append(b);
      }
      list.append(li);
    }
    $('#member-add-form').hidden = !amAdmin;
  }
  async function groupCall(chat, action, body) {
    try {
      await api('POST', `/api/chat/conversations/${chat.id}/${action}/`, body);
      await refreshChatConv(chat);
      renderMembers();
    } catch (e) { toast(e.message); }
  }
  async function leaveGroup() {
    const chat = S.chat;
    if (!chat) return;
    try {
      await api('POST', `/api/chat/conversations/${chat.id}/leave/`, {});
      S.convs = S.convs.filter((c) => c.id !== chat.id);
      $('#back').click();
    } catch (e) { toast(e.message); }
  }

  // ---------------------------------------------------------------- the open conversation
  // chat = {id, conv, lastSeq, els: Map(message id -> element), pending: Map(client_id -> element),
  //         outbox: [{client_id, content, sentOn}], ws, gen, attempt, ...}
  function closeChat() {
    const c = S.chat;
    if (!c) return;
    leaveCall();
    c.closed = true;
    clearTimeout(c.retryTimer);
    clearInterval(c.pingTimer);
    for (const t of typers.values()) clearTimeout(t.timer);
    typers.clear();
    if (c.ws) { try { c.ws.close(1000); } catch { /* already closed */ } }
    S.chat = null;
    setConn('idle');
  }

  async function openConversation(cid) {
    if (S.chat && S.chat.id === cid) { document.body.classList.add('chat-open'); return; }
    closeChat();
    const conv = S.convs.find((c) => c.id === cid);
    const chat = S.chat = {
      id: cid, conv, lastSeq: 0, els: new Map(), pending: new Map(), outbox: [],
      ws: null, gen: 0, attempt: 0, oldestId: null, hasMore: false, loadingOlder: false,
      othersReadUpTo: 0, readSent: 0, typingSentAt: 0, failsBeforeOpen: 0,
    };
    if (location.hash !== '#/c/' + cid) history.replaceState(null, '', '#/c/' + cid);
    document.body.classList.add('chat-open');
    $('#chat-none').hidden = true;
    $('#chat-open').hidden = false;
    const name = conv ? convName(conv) : 'Conversation ' + cid;
    $('#chat-name').textContent = name;
    setAvatar($('#chat-avatar'), convPartner(conv), name);
    showPresence(conv);
    showMembersButton(conv);
    $('[data-testid=typing-indicator]').textContent = '';
    showCallLog(false);
    const list = $('#message-list');
    list.replaceChildren($('#history-state'));
    $('#history-state').textContent = 'Loading…';
    renderConversations();

    // History first, then the socket with since = the newest seq in it, so the
    // replay fills exactly the gap between the two.
    try {
      const { data } = await api('GET', `/api/chat/conversations/${cid}/messages/?limit=${PAGE}`);
      if (S.chat !== chat) return;
      for (const m of data.slice().reverse()) renderMessage(m, 'append');
      for (const m of data) chat.lastSeq = Math.max(chat.lastSeq, m.seq || 0);
      chat.oldestId = data.length ? data[data.length - 1].id : null;
      chat.hasMore = data.length === PAGE;
      applyReceipts(data);
      historyState();
      scrollToBottom();
    } catch (e) {
      if (S.chat !== chat) return;
      $('#history-state').textContent = 'Could not load messages: ' + e.message;
      if (e.status === 403 || e.status === 404) return;
    }
    if (!conv) loadConversations().then(() => {
      const c = S.convs.find((x) => x.id === cid);
      if (c && S.chat === chat) { chat.conv = c; $('#chat-name').textContent = convName(c); setAvatar($('#chat-avatar'), convPartner(c), convName(c)); showPresence(c); showMembersButton(c); }
    });
    connect(chat);
    // Not on touch screens: focusing there would pop the keyboard over the history.
    if (matchMedia('(pointer: fine)').matches) $('#composer-input').focus({ preventScroll: true });
  }

  function historyState() {
    const c = S.chat;
    $('#history-state').textContent = !c ? '' : c.hasMore ? 'Scroll up for older messages'
      : c.els.size || c.pending.size ? 'Beginning of the conversation' : 'No messages yet. Say hi!';
  }

  async function loadOlder() {
    const chat = S.chat;
    if (!chat || !chat.hasMore || chat.loadingOlder || chat.oldestId == null) return;
    chat.loadingOlder = true;
    $('#history-state').textContent = 'Loading…';
    const list = $('#message-list');
    try {
      const { data } = await api('GET', `/api/chat/conversations/${chat.id}/messages/?limit=${PAGE}&before=${chat.oldestId}`);
      if (S.chat !== chat) return;
      // Keep the visible messages in place while older ones are added above.
      const fromBottom = list.scrollHeight - list.scrollTop;
      for (const m of data) renderMessage(m, 'prepend'); // newest first: each goes above the last
      if (data.length) chat.oldestId = data[data.length - 1].id;
      chat.hasMore = data.length === PAGE;
      list.scrollTop = list.scrollHeight - fromBottom;
    } catch (e) { toast(e.message); } finally { chat.loadingOlder = false; historyState(); }
  }

  // Render or update one message. `where`: 'append' (newest, bottom) or 'prepend' (older page).
  function renderMessage(m, where) {
    const chat = S.chat;
    if (!m || !chat) return null;
    let node = chat.els.get(m.id);
    if (!node && m.client_id && chat.pending.has(m.client_id)) {
      // The echo of our own optimistic message: turn the pending one into the real one.
      node = chat.pending.get(m.client_id);
      chat.pending.delete(m.client_id);
      chat.outbox = chat.outbox.filter((o) => o.client_id !== m.client_id);
      node.remove(); // re-insert below in id order
    }
    const mine = !!(S.me && m.sender && m.sender.id === S.me.id);
    if (!node) {
      node = el('div', 'msg');
      const bubble = el('div', 'bubble');
      // Names over others' messages only where there can be several others.
      const direct = chat.conv && chat.conv.conversation_type === 'direct';
      if (!mine && !direct) bubble.append(el('div', 'sender', nameOf(m.sender)));
      const files = el('div', 'attachments');
      const text = el('div', 'text');
      text.dataset.testid = 'message-text';
      const meta = el('div', 'meta');
      meta.append(el('span', 'edited'), el('span', 'time'), el('span', 'status'));
      meta.lastChild.dataset.testid = 'message-status';
      bubble.append(files, text, meta);
      node.append(bubble);
    }
    // (An optimistic node of our own has no box yet.)
    let box = node.querySelector('.attachments');
    if (!box) { box = el('div', 'attachments'); node.querySelector('.bubble').prepend(box); }
    renderAttachments(box, m.is_deleted ? [] : (m.attachments || []));
    node.dataset.testid = 'message';
    node.dataset.messageId = m.id;
    node.dataset.seq = m.seq != null ? m.seq : '';
    node.dataset.clientId = m.client_id || '';
    node.classList.toggle('mine', mine);
    node.classList.remove('pending', 'failed');
    node.classList.toggle('deleted', !!m.is_deleted);
    node.querySelector('.text').textContent = m.is_deleted ? 'message deleted' : m.content;
    node.querySelector('.edited').textContent = m.edited_at && !m.is_deleted ? 'edited' : '';
    node.querySelector('.time').textContent = hhmm(m.created_at);
    node.mine = mine;
    chat.els.set(m.id, node);
    if (!node.isConnected) insertById(node, m.id, where);
    updateStatus(node);
    return node;
  }
  // Images show inline, other files as a link; `file` is the media store's
  // URL (a content address: no token needed, as the original's /media/).
  function renderAttachments(box, list) {
    const key = JSON.stringify(list.map((a) => a.id));
    if (box.dataset.ids === key) return;
    box.dataset.ids = key;
    box.replaceChildren();
    for (const a of list) {
      const link = el('a');
      link.href = a.file;
      if (/^image\//.test(a.mime_type)) {
        link.target = '_blank';
        link.rel = 'noopener';
        const img = el('img');
        img.src = a.file;
        img.alt = a.file_name;
        img.dataset.testid = 'attachment-image';
        link.append(img);
      } else {
        link.className = 'file';
        link.download = a.file_name;
        link.textContent = `${a.file_name} (${sizeText(a.file_size)})`;
        link.dataset.testid = 'attachment-file';
      }
      box.append(link);
    }
  }
  function sizeText(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KB';
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  }
  // A multipart send: the composer's text as the caption and the chosen files
  // in uploaded_files; shown from the answer (the socket's message.new is the
  // same message, matched by id). Retried once after a token refresh.
  async function sendFiles(files, caption, retried) {
    const chat = S.chat;
    if (!chat || !files.length) return;
    const form = new FormData();
    form.append('content', caption);
    form.append('client_id', newClientId());
    for (const f of files) form.append('uploaded_files', f, f.name);
    const label = $('#composer .attach');
    label.classList.add('busy');
    try {
      if (!accessFresh()) await refreshAccess();
      const r = await fetch(`/api/chat/conversations/${chat.id}/messages/`, {
        method: 'POST', headers: { Authorization: 'Bearer ' + S.access, Accept: 'application/json' }, body: form,
      });
      if (r.status === 401 && !retried) { await refreshAccess(); return sendFiles(files, caption, true); }
      let data = null;
      try { data = await r.json(); } catch { data = { detail: 'HTTP ' + r.status }; }
      if (r.status === 413) { toast('That file is too large'); return; }
      if (!r.ok) { toast(firstError(data)); return; }
      if (S.chat === chat) { renderMessage(data); historyState(); scrollToBottom(); }
    } catch (e) {
      toast('Could not send the file: ' + e.message);
    } finally {
      label.classList.remove('busy');
    }
  }
  function insertById(node, id, where) {
    const list = $('#message-list');
    const ids = Array.from(list.querySelectorAll('.msg:not(.pending)'));
    if (where === 'prepend') {
      const after = ids.find((x) => Number(x.dataset.messageId) > id);
      list.insertBefore(node, after || list.querySelector('.msg.pending'));
      return;
    }
    // Normally the newest: goes after every acked message, before pending ones.
    let before = list.querySelector('.msg.pending');
    for (let i = ids.length - 1; i >= 0 && Number(ids[i].dataset.messageId) > id; i--) before = ids[i];
    list.insertBefore(node, before);
  }
  function updateStatus(node) {
    const st = node.querySelector('.status');
    if (!node.mine) { st.textContent = ''; return; }
    if (node.classList.contains('failed')) st.textContent = 'failed';
    else if (node.classList.contains('pending')) st.textContent = 'sending…';
    else st.textContent = Number(node.dataset.messageId) <= S.chat.othersReadUpTo ? 'read' : 'sent';
    st.classList.toggle('read', st.textContent === 'read');
  }
  function markOthersRead(messageId) {
    const chat = S.chat;
    if (!chat || messageId <= chat.othersReadUpTo) return;
    chat.othersReadUpTo = messageId;
    for (const node of chat.els.values()) if (node.mine) updateStatus(node);
  }
  // History carries receipts: a "read" receipt from someone else on a message
  // means they have read up to it (read positions only move forward).
  function applyReceipts(msgs) {
    for (const m of msgs) for (const r of m.receipts || []) {
      if (r.state === 'read' && r.user && S.me && r.user.id !== S.me.id) markOthersRead(m.id);
    }
  }

  function scrollToBottom() { const l = $('#message-list'); l.scrollTop = l.scrollHeight; }
  function nearBottom() { const l = $('#message-list'); return l.scrollHeight - l.scrollTop - l.clientHeight < 120; }

  // ---------------------------------------------------------------- sending
  function sendMessage(content) {
    const chat = S.chat;
    if (!chat) return;
    const client_id = newClientId();
    const node = el('div', 'msg mine pending');
    node.dataset.testid = 'message';
    node.dataset.clientId = client_id;
    node.dataset.seq = '';
    node.dataset.messageId = '';
    node.mine = true;
    const bubble = el('div', 'bubble');
    const text = el('div', 'text', content);
    text.dataset.testid = 'message-text';
    const meta = el('div', 'meta');
    meta.append(el('span', 'edited'), el('span', 'time', hhmm(new Date().toISOString())), el('span', 'status'));
    meta.lastChild.dataset.testid = 'message-status';
    bubble.append(text, meta);
    node.append(bubble);
    $('#message-list').append(node); // pending ones stay at the bottom until acked
    chat.pending.set(client_id, node);
    updateStatus(node);
    historyState();
    scrollToBottom();
    // Queue first, then flush: if the socket is down the message goes out after
    // the reconnect; the same client_id makes a retry safe (no duplicate).
    chat.outbox.push({ client_id, content, sentOn: -1 });
    flushOutbox(chat);
    sendTyping(false);
  }
  function flushOutbox(chat) {
    if (!chat.ws || chat.ws.readyState !== WebSocket.OPEN || !chat.synced) return;
    for (const o of chat.outbox) {
      if (o.sentOn === chat.gen) continue;
      o.sentOn = chat.gen;
      wsSend(chat, { type: 'message.send', content: o.content, client_id: o.client_id });
    }
  }
  function wsSend(chat, frame) {
    if (chat.ws && chat.ws.readyState === WebSocket.OPEN) { chat.ws.send(JSON.stringify(frame)); return true; }
    return false;
  }
  // Typing: at most one "true" per 2 s while typing, "false" on send / blur.
  function sendTyping(on) {
    const chat = S.chat;
    if (!chat) return;
    const now = Date.now();
    if (on) {
      if (now - chat.typingSentAt < 2000) return;
      if (wsSend(chat, { type: 'typing', is_typing: true })) chat.typingSentAt = now;
    } else if (chat.typingSentAt) {
      chat.typingSentAt = 0;
      wsSend(chat, { type: 'typing', is_typing: false });
    }
  }
  // Read state: tell the server we have seen the newest message from others,
  // but only while the page is actually visible.
  function sendRead() {
    const chat = S.chat;
    if (!chat || document.visibilityState !== 'visible' || !chat.synced) return;
    let newest = 0;
    for (const [id, node] of chat.els) if (!node.mine && id > newest) newest = id;
    if (newest > chat.readSent && wsSend(chat, { type: 'message.read', message_id: newest })) {
      chat.readSent = newest;
      const c = S.convs.find((x) => x.id === chat.id);
      if (c && c.unread_count) { c.unread_count = 0; renderConversations(); }
    }
  }

  // ---------------------------------------------------------------- the socket
  function setConn(state) {
    for (const e of document.querySelectorAll('.conn')) { e.textContent = state; e.dataset.state = state; }
  }

  async function connect(chat) {
    if (S.chat !== chat || chat.closed) return;
    setConn(chat.attempt ? 'reconnecting' : 'connecting');
    // A handshake refusal (401) is invisible to the browser (it only sees 1006),
    // so make sure the token is fresh before every connect.
    if (!accessFresh()) {
      try { await refreshAccess(); } catch { if (S.chat === chat) scheduleReconnect(chat); return; }
    }
    if (S.chat !== chat || chat.closed) return;
    const gen = ++chat.gen;
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${proto}://${location.host}/ws/conversations/${chat.id}/?token=${encodeURIComponent(S.access)}&since=${chat.lastSeq}`;
    const ws = chat.ws = new WebSocket(url);
    chat.synced = false;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      chat.failsBeforeOpen = 0;
      // Keep-alive: a ping every 25 s; no pong within 10 s means a dead link.
      chat.awaitingPong = 0;
      chat.lastPingAt = Date.now();
      clearInterval(chat.pingTimer);
      chat.pingTimer = setInterval(() => {
        const now = Date.now();
        if (chat.awaitingPong && now - chat.awaitingPong > 10000) { ws.close(4000, 'ping timeout'); return; }
        if (!chat.awaitingPong && now - chat.lastPingAt >= 25000 && wsSend(chat, { type: 'ping' })) {
          chat.awaitingPong = chat.lastPingAt = now;
        }
      }, 5000);
      // The server ends every since-replay with sync.done; should one not come,
      // do not stay stuck: treat the socket as synced after 3 s.
      setTimeout(() => { if (chat.gen === gen && chat.ws === ws && !chat.synced) onFrame(chat, { type: 'sync.done' }); }, 3000);
    };
    ws.onmessage = (ev) => {
      if (chat.gen !== gen) return;
      let f;
      try { f = JSON.parse(ev.data); } catch { return; }
      onFrame(chat, f);
    };
    ws.onclose = (ev) => {
      if (chat.gen !== gen) return;
      clearInterval(chat.pingTimer);
      chat.ws = null;
      chat.synced = false;
      if (S.chat !== chat || chat.closed) return;
      if (!opened) chat.failsBeforeOpen++;
      if (ev.code === 4403 || ev.code === 4404) { setConn('offline'); toast('You cannot access this conversation'); return; }
      if (ev.code === 4401) { refreshAccess().then(() => scheduleReconnect(chat), () => {}); setConn('reconnecting'); return; }
      // 4408 (we read too slowly), 1012 (server restart / dropped), 1001, 1006...:
      // reconnect with back-off and resume with since = last seq seen.
      scheduleReconnect(chat);
    };
  }

  async function scheduleReconnect(chat) {
    if (S.chat !== chat || chat.closed) return;
    // A refused handshake looks like any network error to the browser: ask REST
    // why (a 401 is refreshed by api(), 403/404 are final, a network error retries).
    if (chat.failsBeforeOpen > 0) {
      try { await api('GET', `/api/chat/conversations/${chat.id}/`); } catch (e) {
        if (e.status === 403 || e.status === 404) { setConn('offline'); toast('You cannot access this conversation'); return; }
      }
    }
    const offline = navigator.onLine === false;
    setConn(offline ? 'offline' : 'reconnecting');
    // Exponential back-off 0.5 s doubling to 10 s, with jitter so many clients
    // dropped together do not come back all at once.
    const base = Math.min(10000, 500 * 2 ** chat.attempt);
    const delay = base / 2 + Math.random() * base / 2;
    chat.attempt++;
    clearTimeout(chat.retryTimer);
    chat.retryTimer = setTimeout(() => connect(chat), delay);
  }

  function onFrame(chat, f) {
    // Events with a seq are in the log: apply each exactly once, in order.
    if (f.seq != null && f.type !== 'sync.done') {
      // An echo of our own pending message is matched by client_id even when
      // its seq was already seen (the answer to a retried send).
      const cid = f.type === 'message.new' && (f.client_id || (f.data && f.data.client_id));
      if (f.seq <= chat.lastSeq && !(cid && chat.pending.has(cid))) return;
      chat.lastSeq = Math.max(chat.lastSeq, f.seq);
    }
    switch (f.type) {
      case 'message.new': {
        const m = f.data;
        if (!m) return;
        if (m.client_id == null && f.client_id) m.client_id = f.client_id;
        if (m.seq == null) m.seq = f.seq; // the frame's seq is the message's own
        const stick = nearBottom() || (S.me && m.sender && m.sender.id === S.me.id);
        renderMessage(m, 'append');
        if (!(S.me && m.sender && m.sender.id === S.me.id)) showTyping(m.sender && m.sender.id, null, false);
        historyState();
        if (stick) scrollToBottom();
        convTouched(chat.id, m);
        sendRead();
        break;
      }
      case 'message.edited':
      case 'message.deleted': {
        const id = f.type === 'message.edited' ? f.data && f.data.id : f.message_id;
        const node = chat.els.get(id);
        if (!node) return; // not loaded (an older page): it comes right when loaded
        if (f.type === 'message.edited') renderMessage(f.data, 'append');
        else {
          node.classList.add('deleted');
          node.querySelector('.text').textContent = 'message deleted';
          node.querySelector('.edited').textContent = '';
        }
        break;
      }
      case 'message.read':
        if (S.me && f.user_id !== S.me.id) markOthersRead(Number(f.message_id));
        break;
      case 'typing':
        if (S.me && f.user_id !== S.me.id) showTyping(f.user_id, f.username, f.is_typing !== false);
        break;
      case 'sync.done':
        // Replay finished: we are live. Now (re)send whatever is queued.
        chat.synced = true;
        chat.attempt = 0;
        setConn('live');
        flushOutbox(chat);
        sendRead();
        callsSynced(chat);
        break;
      case 'pong':
        chat.awaitingPong = 0;
        break;
      case 'presence': {
        // A partner came online or went offline: keep the member's user
        // object current, and the header of a direct chat with them.
        const member = chat.conv && (chat.conv.members || []).find((m) => m.user && m.user.id === f.user_id);
        if (member) {
          member.user.is_online = !!f.is_online;
          member.user.last_seen_at = f.last_seen_at;
          showPresence(chat.conv);
        }
        break;
      }
      case 'call.incoming':
      case 'call.answered':
      case 'call.rejected':
      case 'call.ended':
      case 'call.missed':
      case 'call.updated':
      case 'call.deleted':
      case 'webrtc.offer':
      case 'webrtc.answer':
      case 'webrtc.ice_candidate':
        onCallFrame(chat, f);
        break;
      case 'error':
        // A late ICE candidate of a call the other side just ended: harmless.
        if (!f.client_id && f.code === 'invalid' && f.detail === 'This call is over.') break;
        if (f.client_id && chat.pending.has(f.client_id)) {
          if (f.code === 'unavailable') { setTimeout(() => { const o = chat.outbox.find((x) => x.client_id === f.client_id); if (o) { o.sentOn = -1; flushOutbox(chat); } }, 2000); break; }
          const node = chat.pending.get(f.client_id);
          node.classList.add('failed');
          chat.outbox = chat.outbox.filter((o) => o.client_id !== f.client_id);
          updateStatus(node);
        }
        toast(f.detail || f.code || 'error');
        break;
      default:
        if (f.type === 'member.added' || f.type === 'member.removed' || f.type === 'member.promoted') {
          loadConversations();
          refreshChatConv(chat);
        }
    }
  }

  // "online" or "last seen HH:MM" under the name of a direct chat's partner
  // (from the conversation's member objects, kept current by `presence`
  // frames); nothing for groups or a partner who hides it.
  function showPresence(conv) {
    const node = $('#chat-presence');
    const other = conv && conv.conversation_type === 'direct' && S.me
      && ((conv.members || []).map((m) => m.user).find((u) => u && u.id !== S.me.id));
    const online = !!(other && other.is_online);
    node.classList.toggle('online', online);
    node.textContent = !other ? '' : online ? 'online'
      : other.last_seen_at ? 'last seen ' + hhmm(other.last_seen_at) : '';
  }

  // "X is typing…" for 3 s after each typing frame (the sender repeats every 2 s).
  const typers = new Map(); // user_id -> {name, timer}
  function showTyping(userId, username, on) {
    const t = typers.get(userId);
    if (t) clearTimeout(t.timer);
    if (on) {
      const member = S.chat && S.chat.conv && (S.chat.conv.members || []).find((m) => m.user && m.user.id === userId);
      const name = member ? nameOf(member.user) : username || 'Someone';
      typers.set(userId, { name, timer: setTimeout(() => showTyping(userId, null, false), 3000) });
    } else typers.delete(userId);
    const names = Array.from(typers.values(), (x) => x.name);
    $('[data-testid=typing-indicator]').textContent =
      names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '';
  }

  // ---------------------------------------------------------------- calls (issue 15)
  // One call at a time, in the open conversation, between its caller and one
  // other member (the callee; in a group the first who answers). The call's
  // state changes go over REST (answers are clear errors); its WebRTC
  // signalling goes over the conversation's socket, which relays
  // `webrtc.*` frames to the call's other participants only. Media flows
  // peer to peer with host candidates only (no STUN/TURN servers).
  //
  // Call frames carry a `seq` like messages, so a `since` replay (opening a
  // conversation, a reconnect) brings old `call.incoming` frames back: those
  // never ring. Only a live frame rings, or, after a replay, a call that
  // GET /api/chat/calls/active/ says is still ringing for us.
  const RTC_CONFIG = { iceServers: [] };
  const callsOver = new Set();   // ids of calls known to be over (or declined by us)
  let ringingIn = new Map();     // conversation id -> call object ringing for us (the list's badge)
  let C = null;                  // the current call, see newCall()
  // For tests and debugging: the current call's peer connection and state.
  window.vatoCall = {
    get state() { return C ? C.state : 'idle'; },
    get id() { return C ? C.id : null; },
    get pc() { return C ? C.pc : null; },
    last: null, // {id, pc, stream} of the call that ended last
  };

  function newCall(o) {
    return Object.assign({
      id: null, convId: null, type: 'voice', role: 'caller', peerId: null, peerName: '',
      state: 'calling', pc: null, stream: null, pendingIce: [], outq: [],
      chain: Promise.resolve(), connectedAt: 0, timer: 0, endingSent: false,
    }, o);
  }
  const mmss = (secs) => `${Math.floor(secs / 60)}:${String(Math.floor(secs % 60)).padStart(2, '0')}`;
  const callsSupported = () => !!(window.RTCPeerConnection && navigator.mediaDevices && navigator.mediaDevices.getUserMedia);

  function showCallButtons(conv) {
    // Starting a call: direct conversations only (one peer connection).
    const direct = !!conv && conv.conversation_type === 'direct';
    $('#call-voice').hidden = $('#call-video').hidden = !direct || !callsSupported();
  }

  // The camera and microphone; a video call without a camera falls back to voice.
  async function getMedia(type) {
    if (!callsSupported()) throw new Error('Calls need a browser with WebRTC, on https:// or localhost');
    try {
      return await navigator.mediaDevices.getUserMedia({ audio: true, video: type === 'video' });
    } catch (e) {
      if (type === 'video' && e.name === 'NotFoundError') return navigator.mediaDevices.getUserMedia({ audio: true, video: false });
      throw e;
    }
  }

  // ---- the panel
  function renderCall() {
    const panel = $('#call-panel');
    const call = C;
    if (!call) { panel.hidden = true; panel.dataset.callState = 'idle'; panel.dataset.pcState = ''; return; }
    panel.hidden = false;
    panel.dataset.callState = call.state;
    panel.dataset.callId = call.id || '';
    panel.dataset.pcState = call.pc ? call.pc.connectionState : '';
    panel.classList.toggle('video', call.type === 'video');
    const what = call.type === 'video' ? 'video call' : 'call';
    const status = {
      // "Ringing" once the server has the call (and rings the other side).
      calling: `${call.id ? 'Ringing' : 'Calling'} ${call.peerName}…`,
      ringing: `Incoming ${what} from ${call.peerName}`,
      connecting: 'Connecting…',
      connected: call.pc && call.pc.connectionState === 'disconnected' ? 'Connection interrupted…' : 'Connected',
    }[call.state] || '';
    panel.querySelector('[data-testid=call-status]').textContent = status;
    panel.querySelector('[data-testid=call-timer]').textContent =
      call.connectedAt ? mmss((Date.now() - call.connectedAt) / 1000) : '';
    const incoming = call.state === 'ringing';
    panel.querySelector('[data-testid=call-answer]').hidden = !incoming;
    panel.querySelector('[data-testid=call-decline]').hidden = !incoming;
    panel.querySelector('[data-testid=call-hangup]').hidden = incoming;
  }
  function showCallPeer(call) {
    setAvatar($('#call-avatar'), null, call.peerName);
    const local = $('#call-local-video');
    local.srcObject = call.type === 'video' && call.stream ? call.stream : null;
    local.hidden = !local.srcObject;
  }

  // ---- starting, answering, ending
  async function startCall(type) {
    const chat = S.chat;
    if (!chat || C) return;
    const peer = convPartner(chat.conv);
    const call = C = newCall({ convId: chat.id, type, role: 'caller', peerId: peer ? peer.id : null, peerName: peer ? nameOf(peer) : convName(chat.conv || { id: chat.id }) });
    showCallPeer(call);
    renderCall();
    try {
      // The camera first: a refused camera rings nobody.
      call.stream = await getMedia(type);
      if (C !== call) { stopStream(call.stream); return; }
      showCallPeer(call);
      const { data } = await api('POST', '/api/chat/calls/', { conversation_id: call.convId, call_type: type });
      call.id = data.id;
      if (C !== call) { endOnServer(call); return; } // hung up meanwhile
      renderCall();
    } catch (e) {
      if (C === call) { toast(e.name === 'NotAllowedError' ? 'Camera or microphone access was refused' : e.message); finishCall(call); }
    }
  }

  // A call rings for us: show it with Answer / Decline.
  function ringCall(chat, id, type, caller) {
    if (C || callsOver.has(id) || !S.me || !caller || caller.id === S.me.id) return;
    C = newCall({ id, convId: chat.id, type: type || 'voice', role: 'callee', peerId: caller.id, peerName: nameOf(caller), state: 'ringing' });
    showCallPeer(C);
    renderCall();
  }

  async function answerCall() {
    const call = C;
    if (!call || call.state !== 'ringing') return;
    call.state = 'connecting';
    renderCall();
    let media = true;
    try {
      call.stream = await getMedia(call.type);
      if (C !== call) { stopStream(call.stream); return; }
      media = false;
      showCallPeer(call);
      // The peer connection is made when the caller's offer comes (it is
      // sent once the caller hears of the answer).
      await api('POST', `/api/chat/calls/${call.id}/answer/`, {});
    } catch (e) {
      if (C !== call) return;
      toast(e.name === 'NotAllowedError' ? 'Camera or microphone access was refused' : e.message);
      if (media) call.state = 'ringing'; // not answered: decline it
      hangUp();
    }
  }

  // Decline (a call ringing for us) or hang up (any other).
  function hangUp() {
    const call = C;
    if (!call) return;
    if (call.id) endOnServer(call);
    finishCall(call);
  }
  function endOnServer(call) {
    if (call.endingSent || !call.id) return;
    call.endingSent = true;
    const action = call.role === 'callee' && call.state === 'ringing' ? 'reject' : 'end';
    callsOver.add(call.id);
    api('POST', `/api/chat/calls/${call.id}/${action}/`, {}).catch((e) => {
      if (e.status !== 400) toast('Could not end the call: ' + e.message); // 400: it is over already
    }).finally(() => reloadCallLog());
  }
  // The conversation is closed (back, another one, log out): a call ringing
  // for us goes on ringing (the list shows it, opening the conversation
  // again shows it again); any other call is hung up.
  function leaveCall() {
    const call = C;
    if (!call) return;
    if (call.role === 'callee' && call.state === 'ringing') { C = null; renderCall(); return; }
    hangUp();
  }
  // The page goes away mid-call: tell the server, so the other side stops at once.
  function endOnUnload() {
    const call = C;
    if (!call || !call.id || call.endingSent || !S.access || (call.role === 'callee' && call.state === 'ringing')) return;
    call.endingSent = true;
    try {
      fetch(`/api/chat/calls/${call.id}/end/`, {
        method: 'POST', keepalive: true, body: '{}',
        headers: { Authorization: 'Bearer ' + S.access, 'Content-Type': 'application/json' },
      });
    } catch { /* the page is going anyway */ }
  }

  function stopStream(stream) {
    if (stream) for (const t of stream.getTracks()) t.stop();
  }
  // Local end of a call, whoever ended it: close the peer connection, stop
  // the camera and microphone, close the panel.
  function finishCall(call, message) {
    if (call.id) callsOver.add(call.id);
    clearInterval(call.timer);
    if (call.pc) { call.pc.onicecandidate = call.pc.ontrack = call.pc.onconnectionstatechange = null; call.pc.close(); }
    stopStream(call.stream);
    window.vatoCall.last = { id: call.id, pc: call.pc, stream: call.stream };
    if (C !== call) return;
    C = null;
    for (const id of ['#call-remote-video', '#call-local-video', '#call-remote-audio']) $(id).srcObject = null;
    renderCall();
    if (message) toast(message);
    reloadCallLog();
  }

  // ---- WebRTC
  function sendSignal(call, frame) {
    const chat = S.chat;
    // Not while the socket reconnects: queued, and sent after its sync.done.
    if (!chat || chat.id !== call.convId || !chat.synced || !wsSend(chat, frame)) call.outq.push(frame);
  }
  function flushSignals(chat) {
    const call = C;
    if (!call || call.convId !== chat.id) return;
    const q = call.outq;
    call.outq = [];
    for (const f of q) sendSignal(call, f);
  }
  function makePeer(call) {
    const pc = call.pc = new RTCPeerConnection(RTC_CONFIG);
    for (const t of call.stream ? call.stream.getTracks() : []) pc.addTrack(t, call.stream);
    pc.onicecandidate = (e) => {
      if (e.candidate && C === call) sendSignal(call, { type: 'webrtc.ice_candidate', call_id: call.id, candidate: e.candidate.toJSON() });
    };
    pc.ontrack = (e) => {
      const stream = e.streams[0] || new MediaStream([e.track]);
      const media = call.type === 'video' ? $('#call-remote-video') : $('#call-remote-audio');
      if (media.srcObject !== stream) {
        media.srcObject = stream;
        media.play().catch(() => { /* autoplay refused: the controls are the panel's */ });
      }
    };
    pc.onconnectionstatechange = () => {
      if (C !== call) return;
      if (pc.connectionState === 'connected' && !call.connectedAt) {
        call.state = 'connected';
        call.connectedAt = Date.now();
        call.timer = setInterval(renderCall, 1000);
      }
      if (pc.connectionState === 'failed') { hangUp(); toast('The call lost its connection'); return; }
      renderCall();
    };
    renderCall();
    return pc;
  }
  // Remote candidates wait until the remote description is set.
  async function addIce(call, candidate) {
    if (!call.pc || !call.pc.remoteDescription) { call.pendingIce.push(candidate); return; }
    try { await call.pc.addIceCandidate(candidate); } catch (e) { console.warn('ice candidate', e); }
  }
  async function flushIce(call) {
    const q = call.pendingIce;
    call.pendingIce = [];
    for (const c of q) await addIce(call, c);
  }
  // The callee has answered: the caller makes the offer.
  async function sendOffer(call) {
    const pc = makePeer(call);
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    sendSignal(call, { type: 'webrtc.offer', call_id: call.id, offer: pc.localDescription.toJSON() });
  }
  async function onOffer(call, offer) {
    if (call.pc) return; // one offer per call
    const pc = makePeer(call);
    await pc.setRemoteDescription(offer);
    await flushIce(call);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    sendSignal(call, { type: 'webrtc.answer', call_id: call.id, answer: pc.localDescription.toJSON() });
  }
  async function onAnswer(call, answer) {
    if (!call.pc || call.pc.signalingState !== 'have-local-offer') return;
    await call.pc.setRemoteDescription(answer);
    await flushIce(call);
  }
  // Signalling steps run one after the other, in the order the frames came.
  function step(call, fn) {
    call.chain = call.chain.then(fn).catch((e) => {
      console.warn('call signalling', e);
      if (C === call) { hangUp(); toast('The call could not be set up: ' + e.message); }
    });
  }

  // ---- frames of the open conversation's socket
  function onCallFrame(chat, f) {
    const live = chat.synced; // before sync.done: a replay of the past
    const call = C && C.convId === chat.id ? C : null;
    const mine = (u) => !!(u && S.me && u.id === S.me.id);
    switch (f.type) {
      case 'call.incoming':
        if (mine(f.caller)) {
          // Our own call's echo; the REST answer may still be on its way.
          if (call && call.role === 'caller' && !call.id) { call.id = f.call_id; renderCall(); }
          break;
        }
        if (live && S.me && (f.participant_ids || []).includes(S.me.id)) ringCall(chat, f.call_id, f.call_type, f.caller);
        break;
      case 'call.answered':
        if (!call || call.id !== f.call_id) break;
        if (call.role === 'caller' && !mine(f.answerer) && !call.pc) {
          call.peerId = f.answerer.id;
          call.peerName = nameOf(f.answerer);
          call.state = 'connecting';
          showCallPeer(call);
          renderCall();
          step(call, () => sendOffer(call));
        } else if (call.role === 'callee' && mine(f.answerer) && call.state === 'ringing') {
          finishCall(call, 'Answered on another device');
        }
        break;
      case 'call.rejected':
        // `state` is the call's state now (in a replay too): over, or still
        // ringing for others (groups), or answered by someone since.
        if (f.state === 'declined' || f.state === 'ended' || f.state === 'missed') callsOver.add(f.call_id);
        if (!call || call.id !== f.call_id) break;
        if (f.state === 'declined') finishCall(call, call.role === 'caller' ? `${call.peerName} declined the call` : null);
        else if (call.role === 'callee' && mine(f.rejector)) finishCall(call); // declined on another device
        break;
      case 'call.ended':
      case 'call.missed':
        callsOver.add(f.call_id);
        if (call && call.id === f.call_id) {
          finishCall(call, f.type === 'call.missed' ? 'No answer' : `Call ended${f.duration ? ' · ' + mmss(f.duration) : ''}`);
        }
        break;
      case 'call.deleted':
        callsOver.add(f.call_id);
        break;
      case 'webrtc.offer':
        if (call && call.id === f.call_id && call.role === 'callee' && f.sender_id === call.peerId && call.state !== 'ringing') {
          step(call, () => onOffer(call, f.offer));
        }
        break;
      case 'webrtc.answer':
        if (call && call.id === f.call_id && f.sender_id === call.peerId) step(call, () => onAnswer(call, f.answer));
        break;
      case 'webrtc.ice_candidate':
        if (call && call.id === f.call_id && f.sender_id === call.peerId && f.candidate) step(call, () => addIce(call, f.candidate));
        break;
    }
    if (live && f.type.startsWith('call.')) reloadCallLog();
  }

  // The socket is live (after its replay): ring for a call still ringing for
  // us here, and send the signalling queued while it was down.
  async function callsSynced(chat) {
    flushSignals(chat);
    if (C) return;
    const active = await activeCalls();
    if (S.chat !== chat || C) return;
    const c = active.find((x) => x.conversation === chat.id && rungForMe(x));
    if (c) ringCall(chat, c.id, c.call_type, c.caller);
  }
  function rungForMe(c) {
    return c.state === 'ringing' && !callsOver.has(c.id) && S.me && c.caller && c.caller.id !== S.me.id
      && (c.participants || []).some((p) => p.user && p.user.id === S.me.id && !p.is_answered);
  }
  async function activeCalls() {
    try { return (await api('GET', '/api/chat/calls/active/')).data || []; } catch { return []; }
  }
  // With the conversation list: which conversations ring for us (only the
  // open one has a socket, so the others are polled).
  async function pollRinging() {
    const active = await activeCalls();
    const next = new Map(active.filter(rungForMe).map((c) => [c.conversation, c]));
    const fresh = Array.from(next.values()).filter((c) => !Array.from(ringingIn.values()).some((o) => o.id === c.id));
    ringingIn = next;
    renderConversations();
    for (const c of fresh) if (!(S.chat && S.chat.id === c.conversation)) toast(`Incoming call from ${nameOf(c.caller)}`);
  }

  // ---- the call log of the open conversation
  async function toggleCallLog() {
    showCallLog($('#call-log').hidden);
    await reloadCallLog();
  }
  function showCallLog(on) {
    $('#call-log').hidden = !on;
    $('#call-log-open').setAttribute('aria-pressed', String(on));
  }
  let callLogSeq = 0;
  async function reloadCallLog() {
    const box = $('#call-log');
    const chat = S.chat;
    if (box.hidden || !chat) return;
    const mySeq = ++callLogSeq;
    let calls;
    try { calls = (await api('GET', '/api/chat/calls/')).data || []; } catch (e) { toast(e.message); return; }
    if (mySeq !== callLogSeq || S.chat !== chat) return; // a newer load is on its way
    const list = $('#call-log-list');
    list.replaceChildren();
    const here = calls.filter((c) => c.conversation === chat.id);
    if (!here.length) list.append(el('li', 'muted', 'No calls yet'));
    for (const c of here) {
      const li = el('li', 'call-log-item');
      li.dataset.testid = 'call-log-item';
      li.dataset.callId = c.id;
      li.dataset.state = c.state;
      li.dataset.duration = c.duration;
      const out = !!(S.me && c.caller && c.caller.id === S.me.id);
      li.classList.toggle('missed', !out && (c.state === 'missed' || c.state === 'declined'));
      const type = el('span', 'call-log-type', c.call_type === 'video' ? 'Video' : 'Voice');
      type.dataset.testid = 'call-log-type';
      const who = el('span', 'call-log-who', out ? 'You called' : `${nameOf(c.caller)} called`);
      const state = el('span', 'call-log-state', c.state);
      state.dataset.testid = 'call-log-state';
      const dur = el('span', 'call-log-duration', c.state === 'active' || c.state === 'ringing' ? '' : mmss(c.duration || 0));
      dur.dataset.testid = 'call-log-duration';
      const when = el('span', 'call-log-time', hhmm(c.started_at));
      li.append(type, who, state, dur, when);
      list.append(li);
    }
  }

  // ---------------------------------------------------------------- profile
  function showMe() {
    $('#me-name').textContent = nameOf(S.me);
    setAvatar($('#me-avatar'), S.me, nameOf(S.me));
    setAvatar($('#profile-avatar'), S.me, nameOf(S.me));
  }
  // Opens (or closes) the profile panel with the current profile and settings.
  async function toggleProfile() {
    const panel = $('#profile-panel');
    panel.hidden = !panel.hidden;
    if (panel.hidden) return;
    $('[data-testid=profile-saved]').textContent = '';
    try {
      const [me, settings] = await Promise.all([
        api('GET', '/api/auth/profile/me/'), api('GET', '/api/auth/settings/')]);
      S.me = Object.assign(S.me || {}, me.data);
      showMe();
      const f = $('#profile-form');
      f.status_message.value = S.me.status_message || '';
      f.show_typing_indicator.checked = settings.data.show_typing_indicator !== false;
      f.show_read_receipts.checked = settings.data.show_read_receipts !== false;
    } catch (e) { toast(e.message); }
  }
  async function saveProfile(form) {
    const saved = $('[data-testid=profile-saved]');
    saved.textContent = '';
    try {
      const { data } = await api('PATCH', '/api/auth/profile/me/', { status_message: form.status_message.value });
      await api('PATCH', '/api/auth/settings/', {
        show_typing_indicator: form.show_typing_indicator.checked,
        show_read_receipts: form.show_read_receipts.checked,
      });
      S.me = Object.assign(S.me || {}, data);
      saved.textContent = 'Saved';
    } catch (e) { toast(e.message); }
  }
  // Uploads (a File) or removes (null) the avatar; the answer is the profile.
  async function changeAvatar(file, retried) {
    try {
      if (!accessFresh()) await refreshAccess();
      let body;
      if (file) { body = new FormData(); body.append('avatar', file, file.name); }
      const r = await fetch('/api/auth/profile/me/avatar/', {
        method: file ? 'POST' : 'DELETE', headers: { Authorization: 'Bearer ' + S.access, Accept: 'application/json' }, body,
      });
      if (r.status === 401 && !retried) { await refreshAccess(); return changeAvatar(file, true); }
      let data = null;
      try { data = await r.json(); } catch { data = { detail: 'HTTP ' + r.status }; }
      if (!r.ok) { toast(firstError(data)); return; }
      S.me = Object.assign(S.me || {}, file ? data : { avatar: null, avatar_url: null });
      showMe();
    } catch (e) { toast('Could not change the photo: ' + e.message); }
  }

  // ---------------------------------------------------------------- start-up and wiring
  async function enterApp() {
    $('#auth-view').hidden = true;
    $('#app-view').hidden = false;
    if (!S.me) {
      try { S.me = (await api('GET', '/api/auth/profile/me/')).data; } catch (e) {
        if (!S.access) return; // logged out by a failed refresh
        const p = jwtPayload(S.access); // server unreachable: still usable from the token
        S.me = { id: p && p.user_id, username: '' };
      }
    }
    showMe();
    await loadConversations();
    pollRinging();
    // The list only has a live socket for the open conversation; poll the rest
    // (and the calls ringing for us).
    clearInterval(S.listTimer);
    S.listTimer = setInterval(() => { if (document.visibilityState === 'visible') { loadConversations(); pollRinging(); } }, 10000);
    const m = /^#\/c\/(\d+)$/.exec(location.hash);
    if (m) openConversation(Number(m[1]));
  }

  function wire() {
    for (const tab of document.querySelectorAll('.tab')) {
      tab.addEventListener('click', () => {
        for (const t of document.querySelectorAll('.tab')) t.classList.toggle('active', t === tab);
        $('#login-form').hidden = tab.dataset.tab !== 'login';
        $('#register-form').hidden = tab.dataset.tab !== 'register';
        $('[data-testid=auth-error]').textContent = '';
      });
    }
    $('#login-form').addEventListener('submit', (e) => { e.preventDefault(); submitAuth('login', e.target); });
    $('#register-form').addEventListener('submit', (e) => { e.preventDefault(); submitAuth('register', e.target); });
    $('#logout').addEventListener('click', () => logout());
    $('#me').addEventListener('click', toggleProfile);
    $('#profile-form').addEventListener('submit', (e) => { e.preventDefault(); saveProfile(e.target); });
    $('#profile-avatar-file').addEventListener('change', (e) => {
      const file = e.target.files[0];
      e.target.value = '';
      if (file) changeAvatar(file);
    });
    $('#profile-avatar-remove').addEventListener('click', () => changeAvatar(null));
    $('#user-search').addEventListener('input', onSearchInput);
    $('#new-group').addEventListener('click', () => {
      const f = $('#group-form');
      f.hidden = !f.hidden;
      if (!f.hidden) f.querySelector('input').focus();
    });
    $('#group-form').addEventListener('submit', (e) => { e.preventDefault(); createGroup(e.target); });
    $('#chat-members').addEventListener('click', () => {
      const p = $('#members-panel');
      p.hidden = !p.hidden;
      if (!p.hidden) renderMembers();
    });
    $('#member-add-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const chat = S.chat;
      const name = new FormData(e.target).get('username').trim();
      if (!chat || !name) return;
      try {
        const user_id = await userIdByName(name);
        e.target.reset();
        await groupCall(chat, 'add-member', { user_id });
      } catch (err) { toast(err.message); }
    });
    $('#group-leave').addEventListener('click', leaveGroup);
    $('#call-voice').addEventListener('click', () => startCall('voice'));
    $('#call-video').addEventListener('click', () => startCall('video'));
    $('#call-answer').addEventListener('click', answerCall);
    $('#call-decline').addEventListener('click', hangUp);
    $('#call-hangup').addEventListener('click', hangUp);
    $('#call-log-open').addEventListener('click', toggleCallLog);
    window.addEventListener('pagehide', endOnUnload);
    $('#back').addEventListener('click', () => {
      document.body.classList.remove('chat-open');
      closeChat();
      history.replaceState(null, '', '/');
      $('#chat-open').hidden = true;
      $('#chat-none').hidden = false;
      loadConversations();
      pollRinging();
    });
    const input = $('#composer-input');
    const submit = () => {
      const text = input.value;
      if (!text.trim()) return;
      input.value = '';
      autosize();
      sendMessage(text);
    };
    const autosize = () => { input.style.height = 'auto'; input.style.height = Math.min(input.scrollHeight, 140) + 'px'; };
    $('#composer').addEventListener('submit', (e) => { e.preventDefault(); submit(); input.focus(); });
    $('#composer-file').addEventListener('change', (e) => {
      const files = Array.from(e.target.files || []);
      e.target.value = '';
      const caption = input.value;
      input.value = '';
      autosize();
      sendFiles(files, caption);
    });
    input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter makes a new line (not while an IME is composing).
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
    });
    input.addEventListener('input', () => { autosize(); if (input.value) sendTyping(true); });
    input.addEventListener('blur', () => sendTyping(false));
    $('#message-list').addEventListener('scroll', () => { if ($('#message-list').scrollTop < 60) loadOlder(); });
    document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'visible') sendRead(); });
    window.addEventListener('online', () => {
      // The network is back: do not wait out the back-off.
      const c = S.chat;
      if (c && !c.ws) { clearTimeout(c.retryTimer); c.attempt = 0; connect(c); }
    });
    window.addEventListener('offline', () => { if (S.chat && !S.chat.ws) setConn('offline'); });
    // Another tab logged out or refreshed: follow it.
    window.addEventListener('storage', (e) => {
      if (e.key === LS_ACCESS && e.newValue) { S.access = e.newValue; scheduleRefresh(); }
      if (e.key === LS_REFRESH && !e.newValue && S.refresh) logout();
    });
  }

  wire();
  if (S.access && S.refresh) { scheduleRefresh(); enterApp(); } else $('#auth-view').hidden = false;
})();
