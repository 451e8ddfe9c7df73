/* refdesk visitor widget (ASCII only: host pages may use any charset): one <script src=".../widget.js" async> tag, no dependencies,
   no third-party requests. Talks to the visitor API of its own origin (docs/API-CONTRACT.md). */
(function () {
  'use strict';
  if (window.__refdesk || !window.fetch || !document.head || !document.head.attachShadow) return;
  window.__refdesk = 1;
  var me = document.currentScript || [].slice.call(document.querySelectorAll('script[src*="widget.js"]')).pop();
  if (!me) return;
  var API = new URL(me.src, location.href).origin;
  var KEY = 'refdesk:' + API, OKEY = KEY + ':open';
  var dataOpen = me.getAttribute('data-open') === 'true';

  // The widget's words, one set per language the desk offers (its default first), and the other
  // codes a browser may send for them: written in by the server from the language files.
  var W = /*refdesk:texts*/null;
  if (!W) return;
  var T = W.texts, DEF = Object.keys(T)[0];
  function code(v) { var p = String(v || '').toLowerCase().split('-')[0]; return W.aliases[p] || p; }

  function load(k) { try { return JSON.parse(localStorage.getItem(k)); } catch (e) { return null; } }
  function save(k, v) { try { if (v == null) localStorage.removeItem(k); else localStorage.setItem(k, JSON.stringify(v)); } catch (e) { /* storage off */ } }

  var st = load(KEY);
  if (!st || !st.session_id || !st.token) st = null;
  else { st.cursor = +st.cursor || 0; st.outbox = st.outbox || []; }
  // The language: the visitor's own choice on this visit, else the page's (data-language), the
  // chat's, or the browser's first that the widget speaks; else the desk's default.
  var LKEY = KEY + ':language';
  function chosenLang() { try { var c = sessionStorage.getItem(LKEY); return T[c] ? c : null; } catch (e) { return null; } }
  function browserLang() {
    var all = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < all.length; i++) { var p = code(all[i]); if (T[p]) return p; }
    return null;
  }
  var dataLang = code(me.getAttribute('data-language'));
  var lang = chosenLang() || (T[dataLang] ? dataLang : st && T[st.language] ? st.language : browserLang());
  var cfg = null, closed = false, isOpen = false, unread = 0;
  function t(k, a) { var s = T[lang || DEF][k] || k; return a == null ? s : s.replace('%s', a); }
  function persist() { if (st && !closed) save(KEY, st); } // an ended chat is not kept in the browser (shared computers)

  /* ---------- DOM ---------- */
  function h(tag, a, kids) {
    var e = document.createElement(tag);
    for (var k in a || {}) {
      var v = a[k];
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    (kids || []).forEach(function (c) { if (c) e.appendChild(c); });
    return e;
  }
  function icon(down) { // built with DOM calls, not innerHTML: fine under Trusted Types; down: true chevron, 2 star, 3 paperclip, else chat
    var NS = 'http://www.w3.org/2000/svg', sv = document.createElementNS(NS, 'svg'), pa = document.createElementNS(NS, 'path');
    var at = down === 2 ? { fill: 'currentColor', stroke: '#6b7d85', 'stroke-width': '1.2', 'stroke-linejoin': 'round', d: 'M12 2.5l2.9 6.1 6.6.8-4.9 4.6 1.3 6.6L12 17.3l-5.9 3.3 1.3-6.6-4.9-4.6 6.6-.8z' }
      : down === 3 ? { fill: 'none', stroke: 'currentColor', 'stroke-width': '2', 'stroke-linecap': 'round', d: 'M16.5 6.5v9a4.5 4.5 0 0 1-9 0V5a3 3 0 0 1 6 0v10a1.5 1.5 0 0 1-3 0V7' }
      : down ? { fill: 'none', stroke: 'currentColor', 'stroke-width': '2.5', 'stroke-linecap': 'round', d: 'M6 9l6 6 6-6' }
      : { fill: 'currentColor', d: 'M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z' };
    sv.setAttribute('viewBox', '0 0 24 24'); sv.setAttribute('aria-hidden', 'true');
    for (var k in at) (k === 'd' ? pa : sv).setAttribute(k, at[k]);
    sv.appendChild(pa);
    return sv;
  }
  var CSS = ':host{all:initial}*{box-sizing:border-box}' +
    '.w{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",Ubuntu,"Helvetica Neue",Arial,sans-serif;color:#1c2b31;-webkit-text-size-adjust:100%}' +
    '[hidden]{display:none!important}.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}' +
    'button{font:inherit;cursor:pointer;min-height:44px;border-radius:8px}button:disabled{opacity:.6;cursor:default}' +
    // A two-tone ring: 3:1 or more against white and against the desk's teal (WCAG 1.4.11).
    ':focus-visible{outline:3px solid #0d5868;outline-offset:2px;box-shadow:0 0 0 2px #fff}.hd :focus-visible{outline-color:#fff;box-shadow:0 0 0 2px #0d5868}' +
    '.l{position:fixed;right:20px;bottom:20px;z-index:2147483000;width:60px;height:60px;border-radius:50%;border:0;background:#0d5868;color:#fff;box-shadow:0 4px 14px rgba(0,0,0,.28);display:flex;align-items:center;justify-content:center}' +
    '.l:hover{background:#094552}.l svg{width:30px;height:30px}' +
    '.bd{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#b3261e;color:#fff;font-size:12px;font-weight:700;line-height:22px}' +
    '.p{position:fixed;right:20px;bottom:92px;z-index:2147483001;width:360px;height:560px;max-height:calc(100vh - 112px);background:#fff;border-radius:14px;box-shadow:0 12px 40px rgba(0,0,0,.28);display:flex;flex-direction:column;overflow:hidden}' +
    '@media (max-width:479px){.p{left:0;top:0;right:0;bottom:0;width:auto;height:100%;max-height:none;border-radius:0}.o .l{display:none}}' +
    '@media (prefers-reduced-motion:no-preference){.p{animation:rdin .18s ease-out}@keyframes rdin{from{opacity:0;transform:translateY(10px)}}}' +
    '.hd{display:flex;align-items:center;gap:6px;padding:6px 6px 6px 16px;background:#0d5868;color:#fff;flex:none}' +
    '.hd h2{flex:1;margin:0;font-size:17px;font-weight:600;outline:0}' +
    '.hb{min-width:44px;border:0;background:transparent;color:#fff;display:flex;align-items:center;justify-content:center}.hb svg{width:24px;height:24px}' +
    '.hb:hover{background:rgba(255,255,255,.16)}.ed{border:1px solid rgba(255,255,255,.55);padding:0 12px;font-size:14px}.lg{font-size:13px;font-weight:600;padding:0 10px}' +
    '.cs{padding:6px 16px;background:#fff3d1;color:#5c4300;font-size:13px;flex:none}' +
    '.qs{padding:6px 16px;background:#e3eff2;color:#0b4654;font-size:13px;flex:none;border-bottom:1px solid #cfdfe4}' +
    'form{flex:1;overflow-y:auto;padding:16px;margin:0}form p{margin:0 0 12px}.f{margin:0 0 12px}' +
    '.in{color:#3d4f57}.nt{font-size:12px;color:#5a6a72}form .pv{margin:10px 0 0}' +
    'label{display:block;font-weight:600;font-size:14px;margin:0 0 4px}' +
    'input,select,textarea{display:block;width:100%;font:inherit;font-size:16px;padding:9px 12px;border:1px solid #6f858f;border-radius:8px;background:#fff;color:inherit;min-height:44px;margin:0}' +
    'textarea{resize:vertical}[aria-invalid=true]{border-color:#b3261e;box-shadow:0 0 0 1px #b3261e}' +
    '.fe{color:#b3261e;font-size:13px;margin:4px 0 0}.ee{color:#b3261e;font-size:14px}' +
    '.dt{border:0;padding:0;margin:0 0 12px;min-width:0}.dt legend{padding:0;margin:0 0 4px;font-weight:600}.dr{display:flex;gap:8px}.dr .f{margin:0}.dr label{font-weight:400;font-size:13px}.dp-day{width:4.2em}.dp-month{flex:1;min-width:0}.dp-year{width:5.6em}' +
    '.pr{background:#0d5868;color:#fff;border:0;padding:0 18px;font-weight:600}.pr:hover{background:#094552}' +
    '.sc2{background:#fff;color:#0d5868;border:1px solid #0d5868;padding:0 16px}' +
    'form .pr{width:100%}' +
    '.c{flex:1;display:flex;flex-direction:column;min-height:0}' +
    '.sc{flex:1;overflow-y:auto;padding:12px;background:#f4f7f8;overscroll-behavior:contain}' +
    '.ml{display:flex;flex-direction:column;gap:10px}.m{display:flex;flex-direction:column;max-width:85%;align-self:flex-start}' +
    '.m.visitor{align-self:flex-end;align-items:flex-end}.m.desk{align-self:center;text-align:center;max-width:92%;align-items:center}' +
    '.b{padding:8px 12px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere}' +
    '.visitor .b{background:#0d5868;color:#fff;border-bottom-right-radius:4px}.visitor .b a{color:#fff}' +
    '.librarian .b{background:#fff;border:1px solid #d5dfe3;border-bottom-left-radius:4px}.b a{color:#0a4d8c}' +
    '.desk .b{color:#53636b;font-size:13px;padding:2px 8px}' +
    '.b.hm{white-space:normal}.b p,.b ul,.b ol,.b pre,.b blockquote{margin:0 0 6px}.b>:last-child{margin-bottom:0}.b ul,.b ol{padding-left:22px}' +
    '.b blockquote{margin-left:0;padding-left:10px;border-left:3px solid #b9c8ce}.b .hx{display:block}' +
    '.b code{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;background:rgba(13,88,104,.08);padding:1px 4px;border-radius:4px}' +
    '.b pre{white-space:pre-wrap;background:rgba(13,88,104,.08);padding:6px 8px;border-radius:6px}.b pre code{background:none;padding:0}' +
    '[data-deleted] .b{font-style:italic;color:#5f6f77}.visitor[data-deleted] .b{color:#e3eff2}' +
    '.iv{position:fixed;right:20px;bottom:92px;z-index:2147483000;width:280px;max-width:calc(100vw - 40px);background:#fff;border-radius:14px;box-shadow:0 8px 28px rgba(0,0,0,.25);padding:14px 40px 14px 16px}' +
    '.li{z-index:2147483002}.li .no{margin-left:8px;min-height:40px;padding:0 12px;border:1px solid #0d5868;background:#fff;color:#0d5868}' +
    '.iv p{margin:0 0 10px}.iv .pr{min-height:40px}.ivx{position:absolute;top:4px;right:4px;width:40px;min-height:40px;border:0;background:none;color:#3d4f57;font-size:22px;line-height:1}' +
    '.ma{margin-left:6px}.ma button{border:0;background:none;color:inherit;text-decoration:underline;padding:0 5px;min-height:32px;font-size:inherit}' +
    '.ebr{display:flex;align-items:center;gap:8px;padding:6px 12px 0;font-size:13px;color:#0b4654;flex:none}.ebr>span:first-child{flex:1}.ebr button{border:0;background:none;color:#0d5868;text-decoration:underline;min-height:32px}' +
    '.ty{font-size:13px;font-style:italic;color:#53636b;padding:8px 6px 0}.ty:empty{padding:0}.mt .rd{color:#0d5868;font-weight:600}' +
    '.wh{font-size:12px;font-weight:600;color:#0d5868;margin:0 0 2px 6px}' +
    '.mt{font-size:11px;color:#5f6f77;margin:2px 6px 0}.mt span{margin-left:6px}.x .mt span{color:#b3261e}.x .b{opacity:.7}' +
    '.cm{display:flex;gap:8px;padding:8px;border-top:1px solid #d5dfe3;align-items:flex-end;flex:none;padding-bottom:max(8px,env(safe-area-inset-bottom))}' +
    '.cm textarea{resize:none;max-height:120px;line-height:1.35}.at{flex:none;background:none;border:1px solid #6f858f;border-radius:8px;width:40px;height:40px;padding:8px;color:#0d5868;cursor:pointer}.at svg{width:22px;height:22px}' +
    '.pvb{display:flex;align-items:center;gap:8px;padding:6px 8px;border-top:1px solid #d5dfe3;font-size:14px}.pt{max-height:48px;max-width:64px;border-radius:6px}.pn{flex:1;overflow-wrap:anywhere}' +
    '.ib{padding:0;border:0;background:none;cursor:zoom-in;display:block}.ai{display:block;max-width:100%;height:auto;max-height:240px;border-radius:10px;background:#e8eef0}' +
    '.fl{font:inherit;color:inherit;background:rgba(255,255,255,.15);border:1px solid currentColor;border-radius:8px;padding:6px 8px;cursor:pointer;text-align:left}' +
    '.iv2{position:absolute;inset:0;background:rgba(10,20,25,.92);display:flex;flex-direction:column;align-items:center;justify-content:center;gap:8px;padding:12px;z-index:5}.iv2 img{max-width:100%;max-height:85%;object-fit:contain}' +
    '.eb,.cf{padding:12px 16px;border-top:1px solid #d5dfe3;text-align:center;flex:none;padding-bottom:max(12px,env(safe-area-inset-bottom))}' +
    '.eb p,.cf p{margin:0 0 10px;color:#3d4f57}.cf{background:#fbf0ef}.cf button{margin:0 4px}' +
    '.eb .pr{width:100%}.ec{margin:14px 0 4px;padding:14px 12px 4px;background:#fff;border:1px solid #d5dfe3;border-radius:12px;text-align:center}' +
    '.ec p{margin:0 0 8px;color:#3d4f57}.ec textarea{margin:0 0 8px}.ec .pr{width:100%}.ec .tk{color:#0d5868;font-weight:600}' +
    '.fq{flex:1;display:flex;flex-direction:column;min-height:0}.fs{flex:1;overflow-y:auto;padding:16px}.fs p{margin:0 0 12px}' +
    '.fl{list-style:none;margin:12px 0 0;padding:0}.fi{margin:0 0 8px;border:1px solid #d5dfe3;border-radius:10px;background:#fff}' +
    '.fi button{width:100%;display:flex;align-items:center;gap:8px;text-align:left;border:0;background:none;padding:8px 12px;color:#0d5868;font-weight:600}' +
    '.fi svg{width:20px;height:20px;flex:none;margin-left:auto}.fi [aria-expanded=true] svg{transform:rotate(180deg)}' +
    '.fa{padding:0 12px 12px;white-space:pre-wrap;overflow-wrap:anywhere}.fa a{color:#0a4d8c}' +
    '.lk{border:0;background:none;color:#0d5868;text-decoration:underline;padding:0;margin:-8px 0 4px;font-size:14px}' +
    '.cn{background:#fff3d1;color:#5c4300;border-radius:8px;padding:10px 12px;margin:0 0 12px;font-size:14px}.cn p{margin:0}.cn p+p{margin-top:6px}.cn ul{margin:4px 0 0;padding-left:20px}' +
    '.hz>:not(.cn){display:none!important}' +
    '.vf{flex:none;overflow:visible;margin:12px 0 0;padding:12px;background:#fff;border:2px solid #0d5868;border-radius:12px}.vf h3{margin:0 0 4px;font-size:15px}.vf .nt{margin:0 0 10px}' +
    '.vf [role=status]{margin:8px 0 0;font-weight:600}' +
    '.rs{display:flex;justify-content:center;gap:2px;margin:0 0 4px}.sb{width:48px;height:48px;border:0;background:none;padding:0;color:#fff;display:inline-flex;align-items:center;justify-content:center}' +
    '.sb svg{width:38px;height:38px}.sb.on{color:#e0a526}@media (hover:hover){.sb:hover{color:#f2c35b}}' +
    '.er{margin:4px 0 10px}.er p{margin:0 0 8px}.er .sc2{margin:0 4px}.lk{background:none;border:0;padding:6px;color:#0d5868;text-decoration:underline;font:inherit;font-size:14px;cursor:pointer}' +
    '.tr{display:flex;flex-wrap:wrap;gap:8px;justify-content:center;margin:12px 0}.tr .sc2{font-size:14px;flex:1 1 auto}.tr p{flex-basis:100%;margin:0;font-size:14px}' +
    '@media (prefers-reduced-motion:reduce){*{animation:none!important;transition:none!important;scroll-behavior:auto!important}}';

  var root, launcher, badge, panel, title, statusEl, form, formErr, chat, list, scroller, composer, input, sendBtn,
    langBtn, editBar, editErr, editing, endBtn, confirmBar, endBar, live, topicSel, qsEl, typEl, readEl, offEl, faqBox, faqIn, faqList, faqNote, faqNo, askBtn,
    backBtn, closedEl, vCard, endCard, rateBox, stars, rateLbl, cmtBox, thanksEl, trBtn, trMail, trStat, erBox, erasedEl, pvEl, fileIn, attBtn, pvBar, pending, viewer;
  function build() {
    var host = document.createElement('refdesk-widget');
    host.style.setProperty('all', 'initial', 'important');
    host.style.setProperty('display', 'block', 'important');
    var sh = host.attachShadow({ mode: 'open' });
    try { // a constructed sheet is not an inline style, so strict host-page CSPs allow it
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      sh.adoptedStyleSheets = [sheet];
    } catch (e) { sh.appendChild(h('style', { text: CSS })); }
    root = h('div', { class: 'w' });
    sh.appendChild(root);
    launcher = h('button', { type: 'button', class: 'l', 'data-refdesk': 'launcher', 'aria-expanded': 'false', 'aria-controls': 'rd-panel', onclick: function () { setOpen(!isOpen, true); } });
    badge = h('span', { class: 'bd', 'aria-hidden': 'true', hidden: true });
    launcher.appendChild(icon(false));
    launcher.appendChild(badge);

    title = h('h2', { id: 'rd-title', tabindex: '-1' });
    langBtn = h('button', { type: 'button', class: 'hb ed lg', 'data-refdesk': 'language', hidden: true, onclick: switchLang });
    endBtn = h('button', { type: 'button', class: 'hb ed', 'data-refdesk': 'end', 'data-t': 'end', 'data-tl': 'endL', hidden: true, onclick: askEnd });
    var minBtn = h('button', { type: 'button', class: 'hb', 'data-tl': 'min', onclick: function () { setOpen(false, true); } });
    minBtn.appendChild(icon(true));
    statusEl = h('div', { class: 'cs', role: 'status', 'data-refdesk': 'status', hidden: true });
    qsEl = h('div', { class: 'qs', role: 'status', 'data-refdesk': 'queue-status', hidden: true });
    offEl = h('div', { class: 'qs', role: 'status', 'data-refdesk': 'offline-sent', hidden: true });

    // quick answers (FAQ) before the form
    faqIn = h('input', { type: 'search', 'data-refdesk': 'faq-search', 'data-tp': 'faqPh', 'data-tl': 'faqPh', autocomplete: 'off', maxlength: '200', 'aria-controls': 'rd-fl', oninput: faqType });
    faqList = h('ul', { class: 'fl', id: 'rd-fl' });
    faqNote = h('p', { class: 'ee', role: 'alert', 'data-refdesk': 'notice', hidden: true });
    faqNo = h('p', { class: 'nt', role: 'status', 'data-t': 'faqNo', hidden: true });
    askBtn = h('button', { type: 'button', class: 'pr', 'data-refdesk': 'ask', 'data-t': 'ask', onclick: function () { showForm(null, 1); focusView(); } });
    faqBox = h('div', { class: 'fq', 'data-refdesk': 'faq', hidden: true }, [
      h('div', { class: 'fs' }, [faqNote, h('p', { class: 'in', 'data-t': 'faqIn' }), faqIn, faqList, faqNo]),
      h('div', { class: 'eb' }, [askBtn])]);

    // pre-chat form
    function field(name, tag, a, lab) {
      a.name = name; a.id = 'rd-' + name; a['aria-describedby'] = 'rd-e-' + name;
      var el = h(tag, a);
      if (tag === 'textarea') el.rows = 3;
      el.addEventListener('invalid', function (e) { e.preventDefault(); fieldError(name, el.validity.typeMismatch ? t('e_email') : el.validity.tooLong ? t('e_long', el.maxLength) : t('e_req')); });
      el.addEventListener('input', function () { fieldError(name, ''); });
      return h('div', { class: 'f', 'data-f': name }, [
        h('label', { for: 'rd-' + name, 'data-t': lab || name }), el,
        h('p', { class: 'fe', id: 'rd-e-' + name, 'data-refdesk': 'field-error', 'data-field': name, hidden: true })]);
    }
    topicSel = h('select', { name: 'topic', id: 'rd-topic', required: true, 'aria-describedby': 'rd-e-topic' });
    topicSel.addEventListener('change', function () { fieldError('topic', ''); });
    formErr = h('p', { class: 'ee', role: 'alert', 'data-refdesk': 'form-error', hidden: true });
    backBtn = h('button', { type: 'button', class: 'lk', 'data-refdesk': 'faq-back', 'data-t': 'back', hidden: true, onclick: function () { showForm(); focusView(); } });
    closedEl = h('div', { class: 'cn', role: 'note', 'data-refdesk': 'closed-notice', hidden: true });
    form = h('form', { 'data-refdesk': 'form', novalidate: true, 'aria-labelledby': 'rd-title', hidden: true }, [
      backBtn, closedEl,
      h('p', { class: 'in', 'data-t': 'intro' }),
      h('p', { class: 'nt', 'data-t': 'req' }),
      field('name', 'input', { type: 'text', required: true, maxlength: '80', autocomplete: 'name' }, 'name'),
      field('email', 'input', { type: 'email', required: true, maxlength: '254', autocomplete: 'email', inputmode: 'email' }),
      field('member_number', 'input', { type: 'text', maxlength: '40', autocomplete: 'off' }),
      h('div', { class: 'f', 'data-f': 'topic' }, [h('label', { for: 'rd-topic', 'data-t': 'topic' }), topicSel,
        h('p', { class: 'fe', id: 'rd-e-topic', 'data-refdesk': 'field-error', 'data-field': 'topic', hidden: true })]),
      field('question', 'textarea', { maxlength: '4000' }),
      formErr,
      h('button', { type: 'submit', class: 'pr', 'data-refdesk': 'start', 'data-t': 'start' }),
      pvEl = h('p', { class: 'nt pv', 'data-refdesk': 'privacy' })]);
    // mark required labels
    form.querySelectorAll('[required]').forEach(function (el) { var l = form.querySelector('label[for="' + el.id + '"]'); l.setAttribute('data-req', ''); });
    form.addEventListener('submit', submitForm);

    // conversation
    list = h('div', { class: 'ml', 'data-refdesk': 'messages' });
    typEl = h('div', { class: 'ty', 'data-refdesk': 'typing', 'aria-live': 'polite' });
    readEl = h('span', { class: 'rd', 'data-refdesk': 'read', 'data-t': 'read' });
    vCard = h('form', { class: 'vf', 'data-refdesk': 'verify', novalidate: true, 'aria-labelledby': 'rd-vt', hidden: true, onsubmit: verify });
    scroller = h('div', { class: 'sc', tabindex: '0', role: 'region', 'data-tl': 'conv' }, [list, vCard, typEl]);
    input = h('textarea', { 'data-refdesk': 'input', rows: '1', maxlength: '4000', 'data-tp': 'ph', 'data-tl': 'msg' });
    input.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) { e.preventDefault(); sendInput(); }
      else if (e.key === 'Escape' && editing) { e.preventDefault(); e.stopPropagation(); stopEdit(); }
    });
    input.addEventListener('input', function () { grow(); typing(!!input.value.trim()); });
    input.addEventListener('blur', function () { typing(false); });
    sendBtn = h('button', { type: 'button', class: 'pr', 'data-refdesk': 'send', 'data-t': 'send', onclick: sendInput });
    editErr = h('span', { class: 'ee', 'data-refdesk': 'edit-error' });
    editBar = h('div', { class: 'ebr', role: 'status', 'data-refdesk': 'editing', hidden: true }, [
      h('span', { 'data-t': 'editing' }), editErr,
      h('button', { type: 'button', 'data-refdesk': 'edit-cancel', 'data-t': 'cancel', onclick: function () { stopEdit(); } })]);
    fileIn = h('input', { type: 'file', hidden: true, 'data-refdesk': 'file', accept: 'image/*,.pdf,.txt,.doc,.docx,.xls,.xlsx,.ppt,.pptx,.odt,.ods,.odp',
      onchange: function () { if (fileIn.files[0]) pick(fileIn.files[0]); fileIn.value = ''; } });
    attBtn = h('button', { type: 'button', class: 'at', 'data-refdesk': 'attach', 'data-tl': 'attach', onclick: function () { fileIn.click(); } }, [icon(3)]);
    pvBar = h('div', { class: 'pvb', role: 'status', 'data-refdesk': 'attachment-preview', hidden: true });
    input.addEventListener('paste', function (e) { var f = e.clipboardData && e.clipboardData.files[0]; if (f) { e.preventDefault(); pick(f); } });
    composer = h('div', { class: 'cm' }, [attBtn, input, sendBtn, fileIn]);
    confirmBar = h('div', { class: 'cf', role: 'group', 'aria-labelledby': 'rd-cq', hidden: true }, [
      h('p', { id: 'rd-cq', 'data-t': 'endQ' }),
      h('button', { type: 'button', class: 'pr', 'data-refdesk': 'end-confirm', 'data-t': 'yes', onclick: doEnd }),
      h('button', { type: 'button', class: 'sc2', 'data-refdesk': 'end-cancel', 'data-t': 'no', onclick: function () { confirmBar.hidden = true; composer.hidden = false; endBtn.focus(); } })]);
    stars = [1, 2, 3, 4, 5].map(function (n) {
      var b = h('button', { type: 'button', class: 'sb', 'data-refdesk': 'star', 'data-value': n, 'aria-pressed': 'false', onclick: function () { rate(n); } });
      b.appendChild(icon(2));
      return b;
    });
    rateLbl = h('p', { role: 'status' });
    cmtBox = h('div', { hidden: true }, [
      h('textarea', { 'data-refdesk': 'comment', rows: '2', maxlength: '2000', 'data-tl': 'cmt', 'data-tp': 'cmt' }),
      h('button', { type: 'button', class: 'pr', 'data-refdesk': 'comment-send', 'data-t': 'send', onclick: sendComment })]);
    rateBox = h('div', { 'data-refdesk': 'rating', role: 'group', 'aria-labelledby': 'rd-rq' }, [
      h('p', { id: 'rd-rq', 'data-t': 'rateQ' }), h('div', { class: 'rs' }, stars), rateLbl]);
    thanksEl = h('p', { class: 'tk', role: 'status', tabindex: '-1', 'data-refdesk': 'thanks', 'data-t': 'thanks', hidden: true });
    trBtn = h('button', { type: 'button', class: 'sc2', 'data-refdesk': 'transcript', 'data-t': 'tr', onclick: download });
    trMail = h('button', { type: 'button', class: 'sc2', 'data-refdesk': 'transcript-email', 'data-t': 'trM', onclick: mailTranscript });
    trStat = h('p', { role: 'status', 'data-refdesk': 'transcript-status' });
    erBox = h('div', { class: 'er', 'data-refdesk': 'erase-box' });
    askErase(false);
    erasedEl = h('p', { role: 'status', tabindex: '-1', 'data-refdesk': 'erased', 'data-t': 'erased', hidden: true });
    endCard = h('div', { class: 'ec', hidden: true }, [h('div', {}, [
      h('p', { 'data-refdesk': 'ended', 'data-t': 'ended' }),
      rateBox, thanksEl, cmtBox,
      h('div', { class: 'tr' }, [trBtn, trMail, trStat]), erBox]), erasedEl]);
    scroller.insertBefore(endCard, typEl);
    endBar = h('div', { class: 'eb', hidden: true }, [
      h('button', { type: 'button', class: 'pr', 'data-refdesk': 'new', 'data-t': 'again', onclick: newConversation })]);
    chat = h('div', { class: 'c', hidden: true }, [scroller, confirmBar, editBar, pvBar, composer, endBar]);
    chat.addEventListener('dragover', function (e) { if (e.dataTransfer && [].indexOf.call(e.dataTransfer.types, 'Files') >= 0) e.preventDefault(); });
    chat.addEventListener('drop', function (e) { var f = e.dataTransfer && e.dataTransfer.files[0]; if (f) { e.preventDefault(); pick(f); } });
    live = h('div', { class: 'sr', 'aria-live': 'polite' });

    panel = h('section', { class: 'p', id: 'rd-panel', 'data-refdesk': 'panel', role: 'dialog', 'aria-labelledby': 'rd-title', hidden: true }, [
      h('div', { class: 'hd' }, [title, langBtn, endBtn, minBtn]), qsEl, offEl, statusEl, faqBox, form, chat, live]);
    panel.addEventListener('keydown', function (e) {
      if (e.key === 'Escape') setOpen(false, true);
      else if (e.key === 'Tab' && modal()) keepFocus(e, sh.activeElement);
    });
    root.appendChild(panel);
    root.appendChild(launcher);
    document.body.appendChild(host);
    if (window.visualViewport) visualViewport.addEventListener('resize', fitViewport);
  }

  // On a phone the open panel covers the page: a modal dialog, so Tab goes round inside it
  // instead of reaching the page's links hidden behind.
  function modal() { return isOpen && window.innerWidth < 480; }
  function keepFocus(e, current) {
    var all = Array.prototype.filter.call(panel.querySelectorAll('button,input,select,textarea,a[href],[tabindex="0"]'),
      function (el) { return !el.disabled && el.getClientRects().length > 0; });
    if (!all.length) return;
    var first = all[0], last = all[all.length - 1], i = all.indexOf(current);
    if (e.shiftKey ? i <= 0 : i === -1 || i === all.length - 1) { e.preventDefault(); (e.shiftKey ? last : first).focus(); }
  }
  function fitViewport() { // keep the composer above the on-screen keyboard on phones
    var vv = window.visualViewport, small = window.innerWidth < 480;
    if (modal()) panel.setAttribute('aria-modal', 'true'); else panel.removeAttribute('aria-modal');
    panel.style.height = small && vv ? vv.height + 'px' : '';
    panel.style.top = small && vv ? vv.offsetTop + 'px' : '';
  }
  function grow() { input.style.height = 'auto'; input.style.height = Math.min(input.scrollHeight + 2, 120) + 'px'; }

  function langs() { return ((cfg && cfg.languages) || []).filter(function (l) { return T[l]; }); }
  function nextLang() { var ls = langs(); return ls.length > 1 ? ls[(ls.indexOf(lang || DEF) + 1) % ls.length] : null; }
  function switchLang() { // remembered for this visit (the tab), not beyond
    var next = nextLang();
    if (!next) return;
    lang = next;
    try { sessionStorage.setItem(LKEY, lang); } catch (e) { /* storage off: this page only */ }
    if (st) { // the desk's own words to the visitor follow too (best effort: the widget's change stands)
      st.language = lang; persist();
      api('POST', sp('/language'), { language: lang }).then(null, function () {});
    }
    applyTexts(); hereSay();
    faqDone = false; // the quick answers come again in the new language
    if (!st && cfg) showForm(null, !form.hidden);
    showVerify();
    langBtn.focus();
  }
  function applyTexts() {
    panel.setAttribute('lang', lang || DEF);
    var next = nextLang();
    langBtn.hidden = !next;
    if (next) { langBtn.textContent = next.toUpperCase(); langBtn.setAttribute('lang', next); langBtn.setAttribute('aria-label', T[next].langName); }
    root.querySelectorAll('[data-t]').forEach(function (e) { e.textContent = t(e.getAttribute('data-t')) + (e.hasAttribute('data-req') ? ' *' : ''); });
    root.querySelectorAll('[data-tl]').forEach(function (e) { e.setAttribute('aria-label', t(e.getAttribute('data-tl'))); });
    root.querySelectorAll('[data-tp]').forEach(function (e) { e.setAttribute('placeholder', t(e.getAttribute('data-tp'))); });
    title.textContent = (cfg && cfg.desk_name) || (st && st.desk_name) || t('title');
    launcher.setAttribute('aria-label', t('launch') + (unread ? ' (' + t('unread', unread) + ')' : ''));
    stars.forEach(function (b, i) { b.setAttribute('aria-label', T[lang || DEF].r[i]); });
    showPrivacy(); if (!erBox.querySelector('[data-refdesk=erase-confirm]')) askErase(false);
    paintStars();
    if (cfg) fillTopics();
    showPrivacy(); showQueue(); showTyping();
  }
  function showPrivacy() { // before the first message: what is kept, for how long, and the library's notice
    var p = cfg && cfg.privacy || {}, d = p.retention_days, n = p.notice && (p.notice[lang] || p.notice[DEF]);
    pvEl.textContent = (n || t('privacy')) + ' ' + (d ? t('kept', d) : t('keptAlways')) + ' ';
    if (p.link) pvEl.appendChild(h('a', { href: p.link, target: '_blank', rel: 'noopener noreferrer', text: t('policy') }));
  }
  function fillTopics() {
    var cur = topicSel.value;
    topicSel.textContent = '';
    (cfg.topics || []).forEach(function (tp) {
      var lb = tp.label, text = typeof lb === 'string' ? lb : lb && (lb[lang] || lb[DEF] || lb[Object.keys(lb)[0]]);
      topicSel.appendChild(h('option', { value: tp.id, text: text || tp.id }));
    });
    if (cur) topicSel.value = cur;
    form.querySelector('[data-f=member_number]').hidden = !!cfg.fields && cfg.fields.member_number === false;
    var max = cfg.max_message_length || 4000;
    input.maxLength = max; form.elements.question.maxLength = max;
    showHours();
  }
  function shut() { var x = !st && cfg && cfg.hours; return x && x.live === false ? x : null; } // closed, or nobody on duty
  function hideDesk() { var x = shut(); return !!x && x.when_closed === 'hide'; }
  function showHours() { // closed: a notice with the hours, and the form leaves a message for an answer by email
    var x = shut(), L = lang || DEF, q = form.elements.question, ql = q.parentNode.firstChild, sb = form.querySelector('[data-refdesk=start]');
    closedEl.textContent = ''; closedEl.hidden = !x;
    form.classList.toggle('hz', hideDesk());
    form.querySelector('.in').hidden = !!x;
    q.required = !!x; ql.textContent = t('question') + (x ? ' *' : '');
    sb.setAttribute('data-t', x ? 'sendMsg' : 'start'); sb.textContent = t(x ? 'sendMsg' : 'start');
    if (!x) return;
    var nx = x.next_open_text && (x.next_open_text[L] || x.next_open_text[DEF]), lb = /^(holiday|closure|special_closed)$/.test(x.reason) && (x.labels && x.labels[L] || x.label),
      wk = x.week && (x.week[L] || x.week[DEF]) || [];
    closedEl.appendChild(h('p', { text: (x.open ? t('nobody') : t('shut') + (lb ? ' (' + lb + ')' : '') + '.' + (nx ? ' ' + t('reopen', nx) : '')) + (x.when_closed === 'hide' ? '' : ' ' + t('leave')) }));
    if (wk.length) closedEl.appendChild(h('p', { text: t('hours') }));
    if (wk.length) closedEl.appendChild(h('ul', {}, wk.map(function (l) { return h('li', { text: l }); })));
  }

  function setOpen(open, user) {
    isOpen = open;
    if (open && invite) dropInvite();
    panel.hidden = !open;
    fitViewport();
    root.classList.toggle('o', open);
    launcher.setAttribute('aria-expanded', String(open));
    launcher.replaceChild(icon(open), launcher.firstChild);
    sset(OKEY, open ? '1' : '0'); // this visit only: localStorage holds nothing but the chat
    if (open) {
      unread = 0; updateBadge();
      if (!st && form.hidden && faqBox.hidden) showForm();
      else scrollDown(true);
      freshen();
      seen();
      if (user) focusView();
    } else if (user) launcher.focus();
  }
  function focusView() {
    var wide = window.innerWidth >= 480;
    if (!st) { if (wide && !faqBox.hidden) faqIn.focus(); else if (wide && cfg && !form.hidden && !hideDesk()) form.elements.name.focus(); else title.focus(); }
    else if (wide && !closed) input.focus();
    else title.focus();
  }
  function updateBadge() {
    badge.hidden = !unread; badge.textContent = unread > 9 ? '9+' : unread;
    launcher.setAttribute('aria-label', t('launch') + (unread ? ' (' + t('unread', unread) + ')' : ''));
  }
  var statusTimer;
  function setStatus(key) { // key null = connected
    clearTimeout(statusTimer);
    if (!key) { statusEl.hidden = true; return; }
    statusTimer = setTimeout(function () { statusEl.textContent = t(key); statusEl.hidden = false; }, key === 'conn' ? 700 : 0);
  }

  /* ---------- HTTP ---------- */
  function api(method, path, body, secs, ctl, raw) {
    ctl = ctl || (window.AbortController ? new AbortController() : null);
    var tm = ctl && setTimeout(function () { ctl.abort(); }, (secs || 20) * 1000);
    var hd = { Accept: 'application/json' };
    if (body) hd['Content-Type'] = 'application/json';
    if (st && path.indexOf('/api/sessions/') === 0) hd.Authorization = 'Bearer ' + st.token;
    return fetch(API + path, { method: method, headers: hd, body: body ? JSON.stringify(body) : undefined, credentials: 'omit', cache: 'no-store', signal: ctl ? ctl.signal : undefined })
      .then(function (r) {
        if (raw) { clearTimeout(tm); return r; }
        return r.json().catch(function () { return {}; }).then(function (d) { clearTimeout(tm); return { s: r.status, d: d || {} }; });
      }, function (e) { clearTimeout(tm); throw e; });
  }
  function sp(p) { return '/api/sessions/' + encodeURIComponent(st.session_id) + (p || ''); }
  function authFail(s) { return s === 401 || s === 403 || s === 404; }

  /* ---------- pre-chat form ---------- */
  var cfgLoading, cfgAt = 0, WKEY = KEY + ':hide';
  function loadConfig(fresh) {
    if (cfg && !fresh) return Promise.resolve(cfg);
    if (!cfgLoading) {
      cfgLoading = api('GET', '/api/config').then(function (r) {
        cfgLoading = null;
        if (r.s !== 200) throw new Error('config');
        cfg = r.d; cfgAt = Date.now(); trMail.hidden = cfg.transcript_email === false;
        sset(WKEY, cfg.hours && cfg.hours.when_closed === 'hide' ? '1' : ''); // next page of the visit: ask before showing the launcher
        if (st && !st.desk_name) { st.desk_name = cfg.desk_name; persist(); }
        if (!lang || (cfg.languages && cfg.languages.indexOf(lang) < 0)) lang = T[cfg.default_language] ? cfg.default_language : DEF;
        applyTexts();
        return cfg;
      }, function (e) { cfgLoading = null; throw e; });
    }
    return cfgLoading;
  }
  function freshen() { // the hours move on: a config older than two minutes is asked again when the start screen shows
    if (st || !cfg || Date.now() - cfgAt < 12e4) return;
    var was = hideDesk();
    loadConfig(1).then(function () { if (!st && hideDesk() !== was) showForm(); }, function () {});
  }
  var noteNext = '';
  function showForm(note, direct) { // the start screen: quick answers first when the desk has them (direct: the form)
    var n = note || noteNext;
    noteNext = '';
    chat.hidden = true; endBtn.hidden = true; qsEl.hidden = true; offEl.hidden = true; setStatus(null);
    if (!cfg) {
      faqBox.hidden = true; form.hidden = true; setStatus('conn');
      loadConfig().then(function () { if (!st) { showForm(n, direct); if (isOpen) focusView(); } },
        function () { if (!st) { setStatus(null); form.hidden = false; showFormErr(t('e_net')); } });
      return;
    }
    var faq = !!cfg.faq && !direct && !hideDesk();
    faqBox.hidden = !faq; form.hidden = faq; backBtn.hidden = !cfg.faq || hideDesk();
    showFormErr(faq ? '' : n); faqNote.textContent = n; faqNote.hidden = !faq || !n;
    if (faq && !faqDone) faqSearch();
  }

  /* ---------- quick answers ---------- */
  var faqT, faqN = 0, faqDone = false;
  function faqType() { clearTimeout(faqT); faqT = setTimeout(faqSearch, 250); }
  function faqSearch() { // the top entries for an empty query
    var n = ++faqN, L = cfg && cfg.languages && cfg.languages.indexOf(lang) < 0 ? '' : '&language=' + (lang || DEF);
    faqDone = true;
    api('GET', '/api/faq?q=' + encodeURIComponent(faqIn.value.trim().slice(0, 200)) + L).then(function (r) {
      if (n !== faqN) return;
      if (r.s !== 200) { faqDone = false; return; }
      var e = r.d.entries || [];
      faqList.textContent = '';
      e.forEach(function (x, i) {
        var id = 'rd-fa' + n + '-' + i, a = h('div', { class: 'fa', id: id, 'data-refdesk': 'faq-answer', hidden: true }),
          b = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': id, onclick: function () { a.hidden = !a.hidden; b.setAttribute('aria-expanded', String(!a.hidden)); } }, [h('span', { text: x.question || '' }), icon(true)]);
        fillText(a, String(x.answer || ''));
        faqList.appendChild(h('li', { class: 'fi', 'data-refdesk': 'faq-item', 'data-key': x.key }, [b, a]));
      });
      faqNo.hidden = !!e.length;
    }, function () { if (n === faqN) faqDone = false; });
  }
  function showFormErr(msg) { formErr.textContent = msg; formErr.hidden = !msg; }
  function fieldError(name, msg, f) {
    f = f || form;
    var el = f.querySelector('[data-refdesk=field-error][data-field="' + name + '"]'), inp = f.elements[name];
    if (!el) return false;
    el.textContent = msg; el.hidden = !msg;
    (inp && inp.tagName ? [inp] : [].slice.call(f.querySelectorAll('[id^="rd-v-' + name + '-"]'))).forEach(function (x) {
      if (msg) x.setAttribute('aria-invalid', 'true'); else x.removeAttribute('aria-invalid');
    });
    return true;
  }
  function serverProblem(p, strict) {
    p = String(p || '');
    var m = /at most (\d+)/.exec(p);
    return p === 'required' ? t('e_req') : /email/.test(p) ? t('e_email') : m ? t('e_long', m[1]) : /topic/.test(p) ? t('e_topic')
      : /date/.test(p) ? t('e_date') : /phone/.test(p) ? t('e_phone') : !strict && p || t('e_bad');
  }
  var busy = false;
  function submitForm(e) {
    e.preventDefault();
    if (busy) return;
    showFormErr('');
    ['name', 'email', 'member_number', 'topic', 'question'].forEach(function (n) { fieldError(n, ''); });
    if (!cfg) { showForm(); return; }
    if (!form.checkValidity()) { var bad = form.querySelector(':invalid'); if (bad) bad.focus(); return; }
    var F = form.elements, btn = form.querySelector('[data-refdesk=start]');
    var body = { name: F.name.value.trim(), email: F.email.value.trim(), member_number: F.member_number.value.trim() || null, topic: F.topic.value, page_url: location.href.slice(0, 2000) };
    if (!cfg.languages || cfg.languages.indexOf(lang) >= 0) body.language = lang;
    if (offerTok) body.invitation = offerTok;
    busy = true; btn.disabled = true;
    api('POST', '/api/sessions', body).then(function (r) {
      if ((r.s === 201 || r.s === 200) && r.d.session && r.d.token) {
        st = { session_id: r.d.session.id, token: r.d.token, cursor: 0, language: lang, desk_name: cfg.desk_name, max: cfg.max_message_length, outbox: [] };
        offerTok = null;
        persist();
        var q = F.question.value.trim();
        form.reset();
        startChat(r.d.session, 0);
        if (q) queue(q);
        if (window.innerWidth >= 480) input.focus(); else title.focus();
      } else if (r.s === 422 && r.d.fields) {
        var first = null, rest = [];
        Object.keys(r.d.fields).forEach(function (k) {
          if (fieldError(k, serverProblem(r.d.fields[k]))) first = first || form.elements[k];
          else rest.push(k + ': ' + r.d.fields[k]);
        });
        if (rest.length) showFormErr(rest.join('; '));
        if (first) first.focus();
      } else showFormErr(t(r.s === 429 ? 'e_busy' : 'e_gen'));
    }, function () { showFormErr(t('e_net')); }).then(function () { busy = false; btn.disabled = false; });
  }

  /* ---------- conversation ---------- */
  var byId = {}, byCid = {}, seenCursor = 0, sess = null, maxLib = 0;
  function reset() {
    list.textContent = ''; byId = {}; byCid = {}; sess = null; maxLib = 0; fbN = 0; fbLive = false;
    endCard.firstChild.hidden = false; erasedEl.hidden = true; askErase(false);
    cmtBox.firstChild.value = ''; trStat.textContent = ''; trMail.hidden = !!cfg && cfg.transcript_email === false; // not offered where the desk sends no email
    showQueue(); showTyping(); showVerify(); paintStars();
  }
  function startChat(session, since, later) {
    notHere();
    form.hidden = true; chat.hidden = false; endBtn.hidden = false; confirmBar.hidden = true;
    closed = false; endBar.hidden = endCard.hidden = true; composer.hidden = false;
    reset();
    if (st.max) input.maxLength = st.max;
    seenCursor = since; first = true; fails = 0; delay = 1000; pollView = null;
    mode = Date.now() - (st.poll || 0) < 36e5 ? 'poll' : 'ws'; // WebSocket failed here recently: skip it
    applyTexts();
    st.outbox.forEach(function (o) { render({ origin: 'visitor', body: o.body, client_id: o.client_id, created_at: o.at }, 'sending'); });
    if (session) onSession(session);
    if (!closed && !later) connect();
  }
  // Times as the library keeps them (its room, the transcript): in the desk's time zone, named
  // when the visitor's browser is in another one ("03.35 WIB"); plain when they agree.
  function fmtTime(iso) {
    var d = new Date(iso || Date.now());
    if (isNaN(d)) d = new Date();
    var nl = navigator.language || '', loc = code(nl) === (lang || DEF) ? nl : T[lang || DEF].locale,
      tz = cfg && cfg.timezone, day = { day: 'numeric', month: 'short' }, at = { hour: 'numeric', minute: '2-digit' };
    try {
      if (tz && zoneDiffers(d, tz)) { day.timeZone = at.timeZone = tz; at.timeZoneName = 'short'; }
      var s = d.toLocaleTimeString(loc, at), today = new Date().toLocaleDateString('en-CA', { timeZone: day.timeZone });
      return d.toLocaleDateString('en-CA', { timeZone: day.timeZone }) === today ? s : d.toLocaleDateString(loc, day) + ' ' + s;
    } catch (e) { return d.toTimeString().slice(0, 5); }
  }
  function deskDay(iso) { // YYYY-MM-DD as the library counts days
    try { return new Date(iso).toLocaleDateString('en-CA', { timeZone: cfg && cfg.timezone || undefined }); } catch (e) { return String(iso || '').slice(0, 10); }
  }
  function zoneDiffers(d, tz) {
    var o = { hour: 'numeric', minute: 'numeric', day: 'numeric', hourCycle: 'h23' };
    return d.toLocaleString('en-US', o) !== d.toLocaleString('en-US', Object.assign({ timeZone: tz }, o));
  }
  var URL_RE = /\bhttps?:\/\/[^\s<>"]+/gi;
  function fillText(el, text) { // text nodes + safe <a>: never HTML
    var i = 0, m;
    URL_RE.lastIndex = 0;
    while ((m = URL_RE.exec(text))) {
      var u = m[0];
      while (/[.,;:!?'")\]}*]$/.test(u)) {
        var c = u.slice(-1);
        if (c === ')' && u.split('(').length > u.split(')').length - 1) break;
        u = u.slice(0, -1);
      }
      var ok = false;
      try { ok = /^https?:$/.test(new URL(u).protocol); } catch (e) { /* not a url */ }
      if (!ok) continue;
      if (m.index > i) el.appendChild(document.createTextNode(text.slice(i, m.index)));
      el.appendChild(h('a', { href: u, target: '_blank', rel: 'noopener noreferrer nofollow', text: u }));
      i = m.index + u.length;
      URL_RE.lastIndex = i;
    }
    if (i < text.length) el.appendChild(document.createTextNode(text.slice(i)));
  }
  var OK = /^(b|strong|i|em|u|s|del|code|pre|blockquote|p|br|ul|ol|li|a|h[1-6])$/,
    DROP = /^(script|style|template|noscript|iframe|frame|object|embed|svg|math|head|title|textarea|select|button|mx-reply)$/,
    BLOCK = /^(div|hr|tr|dt|dd|table|section|article|header|footer|figure|details|summary|address)$/;
  function safeUrl(s) {
    try { var u = new URL(String(s || '').trim()); return /^(https?|mailto):$/.test(u.protocol) ? u.href : null; } catch (e) { return null; }
  }
  function copyHtml(src, dst, depth, inA) { // rebuild the server's HTML from allowed elements only: no attribute but a safe href survives
    for (var n = src.firstChild; n; n = n.nextSibling) {
      if (n.nodeType === 3) { if (inA) dst.appendChild(document.createTextNode(n.data)); else fillText(dst, n.data); }
      if (n.nodeType !== 1) continue;
      var tag = n.localName, out = dst, u = tag === 'a' && !inA && safeUrl(n.getAttribute('href'));
      if (DROP.test(tag)) continue;
      if (depth < 40 && OK.test(tag) && (tag !== 'a' || u)) {
        out = dst.appendChild(document.createElement(tag[0] === 'h' ? 'strong' : tag));
        if (tag[0] === 'h') out.className = 'hx';
        if (u) { out.href = u; out.target = '_blank'; out.rel = 'noopener noreferrer'; }
      }
      copyHtml(n, out, depth + 1, inA || !!u);
      if (out === dst && BLOCK.test(tag) && dst.lastChild && dst.lastChild.nodeName !== 'BR') dst.appendChild(document.createElement('br')); // unwrapped blocks keep a line break
    }
  }
  function fill(el, m) { // (re)draw a bubble's content: first render, edits, deletions
    var b = el._b, ed = el._ed, f = document.createDocumentFragment(), rich = false;
    el._seq = +(m.seq != null ? m.seq : m.id) || 0;
    b.textContent = ''; b.removeAttribute('data-t');
    if (m.deleted) { el.setAttribute('data-deleted', 'true'); b.setAttribute('data-t', 'deleted'); b.textContent = t('deleted'); }
    else {
      el.removeAttribute('data-deleted');
      if (m.html) try { copyHtml(new DOMParser().parseFromString(String(m.html), 'text/html').body, f, 0, false); rich = true; } catch (e) { /* e.g. Trusted Types page: plain body */ }
      var a = m.attachment, txt = a && m.body === a.name ? '' : m.body; // a file's name alone is no caption
      if (a) b.appendChild(fileBlock(a));
      if (rich) b.appendChild(f); else fillText(b, String(txt == null ? '' : txt));
    }
    b.className = rich ? 'b hm' : 'b';
    if (m.edited_at && !m.deleted) {
      if (!ed) ed = el._ed = h('span', { class: 'em', 'data-refdesk': 'edited', 'data-t': 'edited' });
      ed.textContent = t('edited'); el._mt.insertBefore(ed, el._st);
    } else if (ed) ed.remove();
    el._m = m; ownActions(el);
  }
  /* ---------- files ---------- */
  function kb(n) { return n < 1048576 ? Math.max(1, Math.round(n / 1024)) + ' KB' : (n / 1048576).toFixed(1) + ' MB'; }
  function authed(url) { // the chat's files need the token: fetched, then shown from a blob
    return fetch(API + url, { headers: { Authorization: 'Bearer ' + (st && st.token) }, credentials: 'omit', cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('file'); return r.blob(); });
  }
  function fileBlock(a) {
    if (/^image\//.test(a.mimetype)) {
      var img = h('img', a.width ? { alt: a.name, 'data-refdesk': 'attachment-image', class: 'ai', width: a.width, height: a.height } : { alt: a.name, 'data-refdesk': 'attachment-image', class: 'ai' });
      var btn = h('button', { type: 'button', class: 'ib', 'aria-label': t('imgO', a.name), onclick: function () { openImage(a, btn); } }, [img]);
      if (a.local) img.src = a.local;
      else authed(a.url + (a.width > 800 || a.height > 800 ? '?thumbnail=1' : '')).then(function (b) { img.src = URL.createObjectURL(b); }, function () { img.alt = a.name + ' (' + t('e_net') + ')'; });
      return h('span', { class: 'af' }, [btn, document.createElement('br')]);
    }
    return h('span', { class: 'af' }, [h('button', { type: 'button', class: 'fl', 'data-refdesk': 'attachment-file', text: a.name + ' \u00b7 ' + kb(a.size),
      'aria-label': t('dl') + ' ' + a.name + ' (' + kb(a.size) + ')', onclick: function () { if (a.url) authed(a.url).then(function (b) { save2(b, a.name); }, function () { live.textContent = t('e_net'); }); } }), document.createElement('br')]);
  }
  function save2(blob, name) { var u = URL.createObjectURL(blob), l = h('a', { href: u, download: name }); root.appendChild(l); l.click(); l.remove(); setTimeout(function () { URL.revokeObjectURL(u); }, 60000); }
  function openImage(a, from) { // the picture, large, in a dialog of its own; Escape or the button closes it
    var big = h('img', { alt: a.name, 'data-refdesk': 'viewer-image' }), x;
    viewer = h('div', { class: 'iv2', role: 'dialog', 'aria-modal': 'true', 'aria-label': a.name, 'data-refdesk': 'viewer' }, [
      x = h('button', { type: 'button', class: 'sc2', 'data-refdesk': 'viewer-close', text: t('close'), onclick: close }), big]);
    function close() { if (viewer) { viewer.remove(); viewer = null; from.focus(); } }
    viewer.addEventListener('keydown', function (e) { if (e.key === 'Escape') { e.stopPropagation(); close(); } else if (e.key === 'Tab') { e.preventDefault(); x.focus(); } });
    panel.appendChild(viewer); x.focus();
    if (a.local) big.src = a.local; else authed(a.url).then(function (b) { big.src = URL.createObjectURL(b); }, close);
  }
  function pick(file) { // chosen, pasted or dropped: a large photo is made smaller first, then shown before it is sent
    if (!st || closed || editing) return;
    var max = (cfg && cfg.attachments && cfg.attachments.max_size) || 10485760;
    shrink(file).then(function (b) {
      if (b.size > max) return showPick(null, t('e_big', Math.round(max / 1048576)));
      pending = { blob: b, name: file.name || 'screenshot.png', url: /^image\//.test(b.type) ? URL.createObjectURL(b) : null };
      showPick(pending);
    });
  }
  function shrink(file) { // phones take 4,000-pixel photos: 2,048 keeps them readable at a fraction of the bytes
    if (!/^image\/(jpeg|png|webp)$/.test(file.type) || !window.createImageBitmap || file.size < 1572864) return Promise.resolve(file);
    return createImageBitmap(file, { imageOrientation: 'from-image' }).then(function (bm) {
      var k = Math.min(1, 2048 / Math.max(bm.width, bm.height)), c = document.createElement('canvas');
      c.width = Math.round(bm.width * k); c.height = Math.round(bm.height * k);
      c.getContext('2d').drawImage(bm, 0, 0, c.width, c.height);
      return new Promise(function (ok) { c.toBlob(function (b) { ok(b && b.size < file.size ? b : file); }, file.type === 'image/png' ? 'image/png' : 'image/jpeg', 0.85); });
    }, function () { return file; });
  }
  function showPick(p, err) {
    pvBar.textContent = ''; pvBar.hidden = !p && !err;
    if (err) { pvBar.appendChild(h('span', { class: 'fe', text: err })); pending = null; return; }
    if (!p) return;
    if (p.url) pvBar.appendChild(h('img', { src: p.url, alt: '', class: 'pt' }));
    pvBar.appendChild(h('span', { class: 'pn', 'data-refdesk': 'attachment-name', text: p.name + ' \u00b7 ' + kb(p.blob.size) }));
    pvBar.appendChild(h('button', { type: 'button', class: 'lk', 'data-refdesk': 'attachment-remove', 'aria-label': t('attRm'), text: '\u00d7', onclick: function () { pending = null; showPick(null); input.focus(); } }));
    input.focus();
  }
  // A file on its way is kept in IndexedDB until the desk has it, so a reload in the middle sends
  // it again (same client_id: stored once); nothing stays there after that, or after the chat.
  var UDB = 'refdesk-uploads:' + API;
  function udb(mode, fn) {
    return new Promise(function (ok) {
      var r; try { r = indexedDB.open(UDB, 1); } catch (e) { return ok(null); }
      r.onupgradeneeded = function () { r.result.createObjectStore('f', { keyPath: 'cid' }); };
      r.onerror = function () { ok(null); };
      r.onsuccess = function () {
        var db = r.result, tx = db.transaction('f', mode), q = fn(tx.objectStore('f'));
        tx.oncomplete = function () { db.close(); ok(q && q.result); };
        tx.onerror = tx.onabort = function () { db.close(); ok(null); };
      };
    });
  }
  function upDone(cid) { udb('readwrite', function (o) { return o.delete(cid); }).then(function () { return udb('readonly', function (o) { return o.count(); }); }).then(function (n) { if (!n) upClear(); }); }
  function upClear() { try { indexedDB.deleteDatabase(UDB); } catch (e) { /* none */ } }
  function upResume() { // after a reload: the files that were still on their way
    if (!window.indexedDB) return;
    var sid = st.session_id, any = indexedDB.databases ? indexedDB.databases().then(function (l) { return l.some(function (d) { return d.name === UDB; }); }, function () { return true; }) : Promise.resolve(true);
    any.then(function (has) { return has && udb('readonly', function (o) { return o.getAll(); }); }).then(function (all) {
      if (all && !all.length) upClear(); // opened to look: nothing was waiting
      (all || []).forEach(function (x) {
        if (x.sid !== sid) return upDone(x.cid);
        sendFile({ blob: x.blob, name: x.name, url: /^image\//.test(x.blob.type) ? URL.createObjectURL(x.blob) : null }, x.caption, null, 0, x.cid);
      });
    });
  }
  function sendFile(p, caption, el, tries, cid0) { // one upload, retried with the same client_id: stored once, however often it is sent
    var cid = el ? el._cid : cid0 || uuid();
    if (!cid0 && !el) udb('readwrite', function (o) { return o.put({ cid: cid, sid: st.session_id, blob: p.blob, name: p.name, caption: caption }); });
    if (!el) { pending = null; showPick(null); el = render({ origin: 'visitor', body: caption || p.name, client_id: cid, created_at: new Date().toISOString(), attachment: { name: p.name, mimetype: p.blob.type, size: p.blob.size, local: p.url } }, 'sending'); }
    var x = new XMLHttpRequest(), q = '?client_id=' + cid + '&filename=' + encodeURIComponent(p.name) + (caption ? '&caption=' + encodeURIComponent(caption) : '');
    x.open('POST', API + sp('/attachments') + q);
    x.setRequestHeader('Authorization', 'Bearer ' + st.token);
    x.upload.onprogress = function (e) { if (e.lengthComputable) el._st.textContent = t('upl', Math.round(e.loaded * 100 / e.total) + '%'); };
    x.onload = function () {
      var d = {}; try { d = JSON.parse(x.responseText); } catch (e) { /* not JSON */ }
      if (x.status === 200 || x.status === 201) { upDone(cid); return acked(cid, d.message); }
      if (authFail(x.status)) return expire();
      if (x.status >= 500 || x.status === 429) return again();
      upDone(cid); mark(el, 'failed'); el._st.textContent = t(d.error === 'attachment_too_large' ? 'e_big' : d.error === 'attachment_unreadable' ? 'e_read' : d.error === 'session_closed' ? 'failed' : 'e_type', Math.round(((cfg && cfg.attachments && cfg.attachments.max_size) || 10485760) / 1048576));
    };
    x.onerror = again;
    function again() { if ((tries || 0) < 5) setTimeout(function () { if (st) sendFile(p, caption, el, (tries || 0) + 1); }, 2000 * ((tries || 0) + 1)); else mark(el, 'failed'); }
    x.send(p.blob);
  }
  function render(m, status) {
    var o = m.origin === 'librarian' || m.origin === 'desk' ? m.origin : 'visitor';
    var el = h('div', { class: 'm ' + o, 'data-refdesk': 'message', 'data-origin': o });
    if (o === 'librarian') el.appendChild(h('div', { class: 'wh', 'data-refdesk': 'sender', text: m.sender_name || t('lib') }));
    if (o === 'visitor') el.appendChild(h('span', { class: 'sr', text: t('you') + ': ' }));
    el._b = el.appendChild(h('div', { class: 'b', 'data-refdesk': 'body' }));
    el._st = h('span');
    el._mt = el.appendChild(h('div', { class: 'mt' }, [h('time', { datetime: m.created_at || '', text: fmtTime(m.created_at) }), el._st]));
    fill(el, m);
    if (m.client_id) { el._cid = m.client_id; byCid[m.client_id] = el; }
    var stick = o === 'visitor' || nearBottom();
    if (m.id != null) setId(el, m.id); else list.appendChild(el);
    if (o === 'librarian' && m.id > maxLib) { maxLib = m.id; seen(); }
    mark(el, status);
    scrollDown(stick);
    return el;
  }
  // The visitor's own message, while the desk's edit window lasts: edit it, or delete it.
  function ownActions(el) {
    var m = el._m, win = cfg && cfg.edit_window || 0;
    if (el._ma) { el._ma.remove(); el._ma = null; }
    if (!m || m.origin !== 'visitor' || m.deleted || el._id == null || closed || !win || Date.now() - new Date(m.created_at) > win * 1000) return;
    el._ma = el._mt.appendChild(h('span', { class: 'ma' }, [
      m.attachment ? '' : h('button', { type: 'button', 'data-refdesk': 'edit', 'data-t': 'editB', text: t('editB'), onclick: function () { startEdit(el); } }),
      h('button', { type: 'button', 'data-refdesk': 'delete', 'data-t': 'delB', text: t('delB'), onclick: function () { askDelete(el); } })]));
  }
  function startEdit(el) {
    editing = el; editErr.textContent = ''; editBar.hidden = false;
    input.value = el._m.body; grow(); sendBtn.setAttribute('data-t', 'save'); sendBtn.textContent = t('save');
    input.focus();
  }
  function stopEdit(keep) {
    var el = editing;
    editing = null; editBar.hidden = true; sendBtn.setAttribute('data-t', 'send'); sendBtn.textContent = t('send');
    if (!keep) { input.value = ''; grow(); }
    if (el && el._ma) el._ma.firstChild.focus(); else input.focus();
  }
  function changeFailed(el, r) { // the edit or deletion was refused: say why; the buttons go if it is too late
    var code = r && r.d && r.d.error, late = /^(edit_window_passed|message_deleted|session_closed)$/.test(code);
    if (late && el._ma) { el._ma.remove(); el._ma = null; }
    return late ? t('e_old') : r ? t('e_gen') : t('e_net');
  }
  function saveEdit(body) {
    var el = editing;
    if (!body || body === el._m.body) return stopEdit();
    api('PATCH', sp('/messages/' + el._id), { body: body }).then(function (r) {
      if (r.s === 200) { if (editing === el) stopEdit(); onMessage(r.d.message); }
      else editErr.textContent = ' \u00b7 ' + changeFailed(el, r);
    }, function () { editErr.textContent = ' \u00b7 ' + changeFailed(el, null); });
  }
  function askDelete(el) { // asked in place: "Delete this message? Yes / No"
    var ma = el._ma, no;
    if (!ma) return;
    ma.textContent = '';
    ma.appendChild(h('span', { text: t('delQ') + ' ' }));
    ma.appendChild(h('button', { type: 'button', 'data-refdesk': 'delete-confirm', text: t('delY'), onclick: function () {
      api('DELETE', sp('/messages/' + el._id)).then(function (r) {
        if (r.s === 200) { if (editing === el) stopEdit(); onMessage(r.d.message); input.focus(); }
        else { ownActions(el); live.textContent = changeFailed(el, r); }
      }, function () { ownActions(el); live.textContent = changeFailed(el, null); });
    } }));
    no = ma.appendChild(h('button', { type: 'button', 'data-refdesk': 'delete-cancel', text: t('no'), onclick: function () { ownActions(el); if (el._ma) el._ma.lastChild.focus(); } }));
    no.focus();
  }
  function nearBottom() { return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80; }
  function mark(el, status) {
    el._st.textContent = status === 'sending' ? t('sending') : status ? t(status) : '';
    el.classList.toggle('x', status === 'failed' || status === 'tooLong');
  }
  function setId(el, id) {
    if (el._id != null) return;
    el._id = id; byId[id] = el; el.setAttribute('data-id', id);
    var n = list.lastElementChild; // keep id order; pending (no id) ones stay last
    while (n && (n === el || n._id == null || n._id > id)) n = n.previousElementSibling;
    list.insertBefore(el, n ? n.nextElementSibling : list.firstElementChild);
    showRead();
  }
  function scrollDown(yes) { if (yes) scroller.scrollTop = scroller.scrollHeight; }
  function dropOutbox(cid) {
    if (!st) return;
    var n = st.outbox.length;
    st.outbox = st.outbox.filter(function (o) { return o.client_id !== cid; });
    if (n !== st.outbox.length) persist();
  }
  function acked(cid, m) { // our own message is stored
    dropOutbox(cid);
    var el = byCid[cid];
    if (!el) return m && !byId[m.id] ? render(m) : null;
    if (m && m.id != null) { if (byId[m.id] && byId[m.id] !== el) { byId[m.id].remove(); } setId(el, m.id); el._seq = Math.max(el._seq, +m.seq || 0); el._m = m; ownActions(el); }
    mark(el, '');
  }
  function onMessage(m) { // from the stream: the only thing that moves the cursor (a seq; ids only order the bubbles)
    if (!m || m.id == null) return;
    var seq = +(m.seq != null ? m.seq : m.id) || 0, old = byId[m.id];
    if (seq > st.cursor) { st.cursor = seq; persist(); }
    if (old) { // the same message again: an edit or a deletion replaces it in place
      if (seq > old._seq) { var stick = nearBottom(); fill(old, m); scrollDown(stick); }
      return;
    }
    if (m.client_id && byCid[m.client_id]) return acked(m.client_id, m);
    render(m);
    if (m.origin !== 'visitor' && seq > seenCursor && !m.deleted) {
      live.textContent = m.origin === 'librarian' ? t('from', m.sender_name || t('lib')) + ': ' + m.body : m.body;
      if (!isOpen) { unread++; updateBadge(); }
    }
  }
  function onSession(s) {
    if (!s) return;
    sess = s;
    if (s.state === 'closed' && !closed) {
      closed = true; stop();
      composer.hidden = true; confirmBar.hidden = true; endBtn.hidden = true; endBar.hidden = endCard.hidden = false; setStatus(null);
      if (editing) stopEdit(true);
      list.querySelectorAll('.ma').forEach(function (e) { e.remove(); }); // nothing to edit in an ended chat
      if (st) { st.outbox.forEach(function (o) { var el = byCid[o.client_id]; if (el) mark(el, 'failed'); }); st.outbox = []; save(KEY, null); upClear(); }
      showFeedback();
      scrollDown(true);
    }
    showQueue(); showTyping(); showRead(); showVerify();
  }
  function showQueue() { // the honest state under the header: waiting (and where in the queue), who serves, or left for email
    var s = st && !closed && sess, p = s && s.queue_position, x = '', o = '';
    if (s && s.status === 'claimed') x = t('helping', s.librarian && s.librarian.name || t('lib'));
    else if (s && s.offline) o = s.status !== 'new' ? t('offSent', s.visitor && s.visitor.email || '') : '';
    else if (s && (s.status === 'new' || s.status === 'waiting')) x = t('waiting') + (p ? ' ' + t('pos', p) : '');
    if (qsEl.textContent !== x) qsEl.textContent = x;
    if (offEl.textContent !== o) offEl.textContent = o;
    qsEl.hidden = !x || chat.hidden; offEl.hidden = !o || chat.hidden;
  }
  function showTyping() {
    var n = (!closed && sess && sess.librarian_typing || []).map(String), l = n.length, stick = nearBottom(),
      x = !l ? '' : l < 2 ? t('typing', n[0]) : t('typingN', n.slice(0, -1).join(', ') + ' ' + t('and') + ' ' + n[l - 1]);
    if (typEl.textContent !== x) { typEl.textContent = x; scrollDown(stick); }
  }
  function showRead() { // "Read" under the last visitor message the librarians have read
    var r = sess && +sess.read_up_to || 0;
    readEl.textContent = t('read');
    for (var n = list.lastElementChild; n; n = n.previousElementSibling) {
      if (n._id != null && n._id <= r && n.getAttribute('data-origin') === 'visitor') { if (readEl.parentNode !== n._mt) n._mt.appendChild(readEl); return; }
    }
    readEl.remove();
  }
  var typOn = false, typAt = 0, typT, readT;
  function typing(on) { // the visitor is typing: true at most every 3 s, false on send, blur or 5 s idle
    clearTimeout(typT);
    if (on) typT = setTimeout(typing, 5000, false);
    if (on === typOn && (!on || Date.now() - typAt < 3000)) return;
    typOn = false;
    if (!st || closed || !up) return;
    typOn = on; typAt = Date.now();
    if (mode === 'ws') wsSend({ type: 'typing', typing: on });
    else api('POST', sp('/typing'), { typing: on }).then(null, function () {});
  }
  function seen() { // tell the librarians what the visitor has seen (debounced)
    clearTimeout(readT);
    readT = setTimeout(function () {
      var n = maxLib;
      if (!st || closed || !up || !isOpen || document.visibilityState === 'hidden' || n <= (st.rd || 0)) return;
      if (mode === 'ws') { if (wsSend({ type: 'read', up_to: n })) { st.rd = n; persist(); } }
      else api('POST', sp('/read'), { up_to: n }).then(function (r) { if (r.s < 300 && st && n > (st.rd || 0)) { st.rd = n; persist(); } }, function () {});
    }, 800);
  }
  function queue(text) {
    var o = { client_id: uuid(), body: text, at: new Date().toISOString() };
    st.outbox.push(o); persist();
    render({ origin: 'visitor', body: text, client_id: o.client_id, created_at: o.at }, 'sending');
    flush();
  }
  function sendInput() {
    var v = input.value.trim();
    if (editing) return saveEdit(v);
    if (pending && st && !closed) { input.value = ''; grow(); typing(false); sendFile(pending, v); return input.focus(); }
    if (!v || !st || closed) return;
    input.value = ''; grow(); typing(false);
    queue(v);
    input.focus();
  }
  function sendError(cid, code) {
    var el = byCid[cid];
    if (code === 'too_many_requests' || code === 'internal_error') { setTimeout(function () { resendAll(); flush(); }, 5000); return; }
    dropOutbox(cid);
    if (el) mark(el, code === 'message_too_long' ? 'tooLong' : 'failed');
    if (code === 'session_closed') refreshSession();
  }
  function refreshSession() {
    api('GET', sp()).then(function (r) { if (r.s === 200) onSession(r.d.session); else if (authFail(r.s)) expire(); }, function () {});
  }
  function askEnd() { confirmBar.firstChild.textContent = t('endQ'); composer.hidden = true; confirmBar.hidden = false; confirmBar.querySelector('[data-refdesk=end-confirm]').focus(); }
  function doEnd() {
    var b = confirmBar.querySelector('[data-refdesk=end-confirm]'), q = confirmBar.firstChild;
    b.disabled = true;
    api('POST', sp('/end')).then(function (r) {
      if (r.s === 200) onSession(r.d.session); else if (authFail(r.s)) expire(); else q.textContent = t('e_gen');
    }, function () { q.textContent = t('e_net'); }).then(function () {
      b.disabled = false;
      if (closed) endBar.querySelector('[data-refdesk=new]').focus();
    });
  }
  /* ---------- membership check, feedback, transcript ---------- */
  var vKey = '', vBusy = false, fbN = 0, fbLive = false;
  function showVerify() { // the librarian asked: a small form in the conversation; what is typed is sent once and dropped
    var v = !closed && st && sess && sess.verification, s = v && v.state, stick = nearBottom(),
      f = (v && v.fields || []).filter(function (n) { return T.id['v_' + n]; });
    if (s === 'requested' && st.vx) { st.vx = 0; persist(); }
    if (!/^(requested|mismatch|not_found|unavailable)$/.test(s) || st.vx || !f.length) { vCard.hidden = true; vCard.textContent = ''; vKey = ''; return; }
    if (vKey === f.join() && vCard.lang === lang) return;
    vKey = f.join(); vCard.lang = lang || DEF; vCard.textContent = '';
    vCard.appendChild(h('h3', { id: 'rd-vt', 'data-t': 'vT', text: t('vT') }));
    vCard.appendChild(h('p', { class: 'nt', 'data-t': 'vNote', text: t('vNote') }));
    f.forEach(function (n) {
      var err = h('p', { class: 'fe', id: 'rd-ve-' + n, 'data-refdesk': 'field-error', 'data-field': n, hidden: true });
      if (n === 'date_of_birth') return vCard.appendChild(dateField(n, err));
      var el = h('input', { type: n === 'phone' ? 'tel' : 'text', name: n, id: 'rd-v-' + n, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'rd-ve-' + n, maxlength: n === 'phone' ? '24' : '40' });
      el.addEventListener('input', function () { fieldError(n, '', vCard); });
      vCard.appendChild(h('div', { class: 'f' }, [h('label', { for: 'rd-v-' + n, 'data-t': 'v_' + n, text: t('v_' + n) }), el, err]));
    });
    vCard.appendChild(h('button', { type: 'submit', class: 'pr', 'data-refdesk': 'verify-submit', 'data-t': 'vGo', text: t('vGo') }));
    vCard.appendChild(h('p', { role: 'status', 'data-refdesk': 'verify-result' }));
    vCard.hidden = false;
    scrollDown(stick);
  }
  // A date as day, month (by name, in the widget's language) and year: it reads the same in
  // every browser, unlike <input type=date>, which shows the browser's own format (mm/dd/yyyy).
  function dateField(n, err) {
    var fmt = new Intl.DateTimeFormat(T[lang || DEF].locale, { month: 'long', timeZone: 'UTC' }), months = [h('option', { value: '', text: '' })], part;
    for (var i = 1; i <= 12; i++) months.push(h('option', { value: String(i), text: fmt.format(new Date(Date.UTC(2000, i - 1, 1))) }));
    part = function (k, el) {
      el.id = 'rd-v-' + n + '-' + k; el.setAttribute('aria-describedby', 'rd-ve-' + n); el.dataset.part = k;
      el.addEventListener('input', function () { fieldError(n, '', vCard); });
      return h('div', { class: 'f dp-' + k }, [h('label', { for: el.id, 'data-t': 'v_' + k, text: t('v_' + k) }), el]);
    };
    return h('fieldset', { class: 'dt', 'data-refdesk': n, 'aria-describedby': 'rd-ve-' + n }, [
      h('legend', { 'data-t': 'v_' + n, text: t('v_' + n) }),
      h('div', { class: 'dr' }, [
        part('day', h('input', { type: 'text', name: n + '_day', inputmode: 'numeric', maxlength: '2', autocomplete: 'off' })),
        part('month', h('select', { name: n + '_month' }, months)),
        part('year', h('input', { type: 'text', name: n + '_year', inputmode: 'numeric', maxlength: '4', autocomplete: 'off' }))]),
      err]);
  }
  function dateValue(n) { // 'YYYY-MM-DD'; '' if left empty; null if it is no date (or not a past one)
    var el = vCard.elements, d = el[n + '_day'].value.trim(), m = el[n + '_month'].value, y = el[n + '_year'].value.trim();
    if (!d && !m && !y) return '';
    if (!/^\d{1,2}$/.test(d) || !m || !/^\d{4}$/.test(y)) return null;
    var at = new Date(Date.UTC(+y, +m - 1, +d));
    if (at.getUTCDate() !== +d || at.getUTCMonth() !== +m - 1 || +y < 1900 || at > new Date()) return null;
    return at.toISOString().slice(0, 10);
  }
  function verify(e) {
    e.preventDefault();
    var els = [].slice.call(vCard.querySelectorAll('input,select')), b = vCard.querySelector('button'), res = vCard.lastChild, body = { fields: {} }, bad;
    if (vBusy || !st) return;
    vKey.split(',').forEach(function (n) {
      var date = n === 'date_of_birth', v = date ? dateValue(n) : vCard.elements[n].value.trim();
      fieldError(n, v === null ? t('e_date') : v ? '' : t('e_req'), vCard);
      bad = bad || !v && (date ? vCard.elements[n + '_day'] : vCard.elements[n]);
      body.fields[n] = v;
    });
    if (bad) return bad.focus();
    els.forEach(function (el) { el.value = ''; });
    vBusy = b.disabled = true; res.textContent = '';
    api('POST', sp('/verification'), body).then(function (r) {
      var d = r.d;
      if (r.s === 200) {
        res.textContent = d.message || '';
        if (d.locked || d.attempts_left === 0 || /^(verified|expired|locked)$/.test(d.outcome)) { st.vx = 1; persist(); showVerify(); }
      } else if (r.s === 422 && d.fields) {
        var first = null;
        Object.keys(d.fields).forEach(function (k) { if (fieldError(k, serverProblem(d.fields[k], 1), vCard)) first = first || vCard.elements[k] || vCard.elements[k + '_day']; else res.textContent = t('e_gen'); });
        if (first) first.focus();
      } else if (d.error === 'invalid_token' || d.error === 'unknown_session') expire();
      else if (r.s === 404 || r.s === 409) { st.vx = 1; persist(); showVerify(); refreshSession(); }
      else res.textContent = t(r.s === 429 ? 'e_busy' : 'e_gen');
    }, function () { res.textContent = t('e_net'); }).then(function () { vBusy = b.disabled = false; if (!vCard.hidden) res.scrollIntoView({ block: 'nearest' }); });
    body = null;
  }
  function paintStars() {
    stars.forEach(function (b, i) { b.classList.toggle('on', i < fbN); b.setAttribute('aria-pressed', String(i + 1 === fbN)); });
    rateLbl.textContent = fbN ? T[lang || DEF].r[fbN - 1] : '';
  }
  function showFeedback() { // rated before this page load (or commented): just the thanks
    var done = st && (st.fbc || st.fb && !fbLive);
    rateBox.hidden = !!done; cmtBox.hidden = !!done || !fbLive; thanksEl.hidden = !(st && st.fb);
  }
  function rate(n) { // stored at once: closing the tab after the tap keeps the rating
    if (!st) return;
    fbN = n; paintStars();
    api('POST', sp('/feedback'), { rating: n }).then(function (r) {
      if (r.s !== 200) return (rateLbl.textContent = t('e_gen'));
      if (st && fbN === n) { st.fb = n; fbLive = true; persist(); showFeedback(); cmtBox.scrollIntoView({ block: 'nearest' }); }
    }, function () { rateLbl.textContent = t('e_net'); });
  }
  function sendComment() {
    var b = cmtBox.lastChild;
    if (!st || !fbN) return;
    b.disabled = true;
    api('POST', sp('/feedback'), { rating: fbN, comment: cmtBox.firstChild.value.trim() || null }).then(function (r) {
      if (r.s === 200 && st) { st.fbc = 1; persist(); showFeedback(); thanksEl.focus(); } else rateLbl.textContent = t('e_gen');
    }, function () { rateLbl.textContent = t('e_net'); }).then(function () { b.disabled = false; });
  }
  function download() { // with the bearer header, so: fetch, then save the blob
    if (!st) return;
    trBtn.disabled = true; trStat.textContent = '';
    api('GET', sp('/transcript'), null, 30, null, 1).then(function (r) {
      if (!r.ok) throw 0;
      var m = /filename="?([^";]+)/.exec(r.headers.get('Content-Disposition') || '');
      return r.blob().then(function (b) {
        var u = URL.createObjectURL(b), a = h('a', { href: u, download: m ? m[1] : 'transcript-' + deskDay(sess && sess.created_at) + '.html', hidden: true }); // cross-origin: the header may be unreadable
        root.appendChild(a); a.click(); a.remove();
        setTimeout(function () { URL.revokeObjectURL(u); }, 3e4);
      });
    }).then(null, function (e) { trStat.textContent = t(e === 0 ? 'e_gen' : 'e_net'); }).then(function () { trBtn.disabled = false; });
  }
  function mailTranscript() {
    if (!st) return;
    trMail.disabled = true; trStat.textContent = '';
    api('POST', sp('/transcript/email')).then(function (r) {
      if (r.s < 300) trStat.textContent = t('trTo', r.d.to || '');
      else if (r.s === 429) trStat.textContent = t('trDup');
      else if (r.s === 503) trMail.hidden = true; // this desk sends no email
      else trStat.textContent = t('e_gen');
    }, function () { trStat.textContent = t('e_net'); }).then(function () { trMail.disabled = false; });
  }

  function askErase(asking) { // "Delete this chat": asked in place, then erased from the library's records
    erBox.textContent = '';
    if (!asking) { erBox.appendChild(h('button', { type: 'button', class: 'lk', 'data-refdesk': 'erase', text: t('eraseB'), onclick: function () { askErase(true); } })); return; }
    erBox.appendChild(h('p', { text: t('eraseQ') }));
    erBox.appendChild(h('button', { type: 'button', class: 'sc2', 'data-refdesk': 'erase-confirm', text: t('eraseY'), onclick: function (ev) {
      ev.target.disabled = true;
      api('DELETE', sp()).then(function (r) {
        if (r.s !== 200) { askErase(false); trStat.textContent = t('e_gen'); return; }
        stop(); st = null; save(KEY, null);
        endCard.firstChild.hidden = true; erasedEl.hidden = false; erasedEl.focus();
      }, function () { askErase(false); trStat.textContent = t('e_net'); });
    } }));
    erBox.appendChild(h('button', { type: 'button', class: 'sc2', 'data-refdesk': 'erase-cancel', text: t('no'), onclick: function () { askErase(false); erBox.firstChild.focus(); } })).focus();
  }
  function forget() { upClear(); stop(); st = null; save(KEY, null); closed = false; reset(); beHere(); }
  function expire() { forget(); showForm(t('expired')); }
  function newConversation() { forget(); showForm(); focusView(); freshen(); }
  function uuid() {
    var c = window.crypto;
    if (c && c.randomUUID) try { return c.randomUUID(); } catch (e) { /* insecure context */ }
    var b = new Uint8Array(16), i;
    if (c && c.getRandomValues) c.getRandomValues(b); else for (i = 0; i < 16; i++) b[i] = Math.random() * 256 | 0;
    b[6] = b[6] & 15 | 64; b[8] = b[8] & 63 | 128;
    var x = [].map.call(b, function (v) { return (v + 256).toString(16).slice(1); }).join('');
    return x.slice(0, 8) + '-' + x.slice(8, 12) + '-' + x.slice(12, 16) + '-' + x.slice(16, 20) + '-' + x.slice(20);
  }

  /* ---------- transport: WebSocket, falling back to long polling ---------- */
  var mode = 'ws', ws = null, gen = 0, up = false, first = true, fails = 0, delay = 1000, retryT, pingT, pongT, pollCtl, posting = false, pollView;
  function stop() {
    gen++; up = false; typOn = false;
    clearTimeout(retryT); clearInterval(pingT); clearTimeout(pongT);
    if (ws) { try { ws.close(1000); } catch (e) { /* already closed */ } ws = null; }
    if (pollCtl) { pollCtl.abort(); pollCtl = null; }
    posting = false;
  }
  function retry() { // connection lost or failed: back off 1s, 2s, 4s ... 30s
    stop();
    if (!st || closed) return;
    setStatus(first ? 'conn' : 'reconn');
    retryT = setTimeout(connect, delay);
    delay = Math.min(delay * 2, 30000);
  }
  function connected() { up = true; fails = 0; delay = 1000; setStatus(null); seen(); }
  function connect() {
    stop();
    if (!st || closed) return;
    if (mode === 'poll') return poll(gen);
    if (first || !statusEl.hidden) setStatus(first ? 'conn' : 'reconn');
    var g = gen, ready = false, sock;
    try { sock = ws = new WebSocket(API.replace(/^http/, 'ws') + sp('/ws')); } catch (e) { return wsFailed(); }
    var readyT = setTimeout(function () { if (g === gen && !ready) wsFailed(); }, 10000);
    sock.onopen = function () { if (g === gen) sock.send(JSON.stringify({ type: 'hello', token: st.token, after: first ? 0 : st.cursor })); };
    sock.onmessage = function (ev) {
      if (g !== gen) return;
      var f; try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (f.type === 'ready') {
        ready = true; first = false; clearTimeout(readyT); connected();
        onSession(f.session);
        resendAll(); flush();
        pingT = setInterval(ping, 25000);
      } else if (f.type === 'message') onMessage(f.message);
      else if (f.type === 'ack') acked(f.client_id, f.message);
      else if (f.type === 'session') onSession(f.session);
      else if (f.type === 'pong') clearTimeout(pongT);
      else if (f.type === 'error' && f.client_id) sendError(f.client_id, f.error);
      else if (f.type === 'error' && f.error === 'session_closed') refreshSession();
    };
    sock.onclose = function (ev) {
      if (g !== gen) return;
      clearTimeout(readyT);
      if (ev.code >= 4401 && ev.code <= 4404) return expire();
      if (ready) retry(); else wsFailed();
    };
  }
  function wsFailed() {
    if (navigator.onLine !== false && ++fails >= 2) { mode = 'poll'; st.poll = Date.now(); persist(); delay = 1000; stop(); return poll(gen); }
    retry();
  }
  function ping() { // a dead socket (phone changed networks) shows up as a missing pong
    var g = gen;
    if (!wsSend({ type: 'ping' })) return;
    clearTimeout(pongT);
    pongT = setTimeout(function () { if (g === gen) retry(); }, 10000);
  }
  function wsSend(f) { if (ws && ws.readyState === 1) { ws.send(JSON.stringify(f)); return true; } return false; }
  function resendAll() { st && st.outbox.forEach(function (o) { o.sent = 0; }); }
  function flush() {
    if (!st || closed || !up) return;
    if (mode === 'ws') st.outbox.forEach(function (o) { if (o.sent !== gen && wsSend({ type: 'send', client_id: o.client_id, body: o.body })) o.sent = gen; });
    else post(gen);
  }
  function post(g) { // long-poll mode: send the outbox in order over HTTP
    if (posting || !st || !st.outbox.length) return;
    posting = true;
    var o = st.outbox[0];
    api('POST', sp('/messages'), { body: o.body, client_id: o.client_id }).then(function (r) {
      if (g !== gen) return;
      posting = false;
      if (r.s === 200 || r.s === 201) acked(o.client_id, r.d.message);
      else if (authFail(r.s)) return expire();
      else if (r.s === 429 || r.s >= 500) return setTimeout(function () { if (g === gen) post(g); }, 5000);
      else sendError(o.client_id, r.d.error || (r.s === 409 ? 'session_closed' : 'bad'));
      post(g);
    }, function () { if (g === gen) { posting = false; retry(); } });
  }
  function poll(g) {
    if (g !== gen || !st || closed) return;
    if (first) setStatus('conn');
    var t0 = Date.now(), wait = first ? 0 : 25;
    pollCtl = window.AbortController ? new AbortController() : null;
    api('GET', sp('/messages?after=' + (first ? 0 : st.cursor) + '&wait=' + wait + '&limit=500' + (wait && pollView ? '&view=' + encodeURIComponent(pollView) : '')), null, wait + 15, pollCtl).then(function (r) {
      if (g !== gen) return;
      if (authFail(r.s)) return expire();
      if (r.s !== 200) return retry();
      first = false; connected();
      (r.d.messages || []).forEach(onMessage);
      if (+r.d.cursor > st.cursor) { st.cursor = +r.d.cursor; persist(); }
      var sv = r.d.view_tag || '', changed = sv !== pollView; // the tag of this view: the next poll answers at once if it changed meanwhile
      pollView = sv;
      onSession(r.d.session);
      if (closed) return;
      post(g);
      var quick = !(r.d.messages || []).length && !changed && Date.now() - t0 < 1000 && wait; // an early answer without news: don't spin
      setTimeout(function () { poll(g); }, quick ? 1000 : 0);
    }, function () { if (g === gen) retry(); });
  }
  function wake() {
    if (!st || closed || document.visibilityState === 'hidden') return;
    if (!up) { delay = 1000; connect(); } else if (mode === 'ws') ping();
  }
  window.addEventListener('online', wake);
  document.addEventListener('visibilitychange', wake);
  document.addEventListener('visibilitychange', seen);
  window.addEventListener('storage', function (e) { // another tab ended or replaced the conversation
    if (e.key !== KEY) return;
    var n = load(KEY);
    if (st && (!n || n.session_id !== st.session_id)) { forget(); if (n && n.token) { st = n; st.outbox = st.outbox || []; resume(); } else showForm(); }
  });

  /* ---------- start ---------- */
  function resume() { // a stored session: show it, check it, load the whole history
    var sid = st.session_id;
    startChat(null, st.cursor, true);
    setStatus('conn');
    upResume();
    api('GET', sp()).then(function (r) {
      if (!st || st.session_id !== sid) return;
      if (authFail(r.s)) return expire();
      if (r.s === 200 && r.d.session) {
        var v = r.d.session.visitor;
        if (!chosenLang() && !T[dataLang] && v && T[v.language] && v.language !== lang) { lang = v.language; applyTexts(); }
        onSession(r.d.session);
        if (closed) return api('GET', sp('/messages?after=0&limit=500')).then(function (m) { if (m.s === 200) (m.d.messages || []).forEach(onMessage); scrollDown(true); }, function () {});
      }
      connect();
    }, function () { if (st && st.session_id === sid) connect(); });
  }
  function dropLink() { try { var u = new URL(location.href); u.searchParams.delete('refdesk_resume'); history.replaceState(history.state, '', u.href); } catch (e) { /* ok */ } }
  function resumeLink(link, back) { // the link from a reply email: this browser takes over that conversation
    api('POST', '/api/resume', { link: link }).then(function (r) {
      var s = r.d.session, v = s && s.visitor || {};
      if (r.s >= 500 || r.s === 429) return back(); // try again on the next load
      dropLink();
      if (r.s !== 200 || !s || !r.d.token) { if (st) return back(); noteNext = t('badLink'); return setOpen(true, false); }
      if (st) forget();
      if (!chosenLang() && !T[dataLang] && T[v.language]) lang = v.language;
      st = { session_id: s.id, token: r.d.token, cursor: 0, language: lang, outbox: [] };
      persist(); resume(); setOpen(true, false);
      loadConfig().then(null, function () {}); // the desk's name and limits
    }, back);
  }
  /* ---------- the invitation: "can we help?" after a while on a matching page ---------- */
  var IKEY = KEY + ':invite', pageStart = Date.now(), invite = null;
  function sget(k) { try { return sessionStorage.getItem(k); } catch (e) { return null; } }
  function sset(k, v) { try { sessionStorage.setItem(k, v); } catch (e) { /* storage off */ } }
  function pageMatches(pages) { // '*' is any text; no pattern: every page
    if (!pages || !pages.length) return true;
    return pages.some(function (p) {
      var re = new RegExp('^' + String(p).split('*').map(function (x) { return x.replace(/[.+?^${}()|[\]\\]/g, '\\$&'); }).join('.*') + '$', 'i');
      return re.test(location.href);
    });
  }
  function inviteLater() { // one config read per visit when the desk invites nobody
    if (st || isOpen || sget(IKEY)) return;
    setTimeout(function () {
      loadConfig().then(function () {
        var iv = cfg.invitation;
        if (!iv) return sset(IKEY, 'off'); // this desk invites nobody: not asked again this visit
        if (!pageMatches(iv.pages)) return;
        setTimeout(function () {
          loadConfig(true).then(function () { // open and someone on duty, now
            if (!st && !isOpen && !sget(IKEY) && cfg.invitation && cfg.hours && cfg.hours.live) showInvite();
          }, function () {});
        }, Math.max(0, iv.after * 1000 - (Date.now() - pageStart)));
      }, function () {});
    }, 1500);
  }
  function showInvite() {
    var iv = cfg.invitation, text = iv.text && (iv.text[lang] || iv.text[DEF]) || t('ivText');
    invite = h('div', { class: 'iv', role: 'status', 'data-refdesk': 'invitation', lang: lang || DEF }, [
      h('p', { text: text }),
      h('button', { type: 'button', class: 'pr', 'data-refdesk': 'invitation-open', text: t('ivGo'), onclick: function () { dropInvite(); setOpen(true, true); } }),
      h('button', { type: 'button', class: 'ivx', 'data-refdesk': 'invitation-close', 'aria-label': t('ivX'), text: '\u00d7', onclick: function () { dropInvite(); launcher.focus(); } })]);
    root.appendChild(invite);
  }
  function dropInvite() { sset(IKEY, 'dismissed'); if (invite) { invite.remove(); invite = null; } }
  /* ---------- on the site now: while no chat goes on, a light socket tells the desk this page (no query), the language and the time
     on it, nothing stored anywhere; a librarian may invite the visitor over it ---------- */
  var here = null, hereD = 2e3, hereT, offer = null, offerTok = null;
  function hereMsg(f) { if (here && here.readyState === 1) here.send(JSON.stringify(f)); }
  function hereSay() { hereMsg({ type: 'here', page: location.origin + location.pathname, language: lang || DEF, on_page: (Date.now() - pageStart) / 1e3 | 0 }); }
  function beHere() {
    if (st || here || !window.WebSocket) return;
    var s = here = new WebSocket(API.replace(/^http/, 'ws') + '/api/presence');
    s.onopen = function () { hereD = 2e3; hereSay(); hereT = setInterval(hereSay, 24e4); };
    s.onmessage = function (ev) { var f; try { f = JSON.parse(ev.data); } catch (e) { return; } if (f.type === 'invitation') showOffer(f.invitation); else if (f.type === 'invitation_ended') dropOffer(); };
    s.onclose = function () { clearInterval(hereT); if (here !== s) return; here = null; dropOffer(); setTimeout(beHere, hereD = Math.min(hereD * 2, 6e4)); };
  }
  function notHere() { var s = here; here = null; clearInterval(hereT); dropOffer(); if (s) s.close(1000); }
  function showOffer(o) { // a librarian's invitation: Accept opens the form, and the chat starts with that librarian
    dropOffer();
    var who = String(o.librarian || ''), el = offer = h('div', { class: 'iv li', role: 'alert', 'data-refdesk': 'live-invitation', lang: lang || DEF }, [
      h('p', { text: t('liText', who) }), o.text ? h('p', { text: String(o.text) }) : null,
      h('button', { type: 'button', class: 'pr', 'data-refdesk': 'live-invitation-accept', text: t('liYes'), onclick: function () { dropOffer(); offerTok = o.token; setOpen(true, true); showForm(t('liForm', who), true); } }),
      h('button', { type: 'button', class: 'no', 'data-refdesk': 'live-invitation-decline', text: t('liNo'), onclick: function () { answerOffer('declined'); launcher.focus(); } })]);
    el.tok = o.token;
    el.tm = setTimeout(function () { if (offer === el) answerOffer('ignored'); }, 12e4);
    root.appendChild(el);
  }
  function answerOffer(a) { if (offer) { hereMsg({ type: 'answer', token: offer.tok, answer: a }); dropOffer(); } }
  function dropOffer() { if (offer) { clearTimeout(offer.tm); offer.remove(); offer = null; } }
  function init() {
    build();
    applyTexts();
    var o = sget(OKEY), link = new URLSearchParams(location.search).get('refdesk_resume');
    function go() { if (st) resume(); if (o === '1' || (o == null && dataOpen)) setOpen(true, false); }
    if (link) return resumeLink(link, go);
    if (!st && sget(WKEY)) { // this desk hides the chat while closed: ask before showing the launcher (again every 10 min)
      launcher.hidden = true;
      return (function ask(again) {
        loadConfig(again).then(function () { if (!hideDesk()) { launcher.hidden = false; go(); } else setTimeout(ask, 6e5, 1); }, function () { launcher.hidden = false; go(); });
      }());
    }
    go();
    inviteLater();
    beHere();
  }
  if (document.body) init(); else document.addEventListener('DOMContentLoaded', init);
}());
