// Sign a user in with MSAL.js (authorization code flow with PKCE: what MSAL does for an app registered as a
// "Single-page application"), get an access token for the gateway's API and call the proxy with it instead of a key.
// Replace the four values below. Not run against Entra ID here; see docs/entra-id-clients.md.
const settings = {
  tenantId: 'YOUR-TENANT-ID',                       // Directory (tenant) ID
  spaClientId: 'YOUR-SPA-CLIENT-ID',                // the SPA's own registration (platform: Single-page application)
  scope: 'api://funcproxy/access_as_user',          // the gateway API's exposed scope (FuncProxy:ClientTokens:RequiredScope)
  proxy: 'https://YOUR-GATEWAY.azurewebsites.net/api/openai', // /api/{upstream} of the gateway
};

const pca = new msal.PublicClientApplication({
  auth: {
    clientId: settings.spaClientId,
    authority: `https://login.microsoftonline.com/${settings.tenantId}`,  // one tenant, as the gateway requires
    redirectUri: new URL('./', location.href).href,
  },
  // Tokens live in this tab only: gone when it closes, never in localStorage or a cookie.
  cache: { cacheLocation: 'sessionStorage' },
});

const $ = (id) => document.getElementById(id);
const show = (text) => { $('out').textContent = text; };

await pca.initialize();
// Completes a sign-in or token redirect that brought the browser back here (the code is exchanged with the PKCE verifier).
const returned = await pca.handleRedirectPromise();
let account = returned?.account ?? pca.getAllAccounts()[0] ?? null;
render();

$('sign-in').addEventListener('click', () => pca.loginRedirect({ scopes: [settings.scope] }));
$('sign-out').addEventListener('click', () => pca.logoutRedirect({ account }));
$('ask').addEventListener('click', ask);

function render() {
  $('sign-in').hidden = account !== null;
  $('sign-out').hidden = account === null;
  $('ask').disabled = account === null;
  show(account ? `Signed in as ${account.username}.` : 'Not signed in.');
}

/** An access token for the gateway: from MSAL's cache or silently renewed; a redirect when the user must act (consent, MFA). */
async function accessToken() {
  const request = { scopes: [settings.scope], account };
  try {
    return (await pca.acquireTokenSilent(request)).accessToken;
  } catch (e) {
    if (e instanceof msal.InteractionRequiredAuthError) {
      await pca.acquireTokenRedirect(request);   // leaves the page; handleRedirectPromise picks up on return
    }
    throw e;
  }
}

async function ask() {
  show('Calling the proxy...');
  try {
    const response = await fetch(`${settings.proxy}/chat/completions`, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${await accessToken()}`,   // the token instead of a FuncProxy key
        'Content-Type': 'application/json',
      },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        max_tokens: 64,
        messages: [{ role: 'user', content: $('prompt').value }],
      }),
    });
    const body = await response.json();
    // The gateway's errors are problem+json: show code and detail (401 invalid_token, 429 rate_limited, ...).
    show(response.ok ? body.choices[0].message.content : `${response.status} ${body.code}: ${body.detail}`);
  } catch (e) {
    show(`Failed: ${e.message}`);
  }
}
