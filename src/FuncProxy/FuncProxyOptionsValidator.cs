using FuncProxy.Proxying;
using FuncProxy.Secrets;
using Microsoft.Extensions.Options;

namespace FuncProxy;

/// <summary>Checks the whole <see cref="FuncProxyOptions"/> at start so a bad setting fails fast with a message naming it.</summary>
internal sealed class FuncProxyOptionsValidator : IValidateOptions<FuncProxyOptions>
{
    // Route segments that the hosts own; an upstream with one of these names could never be reached.
    internal static readonly string[] ReservedUpstreamNames = ["admin", "health"];

    public ValidateOptionsResult Validate(string? name, FuncProxyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();
        const string P = FuncProxyOptions.SectionName;

        var storage = options.Storage;
        if (string.IsNullOrWhiteSpace(storage.ConnectionString) && storage.TableServiceUri is null)
        {
            errors.Add($"{P}:Storage: set ConnectionString (locally 'UseDevelopmentStorage=true') or TableServiceUri (managed identity in Azure).");
        }
        if (storage.TableServiceUri is { } tableUri && (!tableUri.IsAbsoluteUri || (tableUri.Scheme != Uri.UriSchemeHttps && !tableUri.IsLoopback)))
        {
            errors.Add($"{P}:Storage:TableServiceUri must be an absolute https URL (http only on loopback).");
        }
        if (!System.Text.RegularExpressions.Regex.IsMatch(storage.TablePrefix ?? "", "^([A-Za-z][A-Za-z0-9]{0,30})?$"))
        {
            errors.Add($"{P}:Storage:TablePrefix must be letters and digits, starting with a letter, at most 31 characters.");
        }

        if (options.KeyVault.VaultUri is { } vault && (!vault.IsAbsoluteUri || vault.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"{P}:KeyVault:VaultUri must be an absolute https URL such as https://my-vault.vault.azure.net/.");
        }
        if (options.KeyVault.RefreshAfter <= TimeSpan.Zero)
        {
            errors.Add($"{P}:KeyVault:RefreshAfter must be positive.");
        }
        if (options.KeyVault.StaleIfErrorFor < TimeSpan.Zero)
        {
            errors.Add($"{P}:KeyVault:StaleIfErrorFor must not be negative.");
        }

        if (options.Proxy.UpstreamTimeout <= TimeSpan.Zero)
        {
            errors.Add($"{P}:Proxy:UpstreamTimeout must be positive.");
        }
        if (options.Proxy.MaxRequestBodyBytes <= 0)
        {
            errors.Add($"{P}:Proxy:MaxRequestBodyBytes must be positive.");
        }
        if (options.Requests.MaxTargetLength is < 256 or > 64 * 1024)
        {
            errors.Add($"{P}:Requests:MaxTargetLength must be between 256 and 65536.");
        }
        if (options.Requests.MaxHeadersTotalBytes is < 1024 or > 256 * 1024)
        {
            errors.Add($"{P}:Requests:MaxHeadersTotalBytes must be between 1024 and 262144.");
        }
        if (options.Requests.MaxHeaderCount is < 10 or > 1000)
        {
            errors.Add($"{P}:Requests:MaxHeaderCount must be between 10 and 1000.");
        }
        if (options.Keys.CacheDuration < TimeSpan.Zero || options.Keys.CacheDuration > TimeSpan.FromMinutes(5))
        {
            errors.Add($"{P}:Keys:CacheDuration must be between 0 and 5 minutes: it bounds how long a revoked key keeps working.");
        }

        if (options.Keys.MaxFailuresPerIp < 0 || options.Keys.FailureWindow <= TimeSpan.Zero || options.Keys.LockoutDuration < TimeSpan.Zero)
        {
            errors.Add($"{P}:Keys: MaxFailuresPerIp must not be negative, FailureWindow must be positive and LockoutDuration not negative.");
        }
        var admin = options.Admin;
        if (admin.RequestsPerMinutePerIp <= 0)
        {
            errors.Add($"{P}:Admin:RequestsPerMinutePerIp must be positive.");
        }
        if (admin.MaxFailedAttempts < 0 || admin.FailureWindow <= TimeSpan.Zero || admin.LockoutDuration < TimeSpan.Zero)
        {
            errors.Add($"{P}:Admin: MaxFailedAttempts must not be negative, FailureWindow must be positive and LockoutDuration not negative.");
        }
        if (admin.MaxRotationGracePeriod < TimeSpan.Zero || admin.MaxRotationGracePeriod > TimeSpan.FromDays(90))
        {
            errors.Add($"{P}:Admin:MaxRotationGracePeriod must be between 0 and 90 days.");
        }
        if (admin.EntraId.Authority is { } authority)
        {
            if (!authority.IsAbsoluteUri || (authority.Scheme != Uri.UriSchemeHttps && (admin.EntraId.RequireHttpsMetadata || authority.Scheme != Uri.UriSchemeHttp)))
            {
                errors.Add($"{P}:Admin:EntraId:Authority must be an absolute https URL such as https://login.microsoftonline.com/<tenant-id>/v2.0.");
            }
            if (string.IsNullOrWhiteSpace(admin.EntraId.Audience))
            {
                errors.Add($"{P}:Admin:EntraId:Audience is required with an Authority.");
            }
            if (string.IsNullOrWhiteSpace(admin.EntraId.RequiredRole))
            {
                errors.Add($"{P}:Admin:EntraId:RequiredRole must name the app role that makes a caller an admin.");
            }
        }
        ValidateClientTokens(options.ClientTokens, errors);
        foreach (var proxy in options.TrustedProxies)
        {
            if (!Http.ClientAddress.TryParseNetwork(proxy, out _))
            {
                errors.Add($"{P}:TrustedProxies: '{proxy}' is not an IP address or CIDR range.");
            }
        }
        if (!string.IsNullOrWhiteSpace(options.ClientIpHeader) && options.ClientIpHeader.Trim().Any(c => c <= ' ' || c >= 127 || c == ':'))
        {
            errors.Add($"{P}:ClientIpHeader must be a valid header name (such as X-Client-IP) or left unset.");
        }
        if (options.Audit.Retention < TimeSpan.FromDays(1) || options.Audit.Retention > TimeSpan.FromDays(36_500))
        {
            errors.Add($"{P}:Audit:Retention must be between 1 day and 100 years (e.g. 400.00:00:00).");
        }
        if (options.Audit.SweepInterval < TimeSpan.FromSeconds(1) || options.Audit.SweepInterval > TimeSpan.FromDays(7))
        {
            errors.Add($"{P}:Audit:SweepInterval must be between 1 second and 7 days.");
        }
        if (options.Audit.MaxDeletesPerSweep is < 100 or > 1_000_000)
        {
            errors.Add($"{P}:Audit:MaxDeletesPerSweep must be between 100 and 1000000.");
        }
        ValidateLimits(options.Limits, errors);

        if (!Enum.IsDefined(options.Spend.UnpricedModels))
        {
            errors.Add($"{P}:Spend:UnpricedModels must be Refuse or Allow.");
        }
        foreach (var (upstreamName, upstream) in options.Upstreams)
        {
            var at = $"{P}:Upstreams:{upstreamName}";
            Spend.PriceTable.Validate($"{at}:Prices", upstream.Prices, errors);
            if (!UpstreamCatalog.IsValidName(upstreamName))
            {
                errors.Add($"{at}: an upstream name is 1-64 characters of letters, digits, '-' or '_'.");
            }
            if (ReservedUpstreamNames.Contains(upstreamName, StringComparer.OrdinalIgnoreCase))
            {
                errors.Add($"{at}: '{upstreamName}' is reserved for the gateway's own routes.");
            }
            if (upstream.Backends.Count == 0)
            {
                if (upstream.BaseUrl is null)
                {
                    errors.Add($"{at}:BaseUrl is required (or a pool under {at}:Backends).");
                }
                ValidateEndpoint(at, upstream.BaseUrl, upstream.AuthHeader, upstream.AuthScheme, upstream.SecretName, errors);
            }
            else
            {
                if (upstream.BaseUrl is not null || !string.IsNullOrWhiteSpace(upstream.SecretName))
                {
                    errors.Add($"{at}: set either BaseUrl (and SecretName) for one backend or Backends for a pool, not both.");
                }
                foreach (var (backendName, backend) in upstream.Backends)
                {
                    ValidateBackend($"{at}:Backends:{backendName}", backendName, backend, errors);
                }
            }
            if (upstream.Timeout is { } t && t <= TimeSpan.Zero)
            {
                errors.Add($"{at}:Timeout must be positive.");
            }
            if (upstream.MaxRequestBodyBytes is { } m && m <= 0)
            {
                errors.Add($"{at}:MaxRequestBodyBytes must be positive.");
            }
            if (upstream.Provider is { } provider && !System.Text.RegularExpressions.Regex.IsMatch(provider, "^[a-z0-9_.-]{1,64}$"))
            {
                errors.Add($"{at}:Provider must be a lower-case OpenTelemetry provider name such as 'openai' or 'azure.ai.openai'.");
            }
            CrossOrigin.Validate($"{at}:Cors", upstream.Cors, errors);
            var failover = upstream.Failover;
            if (failover.MaxAttempts is < 1 or > 10)
            {
                errors.Add($"{at}:Failover:MaxAttempts must be between 1 and 10.");
            }
            if (failover.RetryOnStatus is { } statuses && statuses.Any(s => s is not (408 or 429) && s is < 500 or > 599))
            {
                errors.Add($"{at}:Failover:RetryOnStatus may list only 408, 429 and 5xx status codes.");
            }
            if (failover.MaxReplayBodyBytes is < 0 or > 64 * 1024 * 1024)
            {
                errors.Add($"{at}:Failover:MaxReplayBodyBytes must be between 0 and 64 MiB: bodies up to it are held in memory.");
            }
            var breaker = upstream.Breaker;
            if (breaker.ConsecutiveFailures < 1)
            {
                errors.Add($"{at}:Breaker:ConsecutiveFailures must be at least 1.");
            }
            if (breaker.BreakDuration <= TimeSpan.Zero || breaker.BreakDuration > TimeSpan.FromDays(1))
            {
                errors.Add($"{at}:Breaker:BreakDuration must be positive and at most a day.");
            }
            if (breaker.MaxRetryAfter < TimeSpan.Zero || breaker.MaxRetryAfter > TimeSpan.FromDays(1))
            {
                errors.Add($"{at}:Breaker:MaxRetryAfter must be between 0 and a day.");
            }
        }
        if (options.Lockouts.SyncInterval < TimeSpan.FromMilliseconds(100) || options.Lockouts.SyncInterval > TimeSpan.FromMinutes(5))
        {
            errors.Add($"{P}:Lockouts:SyncInterval must be between 100 ms and 5 minutes.");
        }
        if (options.Proxy.BreakerSyncInterval < TimeSpan.FromMilliseconds(100) || options.Proxy.BreakerSyncInterval > TimeSpan.FromMinutes(5))
        {
            errors.Add($"{P}:Proxy:BreakerSyncInterval must be between 100 ms and 5 minutes.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private static void ValidateBackend(string at, string name, BackendOptions backend, List<string> errors)
    {
        if (!UpstreamCatalog.IsValidName(name))
        {
            errors.Add($"{at}: a backend name is 1-64 characters of letters, digits, '-' or '_'.");
        }
        if (backend.BaseUrl is null)
        {
            errors.Add($"{at}:BaseUrl is required.");
        }
        ValidateEndpoint(at, backend.BaseUrl, backend.AuthHeader, backend.AuthScheme, backend.SecretName, errors);
        if (backend.Timeout is { } timeout && timeout <= TimeSpan.Zero)
        {
            errors.Add($"{at}:Timeout must be positive.");
        }
        if (backend.Priority is < 0 or > 1000)
        {
            errors.Add($"{at}:Priority must be between 0 and 1000 (lower goes first).");
        }
        if (backend.Weight is < 1 or > 1000)
        {
            errors.Add($"{at}:Weight must be between 1 and 1000.");
        }
        if (backend.Auth is { } auth && !Enum.IsDefined(auth))
        {
            errors.Add($"{at}:Auth must be Secret, None or ManagedIdentity.");
        }
        switch (backend.EffectiveAuth)
        {
            case BackendAuth.Secret when string.IsNullOrWhiteSpace(backend.SecretName):
                errors.Add($"{at}:SecretName is required with Auth 'Secret'.");
                break;
            case BackendAuth.ManagedIdentity when string.IsNullOrWhiteSpace(backend.TokenScope) || backend.TokenScope.Any(char.IsWhiteSpace):
                errors.Add($"{at}:TokenScope must be one scope such as 'https://cognitiveservices.azure.com/.default'.");
                break;
            case BackendAuth.ManagedIdentity or BackendAuth.None when !string.IsNullOrWhiteSpace(backend.SecretName):
                errors.Add($"{at}:SecretName is only used with Auth 'Secret'; remove it or set Auth to Secret.");
                break;
        }
        if (backend.ManagedIdentityClientId is { } clientId && !Guid.TryParse(clientId, out _))
        {
            errors.Add($"{at}:ManagedIdentityClientId must be a client id (a GUID).");
        }
        foreach (var (from, to) in backend.Deployments)
        {
            if (string.IsNullOrWhiteSpace(from) || string.IsNullOrWhiteSpace(to) || to.Any(c => c is '/' or '\\' or '?' or '#' || char.IsControl(c)) || to is "." or "..")
            {
                errors.Add($"{at}:Deployments: '{from}' must map to a deployment name without '/', '\\', '?', '#' or control characters.");
            }
        }
    }

    private static void ValidateEndpoint(string at, Uri? baseUrl, string authHeader, string? authScheme, string? secretName, List<string> errors)
    {
        if (baseUrl is null)
        {
            return;
        }
        if (!baseUrl.IsAbsoluteUri || (baseUrl.Scheme != Uri.UriSchemeHttp && baseUrl.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"{at}:BaseUrl must be an absolute http or https URL.");
        }
        else if (!string.IsNullOrEmpty(baseUrl.Query) || !string.IsNullOrEmpty(baseUrl.Fragment) || !string.IsNullOrEmpty(baseUrl.UserInfo))
        {
            errors.Add($"{at}:BaseUrl must not carry a query, fragment or user info; put credentials in a secret.");
        }
        if (string.IsNullOrWhiteSpace(authHeader) || authHeader.Any(c => c <= ' ' || c >= 127 || c == ':'))
        {
            errors.Add($"{at}:AuthHeader must be a valid header name.");
        }
        if (authScheme is { } scheme && scheme.Trim().Any(c => c <= ' ' || c >= 127))
        {
            errors.Add($"{at}:AuthScheme must be a single token such as 'Bearer', or empty for a bare value.");
        }
        if (secretName is { } name && !SecretNames.IsValid(name))
        {
            errors.Add($"{at}:SecretName must be 1-127 characters of letters, digits and '-', as Key Vault requires.");
        }
    }

    private static void ValidateClientTokens(ClientTokenOptions tokens, List<string> errors)
    {
        const string At = FuncProxyOptions.SectionName + ":ClientTokens";
        if (tokens.ClockSkew < TimeSpan.Zero || tokens.ClockSkew > TimeSpan.FromMinutes(5))
        {
            errors.Add($"{At}:ClockSkew must be between 0 and 5 minutes.");
        }
        if (tokens.RuleRefreshInterval < TimeSpan.FromSeconds(1) || tokens.RuleRefreshInterval > TimeSpan.FromHours(1))
        {
            errors.Add($"{At}:RuleRefreshInterval must be between 1 second and 1 hour.");
        }
        var seen = new HashSet<(EntraId.TokenMatch, string)>();
        for (var i = 0; i < tokens.Rules.Count; i++)
        {
            var rule = tokens.Rules[i];
            var matcher = EntraId.TokenRules.Matcher(rule);
            if (matcher is not { } m)
            {
                errors.Add($"{At}:Rules:{i} must set exactly one of ObjectId, AppId, AppRole or Group.");
            }
            else if (!EntraId.TokenRule.IsValidValue(m.Value.Trim()))
            {
                errors.Add($"{At}:Rules:{i}: the {EntraId.TokenRule.NameOf(m.Match)} must be 1-{EntraId.TokenRule.MaxValueLength} printable ASCII characters without spaces.");
            }
            else if (!seen.Add((m.Match, m.Match == EntraId.TokenMatch.AppRole ? m.Value.Trim() : m.Value.Trim().ToUpperInvariant())))
            {
                errors.Add($"{At}:Rules:{i}: another rule already maps this {EntraId.TokenRule.NameOf(m.Match)}.");
            }
            if (rule.KeyId is null || !Keys.ApiKey.IsValidId(rule.KeyId.Trim()))
            {
                errors.Add($"{At}:Rules:{i}:KeyId must be a key id (16 characters a-z, 2-7), as 'keys list' shows it.");
            }
        }
        if (tokens.Authority is not { } authority)
        {
            if (tokens.Rules.Count > 0)
            {
                errors.Add($"{At}:Rules need {At}:Authority (and TenantId, Audiences).");
            }
            return;
        }
        if (!authority.IsAbsoluteUri || (authority.Scheme != Uri.UriSchemeHttps && (tokens.RequireHttpsMetadata || authority.Scheme != Uri.UriSchemeHttp)))
        {
            errors.Add($"{At}:Authority must be an absolute https URL such as https://login.microsoftonline.com/<tenant-id>/v2.0.");
        }
        else if (authority.Segments.Any(s => s.Trim('/') is { } t && (t.Equals("common", StringComparison.OrdinalIgnoreCase) || t.Equals("organizations", StringComparison.OrdinalIgnoreCase) || t.Equals("consumers", StringComparison.OrdinalIgnoreCase))))
        {
            errors.Add($"{At}:Authority must name one tenant (https://login.microsoftonline.com/<tenant-id>/v2.0), not common, organizations or consumers.");
        }
        if (!Guid.TryParseExact(tokens.TenantId, "D", out _))
        {
            errors.Add($"{At}:TenantId must be the tenant's id, a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47.");
        }
        if (tokens.Audiences.Count == 0 || tokens.Audiences.Any(string.IsNullOrWhiteSpace))
        {
            errors.Add($"{At}:Audiences must list the gateway app registration's client id and/or Application ID URI (api://...).");
        }
        if (string.IsNullOrWhiteSpace(tokens.RequiredScope) || string.IsNullOrWhiteSpace(tokens.RequiredAppRole))
        {
            errors.Add($"{At}: RequiredScope (delegated tokens) and RequiredAppRole (app tokens) must be set.");
        }
    }

    private static void ValidateLimits(LimitOptions limits, List<string> errors)
    {
        const string At = FuncProxyOptions.SectionName + ":Limits";
        foreach (var (name, value) in new (string, long?)[]
        {
            (nameof(limits.RequestsPerSecond), limits.RequestsPerSecond), (nameof(limits.RequestsPerMinute), limits.RequestsPerMinute),
            (nameof(limits.RequestsPerHour), limits.RequestsPerHour), (nameof(limits.TokensPerMinute), limits.TokensPerMinute),
            (nameof(limits.RequestsPerDay), limits.RequestsPerDay), (nameof(limits.RequestsPerMonth), limits.RequestsPerMonth),
            (nameof(limits.TokensPerDay), limits.TokensPerDay), (nameof(limits.TokensPerMonth), limits.TokensPerMonth),
        })
        {
            if (value is <= 0)
            {
                errors.Add($"{At}:{name} must be positive, or absent for no limit.");
            }
        }
        if (!Enum.IsDefined(limits.StorageFailureMode))
        {
            errors.Add($"{At}:StorageFailureMode must be LocalShare, Closed or Open.");
        }
        if (limits.ExpectedInstances is < 1 or > 10_000)
        {
            errors.Add($"{At}:ExpectedInstances must be between 1 and 10000.");
        }
        if (limits.StorageTimeout <= TimeSpan.Zero || limits.StorageTimeout > TimeSpan.FromSeconds(30))
        {
            errors.Add($"{At}:StorageTimeout must be positive and at most 30 seconds: requests wait for it.");
        }
        if (limits.StorageRetryInterval <= TimeSpan.Zero)
        {
            errors.Add($"{At}:StorageRetryInterval must be positive.");
        }
        if (limits.LeaseDemandWindow <= TimeSpan.Zero || limits.LeaseDemandWindow > TimeSpan.FromSeconds(10))
        {
            errors.Add($"{At}:LeaseDemandWindow must be positive and at most 10 seconds.");
        }
        if (limits.MaxLeaseBlock < 1)
        {
            errors.Add($"{At}:MaxLeaseBlock must be at least 1.");
        }
        if (limits.TokenEstimatePeekBytes is < 0 or > 1024 * 1024)
        {
            errors.Add($"{At}:TokenEstimatePeekBytes must be between 0 and 1 MiB.");
        }
        if (limits.BytesPerToken < 1)
        {
            errors.Add($"{At}:BytesPerToken must be at least 1.");
        }
        if (limits.DefaultOutputTokens < 0)
        {
            errors.Add($"{At}:DefaultOutputTokens must not be negative.");
        }
        if (limits.UsageFlushInterval <= TimeSpan.Zero)
        {
            errors.Add($"{At}:UsageFlushInterval must be positive.");
        }
    }
}
