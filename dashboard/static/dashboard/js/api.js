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

// A file the server renders on demand (a model export): while it answers 202 the request is
// repeated after its Retry-After; the result is the file and the name the server gives it.
export async function fetchFile(path, { onPending = () => {}, maxWaitMs = 5 * 60 * 1000 } = {}) {
  const started = Date.now();
  for (;;) {
    const response = await fetch(urls.api + path, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 202) {
      const data = await response.json().catch(() => ({}));
      if (Date.now() - started > maxWaitMs) throw new ApiError(202, data.code, "the server is still preparing the file; try again later");
      onPending(data.detail || "preparing the file…");
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      continue;
    }
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      throw new ApiError(response.status, data && data.code, data && data.detail, data && data.errors);
    }
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = disposition.match(/filename="([^"]+)"/);
    return { blob: await response.blob(), filename: match ? match[1] : "download" };
  }
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
