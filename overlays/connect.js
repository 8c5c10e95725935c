// Live caption feed shared by the overlay pages: WebSocket (SSE fallback), auto-reconnect.
// connectCaptions(onMessage, onStatus) calls onMessage({type: "state"|"update", ...}).
"use strict";

function captionParams() {
  return new URLSearchParams(window.location.search);
}

function connectCaptions(onMessage, onStatus) {
  const params = captionParams();
  const query = new URLSearchParams();
  if (params.get("stream")) query.set("stream", params.get("stream"));
  if (params.get("token")) query.set("token", params.get("token"));
  const suffix = query.toString() ? "?" + query.toString() : "";
  const useSse = params.get("transport") === "sse" || !("WebSocket" in window);
  let delay = 500;
  let socket = null;

  function retry() {
    onStatus("reconnecting");
    setTimeout(open, delay);
    delay = Math.min(delay * 2, 5000);
  }

  function handle(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return;
    }
    if (message && (message.type === "state" || message.type === "update")) onMessage(message);
  }

  function open() {
    if (useSse) {
      const source = new EventSource("events" + suffix);
      source.onopen = () => { delay = 500; onStatus("live"); };
      source.onmessage = (event) => handle(event.data);
      source.onerror = () => { source.close(); retry(); };
      return;
    }
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + window.location.host + "/ws" + suffix);
    socket.onopen = () => { delay = 500; onStatus("live"); };
    socket.onmessage = (event) => handle(event.data);
    socket.onclose = retry;
  }

  open();
}
