using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FuncProxy.Tests.Configuration;

public sealed class OptionsValidationTests
{
    [Theory]
    [InlineData("FuncProxy:Upstreams:bad:BaseUrl", "not a url", "FuncProxy:Upstreams:bad:BaseUrl must be an absolute http or https URL")]
    [InlineData("FuncProxy:Upstreams:bad:BaseUrl", "ftp://example.com/", "FuncProxy:Upstreams:bad:BaseUrl must be an absolute http or https URL")]
    [InlineData("FuncProxy:Upstreams:bad:BaseUrl", "https://user:pw@example.com/v1", "must not carry a query, fragment or user info")]
    [InlineData("FuncProxy:Upstreams:admin:BaseUrl", "https://example.com/", "'admin' is reserved")]
    [InlineData("FuncProxy:Upstreams:bad:SecretName", "has spaces", "SecretName must be 1-127 characters")]
    [InlineData("FuncProxy:KeyVault:VaultUri", "http://vault.example/", "KeyVault:VaultUri must be an absolute https URL")]
    [InlineData("FuncProxy:Proxy:UpstreamTimeout", "-00:00:01", "Proxy:UpstreamTimeout must be positive")]
    [InlineData("FuncProxy:Keys:CacheDuration", "01:00:00", "Keys:CacheDuration must be between 0 and 5 minutes")]
    [InlineData("FuncProxy:Storage:TablePrefix", "1bad-prefix", "TablePrefix must be letters and digits")]
    [InlineData("FuncProxy:ClientIpHeader", "X-Client IP:", "FuncProxy:ClientIpHeader must be a valid header name")]
    [InlineData("FuncProxy:Upstreams:good:Cors:AllowedOrigins:0", "https://app.example.com/", "FuncProxy:Upstreams:good:Cors:AllowedOrigins: 'https://app.example.com/' is not an origin")]
    [InlineData("FuncProxy:Upstreams:good:Cors:AllowedOrigins:0", "app.example.com", "FuncProxy:Upstreams:good:Cors:AllowedOrigins: 'app.example.com' is not an origin")]
    [InlineData("FuncProxy:Upstreams:good:Cors:AllowedOrigins:0", "https://app.example.com/path", "is not an origin")]
    [InlineData("FuncProxy:Upstreams:good:Cors:AllowedOrigins:0", "null", "'null' is not an origin")]
    [InlineData("FuncProxy:Upstreams:good:Cors:AllowedOrigins:0", "ftp://files.example.com", "is not an origin")]
    [InlineData("FuncProxy:Upstreams:good:Cors:AllowedMethods:0", "TRACE", "FuncProxy:Upstreams:good:Cors:AllowedMethods: 'TRACE' is not a method the gateway forwards")]
    [InlineData("FuncProxy:Upstreams:good:Cors:ExposedHeaders:0", "*", "FuncProxy:Upstreams:good:Cors:ExposedHeaders must name headers")]
    [InlineData("FuncProxy:Upstreams:good:Cors:MaxAge", "03:00:00", "FuncProxy:Upstreams:good:Cors:MaxAge must be between 0 and 2 hours")]
    [InlineData("FuncProxy:ClientTokens:Authority", "https://login.microsoftonline.com/common/v2.0", "FuncProxy:ClientTokens:Authority must name one tenant")]
    [InlineData("FuncProxy:ClientTokens:Authority", "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0", "FuncProxy:ClientTokens:TenantId must be the tenant's id")]
    [InlineData("FuncProxy:ClientTokens:ClockSkew", "00:10:00", "FuncProxy:ClientTokens:ClockSkew must be between 0 and 5 minutes")]
    [InlineData("FuncProxy:ClientTokens:Rules:0:AppId", "00000000-0000-0000-0000-000000000001", "FuncProxy:ClientTokens:Rules:0:KeyId must be a key id")]
    [InlineData("FuncProxy:ClientTokens:Rules:0:KeyId", "abcdefghij234567", "FuncProxy:ClientTokens:Rules:0 must set exactly one of ObjectId, AppId, AppRole or Group")]
    [InlineData("FuncProxy:Requests:MaxTargetLength", "100000", "FuncProxy:Requests:MaxTargetLength must be between 256 and 65536")]
    [InlineData("FuncProxy:Requests:MaxHeadersTotalBytes", "0", "FuncProxy:Requests:MaxHeadersTotalBytes must be between 1024 and 262144")]
    [InlineData("FuncProxy:Requests:MaxHeaderCount", "5000", "FuncProxy:Requests:MaxHeaderCount must be between 10 and 1000")]
    public async Task A_bad_setting_fails_the_start_with_a_message_naming_it(string name, string value, string expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:good:BaseUrl"] = "https://example.com/v1",
            [name] = value,
        };
        if (name.EndsWith(":SecretName", StringComparison.Ordinal))
        {
            settings["FuncProxy:Upstreams:bad:BaseUrl"] = "https://example.com/";
        }
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => StartAsync(settings, name.EndsWith("TablePrefix", StringComparison.Ordinal) ? value : null));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("FuncProxy:Upstreams:pool:BaseUrl", "https://example.com/v1", "FuncProxy:Upstreams:pool: set either BaseUrl (and SecretName) for one backend or Backends for a pool, not both")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:a:Weight", "0", "FuncProxy:Upstreams:pool:Backends:a:Weight must be between 1 and 1000")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:a:Priority", "-1", "FuncProxy:Upstreams:pool:Backends:a:Priority must be between 0 and 1000")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:a:Auth", "Secret", "FuncProxy:Upstreams:pool:Backends:a:SecretName is required with Auth 'Secret'")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:a:ManagedIdentityClientId", "not-a-guid", "FuncProxy:Upstreams:pool:Backends:a:ManagedIdentityClientId must be a client id")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:a:Deployments:gpt-4o", "../other", "FuncProxy:Upstreams:pool:Backends:a:Deployments: 'gpt-4o' must map to a deployment name")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:b:Priority", "1", "FuncProxy:Upstreams:pool:Backends:b:BaseUrl is required")]
    [InlineData("FuncProxy:Upstreams:pool:Backends:a b:BaseUrl", "https://example.com/", "FuncProxy:Upstreams:pool:Backends:a b: a backend name is 1-64 characters")]
    [InlineData("FuncProxy:Upstreams:pool:Failover:MaxAttempts", "0", "FuncProxy:Upstreams:pool:Failover:MaxAttempts must be between 1 and 10")]
    [InlineData("FuncProxy:Upstreams:pool:Failover:RetryOnStatus:0", "404", "FuncProxy:Upstreams:pool:Failover:RetryOnStatus may list only 408, 429 and 5xx")]
    [InlineData("FuncProxy:Upstreams:pool:Failover:MaxReplayBodyBytes", "-1", "FuncProxy:Upstreams:pool:Failover:MaxReplayBodyBytes must be between 0 and 64 MiB")]
    [InlineData("FuncProxy:Upstreams:pool:Breaker:ConsecutiveFailures", "0", "FuncProxy:Upstreams:pool:Breaker:ConsecutiveFailures must be at least 1")]
    [InlineData("FuncProxy:Upstreams:pool:Breaker:BreakDuration", "00:00:00", "FuncProxy:Upstreams:pool:Breaker:BreakDuration must be positive")]
    [InlineData("FuncProxy:Proxy:BreakerSyncInterval", "00:00:00.010", "FuncProxy:Proxy:BreakerSyncInterval must be between 100 ms and 5 minutes")]
    public async Task A_bad_backend_pool_setting_fails_the_start_with_a_message_naming_it(string name, string value, string expected)
    {
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:pool:Backends:a:BaseUrl"] = "https://a.example.com/v1",
            [name] = value,
        };
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => StartAsync(settings, null));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_star_origin_with_credentials_fails_the_start()
    {
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:web:BaseUrl"] = "https://example.com/v1",
            ["FuncProxy:Upstreams:web:Cors:AllowedOrigins:0"] = "*",
            ["FuncProxy:Upstreams:web:Cors:AllowCredentials"] = "true",
        };
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => StartAsync(settings, null));
        Assert.Contains("FuncProxy:Upstreams:web:Cors:AllowedOrigins may not contain '*' while AllowCredentials is true", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_valid_pool_of_secret_keyless_and_managed_identity_backends_starts()
    {
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:azure:Backends:ptu:BaseUrl"] = "https://ptu.openai.azure.com",
            ["FuncProxy:Upstreams:azure:Backends:ptu:Auth"] = "ManagedIdentity",
            ["FuncProxy:Upstreams:azure:Backends:ptu:Deployments:gpt-4o"] = "gpt4o-ptu",
            ["FuncProxy:Upstreams:azure:Backends:eastus:BaseUrl"] = "https://eastus.openai.azure.com",
            ["FuncProxy:Upstreams:azure:Backends:eastus:Priority"] = "1",
            ["FuncProxy:Upstreams:azure:Backends:eastus:SecretName"] = "aoai-eastus",
            ["FuncProxy:Upstreams:azure:Backends:eastus:AuthHeader"] = "api-key",
            ["FuncProxy:Upstreams:azure:Backends:local:BaseUrl"] = "http://127.0.0.1:1/v1",
            ["FuncProxy:Upstreams:azure:Backends:local:Priority"] = "2",
            ["FuncProxy:Upstreams:azure:Failover:RetryOnStatus:0"] = "429",
        };
        await using var host = await GatewayHost.StartAsync(settings);
        var route = host.Services.GetRequiredService<FuncProxy.Proxying.UpstreamCatalog>().Find("azure")!;
        Assert.Equal(["ptu", "eastus", "local"], route.Pool.Backends.Select(b => b.Name));
        Assert.Equal([FuncProxy.BackendAuth.ManagedIdentity, FuncProxy.BackendAuth.Secret, FuncProxy.BackendAuth.None], route.Pool.Backends.Select(b => b.Auth));
        Assert.Equal("azure.ai.openai", route.Provider);
        Assert.Equal([429], route.RetryOnStatus);
    }

    [Fact]
    public async Task Missing_storage_settings_fail_the_start_with_a_message_naming_both_choices()
    {
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() =>
            GatewayHost.StartAsync(new Dictionary<string, string?>(), connectionString: ""));
        Assert.Contains("set ConnectionString", error.Message, StringComparison.Ordinal);
        Assert.Contains("TableServiceUri", error.Message, StringComparison.Ordinal);
    }

    private static async Task StartAsync(Dictionary<string, string?> settings, string? prefix)
    {
        await using var host = await GatewayHost.StartAsync(settings, tablePrefix: prefix);
    }
}
