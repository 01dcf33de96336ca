/** The login page: plain HTML, no script, so it works before (and without) the dashboard. */
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const ERRORS: Record<string, string> = {
  bad_credentials: "Wrong login or password.",
  rate_limited: "Too many wrong passwords. Wait a few minutes, then try again.",
  directory_unavailable: "The directory cannot be reached right now. Try again shortly.",
  forbidden: "You have no role in Orrery. Ask an administrator.",
  missing: "Enter a login and a password.",
};

const shell = (title: string, body: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · Orrery</title>
<style>
body{font:16px system-ui,sans-serif;background:#0f1419;color:#e6e6e6;display:grid;place-items:center;min-height:100vh;margin:0}
main{background:#1a2129;padding:2rem 2.5rem;border-radius:8px;min-width:18rem}
h1{font-size:1.3rem;margin:0 0 1.2rem}label{display:block;margin:.8rem 0 .3rem}
input{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #3a4654;border-radius:4px;background:#0f1419;color:inherit}
button{margin-top:1.2rem;width:100%;padding:.6rem;border:0;border-radius:4px;background:#3d7eff;color:#fff;font-size:1rem}
.error{color:#ff8080;margin:0 0 1rem}
</style></head><body><main>${body}</main></body></html>`;

export function loginPage(o: { next: string; error: string | null }): string {
  const error = o.error ? `<p class="error" role="alert">${esc(ERRORS[o.error] ?? "Login failed.")}</p>` : "";
  return shell(
    "Log in",
    `<h1>Orrery</h1>${error}
<form method="post" action="/api/login">
<input type="hidden" name="next" value="${esc(o.next)}">
<label for="login">Login</label><input id="login" name="login" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>`,
  );
}

export function messagePage(title: string, message: string): string {
  return shell(title, `<h1>${esc(title)}</h1><p class="error">${esc(message)}</p><p><a href="/login" style="color:#8ab4ff">Log in</a></p>`);
}
