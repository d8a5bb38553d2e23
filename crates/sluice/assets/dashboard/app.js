// sluice's dashboard: polls the JSON API (/api/v1 on this origin) every 2 s and shows the
// server, its live streams (with a player each) and its clients. Everything the API returns
// is client-controlled text somewhere (stream names, addresses, user agents): it only ever
// reaches the page through textContent and input values, never as HTML.
'use strict';

(function () {
  const API = '/api/v1';
  const POLL_MS = 2000;
  // Players started without a click: more would cost the viewer's bandwidth and CPU.
  const AUTOPLAY_MAX = 4;
  // The page asks for at most this many of each list, every poll (a server may have thousands).
  const MAX_STREAMS = 200;
  const MAX_CLIENTS = 500;
  const MAX_RECORDINGS = 100;
  // Recordings change seldom and are listed from the disk: every fifth poll.
  const RECORDINGS_EVERY = 5;
  const TOKEN_KEY = 'sluice.api_token';

  const $ = (sel, root) => (root || document).querySelector(sel);
  const streamsEl = $('#streams');
  const clientsBody = $('#clients tbody');
  const streamTpl = $('#stream-tpl');

  let rtmpPorts = []; // [{scheme, port}] from server.rtmp
  const cards = new Map(); // "app/name" -> card state
  const rows = new Map(); // client id -> <tr>

  // Puts `el` right after `prev` (first when null) in `parent`, moving it only when it is not
  // there already: a moved <video> may pause, a moved button may lose a click.
  function place(parent, el, prev) {
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (el !== want) parent.insertBefore(el, want);
    return el;
  }

  // ---- formatting ----------------------------------------------------------------------

  function bits(n) {
    if (!n) return '0 b/s';
    const units = ['b/s', 'kb/s', 'Mb/s', 'Gb/s'];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
  }

  function bytes(n) {
    if (!n) return '0 B';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(n < 10 && i > 0 ? 1 : 0)} ${units[i]}`;
  }

  function duration(secs) {
    secs = Math.floor(secs || 0);
    const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60, s = secs % 60;
    const pad = (x) => String(x).padStart(2, '0');
    return (d ? `${d}d ` : '') + `${pad(h)}:${pad(m)}:${pad(s)}`;
  }

  function videoText(v) {
    if (!v) return '–';
    const parts = [v.codec + (v.profile ? ` ${v.profile}` : '')];
    if (v.width && v.height) parts.push(`${v.width}×${v.height}`);
    if (v.frame_rate) parts.push(`${Math.round(v.frame_rate * 100) / 100} fps`);
    return parts.join(', ');
  }

  function audioText(a) {
    if (!a) return '–';
    const parts = [a.codec + (a.profile ? ` ${a.profile}` : '')];
    if (a.sample_rate) parts.push(`${a.sample_rate / 1000} kHz`);
    if (a.channels) parts.push(a.channels === 1 ? 'mono' : a.channels === 2 ? 'stereo' : `${a.channels} ch`);
    return parts.join(', ');
  }

  function viewersText(p) {
    if (!p) return '–';
    const by = [['rtmp', 'RTMP'], ['http_flv', 'HTTP-FLV'], ['ws_flv', 'WS-FLV'], ['relay', 'relay']]
      .filter(([k]) => p[k]).map(([k, label]) => `${p[k]} ${label}`);
    return by.length ? `${p.total} (${by.join(', ')})` : String(p.total || 0);
  }

  function recordingText(recs) {
    if (!recs || !recs.length) return 'no';
    return recs.map((r) => `${r.recorder || 'record'}: ${r.file} (${bytes(r.size)})`).join('; ');
  }

  // Fills the <dd data-k=KEY> elements of `root` with plain text.
  function fill(root, values) {
    for (const [k, v] of Object.entries(values)) {
      const dd = root.querySelector(`[data-k="${k}"]`);
      if (dd && dd.textContent !== v) dd.textContent = v;
    }
  }

  // ---- URLs --------------------------------------------------------------------------------

  const path = (app, name) => `/${app.split('/').map(encodeURIComponent).join('/')}/${encodeURIComponent(name)}`;

  function rtmpBase(app) {
    const list = rtmpPorts.length ? rtmpPorts : [{ scheme: 'rtmp', port: 1935 }];
    return list.map((l) => `${l.scheme}://${location.hostname}:${l.port}/${app}`);
  }

  function streamUrls(s) {
    const urls = rtmpBase(s.app).map((base) => [base.split(':')[0].toUpperCase(), `${base}/${s.name}`]);
    if (hasHls(s)) urls.push(['HLS', new URL(s.hls.playlist, location.origin).href]);
    urls.push(['HTTP-FLV', location.origin + path(s.app, s.name) + '.flv']);
    const ws = location.origin.replace(/^http/, 'ws');
    urls.push(['WS-FLV', ws + path(s.app, s.name) + '.flv']);
    return urls;
  }

  // A labelled read-only field with a Copy button.
  function urlRow(label, value) {
    const row = document.createElement('div');
    row.className = 'url';
    const l = document.createElement('span');
    l.className = 'label';
    l.textContent = label;
    const input = document.createElement('input');
    input.readOnly = true;
    input.value = value;
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'copy';
    copy.textContent = 'Copy';
    row.append(l, input, copy);
    return row;
  }

  // Copy buttons copy the field next to them (clipboard API in secure contexts, else the
  // selection, which plain-HTTP pages on a LAN address still allow).
  document.addEventListener('click', (e) => {
    const button = e.target.closest('button.copy');
    if (!button) return;
    const input = button.parentElement.querySelector('input');
    const done = () => { button.textContent = 'Copied'; setTimeout(() => { button.textContent = 'Copy'; }, 1200); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, () => selectCopy(input) && done());
    } else if (selectCopy(input)) {
      done();
    }
  });

  function selectCopy(input) {
    input.focus();
    input.select();
    try { return document.execCommand('copy'); } catch (_) { return false; }
  }

  // ---- API ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, text) { super(text); this.status = status; }
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }

  async function api(method, rel) {
    const headers = { Accept: 'application/json' };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    let res;
    try {
      res = await fetch(API + rel, { method, headers, cache: 'no-store', credentials: 'same-origin' });
    } catch (e) {
      throw new ApiError(0, 'the server does not answer');
    }
    if (res.status === 204) return null;
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!res.ok) {
      const why = body && typeof body.error === 'string' ? body.error : text.trim().slice(0, 200);
      throw new ApiError(res.status, why || res.statusText);
    }
    return body;
  }

  const notice = $('#notice');
  // `fromPoll`: the notice says why polling failed, and goes once polling works again.
  function showNotice(text, fromPoll) {
    if (text) { notice.textContent = text; notice.hidden = false; } else { notice.hidden = true; }
    if (fromPoll) notice.dataset.fromPoll = '1'; else delete notice.dataset.fromPoll;
  }

  // "403: why" from the API's error text, "403 Forbidden" from a bare status page.
  const statusText = (err) => (err.message.startsWith(String(err.status)) ? err.message : `${err.status}: ${err.message}`);

  // What an API refusal means to the person looking at the page.
  function explain(err) {
    switch (err.status) {
      case 0: return `No answer from ${location.host}: is sluice running?`;
      case 401:
        $('#token-form').hidden = false;
        return `The API needs a token (api_token): ${err.message}`;
      case 403:
        return `The API refused this address (${statusText(err)}). The built-in server shows its pages and ` +
          'API to loopback clients only, unless the configuration says "http_stats_public on;"; ' +
          'in an http {} block, allow this address in the API location.';
      case 404:
        return `No API at ${API} on this server (404). In an http {} block, add "location /api/ { api on; }".`;
      default: return `The API answered ${statusText(err)}`;
    }
  }

  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('#token').value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    $('#token').value = '';
    $('#token-form').hidden = true;
    showNotice('');
    poll();
  });

  // ---- server ---------------------------------------------------------------------------------

  function showServer(s) {
    rtmpPorts = Array.isArray(s.rtmp) ? s.rtmp : [];
    fill($('#server'), {
      version: String(s.version),
      uptime: duration(s.uptime_s),
      connections: String(s.connections),
      streams: String(s.streams),
      bw_in: bits(s.bw_in),
      bw_out: bits(s.bw_out),
      cpu: `${(s.cpu_percent || 0).toFixed(1)} %`,
      memory: bytes(s.memory_bytes),
    });
    updatePublishHelp();
  }

  // ---- streams and their players --------------------------------------------------------------

  const keyOf = (s) => `${s.app}/${s.name}`;
  // HLS on, and its playlist served by this HTTP server (an empty path: not served here).
  const hasHls = (s) => !!(s.hls && s.hls.playlist);
  // A stream just published has no playlist yet: its player waits for the first segment (a
  // few polls at most), rather than starting with a 404.
  const hlsReady = (s) => !hasHls(s) || s.hls.segments > 0;
  const HLS_WAIT_POLLS = 5;

  function showStreams(list) {
    const live = list.filter((s) => s.live);
    const seen = new Set();
    let prev = null;
    for (const s of live) {
      const key = keyOf(s);
      seen.add(key);
      let card = cards.get(key);
      if (!card) {
        card = newCard(s);
        cards.set(key, card);
      }
      updateCard(card, s);
      prev = place(streamsEl, card.el, prev); // the API's order: app, then name
    }
    for (const [key, card] of cards) {
      if (!seen.has(key)) {
        stopPlayer(card);
        card.el.remove();
        cards.delete(key);
      }
    }
    $('#no-streams').hidden = live.length > 0;
    // "How to publish" names a live stream's application until the user types another.
    if (live.length && !pubAppEdited && $('#pub-app').value !== live[0].app) {
      $('#pub-app').value = live[0].app;
      updatePublishHelp();
    }
  }

  function newCard(s) {
    const el = streamTpl.content.firstElementChild.cloneNode(true);
    el.dataset.stream = keyOf(s);
    $('.name', el).textContent = keyOf(s);
    const card = { el, video: $('video', el), stream: s, player: null, kind: null, want: null, urls: '', waited: 0 };
    $('.play', el).addEventListener('click', () => (card.player ? stopPlayer(card) : startPlayer(card)));
    $('.switch', el).addEventListener('click', () => {
      card.want = otherKind(card);
      if (card.player) startPlayer(card);
      updatePlayerBar(card);
    });
    const playing = [...cards.values()].filter((c) => c.player || c.autoplay).length;
    card.autoplay = playing < AUTOPLAY_MAX;
    return card;
  }

  function updateCard(card, s) {
    card.stream = s;
    fill(card.el, {
      video: videoText(s.video),
      audio: audioText(s.audio),
      bw_in: bits(s.bw_in),
      viewers: viewersText(s.players),
      uptime: duration((s.uptime_ms || 0) / 1000),
      recording: recordingText(s.recordings),
      hls: s.hls ? `on, ${s.hls.segments} segments` : 'off',
      publisher: s.publisher ? `${s.publisher.addr} (${s.publisher.protocol})` : '–',
    });
    const urls = streamUrls(s);
    const sig = JSON.stringify(urls);
    if (sig !== card.urls) {
      card.urls = sig;
      $('.urls', card.el).replaceChildren(...urls.map(([label, value]) => urlRow(label, value)));
    }
    if (card.autoplay && (hlsReady(s) || ++card.waited > HLS_WAIT_POLLS)) {
      card.autoplay = false;
      startPlayer(card);
    }
    updatePlayerBar(card);
  }

  // hls.js when the stream has HLS, else mpegts.js on HTTP-FLV; the Switch button overrides.
  function preferredKind(card) {
    if (card.want === 'hls' && !hasHls(card.stream)) return 'flv';
    return card.want || (hasHls(card.stream) ? 'hls' : 'flv');
  }

  function otherKind(card) {
    return preferredKind(card) === 'hls' ? 'flv' : 'hls';
  }

  function updatePlayerBar(card) {
    const kind = card.player ? card.kind : preferredKind(card);
    $('.play', card.el).textContent = card.player ? 'Stop' : 'Play';
    const sw = $('.switch', card.el);
    sw.textContent = kind === 'hls' ? 'Use HTTP-FLV' : 'Use HLS';
    sw.disabled = kind === 'flv' && !hasHls(card.stream);
  }

  function setState(card, text) {
    $('.player-state', card.el).textContent = text;
  }

  function startPlayer(card) {
    stopPlayer(card);
    const kind = preferredKind(card);
    const s = card.stream;
    card.kind = kind;
    try {
      card.player = kind === 'hls' ? hlsPlayer(card, s) : flvPlayer(card, s);
    } catch (e) {
      card.player = null;
      setState(card, `player failed: ${e.message}`);
    }
    updatePlayerBar(card);
  }

  function stopPlayer(card) {
    clearTimeout(card.retry);
    if (card.player) {
      try { card.player.destroy(); } catch (_) { /* already gone */ }
      card.player = null;
    }
    card.video.removeAttribute('src');
    card.video.load();
    setState(card, '');
    updatePlayerBar(card);
  }

  // A player that failed starts again a little later, while its stream is listed.
  function retryLater(card, why) {
    setState(card, `${why}; retrying`);
    clearTimeout(card.retry);
    card.retry = setTimeout(() => { if (cards.get(keyOf(card.stream)) === card) startPlayer(card); }, 3000);
  }

  function play(card) {
    const p = card.video.play();
    if (p && p.catch) p.catch(() => setState(card, 'press play'));
  }

  function hlsPlayer(card, s) {
    const src = new URL(s.hls.playlist, location.origin).href;
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({ liveSyncDurationCount: 3, enableWorker: true });
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => { setState(card, 'HLS'); play(card); });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (!data.fatal) return;
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          retryLater(card, `HLS: ${data.details}`);
        }
      });
      hls.loadSource(src);
      hls.attachMedia(card.video);
      setState(card, 'HLS: loading');
      return hls;
    }
    if (card.video.canPlayType('application/vnd.apple.mpegurl')) {
      card.video.src = src;
      play(card);
      setState(card, 'HLS (native)');
      return { destroy() {} };
    }
    throw new Error('this browser plays no HLS');
  }

  function flvPlayer(card, s) {
    const mpegts = window.mpegts;
    if (!mpegts || !mpegts.isSupported()) throw new Error('this browser has no Media Source Extensions');
    // mpegts.js logs to the console by default; its errors are shown next to the player.
    mpegts.LoggingControl.enableAll = false;
    const url = location.origin + path(s.app, s.name) + '.flv';
    const player = mpegts.createPlayer(
      { type: 'flv', isLive: true, url, hasAudio: !!s.audio, hasVideo: !!s.video || !s.audio },
      { enableWorker: false, liveBufferLatencyChasing: true, lazyLoad: false },
    );
    player.on(mpegts.Events.ERROR, (type, detail) => retryLater(card, `HTTP-FLV: ${type} ${detail}`));
    player.on(mpegts.Events.MEDIA_INFO, () => setState(card, 'HTTP-FLV'));
    player.attachMediaElement(card.video);
    player.load();
    play(card);
    setState(card, 'HTTP-FLV: loading');
    return player;
  }

  // ---- clients ----------------------------------------------------------------------------------

  function showClients(list) {
    const seen = new Set();
    let prev = null;
    for (const c of list) {
      const id = String(c.id);
      seen.add(id);
      let tr = rows.get(id);
      if (!tr) {
        tr = newRow(c);
        rows.set(id, tr);
      }
      const cells = [
        id, String(c.addr), c.protocol, c.role, c.app ? `${c.app}/${c.name}` : '',
        bytes(c.bytes_in), bytes(c.bytes_out), duration((c.uptime_ms || 0) / 1000), String(c.dropped || 0),
        c.lag_ms == null ? '' : `${c.lag_ms} ms`,
      ];
      cells.forEach((text, i) => { if (tr.cells[i].textContent !== text) tr.cells[i].textContent = text; });
      tr.cells[4].title = c.flashver ? `${c.flashver}` : '';
      prev = place(clientsBody, tr, prev);
    }
    for (const [id, tr] of rows) {
      if (!seen.has(id)) { tr.remove(); rows.delete(id); }
    }
  }

  function newRow(c) {
    const tr = document.createElement('tr');
    tr.dataset.clientId = String(c.id);
    for (let i = 0; i < 10; i++) {
      const td = document.createElement('td');
      if (i >= 5) td.className = 'num';
      tr.append(td);
    }
    const td = document.createElement('td');
    const drop = document.createElement('button');
    drop.type = 'button';
    drop.className = 'drop';
    drop.textContent = 'Drop';
    drop.addEventListener('click', () => dropClient(c.id, drop));
    td.append(drop);
    tr.append(td);
    return tr;
  }

  async function dropClient(id, button) {
    button.disabled = true;
    try {
      await api('DELETE', `/clients/${encodeURIComponent(id)}`);
      showNotice('');
      const tr = rows.get(String(id));
      if (tr) { tr.remove(); rows.delete(String(id)); }
    } catch (err) {
      if (err.status === 404) {
        showNotice(`Client ${id} is already gone.`);
      } else if (err.status === 403) {
        showNotice(`Dropping client ${id} was refused (${statusText(err)}). The API's actions are allowed ` +
          'from permitted addresses only (loopback on the built-in server).');
      } else {
        showNotice(`Dropping client ${id}: ${explain(err)}`);
      }
    } finally {
      button.disabled = false;
    }
    poll();
  }

  // ---- how to publish ---------------------------------------------------------------------------

  function updatePublishHelp() {
    const app = $('#pub-app').value.trim() || 'live';
    const key = $('#pub-key').value.trim() || 'stream';
    const base = rtmpBase(app).find((b) => b.startsWith('rtmp:')) || rtmpBase(app)[0];
    $('#obs-server').value = base;
    $('#obs-key').value = key;
    $('#ffmpeg-file').value =
      `ffmpeg -re -i input.mp4 -c:v libx264 -preset veryfast -tune zerolatency -g 50 -c:a aac -b:a 128k -f flv ${base}/${key}`;
    $('#ffmpeg-test').value =
      'ffmpeg -re -f lavfi -i testsrc=size=1280x720:rate=25 -f lavfi -i sine=frequency=440 ' +
      `-c:v libx264 -preset veryfast -tune zerolatency -g 50 -pix_fmt yuv420p -c:a aac -f flv ${base}/${key}`;
  }
  let pubAppEdited = false;
  $('#pub-app').addEventListener('input', () => { pubAppEdited = true; updatePublishHelp(); });
  $('#pub-key').addEventListener('input', updatePublishHelp);
  updatePublishHelp();

  // A big server's lists are cut to their first page (the API sorts them): say so.
  function showMore(sel, answer, key, what) {
    const shown = answer && Array.isArray(answer[key]) ? answer[key].length : 0;
    const total = answer && typeof answer.total === 'number' ? answer.total : shown;
    const el = $(sel);
    el.hidden = total <= shown;
    el.textContent = `Showing the first ${shown} of ${total} ${what}; the API has them all (${API}/${key}).`;
  }

  // ---- recordings (HLS VOD of record_path files) -----------------------------------------------

  let recordingsSeen = null;
  let recordingHls = null;

  function showRecordings(answer) {
    const list = (answer && answer.recordings) || [];
    const key = JSON.stringify(list);
    if (key === recordingsSeen) return;
    recordingsSeen = key;
    const body = $('#recordings tbody');
    body.textContent = '';
    $('#no-recordings').hidden = list.length > 0;
    for (const r of list) {
      const tr = document.createElement('tr');
      const modified = new Date(r.modified_unix * 1000).toLocaleString();
      for (const [text, num] of [[r.app, false], [r.file, false], [bytes(r.size), true], [modified, true]]) {
        const td = document.createElement('td');
        td.textContent = text;
        if (num) td.className = 'num';
        tr.appendChild(td);
      }
      const td = document.createElement('td');
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = r.writing ? 'Watch (recording)' : 'Watch';
      button.disabled = !r.playlist;
      if (r.writing) button.title = 'Still being recorded: plays what is written so far';
      if (!r.playlist) button.title = 'No HTTP location serves recordings here';
      button.addEventListener('click', () => watchRecording(r));
      td.appendChild(button);
      tr.appendChild(td);
      body.appendChild(tr);
    }
    showMore('#recordings-more', answer, 'recordings', 'recordings');
  }

  function watchRecording(r) {
    const box = $('#recording-player');
    const video = $('video', box);
    const state = $('.player-state', box);
    box.hidden = false;
    if (recordingHls) { recordingHls.destroy(); recordingHls = null; }
    const src = new URL(r.playlist, location.origin).href;
    state.textContent = `${r.app}/${r.file}`;
    if (window.Hls && window.Hls.isSupported()) {
      recordingHls = new window.Hls({ enableWorker: true });
      recordingHls.on(window.Hls.Events.ERROR, (_, data) => {
        if (data.fatal) state.textContent = `${r.app}/${r.file}: ${data.details}`;
      });
      recordingHls.loadSource(src);
      recordingHls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = src;
    } else {
      state.textContent = 'this browser plays no HLS';
      return;
    }
    const p = video.play();
    if (p && p.catch) p.catch(() => { state.textContent += ' (press play)'; });
  }

  // ---- polling ------------------------------------------------------------------------------------

  let timer = null;
  let polling = false;
  let polls = 0;

  async function poll() {
    clearTimeout(timer);
    if (polling) return;
    polling = true;
    try {
      const [server, streams, clients] = await Promise.all([
        api('GET', '/server'), api('GET', `/streams?count=${MAX_STREAMS}`), api('GET', `/clients?count=${MAX_CLIENTS}`),
      ]);
      showServer(server || {});
      showStreams((streams && streams.streams) || []);
      showClients((clients && clients.clients) || []);
      showMore('#streams-more', streams, 'streams', 'streams');
      showMore('#clients-more', clients, 'clients', 'clients');
      if (polls++ % RECORDINGS_EVERY === 0) {
        // Older servers have no such route: the section stays empty.
        showRecordings(await api('GET', `/recordings?count=${MAX_RECORDINGS}`).catch(() => null));
      }
      if (notice.dataset.fromPoll) showNotice('');
      $('#status').textContent = `Updated ${new Date().toLocaleTimeString()}`;
      document.body.classList.remove('stale');
    } catch (err) {
      showNotice(explain(err), true);
      $('#status').textContent = 'Not updated';
      document.body.classList.add('stale');
    } finally {
      polling = false;
      timer = setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
