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
 * true}) so a request in flight survives a navigation. The browser allows
 * keepalive bodies (and beacons) of 64 KiB in all, counted in bytes: a batch
 * whose UTF-8 body is over maxKeepaliveBytes is split in halves, and a part
 * that does not fit in what is left of the budget goes as a plain fetch.
 * When the page is hidden or left, what is still queued goes with
 * navigator.sendBeacon: a text/plain envelope that carries the write key,
 * because a beacon cannot set headers (text/plain needs no CORS preflight
 * either); fetches still in flight then are reported as sent with keepalive,
 * their answer unreadable (the old page never sees it), and a plain fetch's
 * events, which the browser cancels, go again by beacon.
 *
 * 429, 503 and other 5xx answers are retried up to maxAttempts times, after
 * the collector's Retry-After when the browser lets the page read it (the
 * collector exposes it with Access-Control-Expose-Headers), else after an
 * exponential backoff. A request without a readable answer (status 0: the
 * collector is down, or it refused the page's origin without CORS headers,
 * which the browser reports as the same TypeError) is tried maxNetworkAttempts
 * times in all, then given up with a clear result. The collector's
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
  var maxAttempts = 5;        // per event, for 429, 503 and other 5xx answers
  var maxNetworkAttempts = 3; // per event, when no answer can be read (status 0)
  // Keepalive request bodies and beacons in flight are limited to 64 KiB in
  // all (bytes, not characters); this stays below it.
  var maxKeepaliveBytes = 60000;
  var keepaliveBytes = 0; // bodies of our keepalive fetches in flight
  var inFlight = {};      // result id -> {batch, keepalive} of fetches not answered yet
  var encoder = typeof window.TextEncoder === "function" ? new window.TextEncoder() : null;

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

  // The size of s in UTF-8 bytes, what the browser counts against its
  // keepalive and beacon limit (s.length counts UTF-16 code units).
  function byteLength(s) {
    if (encoder) return encoder.encode(s).length;
    return unescape(encodeURIComponent(s)).length;
  }

  function retryable(status) { return status === 429 || status >= 500; }

  // Events to send again wait in retryQueue, and go first when its timer
  // fires, or by beacon if the page is left before. limit is the attempts an
  // event may have in all; false when none of the batch may be sent again.
  function retry(batch, afterMs, limit) {
    var again = batch.filter(function (ev) {
      attempts[ev.event_id] = (attempts[ev.event_id] || 1) + 1;
      if (attempts[ev.event_id] <= limit) return true;
      delete attempts[ev.event_id];
      return false;
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

  // wait is how long to wait before sending batch again: the collector's
  // Retry-After (delta-seconds, at most 60) when the page can read it, else
  // an exponential backoff with jitter from 1 s.
  function wait(batch, retryAfter) {
    if (retryAfter !== null && retryAfter !== undefined && /^\s*\d+\s*$/.test(retryAfter)) {
      return { ms: Math.min(parseInt(retryAfter, 10), 60) * 1000, by: "Retry-After" };
    }
    var n = attempts[batch[0].event_id] || 1;
    return { ms: Math.round(Math.min(1000 * Math.pow(2, n - 1), 30000) * (0.5 + Math.random() / 2)), by: "backoff" };
  }

  function attemptOf(batch) { return attempts[batch[0].event_id] || 1; }

  function send(batch) {
    var body = JSON.stringify(batch);
    var size = byteLength(body);
    if (size > maxKeepaliveBytes && batch.length > 1) {
      var half = Math.ceil(batch.length / 2);
      send(batch.slice(0, half));
      send(batch.slice(half));
      return;
    }
    // Keepalive while the budget lasts; beyond it a plain fetch, which works
    // as long as the page stays (its events go by beacon if it is left).
    var keepalive = keepaliveBytes + size <= maxKeepaliveBytes;
    if (keepalive) keepaliveBytes += size;
    var id = uuid();
    var attempt = attemptOf(batch);
    var f = inFlight[id] = { batch: batch, keepalive: keepalive, left: false };
    emit({ id: id, transport: "fetch", phase: "sent", events: batch, keepalive: keepalive, attempt: attempt });
    var read = false; // the answer was read
    function settled() {
      if (keepalive) keepaliveBytes -= size;
      delete inFlight[id];
    }
    window.fetch(endpoint, {
      method: "POST",
      keepalive: keepalive,
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json", "Authorization": "Bearer " + writeKey },
      body: body
    }).then(function (resp) {
      return resp.text().then(function (text) {
        read = true;
        settled();
        var answer = null;
        try { answer = JSON.parse(text); } catch (e) { answer = { error: text }; }
        var w = retryable(resp.status) ? wait(batch, resp.headers.get("Retry-After")) : null;
        var again = w !== null && retry(batch, w.ms, maxAttempts);
        if (!w) batch.forEach(function (ev) { delete attempts[ev.event_id]; });
        emit({ id: id, transport: "fetch", phase: "answered", events: batch, status: resp.status, answer: answer, retrying: again,
          retryInMs: again ? w.ms : null, retryBy: again ? w.by : null, attempt: attempt, keepalive: keepalive });
      });
    }).catch(function (err) {
      // No readable answer: the network, or a refusal without CORS headers.
      // Read and reported already; or the page was left, which makes the
      // browser fail this page's side of the request (a keepalive one goes
      // on without it, a plain one's events went by beacon): leaving() has
      // reported it.
      if (read) return;
      if (f.left) {
        settled();
        return;
      }
      settled();
      var w = wait(batch, null);
      var again = retry(batch, w.ms, maxNetworkAttempts);
      emit({ id: id, transport: "fetch", phase: "answered", events: batch, status: 0, error: String(err), retrying: again,
        retryInMs: again ? w.ms : null, retryBy: again ? w.by : null, attempt: attempt, gaveUp: !again, keepalive: keepalive });
    });
  }

  // Fetches still in flight when the page goes away: this page never reads
  // their answers. A keepalive one goes on (the collector gets it); a plain
  // one is cancelled by the browser, so its events go again by beacon (the
  // collector's dedup removes a copy that got through).
  function leaving() {
    Object.keys(inFlight).forEach(function (id) {
      var f = inFlight[id];
      delete inFlight[id];
      f.left = true;
      if (!f.keepalive) queue = f.batch.concat(queue);
      emit({ id: id, transport: "fetch", phase: "left", events: f.batch, keepalive: f.keepalive });
    });
  }

  // sendBeacon sends batch as text/plain envelopes, halved until each fits in
  // maxKeepaliveBytes; what the browser refuses goes by fetch.
  function sendBeacon(batch) {
    var body = JSON.stringify({ write_key: writeKey, events: batch });
    var size = byteLength(body);
    if (size > maxKeepaliveBytes && batch.length > 1) {
      var half = Math.ceil(batch.length / 2);
      sendBeacon(batch.slice(0, half));
      sendBeacon(batch.slice(half));
      return;
    }
    var ok = size <= maxKeepaliveBytes && typeof navigator.sendBeacon === "function" &&
      navigator.sendBeacon(endpoint, new Blob([body], { type: "text/plain;charset=UTF-8" }));
    if (ok) {
      emit({ id: uuid(), transport: "beacon", phase: "queued", events: batch });
    } else {
      send(batch); // refused (one event over the limit, or the browser's beacon budget is spent)
    }
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
      sendBeacon(takeBatch());
    }
  }

  window.addEventListener("pagehide", function () {
    leaving();
    beacon();
  });
  // Hidden (another tab, the app switched) may be the last moment a mobile
  // browser runs the page: send what is queued. The page may come back, so
  // fetches in flight are left to answer.
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
