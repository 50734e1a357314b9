// The page's only write path: the platform's REST API, authenticated by the session cookie.
// DRF's SessionAuthentication enforces CSRF, so every call carries the page's token.

const urls = JSON.parse(document.getElementById("urls").textContent);

export class ApiError extends Error {
  constructor(status, code, detail, errors) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.errors = errors || null;
  }

  // One line an operator can act on, including per-field validation messages.
  describe() {
    if (!this.errors || typeof this.errors !== "object") return this.message;
    const parts = Object.entries(this.errors).map(([field, msgs]) => `${field}: ${[].concat(msgs).join(" ")}`);
    return `${this.message}: ${parts.join("; ")}`;
  }
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(urls.api + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data && data.code, data && data.detail, data && data.errors);
  }
  return data;
}

export class SessionExpired extends Error {}

// The run's snapshot; a redirect to the login page means the session is gone.
export async function fetchSnapshot(runId) {
  const response = await fetch(urls.snapshot.replace("/0/", `/${runId}/`), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  });
  const type = response.headers.get("Content-Type") || "";
  if (response.redirected || !type.includes("application/json")) throw new SessionExpired();
  if (!response.ok) throw new ApiError(response.status, "snapshot", `snapshot: HTTP ${response.status}`);
  return response.json();
}

export function runPageUrl(runId) {
  return urls.runPage.replace("/0/", `/${runId}/`);
}

export function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${urls.socket}`;
}
