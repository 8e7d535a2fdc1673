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
            if (upstream.BaseUrl is null)
            {
                errors.Add($"{at}:BaseUrl is required.");
            }
            else if (!upstream.BaseUrl.IsAbsoluteUri || (upstream.BaseUrl.Scheme != Uri.UriSchemeHttp && upstream.BaseUrl.Scheme != Uri.UriSchemeHttps))
            {
                errors.Add($"{at}:BaseUrl must be an absolute http or https URL.");
            }
            else if (!string.IsNullOrEmpty(upstream.BaseUrl.Query) || !string.IsNullOrEmpty(upstream.BaseUrl.Fragment) || !string.IsNullOrEmpty(upstream.BaseUrl.UserInfo))
            {
                errors.Add($"{at}:BaseUrl must not carry a query, fragment or user info; put credentials in a secret.");
            }
            if (string.IsNullOrWhiteSpace(upstream.AuthHeader) || upstream.AuthHeader.Any(c => c <= ' ' || c >= 127 || c == ':'))
            {
                errors.Add($"{at}:AuthHeader must be a valid header name.");
            }
            if (upstream.AuthScheme is { } scheme && scheme.Trim().Any(c => c <= ' ' || c >= 127))
            {
                errors.Add($"{at}:AuthScheme must be a single token such as 'Bearer', or empty for a bare value.");
            }
            if (upstream.SecretName is { } secretName && !SecretNames.IsValid(secretName))
            {
                errors.Add($"{at}:SecretName must be 1-127 characters of letters, digits and '-', as Key Vault requires.");
            }
            if (upstream.Timeout is { } t && t <= TimeSpan.Zero)
            {
                errors.Add($"{at}:Timeout must be positive.");
            }
            if (upstream.MaxRequestBodyBytes is { } m && m <= 0)
            {
                errors.Add($"{at}:MaxRequestBodyBytes must be positive.");
            }
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
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
