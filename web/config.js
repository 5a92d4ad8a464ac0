// Deployment settings for the Parley web client. Edit this file (it is the only one that varies
// between deployments) or serve your own config.js in its place. Everything is optional:
//
//   window.parleyConfig = {
//     // Where the API lives: "" (the default) means the same origin as this page.
//     apiBase: "https://parley-func.azurewebsites.net",
//     // How the API learns who you are: "dev" (an email field; local runs only), "easyauth"
//     // (App Service Authentication cookies) or "token" (a bearer token from getToken).
//     // Default: "token" when getToken is set, "dev" on localhost/127.0.0.1, else "easyauth".
//     auth: "token",
//     // Returns (a promise of) an access token for the API, e.g. from MSAL.js:
//     getToken: async () => (await msal.acquireTokenSilent(request)).accessToken,
//     // Optional, for "token": what the Sign out button does.
//     signOut: () => msal.logoutRedirect(),
//   };
window.parleyConfig = window.parleyConfig || {};
