using FuncProxy.Tests.Infrastructure;
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
