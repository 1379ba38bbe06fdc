// warngate console: a little vanilla JavaScript over /api/v1, no build step.
// Every state-changing call sends the session's CSRF token in X-CSRF-Token.
// Text from the server goes into the page as text nodes, never as HTML.
// Every word shown comes from the page's catalogue (boot.t); names of
// people and places and the warnings' own text are data, marked with their
// language (lang) or as names (translate="no").
(function () {
  'use strict';

  var boot = {};
  try { boot = JSON.parse(document.getElementById('page-data').textContent) || {}; } catch (e) { boot = {}; }
  var T = boot.t || {};
  var D = boot.data || {};
  var LEVELS = boot.levels || {};
  var HAZARDS = boot.hazards || {};
  var EN = boot.lang === 'en';

  function t(key, vars) {
    var s = T[key] || key;
    if (vars) {
      Object.keys(vars).forEach(function (k) { s = s.split('{' + k + '}').join(String(vars[k])); });
    }
    return s;
  }
  function $(id) { return document.getElementById(id); }
  // The outcomes of a phone call, answered first.
  var CALL_OUTCOMES = ['answered', 'no_key', 'hangup', 'no_answer', 'busy', 'rejected', 'unreachable', 'failed'];
  // callSummary says what an official's calls came to: each outcome ×
  // how often, the most frequent first.
  function callSummary(calls) {
    var n = {};
    calls.forEach(function (c) { n[c.outcome] = (n[c.outcome] || 0) + 1; });
    return t('calls_h') + t('colon') + Object.keys(n).sort(function (a, b) { return n[b] - n[a]; }).map(function (o) {
      return t('call_' + o) + '×' + n[o];
    }).join(t('sep'));
  }
  function clear(n) { while (n.firstChild) { n.removeChild(n.firstChild); } }

  // el('li', {class: 'x', text: '…', 'data-code': c}, [children]) builds an element.
  function el(tag, attrs, kids) {
    var n = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === undefined || v === null || v === false) { return; }
      if (k === 'text') { n.textContent = v; } else if (k === 'class') { n.className = v; } else if (k.slice(0, 2) === 'on') { n.addEventListener(k.slice(2), v); } else { n.setAttribute(k, v === true ? '' : v); }
    });
    (kids || []).forEach(function (c) { if (c !== null && c !== undefined) { n.appendChild(typeof c === 'string' ? document.createTextNode(c) : c); } });
    return n;
  }
  function num(n) { return (n || 0).toLocaleString('en-US'); }

  // data marks text that is not the console's own: a place or a warning's
  // text in its language, a person's name as a name.
  var HAN = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/;
  function data(text, tag) {
    return el(tag || 'span', { lang: HAN.test(text || '') ? 'zh-CN' : 'en', text: text || '' });
  }
  function name(text) { return el('span', { class: 'uname', translate: 'no', text: text || '' }); }

  // userName is how the console names a user: the display name in Chinese,
  // the user name in English.
  function userName(actor, display) {
    var user = String(actor || '').split('/token:')[0];
    if (user === 'admin') { return t('admin_name'); }
    return EN ? user : (display || user);
  }

  // reasonText names a provider's failure reason in the page's language:
  // the catalogue knows the common ones; others are shown as they came.
  function reasonText(r) {
    var key = String(r || '');
    var m = /^[A-Z]{2}:\d{4} (.+)$/.exec(key); // a carrier's code before the words: MN:0001 用户关机
    if (m) { key = m[1]; }
    return known('reason:', key);
  }
  // known finds the catalogue's words for a code of the gateway's, by the
  // key prefix + code, or + the code's first words ("not sent: …").
  function known(prefix, code) {
    if (T[prefix + code]) { return t(prefix + code); }
    var keys = Object.keys(T);
    for (var i = 0; i < keys.length; i++) {
      if (keys[i].indexOf(prefix) === 0 && code.indexOf(keys[i].slice(prefix.length)) === 0) { return t(keys[i]); }
    }
    return null;
  }
  function reasonNode(r) { var k = reasonText(r); return k === null ? data(r) : document.createTextNode(k); }

  // outcomeNode says how an escalation step ended.
  function outcomeNode(o) {
    if (!o) { return document.createTextNode(''); }
    var k = known('out:', o);
    return k === null ? data(o) : document.createTextNode(k);
  }

  // errText says why a call failed, from the catalogue by the error's code;
  // in English the API's own message is the catalogue's language.
  function errText(e) {
    e = e || {};
    if (T['err_' + e.code]) { return t('err_' + e.code); }
    return EN && e.message && !HAN.test(e.message) ? e.message : t('err_other');
  }

  // fmtTime shows an RFC 3339 time as Beijing time, MM-DD HH:MM.
  function fmtTime(iso) {
    if (!iso || iso.slice(0, 4) === '0001') { return '—'; }
    var d = new Date(new Date(iso).getTime() + 8 * 3600 * 1000);
    function p(x) { return (x < 10 ? '0' : '') + x; }
    return p(d.getUTCMonth() + 1) + '-' + p(d.getUTCDate()) + ' ' + p(d.getUTCHours()) + ':' + p(d.getUTCMinutes());
  }

  function sessionExpired() { var n = $('session-expired'); if (n) { n.hidden = false; } }

  // api calls the JSON API and answers {ok, status, body, error}.
  function api(method, path, body, headers) {
    var h = { 'Accept': 'application/json' };
    if (method !== 'GET') { h['X-CSRF-Token'] = boot.csrf || ''; }
    if (body !== undefined) { h['Content-Type'] = 'application/json'; }
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    return fetch(path, { method: method, headers: h, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (resp) {
        return resp.json().catch(function () { return null; }).then(function (json) {
          if (resp.status === 401) { sessionExpired(); }
          return { ok: resp.ok, status: resp.status, body: json, error: (json && json.error) || (resp.ok ? null : { code: 'http_' + resp.status, message: '' }) };
        });
      }, function () {
        return { ok: false, status: 0, body: null, error: { code: 'network', message: '' } };
      });
  }

  function newKey() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return 'console-' + Array.prototype.map.call(a, function (b) { return (b + 256).toString(16).slice(1); }).join('');
  }

  var CHANNELS = ['wecom', 'sms', 'voice', 'wechat', 'broadcast', 'screen', 'calllist'];
  var GROUPS = ['officials', 'residents', 'loudspeakers', 'screens', 'households'];
  function group(aud) { return /_officials$/.test(aud) ? 'officials' : aud; }

  function localExpires(v) {
    if (!v) { return ''; }
    if (v.length === 16) { v += ':00'; }
    return v + '+08:00';
  }

  // showFieldErrors puts each refused field's problem under it. The
  // console says what to change in its own words; the roster's sheets are
  // checked by the server, whose words (serverWords) say which cell.
  function showFieldErrors(form, err, serverWords) {
    var fields = (err && err.fields) || [];
    var shown = {};
    fields.forEach(function (f) {
      var base = f.field.replace(/\[\d+\]$/, '');
      var n = form.querySelector('.field-error[data-for="' + base + '"]');
      if (!n) { return; }
      if (serverWords) {
        n.textContent = (n.textContent ? n.textContent + t('sep') : '') + f.message;
      } else if (!shown[base]) {
        n.textContent = T['fe_' + base] ? t('fe_' + base) : t('fe_other');
      }
      shown[base] = true;
    });
  }
  function clearFieldErrors(form) {
    Array.prototype.forEach.call(form.querySelectorAll('.field-error'), function (n) { n.textContent = ''; });
  }

  // labelCells gives each cell of a table the name of its column, which a
  // narrow screen shows beside the value when the table's rows are stacked.
  function labelCells(table) {
    var heads = Array.prototype.map.call(table.querySelectorAll('thead th'), function (th) { return th.textContent.trim(); });
    Array.prototype.forEach.call(table.querySelectorAll('tbody tr, tfoot tr'), function (tr) {
      Array.prototype.forEach.call(tr.children, function (c, i) { if (heads[i]) { c.setAttribute('data-label', heads[i]); } });
    });
  }

  // The county map: paths with data-code and a <title> each.
  function mapPaths() { return Array.prototype.slice.call(document.querySelectorAll('#cmap-svg path.county')); }
  function setTitle(path, text) {
    var ti = path.querySelector('title');
    if (ti.textContent !== text) { ti.textContent = text; }
  }
  // onCounty calls fn(code, name) when a county of the map is clicked or
  // pressed (Enter, Space).
  function onCounty(fn) {
    mapPaths().forEach(function (p) {
      p.addEventListener('click', function () { fn(p.getAttribute('data-code'), p.getAttribute('data-name')); });
      p.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fn(p.getAttribute('data-code'), p.getAttribute('data-name')); }
      });
    });
  }

  // ---- /console/new -------------------------------------------------------
  function pageNew() {
    var form = $('issue-form');
    if (!form) { return; }
    var chosen = new Map(); // code → name
    var previewed = null; // the body the last preview was for
    var idemKey = null;

    function radio(name) { var r = form.querySelector('input[name="' + name + '"]:checked'); return r ? r.value : ''; }
    function body() {
      return {
        hazard: $('hazard').value, level: radio('level'), areas: Array.from(chosen.keys()),
        headline: $('headline').value.trim(), description: $('description').value.trim(), instruction: $('instruction').value.trim(),
        status: radio('status'), expires: localExpires($('expires').value)
      };
    }
    function changed() {
      var stale = previewed !== null && previewed !== JSON.stringify(body());
      $('send-btn').disabled = previewed === null || stale;
      if (stale) { $('preview').classList.add('stale'); $('send-msg').textContent = t('preview_first'); }
      updateSMS();
    }

    // The SMS counter: the server composes the texts as the provider will
    // send and bill them, for a resident and for an official.
    var smsTimer = null, smsSeq = 0, smsLast = '';
    function updateSMS() {
      var b = body();
      var ask = JSON.stringify({ status: b.status, headline: b.headline, description: b.description, instruction: b.instruction, areas: b.areas.slice(0, 1), expires: b.expires });
      if (ask === smsLast) { return; }
      smsLast = ask;
      clearTimeout(smsTimer);
      smsTimer = setTimeout(function () {
        var mine = ++smsSeq;
        api('POST', '/api/v1/warnings/sms', JSON.parse(ask)).then(function (r) {
          if (mine !== smsSeq || !r.ok) { return; }
          showSMS($('sms-resident'), 'sms_resident', r.body.resident);
          showSMS($('sms-official'), 'sms_official', r.body.official);
          $('sms-count').setAttribute('data-ready', 'true');
        });
      }, 150);
    }
    function showSMS(n, key, s) {
      n.textContent = t(key, { n: s.chars, s: s.parts });
      n.setAttribute('data-parts', s.parts);
      n.setAttribute('data-chars', s.chars);
      n.classList.toggle('long', s.parts > 3);
    }

    // The chosen areas, as chips and on the map.
    function renderChosen() {
      var ul = $('area-chosen');
      clear(ul);
      chosen.forEach(function (name, code) {
        ul.appendChild(el('li', { class: 'chip', 'data-code': code }, [data(name),
          el('button', { type: 'button', 'aria-label': t('remove') + ' ' + name, title: t('remove'), text: '×', onclick: function () { toggle(code, name); } })]));
      });
      $('area-none').hidden = chosen.size > 0;
      Array.prototype.forEach.call(document.querySelectorAll('.divs .pick'), function (b) {
        b.setAttribute('aria-pressed', chosen.has(b.getAttribute('data-code')) ? 'true' : 'false');
      });
      paintPick();
      changed();
    }
    // paintPick marks each county of the map: chosen whole (itself or the
    // city), partly (a township or village in it), or not.
    function paintPick() {
      mapPaths().forEach(function (p) {
        var code = p.getAttribute('data-code'), name = p.getAttribute('data-name');
        var whole = chosen.has(code) || chosen.has(D.home), part = 0;
        chosen.forEach(function (n, c) { if (c !== code && c.slice(0, 6) === code.slice(0, 6)) { part++; } });
        var st = whole ? 'full' : part ? 'part' : 'none';
        p.setAttribute('class', 'county ' + (whole ? 'p-full' : part ? 'p-part' : 'out'));
        p.setAttribute('aria-pressed', whole ? 'true' : 'false');
        p.setAttribute('data-state', st);
        setTitle(p, t('title_pick_' + st, { s: name, n: part }));
      });
    }
    function toggle(code, name) {
      if (chosen.has(code)) { chosen.delete(code); } else { chosen.set(code, name); }
      renderChosen();
    }
    onCounty(toggle);
    function divRow(d, canOpen) {
      var kids = [el('button', {
        type: 'button', class: 'pick', 'data-code': d.code, 'aria-pressed': chosen.has(d.code) ? 'true' : 'false',
        onclick: function () { toggle(d.code, d.name); }
      }, [data(d.name), ' ', el('small', { text: t('dl_' + d.level) })])];
      if (canOpen && d.level !== 'village') {
        kids.push(el('button', { type: 'button', class: 'open', 'aria-label': t('open') + ' ' + d.name, text: t('open') + ' ›', onclick: function () { browse(d.code); } }));
      }
      return el('li', {}, kids);
    }

    // Search.
    var q = $('area-q'), results = $('area-results'), timer = null, seq = 0;
    function search() {
      var s = q.value.trim();
      var mine = ++seq;
      if (!s) { clear(results); return; }
      api('GET', '/api/v1/regions?limit=30&q=' + encodeURIComponent(s)).then(function (r) {
        if (mine !== seq) { return; }
        clear(results);
        if (!r.ok) { results.appendChild(el('li', { class: 'error', text: errText(r.error) })); return; }
        if (!r.body.divisions.length) { results.appendChild(el('li', { class: 'muted', text: t('no_match') })); return; }
        r.body.divisions.forEach(function (d) { results.appendChild(divRow(d, true)); });
      });
    }
    q.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(search, 250); });
    q.addEventListener('keydown', function (e) { if (e.key === 'Enter') { e.preventDefault(); clearTimeout(timer); search(); } });
    $('area-search-btn').addEventListener('click', function () { clearTimeout(timer); search(); });

    // Browse the tree.
    function browse(code) {
      api('GET', '/api/v1/regions/' + encodeURIComponent(code)).then(function (r) {
        var crumbs = $('area-crumbs'), tree = $('area-tree');
        if (!r.ok) { clear(tree); tree.appendChild(el('li', { class: 'error', text: errText(r.error) })); return; }
        clear(crumbs);
        r.body.path.forEach(function (p) {
          if (p.level === 'province') { return; }
          crumbs.appendChild(el('button', { type: 'button', class: 'linklike', lang: 'zh-CN', text: p.name, onclick: function () { browse(p.code); } }));
          crumbs.appendChild(document.createTextNode(' › '));
        });
        crumbs.appendChild(el('strong', { lang: 'zh-CN', text: r.body.division.name }));
        clear(tree);
        tree.appendChild(divRow(r.body.division, false));
        r.body.children.forEach(function (d) { tree.appendChild(divRow(d, true)); });
        $('area-browse').open = true;
      });
    }
    if (D.home) { browse(D.home); }

    form.addEventListener('input', changed);
    form.addEventListener('change', changed);
    form.addEventListener('submit', function (e) { e.preventDefault(); });
    renderChosen();

    function failed(r) {
      var box = $('form-error');
      box.hidden = false;
      box.textContent = t('failed') + errText(r.error);
      showFieldErrors(form, r.error);
      box.scrollIntoView({ block: 'center' });
    }

    $('preview-btn').addEventListener('click', function () {
      var b = body();
      clearFieldErrors(form);
      $('form-error').hidden = true;
      $('send-msg').textContent = t('previewing');
      $('preview-btn').disabled = true;
      api('POST', '/api/v1/warnings/preview', b).then(function (r) {
        $('preview-btn').disabled = false;
        $('send-msg').textContent = '';
        if (!r.ok) { failed(r); return; }
        previewed = JSON.stringify(b);
        idemKey = newKey();
        renderPreview($('preview'), r.body, 'preview');
        $('preview').classList.remove('stale');
        changed();
        $('send-btn').focus();
      });
    });

    $('send-btn').addEventListener('click', function () {
      var b = body();
      if (previewed !== JSON.stringify(b)) { changed(); return; }
      $('send-btn').disabled = true;
      $('send-msg').textContent = t('sending');
      api('POST', '/api/v1/warnings', b, { 'Idempotency-Key': idemKey }).then(function (r) {
        if (!r.ok) { $('send-btn').disabled = false; $('send-msg').textContent = ''; failed(r); return; }
        $('send-msg').textContent = r.body.state === 'awaiting_approval' ? t('awaiting_note') : t('updated_ok');
        location.href = '/console/w/' + encodeURIComponent(r.body.id);
      });
    });
  }

  // renderPreview shows into box what a warning would reach, per channel
  // and per county, and its SMS as phones show them, with what they cost.
  // Elements get ids after prefix (preview-total, preview-channels, …).
  function renderPreview(box, p, prefix) {
    clear(box);
    var wrap = el('div', { class: 'pv' });
    wrap.appendChild(el('p', { class: 'pv-total', id: prefix + '-total', 'data-total': p.total, text: t('preview_total', { n: num(p.total) }) }));
    if (p.needs_approval) { wrap.appendChild(el('p', { class: 'note', id: prefix + '-approval', text: t('needs_approval') })); }
    if (p.rule) { wrap.appendChild(el('p', { class: 'muted small' }, [t('rule') + t('colon'), T['rule_' + p.rule] ? t('rule_' + p.rule) : name(p.rule)])); }

    var byChannel = {}, byCounty = {}, names = {}, detail = {};
    (p.cells || []).forEach(function (c) {
      var g = group(c.audience);
      byChannel[c.channel] = byChannel[c.channel] || {};
      byChannel[c.channel][g] = (byChannel[c.channel][g] || 0) + c.count;
      byCounty[c.county] = byCounty[c.county] || {};
      byCounty[c.county][g] = (byCounty[c.county][g] || 0) + c.count;
      names[c.county] = c.county_name || c.county;
      var k = c.county + '/' + g;
      detail[k] = detail[k] || {};
      detail[k][c.channel] = (detail[k][c.channel] || 0) + c.count;
    });
    var used = GROUPS.filter(function (g) {
      return Object.keys(byChannel).some(function (ch) { return byChannel[ch][g]; });
    });
    function head(first) {
      return el('thead', {}, [el('tr', {}, [el('th', { scope: 'col', text: first })].concat(
        used.map(function (g) { return el('th', { scope: 'col', class: 'n', text: t('aud_' + g) }); }),
        [el('th', { scope: 'col', class: 'n', text: t('total') })]))]);
    }
    function row(label, counts, titleFor) {
      var sum = 0;
      var cells = used.map(function (g) {
        sum += counts[g] || 0;
        return el('td', { class: 'n', 'data-group': g, title: titleFor ? titleFor(g) : null, text: counts[g] ? num(counts[g]) : '—' });
      });
      return el('tr', {}, [el('th', { scope: 'row' }, [label])].concat(cells, [el('td', { class: 'n', text: num(sum) })]));
    }
    var totals = {};
    Object.keys(byChannel).forEach(function (ch) { used.forEach(function (g) { totals[g] = (totals[g] || 0) + (byChannel[ch][g] || 0); }); });

    wrap.appendChild(el('h3', { text: t('by_channel') }));
    var tb = el('tbody', {});
    CHANNELS.filter(function (ch) { return byChannel[ch]; }).forEach(function (ch) { tb.appendChild(row(t('ch_' + ch), byChannel[ch])); });
    var tch = el('table', { class: 'nums stackable', id: prefix + '-channels' }, [head(t('channel')), tb, el('tfoot', {}, [row(t('total'), totals)])]);
    wrap.appendChild(el('div', { class: 'table-wrap' }, [tch]));

    wrap.appendChild(el('h3', { text: t('by_county') }));
    var tc = el('tbody', {});
    Object.keys(byCounty).sort().forEach(function (code) {
      tc.appendChild(row(data(names[code]), byCounty[code], function (g) {
        var d = detail[code + '/' + g] || {};
        return Object.keys(d).map(function (ch) { return t('ch_' + ch) + ' ' + num(d[ch]); }).join(' · ');
      }));
    });
    var tco = el('table', { class: 'nums stackable', id: prefix + '-counties' }, [head(t('county')), tc]);
    wrap.appendChild(el('div', { class: 'table-wrap' }, [tco]));
    labelCells(tch);
    labelCells(tco);

    if (p.calls && p.calls.officials) {
      var dur = function (s) { return s % 60 === 0 ? t('dur_min', { n: num(s / 60) }) : t('dur_sec', { n: num(s) }); };
      wrap.appendChild(el('p', { class: 'pv-calls', id: prefix + '-calls', 'data-officials': p.calls.officials, 'data-after': p.calls.after_seconds,
        text: t(p.calls.after_seconds ? (p.calls.tries > 1 ? 'calls_later' : 'calls_later_once') : (p.calls.tries > 1 ? 'calls_now' : 'calls_once'), { n: num(p.calls.officials), a: dur(p.calls.after_seconds), i: dur(p.calls.interval_seconds), k: num(p.calls.tries) }) }));
    }

    var missing = [];
    Object.keys(p.no_address || {}).forEach(function (ch) {
      Object.keys(p.no_address[ch]).forEach(function (a) { missing.push(t('ch_' + ch) + ' · ' + t('aud_' + group(a)) + ' ' + num(p.no_address[ch][a])); });
    });
    if (missing.length) { wrap.appendChild(el('p', { class: 'muted small', text: t('no_address') + t('colon') + missing.join(t('sep')) })); }
    var unreached = Object.keys(p.unreachable || {}).filter(function (a) { return p.unreachable[a] > 0; }).map(function (a) { return t('aud_' + group(a)) + ' ' + num(p.unreachable[a]); });
    if (unreached.length) { wrap.appendChild(el('p', { class: 'pv-unreachable small', id: prefix + '-unreachable', text: t('unreachable') + t('colon') + unreached.join(t('sep')) })); }

    var sms = p.sms || {};
    if (sms.messages) {
      wrap.appendChild(el('h3', { text: t('sms_text') }));
      wrap.appendChild(el('p', { class: 'pv-sms-total', id: prefix + '-sms-total', 'data-messages': sms.messages, 'data-parts': sms.parts,
        text: t('sms_total', { n: num(sms.messages), s: num(sms.parts) }) }));
      [['resident', 'sms_to_resident', 'sms_resident'], ['official', 'sms_to_official', 'sms_official']].forEach(function (k) {
        var s = sms[k[0]];
        if (!s) { return; }
        wrap.appendChild(el('figure', { class: 'sms-text', id: prefix + '-sms-' + k[0], 'data-parts': s.parts, 'data-chars': s.chars }, [
          el('figcaption', { text: t(k[1]) + t('colon') + t(k[2], { n: s.chars, s: s.parts }) }),
          data(s.text, 'p')]));
      });
    }
    box.appendChild(wrap);
  }

  // ---- /console/approvals -------------------------------------------------
  function approve(id, msg, after) {
    msg.className = 'ap-msg';
    msg.textContent = t('sending');
    return api('POST', '/api/v1/warnings/' + encodeURIComponent(id) + '/approve', {}).then(function (r) {
      if (!r.ok) {
        msg.className = 'ap-msg error';
        msg.setAttribute('role', 'alert');
        msg.textContent = errText(r.error);
        return false;
      }
      msg.className = 'ap-msg flash';
      msg.textContent = t('approved_ok');
      if (after) { after(r.body); }
      return true;
    });
  }
  function pageApprovals() {
    Array.prototype.forEach.call(document.querySelectorAll('button.approve'), function (b) {
      b.addEventListener('click', function () {
        var id = b.getAttribute('data-id');
        b.disabled = true;
        approve(id, $('ap-msg-' + id), function () {
          var msg = $('ap-msg-' + id);
          msg.appendChild(document.createTextNode(' '));
          msg.appendChild(el('a', { href: '/console/w/' + encodeURIComponent(id), text: t('view') + ' ›' }));
        }).then(function (ok) { b.disabled = ok; });
      });
    });
    // What each warning would reach and say, so that the approver knows
    // what they release.
    Array.prototype.forEach.call(document.querySelectorAll('.ap-preview'), function (box) {
      var id = box.getAttribute('data-id');
      api('GET', '/api/v1/warnings/' + encodeURIComponent(id) + '/preview').then(function (r) {
        if (!r.ok) { clear(box); box.appendChild(el('p', { class: 'error', text: errText(r.error) })); return; }
        renderPreview(box, r.body, 'ap-' + id);
        box.setAttribute('data-ready', 'true');
      });
    });
  }

  // ---- /console/w/{id} ----------------------------------------------------
  function bar(c) {
    var planned = c.planned || 0;
    var b = el('div', { class: 'bar', role: 'img', 'aria-label': t('delivered') + ' ' + (c.delivered || 0) + ' / ' + planned });
    if (!planned) { return b; }
    // sent counts every hand-over, delivered ones too: what is still awaiting
    // a report is sent less what is final, at most what is pending.
    var final = (c.delivered || 0) + (c.failed || 0) + (c.expired || 0);
    var waiting = Math.max(0, Math.min(c.pending || 0, (c.sent || 0) - final));
    [['delivered', c.delivered], ['failed', c.failed], ['expired', c.expired], ['sent', waiting]].forEach(function (s) {
      if (!s[1]) { return; }
      var seg = el('span', { class: 'seg-' + s[0] });
      seg.style.width = (100 * s[1] / planned) + '%';
      b.appendChild(seg);
    });
    return b;
  }
  function setBar(node, c) {
    var b = bar(c);
    clear(node);
    while (b.firstChild) { node.appendChild(b.firstChild); }
    node.setAttribute('aria-label', b.getAttribute('aria-label'));
  }

  // ackState sorts a group of officials: none expected, someone unreached,
  // all confirmed, or some still waiting.
  function ackState(a) {
    if (!a || !a.expected) { return 'none'; }
    if (a.unreached) { return 'bad'; }
    return a.confirmed === a.expected ? 'ok' : 'wait';
  }
  // ackMark is a state's marker and words, for those who cannot tell the
  // colours apart.
  function ackMark(st) {
    return el('span', { class: 'ack-mark am-' + st, text: t('ack_' + st) });
  }
  function deliveryBin(pct) { return pct >= 100 ? 'd-100' : pct >= 95 ? 'd-95' : pct >= 80 ? 'd-80' : pct >= 50 ? 'd-50' : 'd-0'; }
  function share(d) { return d && d.planned ? Math.floor(100 * (d.delivered || 0) / d.planned) : 0; }

  function pageWatch() {
    var id = D.id;
    if (!id) { return; }
    var enc = encodeURIComponent(id);
    var base = '/api/v1/warnings/' + enc;
    var w = D.warning;
    var townships = D.townships || {};
    var timer = null;
    var last = null; // the last answers, to repaint on a change of view
    var mode = 'delivery';
    var selected = null; // the county whose townships are listed

    function countyName(code) {
      var p = $('county-' + code);
      return p ? p.getAttribute('data-name') : code;
    }

    // The map and the county table, from /progress?level=county.
    function paintCounties(divs) {
      var by = {};
      (divs || []).forEach(function (d) { if (d.level === 'county') { by[d.code] = d; } });
      mapPaths().forEach(function (p) {
        var code = p.getAttribute('data-code'), nm = p.getAttribute('data-name'), d = by[code];
        var fig = $('fig-' + code), cls, figure = '';
        if (!d) {
          cls = 'out';
          setTitle(p, t('title_outside', { s: nm }));
        } else {
          var a = d.acks || { expected: 0, confirmed: 0, unreached: 0 }, pct = share(d), st = ackState(a);
          if (mode === 'delivery') {
            cls = d.planned ? deliveryBin(pct) : 'out';
            figure = d.planned ? t('percent', { n: pct }) : '';
          } else {
            cls = 'a-' + st;
            figure = st === 'none' ? '' : t('mark_' + st) + ' ' + a.confirmed + '/' + a.expected;
          }
          setTitle(p, t('title_delivery', { s: nm, d: num(d.delivered), p: num(d.planned), pct: t('percent', { n: pct }) }) + t('sep') +
            t('title_acks', { c: num(a.confirmed), e: num(a.expected), u: num(a.unreached) }));
          p.setAttribute('data-delivered', pct);
          p.setAttribute('data-acks', st);
        }
        p.setAttribute('class', 'county ' + cls + (selected === code ? ' selected' : ''));
        p.setAttribute('aria-pressed', selected === code ? 'true' : 'false');
        if (fig && fig.textContent !== figure) { fig.textContent = figure; }
      });
      var tb = $('county-rows');
      clear(tb);
      Object.keys(by).sort().forEach(function (code) {
        var d = by[code], a = d.acks || { expected: 0, confirmed: 0, unreached: 0 }, st = ackState(a);
        tb.appendChild(el('tr', { id: 'cr-' + code, class: 'ack-' + st + (selected === code ? ' selected' : '') }, [
          el('th', { scope: 'row' }, [el('button', { type: 'button', class: 'linklike', 'aria-pressed': selected === code ? 'true' : 'false',
            'aria-label': t('select_county', { s: countyName(code) }), onclick: function () { select(code); } }, [data(countyName(code))])]),
          el('td', { class: 'n', text: num(d.delivered) + '/' + num(d.planned) + ' · ' + t('percent', { n: share(d) }) }),
          el('td', { class: 'n' }, [ackMark(st), ' ' + num(a.confirmed) + '/' + num(a.expected)]),
          el('td', { class: 'n' + (a.unreached ? ' overdue-n' : ''), text: num(a.unreached) })]));
      });
      labelCells($('counties'));
    }

    // The townships, of the county selected or of all: 叫应 by officials'
    // groups (/acks), checklists and delivery by township.
    function paintTownships(ar, cr, divDone) {
      if (!ar.ok) { return; }
      var groups = {};
      (ar.body.officials || []).forEach(function (o) {
        var k = o.township || o.division || '';
        var g = groups[k] = groups[k] || { expected: 0, confirmed: 0, waiting: 0, unreached: 0 };
        g.expected++;
        g[o.state] = (g[o.state] || 0) + 1;
      });
      var checks = {};
      if (cr && cr.ok) { (cr.body.divisions || []).forEach(function (d) { if (d.level === 'township') { checks[d.code] = d.total; } }); }
      var codes = Object.keys(townships);
      Object.keys(groups).forEach(function (k) { if (codes.indexOf(k) < 0) { codes.push(k); } });
      codes.sort();
      if (selected) { codes = codes.filter(function (c) { return c.slice(0, 6) === selected.slice(0, 6); }); }
      var tb = $('township-rows');
      clear(tb);
      codes.forEach(function (code) {
        var g = groups[code] || { expected: 0, confirmed: 0, waiting: 0, unreached: 0 };
        var st = ackState(g);
        var ck = checks[code];
        var dp = divDone[code];
        var county = !townships[code] && code.slice(6) === '000000';
        tb.appendChild(el('tr', { class: 'ack-' + st, id: 'tw-' + code, 'data-confirmed': g.confirmed, 'data-state': st }, [
          el('th', { scope: 'row' }, county ? [data(countyName(code)), ' · ' + t('county_level')] : [data(townships[code] || code)]),
          el('td', { class: 'n' }, [ackMark(st), ' ' + g.confirmed + '/' + g.expected]),
          el('td', { class: 'n' + (g.unreached ? ' overdue-n' : ''), text: String(g.unreached) }),
          el('td', { class: 'n' }, ck ? [(ck.done + ck.not_applicable) + '/' + ck.items, ck.overdue ? el('span', { class: 'overdue-n', text: ' ' + t('overdue') + ' ' + ck.overdue }) : null] : ['—']),
          el('td', { class: 'n', text: dp && dp.planned ? t('percent', { n: Math.floor(100 * (dp.delivered + dp.failed + dp.expired) / dp.planned) }) : '—' })]));
      });
      labelCells($('townships'));
      $('tw-h').textContent = selected ? t('townships_of', { s: countyName(selected) }) : t('all_townships');
      $('tw-all').hidden = !selected;
    }

    function select(code) {
      selected = selected === code ? null : code;
      repaint();
      if (selected) { $('tw-h').focus(); }
    }
    onCounty(function (code) { select(code); });
    $('tw-h').setAttribute('tabindex', '-1');
    $('tw-all').addEventListener('click', function () { selected = null; repaint(); });
    Array.prototype.forEach.call(document.querySelectorAll('input[name="colour-by"]'), function (r) {
      r.addEventListener('change', function () {
        mode = r.value;
        $('cmap').className = 'cmap mode-' + mode;
        $('legend-delivery').hidden = mode !== 'delivery';
        $('legend-acks').hidden = mode !== 'acks';
        repaint();
      });
    });
    function repaint() { if (last) { render(last); } }

    function render(res) {
      last = res;
      var wr = res[0], pr = res[1], ar = res[2], ur = res[3], cr = res[4], er = res[5], kr = res[6];
      if (wr.ok) {
        w = wr.body;
        var st = $('state');
        st.textContent = t('st_' + w.state);
        st.className = 'badge st-' + w.state;
        $('awaiting-note').hidden = w.state !== 'awaiting_approval';
        if (w.approved_by) {
          var ap = $('w-approved');
          clear(ap);
          ap.appendChild(document.createTextNode(' · ' + t('approved_by') + ' '));
          ap.appendChild(name(userName(w.approved_by, w.approved_by_name)));
        }
        $('w-expires').textContent = fmtTime(w.expires);
        var acts = $('actions');
        if (acts) { acts.hidden = !(w.state === 'active' || w.state === 'accepted' || w.state === 'awaiting_approval'); }
      }
      var divDone = {};
      if (pr.ok) {
        var p = pr.body, tot = p.total || {};
        var done = (tot.delivered || 0) + (tot.failed || 0) + (tot.expired || 0);
        var pct = tot.planned ? Math.floor(100 * done / tot.planned) : 0;
        $('overall-pct').textContent = t('percent', { n: pct });
        $('overall-pct').setAttribute('data-complete', p.complete ? 'true' : 'false');
        $('progress-state').textContent = p.planned_at ? (p.complete ? t('complete') : t('in_progress')) + ' · ' + num(tot.delivered) + '/' + num(tot.planned) : t('not_planned');
        setBar($('overall-bar'), tot);
        var rows = $('channel-rows');
        clear(rows);
        CHANNELS.forEach(function (ch) {
          var c = p.channels && p.channels[ch];
          if (!c) { return; }
          rows.appendChild(el('tr', { id: 'ch-' + ch }, [
            el('th', { scope: 'row', class: 'chcol' }, [t('ch_' + ch), bar(c)]),
            el('td', { class: 'n', text: num(c.planned) }), el('td', { class: 'n', text: num(c.sent) }),
            el('td', { class: 'n', text: num(c.delivered) }), el('td', { class: 'n' + (c.failed ? ' overdue-n' : ''), text: num(c.failed) }),
            el('td', { class: 'n', text: num(c.pending) })]));
        });
        labelCells($('channels'));
        var reasons = $('reasons');
        clear(reasons);
        Object.keys(p.channels || {}).forEach(function (ch) {
          var rs = p.channels[ch].failure_reasons || {};
          Object.keys(rs).forEach(function (r) {
            reasons.appendChild(el('span', { class: 'reason' }, [t('failed_n') + ' · ' + t('ch_' + ch) + ' · ', reasonNode(r), ' ' + num(rs[r])]));
          });
        });
        var bills = $('billing');
        clear(bills);
        Object.keys(p.channels || {}).forEach(function (ch) {
          var bs = p.channels[ch].billing || {};
          Object.keys(bs).forEach(function (acct) {
            bills.appendChild(el('span', { class: 'bill', id: 'bill-' + ch + '-' + acct, 'data-messages': bs[acct].messages, 'data-segments': bs[acct].segments }, [
              t('ch_' + ch) + ' · ', T['acct_' + acct] ? t('acct_' + acct) : name(acct),
              ' · ' + t('billed', { messages: num(bs[acct].messages), segments: num(bs[acct].segments) })]));
          });
        });
        var vc = p.calls || {}, vb = vc.billing || {};
        Object.keys(vb).forEach(function (acct) {
          bills.appendChild(el('span', { class: 'bill', id: 'bill-voice-' + acct, 'data-calls': vb[acct].calls, 'data-minutes': vb[acct].minutes }, [
            t('ch_voice') + ' · ', T['acct_' + acct] ? t('acct_' + acct) : name(acct),
            ' · ' + t('billed_minutes', { calls: num(vb[acct].calls), minutes: num(vb[acct].minutes) })]));
        });
        var callBox = $('calls');
        clear(callBox);
        if (vc.total) {
          callBox.appendChild(el('span', { text: t('calls_h') + t('colon') }));
          CALL_OUTCOMES.filter(function (o) { return (vc.outcomes || {})[o]; }).forEach(function (o) {
            callBox.appendChild(el('span', { class: 'call-outcome', id: 'calls-' + o, 'data-n': vc.outcomes[o], text: t('call_' + o) + ' ' + num(vc.outcomes[o]) }));
          });
        }
        (p.divisions || []).forEach(function (d) { divDone[d.code] = d; });
      }
      var names = {};
      if (ar.ok) {
        var cnt = ar.body.counts || {};
        $('ack-confirmed').textContent = cnt.confirmed || 0;
        $('ack-expected').textContent = cnt.expected || 0;
        $('ack-waiting').textContent = cnt.waiting || 0;
        $('ack-unreached').textContent = cnt.unreached || 0;
        (ar.body.officials || []).forEach(function (o) { names[o.person_id] = o; });
      }
      if (kr && kr.ok) { paintCounties(kr.body.divisions); }
      paintTownships(ar, cr, divDone);
      if (ur.ok) {
        var box = $('unreached');
        clear(box);
        var ts = ur.body.townships || [];
        if (!ts.length) { box.appendChild(el('p', { class: 'muted', text: t('none') })); }
        ts.forEach(function (g) {
          var ul = el('ul', {});
          g.officials.forEach(function (o) {
            ul.appendChild(el('li', {}, [el('strong', {}, [name(o.name)]), t('role_' + o.role) + ' · ', data(o.division_name),
              o.phone ? el('a', { href: 'tel:' + o.phone, text: o.phone }) : null, el('span', { class: 'muted', text: o.tries + ' ' + t('tries') }),
              o.calls && o.calls.length ? el('span', { class: 'muted call-summary', text: callSummary(o.calls) }) : null]));
          });
          box.appendChild(el('div', { class: 'unreached-group' }, [el('h3', {}, [data(g.name || g.township)]), ul]));
        });
      }
      if (er.ok) {
        var eb = $('escalations');
        var steps = (er.body.steps || []).slice(-50).reverse();
        clear(eb);
        if (!steps.length) { eb.appendChild(el('p', { class: 'muted', text: t('no_escalations') })); } else {
          var body = el('tbody', {});
          steps.forEach(function (s) {
            var o = names[s.person_id];
            var devices = s.channel === 'broadcast' || s.channel === 'screen';
            var who = s.action === 'lifted' ? document.createTextNode(t(devices ? 'devices_n' : 'people_n', { n: num(s.try) })) :
              o ? el('span', {}, [name(o.name), ' · ' + t('role_' + o.role) + ' · ', data(o.division_name)]) : name(s.person_id);
            body.appendChild(el('tr', { class: 'step-' + s.action }, [el('td', { text: fmtTime(s.at) }), el('td', {}, [who]),
              el('td', { text: (T['act_' + s.action] ? t('act_' + s.action) : s.action) + (s.channel ? ' · ' + t('ch_' + s.channel) : '') + (s.try && s.action !== 'lifted' ? ' #' + s.try : '') }),
              el('td', {}, [outcomeNode(s.outcome)])]));
          });
          var table = el('table', { class: 'nums stackable', id: 'steps' }, [el('thead', {}, [el('tr', {}, [el('th', { scope: 'col', text: t('time') }), el('th', { scope: 'col', text: t('person') }),
            el('th', { scope: 'col', text: t('action') }), el('th', { scope: 'col', text: t('outcome') })])]), body]);
          eb.appendChild(table);
          labelCells(table);
        }
      }
      var now = new Date();
      $('refreshed').textContent = fmtTime(now.toISOString()) + ':' + ('0' + now.getSeconds()).slice(-2);
    }

    // Coverage: residents reached per township; a township opened shows its
    // villages and the residents no channel has reached.
    var covOpen = null;
    function coverage() {
      return api('GET', base + '/coverage').then(function (r) {
        if (!r.ok || !$('cov-township-rows')) { return null; }
        var c = r.body;
        $('cov-pct').textContent = c.people ? t('percent', { n: Math.floor(100 * c.reached / c.people) }) : '—';
        $('cov-reached').textContent = num(c.reached);
        $('cov-people').textContent = num(c.people);
        $('cov-unreached').textContent = num(c.unreached);
        var tb = $('cov-township-rows');
        clear(tb);
        var openName = '';
        (c.townships || []).forEach(function (tw) {
          var open = covOpen === tw.code;
          if (open) { openName = tw.name; }
          tb.appendChild(el('tr', { id: 'cov-' + tw.code, 'data-reached': tw.reached, 'data-people': tw.people }, [
            el('th', { scope: 'row' }, [data(tw.name)]),
            el('td', { class: 'n', text: num(tw.reached) + '/' + num(tw.people) }),
            el('td', { class: 'n' + (tw.unreached ? ' overdue-n' : ''), text: num(tw.unreached) }),
            el('td', {}, [el('button', { type: 'button', class: 'linklike', 'aria-expanded': String(open), 'aria-controls': 'cov-villages',
              text: open ? t('cov_hide') : t('cov_show_villages'),
              onclick: function () { covOpen = open ? null : tw.code; coverage().then(function () { if (covOpen) { $('cov-v-h').focus(); } }); } })])]));
        });
        labelCells($('cov-townships'));
        if (!covOpen) { $('cov-villages').hidden = true; return null; }
        return api('GET', base + '/coverage?list=unreached&division=' + encodeURIComponent(covOpen)).then(function (vr) {
          if (vr.ok) { renderVillages(vr.body, openName); }
        });
      });
    }
    function renderVillages(c, twName) {
      $('cov-villages').hidden = false;
      $('cov-v-h').textContent = t('cov_villages_of', { s: twName });
      var tb = $('cov-village-rows');
      clear(tb);
      var names = {};
      (c.villages || []).forEach(function (v) {
        names[v.code] = v.name;
        tb.appendChild(el('tr', { id: 'covv-' + v.code, 'data-reached': v.reached, 'data-people': v.people }, [
          el('th', { scope: 'row' }, [data(v.name)]),
          el('td', { class: 'n', text: num(v.reached) + '/' + num(v.people) }),
          el('td', { class: 'n' + (v.unreached ? ' overdue-n' : ''), text: num(v.unreached) }),
          el('td', { class: 'n', text: num(v.devices) })]));
      });
      labelCells($('cov-village-table'));
      var box = $('cov-list');
      clear(box);
      var people = c.unreached_people || [];
      if (!people.length) { box.appendChild(el('p', { class: 'muted', text: t('cov_all_reached') })); return; }
      var byVillage = {};
      var order = [];
      people.forEach(function (p) {
        if (!byVillage[p.village]) { byVillage[p.village] = []; order.push(p.village); }
        byVillage[p.village].push(p);
      });
      order.forEach(function (code) {
        box.appendChild(el('h4', { class: 'small-h' }, [data(names[code] || code)]));
        box.appendChild(el('ul', { class: 'cov-people', id: 'covl-' + code }, byVillage[code].map(function (p) {
          var kids = [name(p.name)];
          (p.reasons || []).forEach(function (r, i) { kids.push(i ? t('names_sep') : ' · '); kids.push(reasonNode(r)); });
          if (p.phone) { kids.push(' · '); kids.push(el('span', { translate: 'no', text: p.phone })); }
          kids.push(' · ');
          kids.push(el('span', { class: p.on_call_list ? 'cov-listed' : 'muted', text: p.on_call_list ? t('cov_on_list') : t('cov_not_listed') }));
          if (p.grid_worker) { kids.push(' (' + t('cov_grid_worker') + ' '); kids.push(name(p.grid_worker)); kids.push(')'); }
          return el('li', { 'data-id': p.id, 'data-listed': String(p.on_call_list) }, kids);
        })));
      });
      if (c.more) { box.appendChild(el('p', { class: 'muted', text: t('cov_more', { n: people.length }) })); }
    }

    function poll() {
      clearTimeout(timer);
      if (document.hidden) { timer = setTimeout(poll, 2000); return; }
      Promise.all([api('GET', base), api('GET', base + '/progress?level=township'), api('GET', base + '/acks'),
        api('GET', base + '/unreached'), api('GET', base + '/checklists'), api('GET', base + '/escalations'),
        api('GET', base + '/progress?level=county')])
        .then(render)
        .then(coverage)
        .catch(function (e) { if (window.console) { window.console.error(e); } })
        .then(function () { timer = setTimeout(poll, 2000); });
    }
    poll();

    var ab = $('approve-btn');
    if (ab) {
      ab.addEventListener('click', function () {
        ab.disabled = true;
        approve(id, $('approve-msg'), poll).then(function (ok) { ab.disabled = ok; });
      });
    }

    // Update, upgrade, extend, resend and cancel go to the API; a gateway without
    // those endpoints answers 404, and the page says so.
    var form = $('change-form');
    if (!form) { return; }
    var msg = $('action-msg');
    function say(text, bad) { msg.textContent = text; msg.className = bad ? 'error' : 'flash'; }
    function apiFailed(r) {
      say((r.status === 404 && r.error.code === 'not_found' ? t('not_available') : t('failed')) + errText(r.error), true);
    }
    var order = ['blue', 'yellow', 'orange', 'red'];
    var changeKey = null;
    function open(mode) {
      changeKey = newKey();
      form.hidden = false;
      msg.textContent = '';
      var cur = form.querySelector('input[name="ch-level"][value="' + w.level + '"]');
      if (cur) { cur.checked = true; }
      if (mode === 'upgrade') {
        var next = order[Math.min(order.indexOf(w.level) + 1, 3)];
        form.querySelector('input[name="ch-level"][value="' + next + '"]').checked = true;
      }
      if (mode === 'extend') {
        var d = new Date(new Date(w.expires).getTime() + 6 * 3600 * 1000 + 8 * 3600 * 1000);
        $('ch-expires').value = d.toISOString().slice(0, 16);
      }
      (mode === 'extend' ? $('ch-expires') : mode === 'upgrade' ? form.querySelector('input[name="ch-level"]:checked') : $('ch-headline')).focus();
    }
    $('update-btn').addEventListener('click', function () { open('update'); });
    $('upgrade-btn').addEventListener('click', function () { open('upgrade'); });
    $('extend-btn').addEventListener('click', function () { open('extend'); });
    $('ch-close').addEventListener('click', function () { form.hidden = true; });
    form.addEventListener('submit', function (e) {
      e.preventDefault();
      var lv = form.querySelector('input[name="ch-level"]:checked');
      var b = {
        hazard: w.hazard, level: lv ? lv.value : w.level, areas: w.areas, headline: $('ch-headline').value.trim(),
        description: $('ch-description').value.trim(), instruction: $('ch-instruction').value.trim(),
        status: w.status, expires: localExpires($('ch-expires').value)
      };
      $('ch-submit').disabled = true;
      api('POST', base + '/update', b, { 'Idempotency-Key': changeKey }).then(function (r) {
        $('ch-submit').disabled = false;
        if (!r.ok) { apiFailed(r); return; }
        say(t('updated_ok'));
        if (r.body && r.body.id && r.body.id !== id) { location.href = '/console/w/' + encodeURIComponent(r.body.id); } else { poll(); }
      });
    });
    $('resend-btn').addEventListener('click', function () {
      if (!window.confirm(t('resend_confirm'))) { return; }
      $('resend-btn').disabled = true;
      api('POST', base + '/resend', {}).then(function (r) {
        $('resend-btn').disabled = false;
        if (!r.ok) { apiFailed(r); return; }
        say(r.body.total ? t('resend_ok', { n: r.body.total }) : t('resend_none'));
        poll();
      });
    });
    $('cancel-btn').addEventListener('click', function () {
      if (!window.confirm(t('cancel_confirm'))) { return; }
      $('cancel-btn').disabled = true;
      api('POST', base + '/cancel', {}).then(function (r) {
        $('cancel-btn').disabled = false;
        if (!r.ok) { apiFailed(r); return; }
        say(t('cancelled_ok'));
        poll();
      });
    });
  }

  // ---- /console/ ----------------------------------------------------------
  // The list refreshes itself every 5 s from the same page.
  function pageList() {
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(location.href, { credentials: 'same-origin', headers: { 'Accept': 'text/html' } }).then(function (r) {
        if (r.redirected || !r.ok) { if (r.redirected) { sessionExpired(); } return null; }
        return r.text();
      }).then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('wlist');
        var cur = $('wlist');
        if (fresh && cur) { cur.replaceWith(document.importNode(fresh, true)); }
      }, function () {});
    }, 5000);
  }

  // ---- /public/ -----------------------------------------------------------
  function pagePublic() {
    var box = $('public-warnings');
    function load() {
      fetch('/public/warnings.json?area=' + encodeURIComponent(D.area), { headers: { 'Accept': 'application/json' } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (j) {
          clear(box);
          var ws = (j && j.warnings) || [];
          if (!ws.length) { box.appendChild(el('p', { class: 'card', id: 'public-none', text: t('no_active') })); return; }
          ws.forEach(function (w) {
            var lv = String(w.level);
            var level = EN ? t('level_name', { h: HAZARDS[w.hazard] || w.hazard, l: LEVELS[lv] || lv, g: t('grade_' + lv) }) : (w.hazard_name || '') + (w.level_name || LEVELS[lv] || lv);
            box.appendChild(el('article', { class: 'pub', id: 'pub-' + w.id }, [
              el('div', { class: 'banner level-' + lv }, [
                el('div', { class: 'banner-level', text: level + (w.status && w.status !== 'actual' ? ' · ' + t('status_' + w.status) : '') }),
                data(w.headline, 'h3'),
                el('div', { class: 'banner-meta', text: t('issued') + ' ' + fmtTime(w.issued) + ' · ' + t('expires_at') + ' ' + fmtTime(w.expires) })]),
              el('div', { class: 'pub-body' }, [
                (w.area_names && w.area_names.length) ? el('p', { class: 'muted small' }, [t('reach') + t('colon'), data(w.area_names.join(t('names_sep')))]) : null,
                data(w.description || '', 'p'),
                w.instruction ? el('h3', { text: t('instruction') }) : null,
                w.instruction ? data(w.instruction, 'p') : null])]));
          });
        }, function () { clear(box); box.appendChild(el('p', { class: 'card error', id: 'public-error', text: t('public_unavailable') })); });
    }
    load();
    setInterval(function () { if (!document.hidden) { load(); } }, 60000);
  }

  // ---- /console/roster ----------------------------------------------------
  // Search, edit and retire through /api/v1/roster/<kind>; imports are sent
  // as the file itself, checked with a dry run before they may be applied.
  function pageRoster() {
    var COLS = D.columns || {};
    var kind = 'people';
    var editing = null; // {kind, id, isNew}
    function label(col) { return t('rc_' + col); }

    function search(e) {
      if (e) { e.preventDefault(); }
      kind = $('search-kind').value;
      var q = $('search-q').value.trim();
      api('GET', '/api/v1/roster/' + kind + '?limit=100&q=' + encodeURIComponent(q)).then(function (r) {
        var table = $('search-results');
        clear(table);
        if (!r.ok) { $('search-note').textContent = t('failed') + errText(r.error); return; }
        var rows = r.body[kind] || [];
        $('search-note').textContent = rows.length ? t('roster_found', { n: rows.length }) : t('roster_none');
        if (!rows.length) { return; }
        var cols = COLS[kind].filter(function (c) { return c !== 'division'; });
        table.appendChild(el('thead', {}, [el('tr', {}, cols.map(function (c) { return el('th', { scope: 'col', text: label(c) }); })
          .concat([el('th', { scope: 'col', text: label('division_name') }), el('th', { scope: 'col', text: '' })]))]));
        var body = el('tbody');
        rows.forEach(function (row) {
          var cells = cols.map(function (c) { return el('td', { text: row[c] || '' }); });
          cells.push(el('td', { text: (row.division_name || '') + ' ' + row.division }));
          cells.push(el('td', {}, [el('button', { type: 'button', id: 'edit-' + row.id, text: D.can_edit ? t('roster_edit') : t('view'),
            onclick: function () { open(kind, row, false); } })]));
          body.appendChild(el('tr', { id: 'rr-' + row.id }, cells));
        });
        table.appendChild(body);
      });
    }

    function open(k, row, isNew) {
      editing = { kind: k, id: row.id || '', isNew: isNew };
      var box = $('edit-fields');
      clear(box);
      $('edit-error').hidden = true;
      $('edit-msg').textContent = '';
      COLS[k].forEach(function (c) {
        var attrs = { id: 'ef-' + c, name: c, value: row[c] || '', autocomplete: 'off' };
        if (c === 'id' && !isNew) { attrs.readonly = true; }
        if (!D.can_edit) { attrs.readonly = true; }
        var list = (D.values || {})[c];
        if (list) { attrs.list = 'ef-list-' + c; }
        box.appendChild(el('label', { for: 'ef-' + c, text: label(c) }));
        box.appendChild(el('input', attrs));
        if (list) { box.appendChild(el('datalist', { id: 'ef-list-' + c }, list.map(function (v) { return el('option', { value: v }); }))); }
        box.appendChild(el('p', { class: 'field-error', 'data-for': c }));
      });
      $('edit-save').hidden = !D.can_edit;
      $('edit-retire').hidden = !D.can_edit || isNew;
      $('edit-box').hidden = false;
      $('edit-box').scrollIntoView();
    }

    function save(e) {
      e.preventDefault();
      var form = $('edit-form');
      clearFieldErrors(form);
      var id = $('ef-id').value.trim();
      var body = {};
      COLS[editing.kind].forEach(function (c) { if (c !== 'id') { body[c] = $('ef-' + c).value; } });
      $('edit-save').disabled = true;
      api('PUT', '/api/v1/roster/' + editing.kind + '/' + encodeURIComponent(id), body).then(function (r) {
        $('edit-save').disabled = false;
        $('edit-msg').textContent = '';
        if (!r.ok) {
          showFieldErrors(form, r.error, true);
          $('edit-error').textContent = t('failed') + errText(r.error);
          $('edit-error').hidden = false;
          return;
        }
        $('edit-error').hidden = true;
        $('edit-msg').textContent = r.body.changed ? t('roster_saved', { n: r.body.version }) : t('roster_unchanged');
        $('roster-version').textContent = t('roster_version') + ' ' + r.body.version;
        editing.isNew = false;
        $('ef-id').readOnly = true;
        $('edit-retire').hidden = false;
      });
    }

    function retire() {
      var id = $('ef-id').value.trim();
      if (!window.confirm(t('roster_retire_confirm', { s: id }))) { return; }
      api('DELETE', '/api/v1/roster/' + editing.kind + '/' + encodeURIComponent(id)).then(function (r) {
        if (!r.ok) { $('edit-error').textContent = t('failed') + errText(r.error); $('edit-error').hidden = false; return; }
        $('edit-msg').textContent = t('roster_retired', { n: r.body.version });
        $('roster-version').textContent = t('roster_version') + ' ' + r.body.version;
        var tr = $('rr-' + id);
        if (tr) { tr.remove(); }
      });
    }

    $('search-form').addEventListener('submit', search);
    $('edit-form').addEventListener('submit', save);
    $('edit-retire').addEventListener('click', retire);
    $('edit-close').addEventListener('click', function () { $('edit-box').hidden = true; });
    if ($('add-btn')) { $('add-btn').addEventListener('click', function () { open($('search-kind').value, {}, true); }); }

    // Imports: a dry run first; the same file may then be applied.
    if (!$('import-form')) { return; }
    var checked = null; // the file and options a clean dry run was made with
    function reset() { checked = null; $('import-apply').disabled = true; }
    ['import-kind', 'import-mode', 'import-file'].forEach(function (id) { $(id).addEventListener('change', reset); });
    $('import-kind').addEventListener('change', function () {
      $('export-link').href = '/api/v1/roster/export.xlsx?kind=' + $('import-kind').value + '&header=zh';
    });
    function send(dry) {
      var f = $('import-file').files[0];
      var out = $('import-result');
      clear(out);
      if (!f) { out.appendChild(el('p', { class: 'error', text: t('roster_no_file') })); return; }
      var type = /\.csv$/i.test(f.name) ? 'text/csv' : 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';
      var url = '/api/v1/roster/import?kind=' + $('import-kind').value + '&mode=' + $('import-mode').value + '&dry_run=' + (dry ? 'true' : 'false');
      $('import-dry').disabled = true;
      $('import-apply').disabled = true;
      fetch(url, { method: 'POST', credentials: 'same-origin', body: f, headers: { 'Accept': 'application/json', 'Content-Type': type, 'X-CSRF-Token': boot.csrf || '' } })
        .then(function (resp) { return resp.json().catch(function () { return null; }).then(function (j) { return { status: resp.status, body: j }; }); },
          function () { return { status: 0, body: null }; })
        .then(function (r) {
          $('import-dry').disabled = false;
          if (r.status === 401) { sessionExpired(); }
          var b = r.body || {};
          if (typeof b.added === 'number') {
            out.appendChild(el('p', { id: 'import-counts', text: t('roster_result', { added: b.added, changed: b.changed, retired: b.retired, unchanged: b.unchanged || 0 }) }));
            [['added_ids', b.added_ids], ['changed_ids', b.changed_ids], ['retired_ids', b.retired_ids]].forEach(function (p) {
              if (p[1] && p[1].length) { out.appendChild(el('p', { class: 'small' }, [t(p[0]) + t('colon'), name(p[1].join(t('sep')))])); }
            });
          }
          var errs = b.errors || [];
          if (errs.length) {
            out.appendChild(el('p', { class: 'error', id: 'import-errors-head', text: t('roster_errors', { n: b.errors_total || errs.length }) }));
            out.appendChild(el('div', { class: 'table-wrap' }, [el('table', { id: 'import-errors' }, [
              el('thead', {}, [el('tr', {}, [el('th', { scope: 'col', text: t('row') }), el('th', { scope: 'col', text: t('column') }), el('th', { scope: 'col', text: t('message') })])]),
              el('tbody', {}, errs.map(function (e) { return el('tr', {}, [el('td', { text: e.row ? String(e.row) : '—' }), el('td', { text: e.column || '' }), el('td', { text: e.message })]); }))])]));
            return;
          }
          if (r.status !== 200) { out.appendChild(el('p', { class: 'error', text: t('failed') + errText(b.error || { code: 'http_' + r.status }) })); return; }
          if (dry) {
            checked = f;
            $('import-apply').disabled = false;
            out.appendChild(el('p', { class: 'flash', id: 'import-ok', text: t('roster_dry_ok') }));
          } else {
            reset();
            out.appendChild(el('p', { class: 'flash', id: 'import-ok', text: t('roster_applied', { n: b.version }) }));
            $('roster-version').textContent = t('roster_version') + ' ' + b.version;
          }
        });
    }
    $('import-dry').addEventListener('click', function () { send(true); });
    $('import-apply').addEventListener('click', function () { if (checked === $('import-file').files[0]) { send(false); } });
  }

  function pageLogin() {
    var n = $('name');
    if (n && !n.value) { n.focus(); } else if ($('password')) { $('password').focus(); }
  }

  var pages = { 'new': pageNew, approvals: pageApprovals, watch: pageWatch, list: pageList, 'public': pagePublic, login: pageLogin, roster: pageRoster };
  if (pages[boot.page]) { pages[boot.page](); }
}());
