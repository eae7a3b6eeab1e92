/*
 * shop.js: the demo storefront's own behaviour (cart, buttons) and the
 * "what the snippet sent" panel. The tracking itself is ecom.js; this file
 * only calls ecom.track and listens to ecom.onResult. The cart and the panel's
 * log live in this tab's storage, so the log of earlier pages (and of the
 * beacons sent when they were left) is still shown after a navigation.
 */
(function (window, document) {
  "use strict";

  var LOG_KEY = "ecom_demo_log";
  var CART_KEY = "ecom_demo_cart";
  var MAX_LOG = 60;
  var page = document.body.getAttribute("data-page");

  function load(storage, key, fallback) {
    try { return JSON.parse(window[storage].getItem(key)) || fallback; } catch (e) { return fallback; }
  }
  function save(storage, key, v) {
    try { window[storage].setItem(key, JSON.stringify(v)); } catch (e) { /* storage full or off */ }
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Prices are decimal strings; sums are done in minor units (cents).
  function toMinor(price) {
    var m = /^(\d+)(?:\.(\d{1,2}))?$/.exec(price);
    return m ? parseInt(m[1], 10) * 100 + parseInt(((m[2] || "") + "00").slice(0, 2), 10) : 0;
  }
  function fromMinor(n) { return Math.floor(n / 100) + "." + ("0" + (n % 100)).slice(-2); }

  // ---- cart ----
  function cart() { return load("localStorage", CART_KEY, {}); }
  function saveCart(c) { save("localStorage", CART_KEY, c); renderCart(); }
  function cartTotals(c) {
    var items = 0, minor = 0, currency = null;
    Object.keys(c).forEach(function (id) {
      items += c[id].quantity;
      minor += c[id].quantity * toMinor(c[id].price);
      currency = c[id].currency;
    });
    return { items: items, price: fromMinor(minor), currency: currency };
  }
  function renderCart() {
    var c = cart(), t = cartTotals(c);
    var count = document.getElementById("cart-count");
    if (count) count.textContent = String(t.items);
    var list = document.getElementById("cart-lines");
    if (list) {
      list.textContent = "";
      Object.keys(c).forEach(function (id) {
        var li = el("li", "cart-line", c[id].quantity + " × " + c[id].name + " (" + c[id].price + " " + c[id].currency + ")");
        li.setAttribute("data-product-id", id);
        list.appendChild(li);
      });
      var total = document.getElementById("cart-total");
      if (total) {
        total.textContent = t.items ? t.price + " " + t.currency : "";
        total.parentNode.hidden = t.items === 0;
      }
      var empty = document.getElementById("cart-empty");
      if (empty) empty.hidden = t.items > 0;
      var place = document.getElementById("place-order");
      if (place) place.disabled = t.items === 0;
    }
    var remove = document.getElementById("remove-from-cart");
    if (remove) remove.disabled = !c[remove.getAttribute("data-product-id")];
  }

  function productOf(button) {
    return {
      id: button.getAttribute("data-product-id"),
      name: button.getAttribute("data-name"),
      price: button.getAttribute("data-price"),
      currency: button.getAttribute("data-currency")
    };
  }

  // ---- the panel: what was sent and what the collector answered ----
  function log() { return load("sessionStorage", LOG_KEY, []); }

  function verdicts(r) {
    var out = {};
    r.events.forEach(function (ev) { out[ev.event_id] = { status: "pending" }; });
    if (r.transport === "beacon") {
      r.events.forEach(function (ev) { out[ev.event_id] = { status: "beacon" }; });
    } else if (r.phase === "left") {
      // In flight when the page was left: this page cannot read the answer.
      r.events.forEach(function (ev) { out[ev.event_id] = r.keepalive ? { status: "keepalive" } : { status: "resent" }; });
    } else if (r.phase === "answered" && r.status === 200 && r.answer && r.answer.events) {
      r.answer.events.forEach(function (a) {
        var ev = r.events[a.index];
        if (!ev) return;
        out[ev.event_id] = a.status === "accepted" ? { status: "accepted" } :
          { status: "rejected", reasons: (a.reasons || []).map(function (x) { return x.code + (x.field ? " " + x.field : "") + ": " + x.message; }) };
      });
    } else if (r.phase === "answered" && r.status >= 200 && r.status < 300) {
      // A 2xx without per-event verdicts: the whole batch was taken.
      r.events.forEach(function (ev) { out[ev.event_id] = { status: "accepted" }; });
    } else if (r.phase === "answered") {
      var why = r.status ? "HTTP " + r.status + ((r.answer && r.answer.error) ? ": " + r.answer.error : "") :
        "no readable answer (" + (r.error || "network error") + "): the collector is down, or it refused this page's origin " +
        window.location.origin + " without CORS headers (is it in the collector's allowed origins?)";
      var reasons = [why];
      if (r.retrying) {
        reasons.push("attempt " + r.attempt + " failed; sending again in " + (r.retryInMs / 1000).toFixed(1) + " s (" +
          (r.retryBy === "Retry-After" ? "the collector's Retry-After" : "backoff") + ")");
      } else if (r.gaveUp) {
        reasons.push("gave up after " + r.attempt + " attempts without an answer");
      }
      r.events.forEach(function (ev) { out[ev.event_id] = { status: r.retrying ? "retrying" : "refused", reasons: reasons }; });
    }
    return out;
  }

  function record(r) {
    var entries = log();
    var entry = null;
    for (var i = 0; i < entries.length; i++) if (entries[i].id === r.id) entry = entries[i];
    if (!entry) {
      entry = { id: r.id, at: new Date().toISOString(), page: window.location.pathname, transport: r.transport, sent: r.events };
      entries.push(entry);
    }
    entry.phase = r.phase;
    entry.status = r.status || null;
    entry.answer = r.answer || null;
    entry.error = r.error || null;
    entry.retryInMs = r.retrying ? r.retryInMs : null;
    entry.retryBy = r.retrying ? r.retryBy : null;
    entry.attempt = r.attempt || null;
    entry.keepalive = r.keepalive === undefined ? null : r.keepalive;
    entry.verdicts = verdicts(r);
    save("sessionStorage", LOG_KEY, entries.slice(-MAX_LOG));
    renderLog();
  }

  var LABEL = { accepted: "accepted", rejected: "rejected", pending: "awaiting answer", beacon: "sent by beacon (answer not readable)",
    keepalive: "sent with keepalive, answer unreadable (the page was left before it came)",
    resent: "cut off when the page was left; sent again by beacon", refused: "refused", retrying: "will retry" };

  function renderLog() {
    var list = document.getElementById("tracking-log");
    if (!list) return;
    var entries = log();
    var n = { accepted: 0, rejected: 0, pending: 0, beacon: 0, keepalive: 0, resent: 0, refused: 0, retrying: 0 };
    list.textContent = "";
    entries.slice().reverse().forEach(function (e) {
      var li = el("li", "entry " + e.transport);
      li.setAttribute("data-transport", e.transport);
      var head = el("div", "entry-head", e.at.slice(11, 19) + "  " + e.page + "  " +
        (e.transport === "beacon" ? "sendBeacon" : "fetch") + (e.status ? " → HTTP " + e.status : ""));
      li.appendChild(head);
      var evs = el("ul", "events");
      e.sent.forEach(function (ev) {
        var v = e.verdicts[ev.event_id] || { status: "pending" };
        n[v.status]++;
        var item = el("li", "event " + v.status, ev.event_type + (ev.product_id ? " " + ev.product_id : "") + (ev.order_id ? " " + ev.order_id : "") + " — " + LABEL[v.status]);
        item.setAttribute("data-event-id", ev.event_id);
        item.setAttribute("data-event-type", ev.event_type);
        item.setAttribute("data-status", v.status);
        (v.reasons || []).forEach(function (why) { item.appendChild(el("div", "reason", why)); });
        evs.appendChild(item);
      });
      li.appendChild(evs);
      var d = el("details");
      d.appendChild(el("summary", null, "request and answer"));
      d.appendChild(el("pre", null, JSON.stringify(e.transport === "beacon" ? { write_key: "…", events: e.sent } : e.sent, null, 2)));
      if (e.answer) d.appendChild(el("pre", null, JSON.stringify(e.answer, null, 2)));
      li.appendChild(d);
      list.appendChild(li);
    });
    var summary = document.getElementById("tracking-summary");
    if (summary) {
      summary.textContent = entries.length === 0 ? "Nothing sent yet." :
        "accepted " + n.accepted + " · rejected " + n.rejected + " · by beacon " + n.beacon +
        " · answer unreadable " + (n.keepalive + n.resent) + " · awaiting answer " + n.pending + " · refused " + (n.refused + n.retrying);
      summary.setAttribute("data-accepted", String(n.accepted));
      summary.setAttribute("data-rejected", String(n.rejected));
    }
    var sid = document.getElementById("session-id");
    if (sid) sid.textContent = window.ecom.sessionId();
  }

  window.ecom.onResult(record);

  // ---- the page's own behaviour ----
  var add = document.getElementById("add-to-cart");
  if (page === "product" && add) {
    var p = productOf(add);
    window.ecom.track("product_view", { product_id: p.id, price: p.price, currency: p.currency });
    add.addEventListener("click", function () {
      var c = cart();
      c[p.id] = c[p.id] || { name: p.name, price: p.price, currency: p.currency, quantity: 0 };
      c[p.id].quantity++;
      saveCart(c);
      window.ecom.track("add_to_cart", { product_id: p.id, quantity: 1, price: p.price, currency: p.currency });
    });
    document.getElementById("remove-from-cart").addEventListener("click", function () {
      var c = cart();
      if (!c[p.id]) return;
      c[p.id].quantity--;
      if (c[p.id].quantity <= 0) delete c[p.id];
      saveCart(c);
      window.ecom.track("remove_from_cart", { product_id: p.id, quantity: 1, price: p.price, currency: p.currency });
    });
  }

  // The contract's price is a unit price (revenue = price × quantity), so
  // the cart-wide events carry neither: a cart total as price with the item
  // count as quantity would overstate revenue. The cart's lines are in its
  // add_to_cart events; the order is tied to them by session.
  if (page === "checkout") {
    var t = cartTotals(cart());
    if (t.items > 0) window.ecom.track("begin_checkout");
    document.getElementById("place-order").addEventListener("click", function () {
      var tt = cartTotals(cart());
      if (tt.items === 0) return;
      var order = "o-" + window.crypto.getRandomValues(new Uint32Array(2)).join("").slice(0, 12);
      window.ecom.track("purchase", { order_id: order });
      window.ecom.flush();
      saveCart({});
      var done = document.getElementById("order-done");
      done.textContent = "Thank you! Order " + order + " is placed.";
      done.setAttribute("data-order-id", order);
      done.hidden = false;
    });
  }

  renderCart();
  renderLog();
})(window, document);
