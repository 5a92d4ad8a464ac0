// Who the caller is, in the three ways the API accepts (openapi.yaml, securitySchemes).

const DEV_EMAIL_KEY = "parley.devEmail";
const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

export function resolveAuth(config, location = window.location) {
  const apiBase = (config.apiBase ?? "").replace(/\/+$/, "");
  const mode =
    config.auth ??
    (typeof config.getToken === "function"
      ? "token"
      : LOCAL_HOSTS.has(location.hostname)
        ? "dev"
        : "easyauth");
  if (!["dev", "easyauth", "token"].includes(mode)) {
    throw new Error(`parleyConfig.auth must be "dev", "easyauth" or "token", not ${mode}`);
  }
  if (mode === "token" && typeof config.getToken !== "function") {
    throw new Error('parleyConfig.auth is "token" but parleyConfig.getToken is not a function');
  }
  const here = location.href.split("#")[0];
  const loginUrl =
    config.loginUrl ?? `${apiBase}/.auth/login/aad?post_login_redirect_uri=${encodeURIComponent(here)}`;
  const logoutUrl =
    config.logoutUrl ?? `${apiBase}/.auth/logout?post_logout_redirect_uri=${encodeURIComponent(here)}`;

  return {
    mode,
    apiBase,
    loginUrl,
    // Easy Auth's session is a cookie of the API's origin: send it, cross-origin too.
    credentials: mode === "easyauth" ? "include" : "same-origin",

    /** The dev identity, if any (dev mode only: the other modes never know it up front). */
    email: () => (mode === "dev" ? localStorage.getItem(DEV_EMAIL_KEY) : null),

    /** Whether the app can try the API now, or must show the sign-in form first. */
    ready: () => mode !== "dev" || Boolean(localStorage.getItem(DEV_EMAIL_KEY)),

    async headers() {
      if (mode === "dev") {
        const email = localStorage.getItem(DEV_EMAIL_KEY);
        return email ? { "X-MS-CLIENT-PRINCIPAL-NAME": email } : {};
      }
      if (mode === "token") {
        let token = null;
        try {
          token = await config.getToken();
        } catch (error) {
          // No token is a signed-out caller: the API's 401 then says so, in the page's words.
          console.warn("parleyConfig.getToken failed", error);
        }
        return token ? { Authorization: `Bearer ${token}` } : {};
      }
      return {}; // easyauth: the platform adds the identity headers from the cookie
    },

    signIn(email) {
      if (mode === "dev") localStorage.setItem(DEV_EMAIL_KEY, email.trim().toLowerCase());
      else if (mode === "easyauth") window.location.assign(loginUrl);
    },

    /** Sign out; resolves true when the page should show its sign-in form. */
    async signOut() {
      if (mode === "dev") {
        localStorage.removeItem(DEV_EMAIL_KEY);
        return true;
      }
      if (mode === "easyauth") {
        window.location.assign(logoutUrl);
        return false;
      }
      await config.signOut?.();
      return false;
    },
  };
}
