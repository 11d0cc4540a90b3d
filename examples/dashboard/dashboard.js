// The page side shared by index.html (STOMP) and mqtt.html (MQTT): rendering only, no protocol.
// Each page connects with its own library and calls into this.
(function () {
  'use strict';

  const UNITS = { temp: '°C', temperature: '°C', humidity: '%', co2: 'ppm', power: 'W' };

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function time() {
    return new Date().toLocaleTimeString();
  }

  /** The WebSocket URL: `?ws=...` wins, else the broker's HTTP port on this page's host. */
  function wsUrl(path) {
    const given = new URLSearchParams(location.search).get('ws');
    if (given) return given;
    // The broker listens on IPv4 by default: ask for 127.0.0.1 rather than a localhost that
    // might resolve to ::1 first.
    const host = !location.hostname || location.hostname === 'localhost' ? '127.0.0.1' : location.hostname;
    return `ws://${host}:15672${path}`;
  }

  function create() {
    const status = document.getElementById('status');
    const readings = document.getElementById('readings');
    const alerts = document.getElementById('alerts');
    const log = document.getElementById('log');
    const form = document.getElementById('command-form');
    const rows = new Map();
    const hint = el('p', { id: 'connection-hint', role: 'alert' });
    hint.hidden = true;
    document.querySelector('header').after(hint);

    const api = {
      wsUrl,

      /** 'connecting' | 'live' | 'offline' | 'error' */
      setStatus(state, text) {
        status.dataset.state = state;
        status.textContent = text ?? state;
        if (state !== 'offline') hint.hidden = true;
      },

      /**
       * The broker cannot be reached: say where the page tried and how to point it elsewhere
       * (`path` is the WebSocket path the page uses: /ws or /mqtt).
       */
      offline(url, path) {
        api.setStatus('offline', 'offline, retrying…');
        const example = `${location.origin}${location.pathname}?ws=ws://broker.example:15672${path}`;
        hint.replaceChildren(
          'Cannot reach the broker at ',
          el('code', { class: 'url' }, url),
          '. Is it running (npm start), with its HTTP port (15672) reachable from this browser? To use another broker, add ',
          el('code', {}, `?ws=ws://<host>:<port>${path}`),
          ' to this page\'s address, e.g. ',
          el('code', {}, example),
          ' (and &login=…&passcode=… for other credentials).',
        );
        hint.hidden = false;
      },

      /** A sensor reading: `key` is `<room>.<metric>` (or with slashes), `value` the payload text. */
      reading(key, value) {
        const parts = key.split(/[./]/);
        const metric = parts[parts.length - 1] ?? key;
        const room = parts.slice(0, -1).join(' / ') || key;
        const id = parts.join('.');
        let row = rows.get(id);
        if (row === undefined) {
          row = el('tr', { 'data-key': id });
          row.append(el('td', { class: 'room' }, room), el('td', { class: 'metric' }, metric), el('td', { class: 'value' }), el('td', { class: 'when' }));
          rows.set(id, row);
          const sorted = [...rows.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, r]) => r);
          readings.replaceChildren(...sorted);
        }
        row.querySelector('.value').textContent = `${value}${UNITS[metric] ? ` ${UNITS[metric]}` : ''}`;
        row.querySelector('.when').textContent = time();
        row.classList.remove('flash');
        void row.offsetWidth;
        row.classList.add('flash');
      },

      /**
       * A message from a backend service, tagged with the device it is about: the routing key
       * after `alerts.` (STOMP /topic/alerts.<device>), or the topic after `alerts/` (MQTT), both
       * written with dots, so the two pages tag the same alert the same way.
       */
      alert(text, key) {
        const from = key.split(/[./]/).join('.');
        const li = el('li', { 'data-from': from });
        li.append(el('span', { class: 'when' }, time()), el('span', { class: 'from' }, from), el('span', { class: 'text' }, text));
        alerts.prepend(li);
        while (alerts.children.length > 50) alerts.lastElementChild.remove();
      },

      log(text) {
        const li = el('li', {}, `${time()}  ${text}`);
        log.prepend(li);
        while (log.children.length > 100) log.lastElementChild.remove();
      },

      /** Calls `send(device, action)` when the command form is submitted. */
      onCommand(send) {
        form.addEventListener('submit', (ev) => {
          ev.preventDefault();
          const device = form.elements.namedItem('device').value;
          const action = form.elements.namedItem('action').value;
          try {
            send(device, action);
            api.log(`command sent: ${device} ${action}`);
          } catch (e) {
            api.log(`command failed: ${e && e.message ? e.message : e}`);
          }
        });
      },
    };
    return api;
  }

  window.Dashboard = { create };
})();
