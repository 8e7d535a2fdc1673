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

    /// <summary>Client key handling.</summary>
    public KeyOptions Keys { get; set; } = new();

    /// <summary>The management API under <c>/api/admin/</c>: who may call it and how hard.</summary>
    public AdminOptions Admin { get; set; } = new();

    /// <summary>
    /// Proxies (IP addresses or CIDR ranges such as <c>10.0.0.0/8</c>) whose <c>X-Forwarded-For</c> is believed when
    /// working out a caller's IP for lockouts, admin rate limits and the audit log. Empty (the default): the connection's
    /// remote address is the client, and <c>X-Forwarded-For</c> is ignored, since anyone can send it.
    /// </summary>
    public List<string> TrustedProxies { get; set; } = [];
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
    internal string EffectiveAuthScheme => AuthScheme switch
    {
        null => string.Equals(AuthHeader, "Authorization", StringComparison.OrdinalIgnoreCase) ? "Bearer" : "",
        var s when string.Equals(s, "none", StringComparison.OrdinalIgnoreCase) => "",
        var s => s.Trim(),
    };

    /// <summary>Overrides <see cref="ProxyOptions.UpstreamTimeout"/> for this upstream.</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>Overrides <see cref="ProxyOptions.MaxRequestBodyBytes"/> for this upstream.</summary>
    public long? MaxRequestBodyBytes { get; set; }
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
    /// before it is locked out for <see cref="LockoutDuration"/> (429 with <c>Retry-After</c>). Counted per instance. Zero: no lockout.
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
    /// <summary>Admin calls one client IP may make per minute (all outcomes count); more get 429 with <c>Retry-After</c>.</summary>
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
