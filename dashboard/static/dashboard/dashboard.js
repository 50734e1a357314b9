// Keeps the run page current without reloading it: every platform event (over the websocket)
// re-renders the run's body from the server; without a socket it falls back to polling.
(function () {
  const body = document.getElementById("run-body");
  const live = document.getElementById("live");
  const url = body && body.dataset.fragmentUrl;
  if (!url) return;
  let pending = null;
  async function refresh() {
    pending = null;
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.ok) body.innerHTML = await response.text();
  }
  function soon() { if (!pending) pending = setTimeout(refresh, 150); }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/ws/dashboard/`);
    socket.onopen = () => { live.className = "live on"; soon(); };
    socket.onmessage = soon;
    socket.onclose = () => { live.className = "live off"; setTimeout(connect, 2000); };
  }
  connect();
  setInterval(() => { if (live.className !== "live on") refresh(); }, 5000);
})();
