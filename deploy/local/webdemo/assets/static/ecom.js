/*
 * ecom.js: the storefront's tracking snippet. Plain JavaScript, no build
 * step, no dependencies. It sends events in the raw clickstream contract
 * (proto/json/clickstream-raw.schema.json) to ingest-clickstream's HTTP
 * collector (POST /v1/events).
 *
 * Configuration comes from window.ECOM_CONFIG (the demo server writes it in
 * /config.js): collectorURL, writeKey, flushIntervalMs, batchSize.
 *
 * Events are queued and sent as one JSON array when batchSize events are
 * waiting or flushIntervalMs after the first one, with fetch(..., {keepalive:
 * true}) so a request in flight survives a navigation. When the page is
 * hidden or left, what is still queued goes with navigator.sendBeacon: a
 * text/plain envelope that carries the write key, because a beacon cannot set
 * headers (text/plain needs no CORS preflight either). 429, 503 and other 5xx
 * answers and network errors are retried with backoff; the collector's
 * downstream dedup removes an event a failed attempt already wrote.
 *
 * API: ecom.track(type, props), ecom.flush(), ecom.onResult(fn),
 * ecom.sessionId(), ecom.anonymousId().
 */
(function (window) {
  "use strict";

  var cfg = window.ECOM_CONFIG || {};
  var endpoint = String(cfg.collectorURL || "").replace(/\/+$/, "") + "/v1/events";
  var writeKey = cfg.writeKey || "";
  var flushMs = cfg.flushIntervalMs > 0 ? cfg.flushIntervalMs : 500;
  var batchSize = cfg.batchSize > 0 ? cfg.batchSize : 10;
  var maxAttempts = 5;
  // A keepalive request's body and a beacon are limited to 64 KiB in all.
  var maxBeaconBytes = 60000;

  var queue = [];
  var retryQueue = [];
  var retryTimer = null;
  var attempts = {}; // event_id -> attempts so far
  var timer = null;
  var listeners = [];
  var memory = {}; // when storage is unavailable (privacy modes)

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // randomUUID exists only in secure contexts (https, localhost, 127.0.0.1).
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function stored(storage, key) {
    try {
      var s = window[storage];
      var v = s.getItem(key);
      if (!v) {
        v = uuid();
        s.setItem(key, v);
      }
      return v;
    } catch (e) {
      if (!memory[key]) memory[key] = uuid();
      return memory[key];
    }
  }

  // A session lasts as long as the tab (sessionStorage); the anonymous id
  // as long as the browser keeps this origin's localStorage.
  function sessionId() { return stored("sessionStorage", "ecom_session_id"); }
  function anonymousId() { return stored("localStorage", "ecom_anonymous_id"); }

  function device() {
    var ua = navigator.userAgent || "";
    var type = /iPad|Tablet/i.test(ua) ? "tablet" : /Mobi|Android|iPhone/i.test(ua) ? "mobile" : "desktop";
    var os = /Windows/.test(ua) ? "Windows" : /iPhone|iPad|iOS/.test(ua) ? "iOS" : /Mac OS X/.test(ua) ? "macOS" :
      /Android/.test(ua) ? "Android" : /CrOS/.test(ua) ? "ChromeOS" : /Linux/.test(ua) ? "Linux" : null;
    var browser = /Edg\//.test(ua) ? "Edge" : /Firefox\//.test(ua) ? "Firefox" :
      /(Chrome|Chromium|HeadlessChrome)\//.test(ua) ? "Chrome" : /Safari\//.test(ua) ? "Safari" : null;
    return { type: type, os: os, browser: browser };
  }

  var commerce = ["product_id", "quantity", "price", "currency", "order_id", "search_query", "user_id"];

  function track(type, props) {
    props = props || {};
    var ev = {
      event_id: uuid(),
      event_timestamp: new Date().toISOString(),
      event_type: type,
      anonymous_id: anonymousId(),
      session_id: sessionId(),
      page_url: window.location.href,
      referrer: document.referrer || null,
      user_agent: navigator.userAgent || null,
      device: device()
    };
    commerce.forEach(function (k) {
      if (props[k] !== undefined && props[k] !== null) ev[k] = props[k];
    });
    queue.push(ev);
    if (queue.length >= batchSize) {
      flush();
    } else if (!timer) {
      timer = window.setTimeout(flush, flushMs);
    }
    return ev;
  }

  function emit(r) {
    listeners.forEach(function (fn) {
      try { fn(r); } catch (e) { /* a listener's bug must not stop tracking */ }
    });
  }

  function takeBatch() {
    if (timer) {
      window.clearTimeout(timer);
      timer = null;
    }
    var batch = queue.slice(0, batchSize);
    queue = queue.slice(batch.length);
    return batch;
  }

  function flush() {
    while (queue.length > 0) {
      send(takeBatch());
    }
  }

  function retryable(status) { return status === 429 || status >= 500; }

  // Events to send again wait in retryQueue, and go first when its timer
  // fires, or by beacon if the page is left before.
  function retry(batch, afterMs) {
    var again = batch.filter(function (ev) {
      attempts[ev.event_id] = (attempts[ev.event_id] || 1) + 1;
      return attempts[ev.event_id] <= maxAttempts;
    });
    if (again.length === 0) return false;
    retryQueue = retryQueue.concat(again);
    if (!retryTimer) {
      retryTimer = window.setTimeout(function () {
        retryTimer = null;
        queue = retryQueue.concat(queue);
        retryQueue = [];
        flush();
      }, afterMs);
    }
    return true;
  }

  function backoff(batch, retryAfter) {
    var secs = parseInt(retryAfter, 10);
    if (secs > 0) return Math.min(secs, 60) * 1000;
    var n = attempts[batch[0].event_id] || 1;
    return Math.min(1000 * Math.pow(2, n - 1), 30000) * (0.5 + Math.random() / 2);
  }

  function send(batch) {
    var id = uuid();
    emit({ id: id, transport: "fetch", phase: "sent", events: batch });
    window.fetch(endpoint, {
      method: "POST",
      keepalive: true,
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + writeKey },
      body: JSON.stringify(batch)
    }).then(function (resp) {
      return resp.text().then(function (text) {
        var answer = null;
        try { answer = JSON.parse(text); } catch (e) { answer = { error: text }; }
        var again = retryable(resp.status) && retry(batch, backoff(batch, resp.headers.get("Retry-After")));
        if (!again) batch.forEach(function (ev) { delete attempts[ev.event_id]; });
        emit({ id: id, transport: "fetch", phase: "answered", events: batch, status: resp.status, answer: answer, retrying: again });
      });
    }, function (err) {
      var again = retry(batch, backoff(batch, null));
      emit({ id: id, transport: "fetch", phase: "answered", events: batch, status: 0, error: String(err), retrying: again });
    });
  }

  // The page is going away: a beacon is the one request the browser promises
  // to deliver after the page is gone. Its answer cannot be read.
  function beacon() {
    if (retryTimer) {
      window.clearTimeout(retryTimer);
      retryTimer = null;
    }
    queue = retryQueue.concat(queue);
    retryQueue = [];
    while (queue.length > 0) {
      var batch = takeBatch();
      var body = JSON.stringify({ write_key: writeKey, events: batch });
      var ok = body.length <= maxBeaconBytes && typeof navigator.sendBeacon === "function" &&
        navigator.sendBeacon(endpoint, new Blob([body], { type: "text/plain;charset=UTF-8" }));
      if (ok) {
        emit({ id: uuid(), transport: "beacon", phase: "queued", events: batch });
      } else {
        send(batch); // refused (too large or the beacon queue is full): keepalive fetch
      }
    }
  }

  window.addEventListener("pagehide", beacon);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") beacon();
  });

  window.ecom = {
    track: track,
    flush: flush,
    onResult: function (fn) { listeners.push(fn); },
    sessionId: sessionId,
    anonymousId: anonymousId
  };

  if (cfg.autoPageView !== false) track("page_view");
})(window);
