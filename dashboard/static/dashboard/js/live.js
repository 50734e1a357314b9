// The websocket: delivers platform events; on every (re)connection the page resynchronises
// from the snapshot, since events sent while the socket was down are gone.
import { socketUrl } from "./api.js";

const MIN_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;

export function connect({ onEvent, onOpen, onState }) {
  let delay = MIN_DELAY_MS;
  let socket = null;

  function open() {
    socket = new WebSocket(socketUrl());
    socket.addEventListener("open", () => {
      delay = MIN_DELAY_MS;
      onState(true);
      onOpen();
    });
    socket.addEventListener("message", (message) => {
      let parsed;
      try {
        parsed = JSON.parse(message.data);
      } catch {
        return; // not ours
      }
      onEvent(parsed.event, parsed.data);
    });
    socket.addEventListener("close", () => {
      onState(false);
      // Back off so a server restart is not met by a stampede of reconnecting dashboards.
      setTimeout(open, delay);
      delay = Math.min(MAX_DELAY_MS, delay * 2);
    });
  }

  open();
  return { isOpen: () => socket && socket.readyState === WebSocket.OPEN };
}
