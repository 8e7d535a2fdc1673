namespace FuncProxy;

/// <summary>
/// The <c>FuncProxy</c> configuration section: everything the engine needs, bound and validated at start.
/// </summary>
public sealed class FuncProxyOptions
{
    /// <summary>The configuration section name.</summary>
    public const string SectionName = "FuncProxy";

    /// <summary>Where keys, counters, usage and the audit log live.</summary>
    public StorageOptions Storage { get; set; } = new();

    /// <summary>Azure Key Vault holding the upstream providers' secrets. Without a vault URI, secrets come from <see cref="Secrets"/>.</summary>
    public KeyVaultOptions KeyVault { get; set; } = new();

    /// <summary>
    /// Local secrets by name, used only when <see cref="KeyVaultOptions.VaultUri"/> is not set
    /// (user-secrets, environment variables or <c>local.settings.json</c>; never commit real values).
    /// </summary>
    public Dictionary<string, string> Secrets { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The upstream APIs this gateway fronts, by the name used in the route <c>/api/{upstream}/...</c>.</summary>
    public Dictionary<string, UpstreamOptions> Upstreams { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Forwarding defaults that apply to every upstream unless the upstream overrides them.</summary>
    public ProxyOptions Proxy { get; set; } = new();

    /// <summary>How long a request's target and header block may be; larger ones get 414 or 431 problem+json.</summary>
    public RequestLimitOptions Requests { get; set; } = new();

    /// <summary>Client key handling.</summary>
    public KeyOptions Keys { get; set; } = new();

    /// <summary>The management API under <c>/api/admin/</c>: who may call it and how hard.</summary>
    public AdminOptions Admin { get; set; } = new();

    /// <summary>
    /// Entra ID access tokens as client credentials instead of FuncProxy keys, each mapped to a key record whose upstreams,
    /// limits and budgets then apply. Off unless <see cref="ClientTokenOptions.Authority"/> is set.
    /// </summary>
    public ClientTokenOptions ClientTokens { get; set; } = new();

    /// <summary>The audit log: how long its events are kept.</summary>
    public AuditOptions Audit { get; set; } = new();

    /// <summary>Whether per-IP failure counts, lockouts and the admin rate limit are shared by all instances.</summary>
    public LockoutOptions Lockouts { get; set; } = new();

    /// <summary>
    /// Proxies (IP addresses or CIDR ranges such as <c>10.0.0.0/8</c>) whose <c>X-Forwarded-For</c> is believed when
    /// working out a caller's IP for lockouts, admin rate limits and the audit log. Empty (the default): the connection's
    /// remote address is the client, and <c>X-Forwarded-For</c> is ignored, since anyone can send it.
    /// </summary>
    public List<string> TrustedProxies { get; set; } = [];

    /// <summary>
    /// The name of a request header that the platform's front end writes on every request, overwriting any value the
    /// client sent, holding the client's address (for example <c>X-Client-IP</c> on App Service and Azure Functions; see
    /// docs/deploy.md for how to check it on a deployment). When set, that header is the client's address for lockouts,
    /// admin rate limits and the audit log, and <see cref="TrustedProxies"/> is not used; a request without exactly one
    /// well-formed address in it is treated as coming from a proxy hop and never counted towards a lockout.
    /// Unset (the default): the connection's address and <see cref="TrustedProxies"/> decide. Set it only when every
    /// request reaches the gateway through such a front end, since anyone can send the header.
    /// </summary>
    public string? ClientIpHeader { get; set; }

    /// <summary>
    /// True when every connection comes from a front end, never straight from a client, so the connection's address
    /// is a proxy hop: without <see cref="ClientIpHeader"/> (or a client found in <c>X-Forwarded-For</c> through
    /// <see cref="TrustedProxies"/>) callers cannot be told apart and nobody is locked out, rather than everybody.
    /// Default false; the Functions host sets it to true unless configured, because the Functions host's forwarder makes
    /// a front-end address the connection's address of every request (docs/deploy.md, "Client addresses").
    /// </summary>
    public bool BehindFrontEnd { get; set; }

    /// <summary>Default rate limits and quotas for every key (a key's own <c>Limits</c> override them), and how the distributed limiter behaves.</summary>
    public LimitOptions Limits { get; set; } = new();

    /// <summary>Spend control: what happens to unpriced models and whether streamed calls are made to report usage.</summary>
    public SpendOptions Spend { get; set; } = new();
}

/// <summary>What a key with a money budget may do with a model the price table does not know.</summary>
public enum UnpricedModelPolicy
{
    /// <summary>Refuse the call with 403 <c>model_not_priced</c>: a budget cannot be kept on a model without a price.</summary>
    Refuse,

    /// <summary>Admit it at a cost of 0 (the call is reported as unpriced in the log and the <c>funcproxy.spend.unpriced</c> metric).</summary>
    Allow,
}

/// <summary>The <c>FuncProxy:Spend</c> section (prices themselves live per upstream, in <see cref="UpstreamOptions.Prices"/>).</summary>
public sealed class SpendOptions
{
    /// <summary>
    /// Calls of a key that has a money budget (<c>budgetPerDayUsd</c>/<c>budgetPerMonthUsd</c>, also per model) to a model
    /// without a price. Keys without a budget are never refused for this; unpriced calls are always reported.
    /// </summary>
    public UnpricedModelPolicy UnpricedModels { get; set; } = UnpricedModelPolicy.Refuse;

    /// <summary>
    /// Add <c>stream_options.include_usage: true</c> to OpenAI-style chat completions streams that do not ask for usage, so
    /// the provider reports it and the call is charged what it used; the extra final usage chunk is removed from what such a
    /// client receives (see docs/spend.md for exactly what the client sees).
    /// </summary>
    public bool IncludeStreamUsage { get; set; } = true;
}

/// <summary>The price of the models matching <see cref="Model"/> on one upstream, in US dollars per million tokens.</summary>
public sealed class ModelPriceOptions
{
    /// <summary>The model name or a glob (<c>*</c>, <c>?</c>; case-insensitive), e.g. <c>gpt-4o-mini*</c>. The most specific match applies.</summary>
    public string? Model { get; set; }

    /// <summary>USD per million input (prompt) tokens.</summary>
    public decimal? InputPerMillion { get; set; }

    /// <summary>USD per million output (completion, including reasoning) tokens.</summary>
    public decimal? OutputPerMillion { get; set; }

    /// <summary>USD per million input tokens read from the provider's prompt cache. Unset: <see cref="InputPerMillion"/>.</summary>
    public decimal? CachedInputPerMillion { get; set; }

    /// <summary>USD per million input tokens written to the prompt cache (Anthropic's <c>cache_creation_input_tokens</c>). Unset: <see cref="InputPerMillion"/>.</summary>
    public decimal? CacheWriteInputPerMillion { get; set; }
}

/// <summary>Table Storage settings.</summary>
public sealed class StorageOptions
{
    /// <summary>
    /// A connection string (locally <c>UseDevelopmentStorage=true</c> for Azurite). In Azure use
    /// <see cref="TableServiceUri"/> with a managed identity instead: never an account key.
    /// </summary>
    public string? ConnectionString { get; set; }

    /// <summary>The table endpoint, e.g. <c>https://acct.table.core.windows.net</c>, reached with <c>DefaultAzureCredential</c>.</summary>
    public Uri? TableServiceUri { get; set; }

    /// <summary>Client id of a user-assigned managed identity, when the host has several identities.</summary>
    public string? ManagedIdentityClientId { get; set; }

    /// <summary>Prefix for every table name (letters and digits), so several deployments or test runs can share an account.</summary>
    public string TablePrefix { get; set; } = "";
}

/// <summary>Key Vault settings.</summary>
public sealed class KeyVaultOptions
{
    /// <summary>The vault URI, e.g. <c>https://my-vault.vault.azure.net/</c>. Absent: secrets come from <c>FuncProxy:Secrets</c>.</summary>
    public Uri? VaultUri { get; set; }

    /// <summary>How long a fetched secret is served before it is refreshed in the background.</summary>
    public TimeSpan RefreshAfter { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a secret may still be served while Key Vault cannot be reached (stale-if-error).</summary>
    public TimeSpan StaleIfErrorFor { get; set; } = TimeSpan.FromHours(24);
}

/// <summary>One upstream API.</summary>
public sealed class UpstreamOptions
{
    /// <summary>Absolute http(s) base URL; client paths are appended below it and never escape it, e.g. <c>https://api.openai.com/v1</c>.</summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>Name of the secret (in Key Vault or <c>FuncProxy:Secrets</c>) holding the provider's credential. Absent: no credential is attached.</summary>
    public string? SecretName { get; set; }

    /// <summary>Header that carries the provider's credential.</summary>
    public string AuthHeader { get; set; } = "Authorization";

    /// <summary>
    /// Scheme put before the credential. Unset: <c>Bearer</c> when <see cref="AuthHeader"/> is <c>Authorization</c>, else the
    /// bare value (as Anthropic's <c>x-api-key</c> and Azure OpenAI's <c>api-key</c> want). Empty or <c>none</c>: always bare.
    /// </summary>
    public string? AuthScheme { get; set; }

    /// <summary>The scheme actually used, after the defaults above.</summary>
    internal string EffectiveAuthScheme => SchemeFor(AuthHeader, AuthScheme);

    internal static string SchemeFor(string authHeader, string? authScheme) => authScheme switch
    {
        null => string.Equals(authHeader, "Authorization", StringComparison.OrdinalIgnoreCase) ? "Bearer" : "",
        var s when string.Equals(s, "none", StringComparison.OrdinalIgnoreCase) => "",
        var s => s.Trim(),
    };

    /// <summary>Overrides <see cref="ProxyOptions.UpstreamTimeout"/> for this upstream.</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>Overrides <see cref="ProxyOptions.MaxRequestBodyBytes"/> for this upstream.</summary>
    public long? MaxRequestBodyBytes { get; set; }

    /// <summary>
    /// Model prices on this upstream (money budgets and the usage table's cost). Empty: every model here is unpriced.
    /// docs/spend.md has a default table to start from; it is never applied by itself.
    /// </summary>
    public List<ModelPriceOptions> Prices { get; set; } = [];

    /// <summary>
    /// The OpenTelemetry <c>gen_ai.provider.name</c> of this upstream (<c>openai</c>, <c>azure.ai.openai</c>, <c>anthropic</c>, ...).
    /// Unset: inferred from the backends' hosts (<c>*.openai.azure.com</c>, <c>api.openai.com</c>, <c>api.anthropic.com</c>), else none.
    /// </summary>
    public string? Provider { get; set; }

    /// <summary>
    /// A pool of backends by name (the name appears in usage rows, telemetry and breaker rows). Instead of
    /// <see cref="BaseUrl"/>: setting both is a start error. Without it, the upstream-level <see cref="BaseUrl"/>,
    /// <see cref="SecretName"/>, <see cref="AuthHeader"/>, <see cref="AuthScheme"/> and <see cref="Timeout"/> make one backend named <c>default</c>.
    /// </summary>
    public Dictionary<string, BackendOptions> Backends { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>When and how often a call moves on to the next backend.</summary>
    public FailoverOptions Failover { get; set; } = new();

    /// <summary>When a backend is taken out of the pool for a while.</summary>
    public BreakerOptions Breaker { get; set; } = new();

    /// <summary>
    /// Cross-origin access for browser apps (CORS), answered by the gateway itself: preflights never reach the upstream and
    /// need no key. Default: no origin is listed, so no cross-origin access.
    /// </summary>
    public UpstreamCorsOptions Cors { get; set; } = new();
}

/// <summary>
/// The CORS policy of one upstream (<c>FuncProxy:Upstreams:{name}:Cors</c>), validated at start. A key's own
/// <c>allowedOrigins</c> can narrow it further for that key's calls (docs/cors.md).
/// </summary>
public sealed class UpstreamCorsOptions
{
    /// <summary>
    /// Origins whose pages may call this upstream: absolute http(s) origins without a path, e.g.
    /// <c>https://app.example.com</c> or <c>http://localhost:5173</c>. <c>*</c> (any origin) is allowed only without
    /// <see cref="AllowCredentials"/>. Empty (the default): no cross-origin access.
    /// </summary>
    public List<string> AllowedOrigins { get; set; } = [];

    /// <summary>Methods a cross-origin page may use (<c>*</c>: any method the gateway forwards). Unset: GET, POST.</summary>
    public List<string>? AllowedMethods { get; set; }

    /// <summary>
    /// Request headers a cross-origin page may send, e.g. <c>Authorization</c>, <c>Content-Type</c>, <c>anthropic-version</c>
    /// (<c>*</c>: any; the gateway then names the ones the preflight asked for, never a literal <c>*</c>). By default <c>*</c>,
    /// since SDKs send many headers of their own (<c>x-stainless-*</c>) and header names grant nothing: every request still
    /// needs a key, and credentials and forwarding claims are stripped before anything is forwarded.
    /// Unset: <c>*</c>.
    /// </summary>
    public List<string>? AllowedHeaders { get; set; }

    // Defaults apply only when a list is not configured at all: the configuration binder adds to a list that has items.
    internal IReadOnlyList<string> EffectiveAllowedMethods => AllowedMethods is { Count: > 0 } m ? m : ["GET", "POST"];

    internal IReadOnlyList<string> EffectiveAllowedHeaders => AllowedHeaders is { Count: > 0 } h ? h : ["*"];

    /// <summary>
    /// Let the browser send cookies and HTTP authentication with the call (<c>Access-Control-Allow-Credentials: true</c>).
    /// FuncProxy keys travel in request headers, which need no such grant, so leave this off unless a front end in the
    /// browser's path needs cookies. Never together with a <c>*</c> origin.
    /// </summary>
    public bool AllowCredentials { get; set; }

    /// <summary>
    /// Response headers a page may read besides those the gateway always exposes (RateLimit, RateLimit-Policy,
    /// Retry-After, retry-after-ms, request-id, x-request-id), e.g. a provider's <c>openai-processing-ms</c>.
    /// </summary>
    public List<string> ExposedHeaders { get; set; } = [];

    /// <summary>How long a browser may cache a preflight's answer (0 to 2 hours; browsers cap it themselves). Default 10 minutes.</summary>
    public TimeSpan MaxAge { get; set; } = TimeSpan.FromMinutes(10);
}

/// <summary>How a backend presents a credential to its provider.</summary>
public enum BackendAuth
{
    /// <summary>No credential is attached.</summary>
    None,

    /// <summary>The value of <see cref="BackendOptions.SecretName"/>, from Key Vault (or <c>FuncProxy:Secrets</c> locally).</summary>
    Secret,

    /// <summary>An Entra ID access token for <see cref="BackendOptions.TokenScope"/>, from the app's managed identity (<c>DefaultAzureCredential</c>).</summary>
    ManagedIdentity,
}

/// <summary>One backend of an upstream's pool.</summary>
public sealed class BackendOptions
{
    /// <summary>Absolute http(s) base URL, as for <see cref="UpstreamOptions.BaseUrl"/>, e.g. <c>https://eastus.openai.azure.com</c>.</summary>
    public Uri? BaseUrl { get; set; }

    /// <summary>Lower goes first: backends of a higher priority get calls only while every backend of a lower one is unavailable.</summary>
    public int Priority { get; set; }

    /// <summary>Share of calls among the available backends of the same priority (1-1000).</summary>
    public int Weight { get; set; } = 1;

    /// <summary>Unset: <see cref="BackendAuth.Secret"/> when <see cref="SecretName"/> is set, else <see cref="BackendAuth.None"/>.</summary>
    public BackendAuth? Auth { get; set; }

    /// <summary>Secret holding this backend's credential, for <see cref="BackendAuth.Secret"/>.</summary>
    public string? SecretName { get; set; }

    /// <summary>Header that carries the credential (<c>api-key</c> for an Azure OpenAI key; keep <c>Authorization</c> for Entra ID tokens).</summary>
    public string AuthHeader { get; set; } = "Authorization";

    /// <summary>Scheme before the credential, with the same defaults as <see cref="UpstreamOptions.AuthScheme"/>.</summary>
    public string? AuthScheme { get; set; }

    /// <summary>The scope an Entra ID token is asked for, for <see cref="BackendAuth.ManagedIdentity"/>.</summary>
    public string TokenScope { get; set; } = "https://cognitiveservices.azure.com/.default";

    /// <summary>Client id of the user-assigned identity to get tokens as. Unset: <see cref="StorageOptions.ManagedIdentityClientId"/>, else <c>DefaultAzureCredential</c>'s choice.</summary>
    public string? ManagedIdentityClientId { get; set; }

    /// <summary>Overrides the upstream's timeout for this backend: how long it may stay silent before the call fails over (or gets 504).</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>
    /// Model (or deployment) name the client asks for -> this backend's deployment name. Rewrites the
    /// <c>/openai/deployments/{deployment}/</c> path segment, or the JSON <c>model</c> of a body held in memory (Azure's v1 API and
    /// any OpenAI-compatible backend). Names not listed pass unchanged.
    /// </summary>
    public Dictionary<string, string> Deployments { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The auth kind actually used, after the default above.</summary>
    internal BackendAuth EffectiveAuth => Auth ?? (string.IsNullOrWhiteSpace(SecretName) ? BackendAuth.None : BackendAuth.Secret);
}

/// <summary>Failing over from one backend to the next.</summary>
public sealed class FailoverOptions
{
    /// <summary>The default of <see cref="RetryOnStatus"/>.</summary>
    internal static readonly int[] DefaultRetryOnStatus = [429, 500, 502, 503, 504];

    /// <summary>Most backends one client call is sent to (1: never fail over).</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>
    /// Upstream status codes that make the call move on to the next backend (the answer is held back from the client while
    /// another backend may still take the call). Unset: 429, 500, 502, 503, 504. Connection failures and timeouts before the
    /// response headers always fail over.
    /// </summary>
    public List<int>? RetryOnStatus { get; set; }

    /// <summary>
    /// Request bodies up to this size are kept in memory so the call can be replayed on the next backend. A larger body is
    /// streamed to one backend only: that call is not retried.
    /// </summary>
    public long MaxReplayBodyBytes { get; set; } = 1024 * 1024;

    internal IReadOnlyCollection<int> EffectiveRetryOnStatus => RetryOnStatus is { Count: > 0 } list ? list : DefaultRetryOnStatus;
}

/// <summary>Circuit breakers: when a backend stops getting calls, and for how long.</summary>
public sealed class BreakerOptions
{
    /// <summary>Failures in a row (connection failures, timeouts, statuses of <see cref="FailoverOptions.RetryOnStatus"/>) that open the breaker.</summary>
    public int ConsecutiveFailures { get; set; } = 5;

    /// <summary>How long a breaker opened by consecutive failures stays open before one probe call may close it.</summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A 429 or 503 with <c>Retry-After</c> or <c>retry-after-ms</c> opens the breaker for that long, at most this long.</summary>
    public TimeSpan MaxRetryAfter { get; set; } = TimeSpan.FromMinutes(5);
}

/// <summary>Forwarding defaults.</summary>
public sealed class ProxyOptions
{
    /// <summary>
    /// How long the upstream may stay silent (no response headers, or no body bytes while streaming)
    /// before the call is abandoned with 504. LLM answers can take minutes to start, hence the generous default.
    /// </summary>
    public TimeSpan UpstreamTimeout { get; set; } = TimeSpan.FromSeconds(300);

    /// <summary>Largest request body accepted; larger ones get 413 (before anything reaches the upstream when Content-Length says so).</summary>
    public long MaxRequestBodyBytes { get; set; } = 32 * 1024 * 1024;

    /// <summary>Share opened circuit breakers between instances through the <c>breakers</c> table. Off: each instance learns on its own.</summary>
    public bool ShareBreakers { get; set; } = true;

    /// <summary>How often each instance reads the breakers other instances opened (one table query each time, never one per call).</summary>
    public TimeSpan BreakerSyncInterval { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>
/// The <c>FuncProxy:Requests</c> section: the gateway's own limits on a request's target and header block, checked
/// before anything else (no key is looked at), so an oversize request gets 414 or 431 problem+json. The Kestrel host sets
/// Kestrel's own limits to <see cref="ServerCeilingFactor"/> times these, so only a request beyond that ceiling (or one
/// that is not HTTP at all) meets Kestrel's empty answer (SECURITY.md, "Requests Kestrel refuses itself").
/// </summary>
public sealed class RequestLimitOptions
{
    /// <summary>Kestrel's limits on the Kestrel host are this many times the gateway's own.</summary>
    public const int ServerCeilingFactor = 4;

    /// <summary>Longest request target (path and query, as sent) accepted; longer gets 414 <c>uri_too_long</c>. At most 65,536.</summary>
    public int MaxTargetLength { get; set; } = 8 * 1024;

    /// <summary>
    /// Largest header block accepted, counted as Kestrel counts it: each field's name, <c>": "</c>, value and CRLF, a
    /// header sent twice counted twice; larger gets 431 <c>request_headers_too_large</c>. At most 262,144.
    /// </summary>
    public int MaxHeadersTotalBytes { get; set; } = 32 * 1024;

    /// <summary>Most header fields accepted (a header sent twice counts twice); more gets 431 <c>request_headers_too_large</c>. At most 1,000.</summary>
    public int MaxHeaderCount { get; set; } = 100;
}

/// <summary>Client key settings.</summary>
public sealed class KeyOptions
{
    /// <summary>
    /// How long a key record is served from memory. This bounds how long a revoked or disabled key keeps
    /// working on an instance that has it cached; hot keys are refreshed in the background before then.
    /// </summary>
    public TimeSpan CacheDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// While the key table cannot be reached, a cached record may be served this much longer than
    /// <see cref="CacheDuration"/> (a revocation cannot be written during such an outage either). Zero: fail closed with 503.
    /// </summary>
    public TimeSpan StaleIfErrorFor { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Refused client keys (malformed, unknown, wrong, revoked, expired) one IP may present within <see cref="FailureWindow"/>
    /// before it is locked out for <see cref="LockoutDuration"/> (429 with <c>Retry-After</c>). Counted across all instances
    /// (<see cref="LockoutOptions.Shared"/>) in fixed windows of <see cref="FailureWindow"/>. Zero: no lockout.
    /// </summary>
    public int MaxFailuresPerIp { get; set; } = 30;

    /// <summary>The window in which <see cref="MaxFailuresPerIp"/> refusals lock an IP out.</summary>
    public TimeSpan FailureWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How long a locked-out IP gets 429 before any key it sends is looked at again.</summary>
    public TimeSpan LockoutDuration { get; set; } = TimeSpan.FromMinutes(1);
}

/// <summary>The management API: admin authentication, per-IP limits, lockout and rotation bounds.</summary>
public sealed class AdminOptions
{
    /// <summary>Admin calls one client IP may make per minute, on all instances together (all outcomes count); more get 429 with <c>Retry-After</c>.</summary>
    public int RequestsPerMinutePerIp { get; set; } = 100;

    /// <summary>Failed admin authentications one IP may make within <see cref="FailureWindow"/> before it is locked out.</summary>
    public int MaxFailedAttempts { get; set; } = 5;

    /// <summary>The window in which <see cref="MaxFailedAttempts"/> failures lock an IP out.</summary>
    public TimeSpan FailureWindow { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a locked-out IP gets 429 on every admin call, whatever credential it sends.</summary>
    public TimeSpan LockoutDuration { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>The longest grace period a rotation may give the old secret.</summary>
    public TimeSpan MaxRotationGracePeriod { get; set; } = TimeSpan.FromDays(7);

    /// <summary>Entra ID bearer tokens as an alternative to admin keys. Off unless <see cref="EntraIdOptions.Authority"/> is set.</summary>
    public EntraIdOptions EntraId { get; set; } = new();
}

/// <summary>Entra ID (or any OpenID Connect issuer) access tokens for the management API.</summary>
public sealed class EntraIdOptions
{
    /// <summary>The issuer's authority, e.g. <c>https://login.microsoftonline.com/{tenant-id}/v2.0</c>. Absent: bearer tokens are not accepted.</summary>
    public Uri? Authority { get; set; }

    /// <summary>The OpenID metadata document; defaults to <c>{Authority}/.well-known/openid-configuration</c>.</summary>
    public Uri? MetadataAddress { get; set; }

    /// <summary>The token audience: the gateway's app registration (<c>api://...</c> or its client id).</summary>
    public string? Audience { get; set; }

    /// <summary>The app role (in the token's <c>roles</c> claim) that makes a caller an admin.</summary>
    public string RequiredRole { get; set; } = "FuncProxy.Admin";

    /// <summary>Require https for the metadata and key documents. Only tests on loopback turn this off.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;
}

/// <summary>
/// Client calls with an Entra ID access token for the gateway's app registration (<c>Authorization: Bearer &lt;JWT&gt;</c>):
/// managed identities (app tokens) and single-page apps signing a user in with MSAL (delegated tokens). A token is valid
/// when it is signed by a key the tenant publishes, its issuer is the configured tenant's (v2.0, or v1 <c>sts.windows.net</c>),
/// its <c>tid</c> is <see cref="TenantId"/>, its audience is one of <see cref="Audiences"/>, it is within its lifetime (give or
/// take <see cref="ClockSkew"/>), and it carries <see cref="RequiredScope"/> (delegated) or <see cref="RequiredAppRole"/> (app).
/// It is then mapped to a key record by <see cref="Rules"/> (and rules made through the management API); see docs/entra-id-clients.md.
/// </summary>
public sealed class ClientTokenOptions
{
    /// <summary>
    /// The tenant's authority, e.g. <c>https://login.microsoftonline.com/{tenant-id}/v2.0</c>: one tenant, never
    /// <c>common</c>, <c>organizations</c> or <c>consumers</c>. Absent: client tokens are not accepted (keys only).
    /// </summary>
    public Uri? Authority { get; set; }

    /// <summary>The OpenID metadata document; defaults to <c>{Authority}/.well-known/openid-configuration</c>.</summary>
    public Uri? MetadataAddress { get; set; }

    /// <summary>The tenant (directory) id, a GUID: a token's <c>tid</c> must equal it, and it names the v1 issuer.</summary>
    public string? TenantId { get; set; }

    /// <summary>
    /// Accepted <c>aud</c> values: the gateway app registration's client id (v2 tokens) and/or its Application ID URI such as
    /// <c>api://funcproxy</c> (v1 tokens). At least one.
    /// </summary>
    public List<string> Audiences { get; set; } = [];

    /// <summary>
    /// Also accept v1 tokens (issuer <c>https://sts.windows.net/{TenantId}/</c>), which Entra issues when the app registration's
    /// <c>requestedAccessTokenVersion</c> is 1 or unset. Set the registration to 2 and this to false to accept v2 tokens only.
    /// </summary>
    public bool AcceptV1Tokens { get; set; } = true;

    /// <summary>The delegated scope a user's token (one with <c>scp</c>) must carry, e.g. <c>access_as_user</c>.</summary>
    public string RequiredScope { get; set; } = "access_as_user";

    /// <summary>The app role an app token (one without <c>scp</c>, e.g. a managed identity's) must carry in <c>roles</c>.</summary>
    public string RequiredAppRole { get; set; } = "FuncProxy.Client";

    /// <summary>Tolerance on <c>exp</c>/<c>nbf</c> for clocks that differ (0 to 5 minutes).</summary>
    public TimeSpan ClockSkew { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Require https for the metadata and key documents. Only tests on loopback turn this off.</summary>
    public bool RequireHttpsMetadata { get; set; } = true;

    /// <summary>
    /// Token-to-key rules from configuration, each with <see cref="TokenRuleOptions.KeyId"/> and exactly one matcher. When several
    /// match one token, an object id rule wins over an app id rule, which wins over an app role rule, which wins over a group
    /// rule; among role or group rules the first listed wins, and configured rules come before those made through the API.
    /// </summary>
    public List<TokenRuleOptions> Rules { get; set; } = [];

    /// <summary>How often each instance re-reads the rules made through the management API (one table query each time, never one per call).</summary>
    public TimeSpan RuleRefreshInterval { get; set; } = TimeSpan.FromSeconds(30);
}

/// <summary>One token-to-key rule: the key record a matching token acts as, and one matcher.</summary>
public sealed class TokenRuleOptions
{
    /// <summary>The key record (its id, e.g. <c>abcdefghij234567</c>) whose upstreams, limits and budgets apply.</summary>
    public string? KeyId { get; set; }

    /// <summary>The client application's id: <c>azp</c> (v2) or <c>appid</c> (v1), e.g. a managed identity's or an SPA's client id.</summary>
    public string? AppId { get; set; }

    /// <summary>The object id (<c>oid</c>) of a user (delegated tokens) or a service principal/managed identity (app tokens).</summary>
    public string? ObjectId { get; set; }

    /// <summary>An app role value in the token's <c>roles</c>.</summary>
    public string? AppRole { get; set; }

    /// <summary>A group object id in the token's <c>groups</c> (the app registration must emit group claims).</summary>
    public string? Group { get; set; }
}

/// <summary>What the limiter does while Table Storage cannot be reached (or answers slower than <see cref="LimitOptions.StorageTimeout"/>).</summary>
public enum StorageFailureMode
{
    /// <summary>Admit only what this instance's share of each limit allows: <c>limit / ExpectedInstances</c> per window. Recommended.</summary>
    LocalShare,

    /// <summary>Refuse with 503 whatever the leases already held in memory cannot cover.</summary>
    Closed,

    /// <summary>Admit everything until storage returns: limits are not enforced meanwhile.</summary>
    Open,
}

/// <summary>
/// Default limits (null: no such limit) and the limiter's knobs. Windows are fixed and aligned to UTC: seconds, minutes,
/// hours, days, calendar months. Several limits can apply at once; the tightest decides.
/// </summary>
public sealed class LimitOptions
{
    /// <summary>Requests per second, per key.</summary>
    public long? RequestsPerSecond { get; set; }

    /// <summary>Requests per minute, per key.</summary>
    public long? RequestsPerMinute { get; set; }

    /// <summary>Requests per hour, per key.</summary>
    public long? RequestsPerHour { get; set; }

    /// <summary>Tokens (input plus output) per minute, per key; reserved on admission and settled with the upstream's reported usage.</summary>
    public long? TokensPerMinute { get; set; }

    /// <summary>Daily request quota (UTC day), per key.</summary>
    public long? RequestsPerDay { get; set; }

    /// <summary>Monthly request quota (UTC calendar month), per key.</summary>
    public long? RequestsPerMonth { get; set; }

    /// <summary>Daily token quota (UTC day), per key.</summary>
    public long? TokensPerDay { get; set; }

    /// <summary>Monthly token quota (UTC calendar month), per key.</summary>
    public long? TokensPerMonth { get; set; }

    /// <summary>Behaviour while storage is down or slow. See <see cref="StorageFailureMode"/>; the default keeps serving within a local share of each limit.</summary>
    public StorageFailureMode StorageFailureMode { get; set; } = StorageFailureMode.LocalShare;

    /// <summary>
    /// How many instances usually serve traffic. Used for the local share while storage is down (<c>limit / ExpectedInstances</c>)
    /// and to cap each lease near the limit, so one instance cannot sit on permits the others need.
    /// </summary>
    public int ExpectedInstances { get; set; } = 4;

    /// <summary>Longest wait for one storage claim; past it the claim counts as a storage failure.</summary>
    public TimeSpan StorageTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>After a storage failure, how long the limiter stays in its failure mode before it tries storage again.</summary>
    public TimeSpan StorageRetryInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// A lease aims to cover this much of the instance's recent demand, so a steady hot key needs one storage write per
    /// this interval at most. Shorter: fairer between instances, more writes.
    /// </summary>
    public TimeSpan LeaseDemandWindow { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>
    /// Largest block one claim takes, in calls: requests for a request policy, and for a token policy this many times the
    /// tokens a call on this instance usually reserves.
    /// </summary>
    public long MaxLeaseBlock { get; set; } = 1000;

    /// <summary>
    /// Take window boundaries from storage's clock (the <c>Date</c> of its responses, tracked as an offset to the local clock),
    /// so instances whose clocks differ still agree on windows. Off: the local clock decides.
    /// </summary>
    public bool UseStorageClock { get; set; } = true;

    /// <summary>How much of a JSON request body is read ahead (then replayed to the upstream) to find <c>max_tokens</c> for the token reservation.</summary>
    public int TokenEstimatePeekBytes { get; set; } = 64 * 1024;

    /// <summary>Request body bytes counted as one input token when reserving (a rough, deliberately generous average).</summary>
    public int BytesPerToken { get; set; } = 4;

    /// <summary>Output tokens reserved when the request names no <c>max_tokens</c>, <c>max_completion_tokens</c> or <c>max_output_tokens</c>.</summary>
    public long DefaultOutputTokens { get; set; } = 1024;

    /// <summary>How often usage totals are written to the <c>usage</c> table (also on shutdown).</summary>
    public TimeSpan UsageFlushInterval { get; set; } = TimeSpan.FromSeconds(10);
}

/// <summary>
/// The <c>FuncProxy:Lockouts</c> section: per-IP lockouts (<see cref="KeyOptions.MaxFailuresPerIp"/>,
/// <see cref="AdminOptions.MaxFailedAttempts"/>) and the admin rate limit (<see cref="AdminOptions.RequestsPerMinutePerIp"/>)
/// across instances.
/// </summary>
public sealed class LockoutOptions
{
    /// <summary>
    /// Count failures and admin calls per IP in Table Storage with the limiter's leased counters, and share lockouts through
    /// the <c>lockouts</c> table, so N instances give an address the budget of one (docs/operations.md). Off: each instance
    /// counts and locks out on its own, in memory.
    /// </summary>
    public bool Shared { get; set; } = true;

    /// <summary>How often each instance reads the lockouts other instances wrote (one table query each time, never one per call).</summary>
    public TimeSpan SyncInterval { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>Audit log settings.</summary>
public sealed class AuditOptions
{
    /// <summary>
    /// How long audit events are kept (1 day to 100 years). Older events, in the time view and in each key's view, are
    /// deleted by a scheduled sweep: a hosted service on the Kestrel host (every <see cref="SweepInterval"/>), a timer
    /// function on the Functions host (daily). Export what you must keep longer first (<c>audit export</c>).
    /// </summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(400);

    /// <summary>How often the Kestrel host sweeps (1 second to 7 days; the first sweep runs a minute after start).</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromHours(6);

    /// <summary>At most this many rows are deleted by one sweep (100 to 1,000,000), so a first sweep over a large backlog is bounded; the next sweep goes on.</summary>
    public int MaxDeletesPerSweep { get; set; } = 50_000;
}
