using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Azure.Core.Pipeline;
using Azure.Security.KeyVault.Secrets;
using FuncProxy.Secrets;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Secrets;

/// <summary>The Key Vault path end to end: the real SecretClient over a transport that answers as Key Vault's REST API.</summary>
public sealed class KeyVaultSecretTests : IAsyncLifetime
{
    private readonly FakeKeyVault _vault = new();
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _vault.Set("provider-key", "vault-secret-v1");
        _stub.RequiredCredential = "Bearer vault-secret-v1";
        var origin = _stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        _gateway = await GatewayHost.StartAsync(
            new Dictionary<string, string?>
            {
                ["FuncProxy:KeyVault:VaultUri"] = FakeKeyVault.VaultUri.ToString(),
                ["FuncProxy:Upstreams:provider:BaseUrl"] = origin + "/echo/provider",
                ["FuncProxy:Upstreams:provider:SecretName"] = "provider-key",
                ["FuncProxy:Upstreams:gone:BaseUrl"] = origin + "/echo/gone",
                ["FuncProxy:Upstreams:gone:SecretName"] = "no-such-secret",
                // A secret in configuration must be ignored once a vault is configured.
                ["FuncProxy:Secrets:provider-key"] = "config-value-must-not-be-used",
            },
            services: s => s.AddSingleton(new SecretClient(FakeKeyVault.VaultUri, FakeKeyVault.Credential, new SecretClientOptions
            {
                Transport = new HttpClientTransport(new HttpClient(_vault)),
                Retry = { MaxRetries = 0 },
            })));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    private async Task<HttpResponseMessage> PostAsync(string key, string path = "/api/provider/chat", string body = """{"prompt":"hello"}""")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return await _gateway.Client.SendAsync(request);
    }

    [Fact]
    public async Task The_provider_secret_comes_from_the_vault_and_is_read_once_for_many_calls()
    {
        var key = await _gateway.MintKeyAsync("provider");
        for (var i = 0; i < 20; i++)
        {
            using var response = await PostAsync(key.Value);
            Assert.Equal(200, (int)response.StatusCode);
        }
        Assert.Equal(1, _vault.Reads);
        Assert.All(_stub.Requests, r => Assert.Equal("Bearer vault-secret-v1", r.Headers["Authorization"]));
    }

    [Fact]
    public async Task A_secret_rotated_in_the_vault_is_picked_up_on_the_first_401_and_the_call_is_replayed_once()
    {
        var key = await _gateway.MintKeyAsync("provider");
        using (var warm = await PostAsync(key.Value))
        {
            Assert.Equal(200, (int)warm.StatusCode);
        }

        _vault.Set("provider-key", "vault-secret-v2");
        _stub.RequiredCredential = "Bearer vault-secret-v2";
        var before = _stub.Requests.Count;
        const string Body = """{"prompt":"this body must arrive twice, whole"}""";
        using var response = await PostAsync(key.Value, body: Body);

        Assert.Equal(200, (int)response.StatusCode);
        var echoed = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(Encoding.UTF8.GetByteCount(Body), echoed.GetProperty("bodyLength").GetInt64());
        var attempts = _stub.Requests.Skip(before).ToList();
        Assert.Equal(2, attempts.Count);
        Assert.Equal("Bearer vault-secret-v1", attempts[0].Headers["Authorization"]);
        Assert.Equal("Bearer vault-secret-v2", attempts[1].Headers["Authorization"]);
        Assert.Equal(2, _vault.Reads);
    }

    [Fact]
    public async Task A_credential_the_upstream_keeps_rejecting_is_a_502_that_leaks_nothing_of_the_upstream_body()
    {
        var key = await _gateway.MintKeyAsync("provider");
        _stub.RequiredCredential = "Bearer something-else";
        using var response = await PostAsync(key.Value);
        var problem = await Problems.AssertProblemAsync(response, 502, "upstream_credential_rejected");
        Assert.DoesNotContain("sk-", problem.GetRawText(), StringComparison.Ordinal);
        Assert.DoesNotContain("Incorrect API key", problem.GetRawText(), StringComparison.Ordinal);
        Assert.False(_gateway.Logs.Contains("vault-secret-v1"));
    }

    [Fact]
    public async Task A_secret_missing_from_the_vault_is_a_503()
    {
        var key = await _gateway.MintKeyAsync("gone");
        using var response = await PostAsync(key.Value, "/api/gone/x");
        await Problems.AssertProblemAsync(response, 503, "credential_not_configured");
    }

    [Fact]
    public async Task While_the_vault_is_unreachable_the_cached_secret_keeps_serving()
    {
        var key = await _gateway.MintKeyAsync("provider");
        using (var warm = await PostAsync(key.Value))
        {
            Assert.Equal(200, (int)warm.StatusCode);
        }
        _vault.Down = true;
        // Force a refresh: the cached value is invalidated as after a 401, but the vault cannot answer.
        var cache = _gateway.Services.GetRequiredService<SecretCache>();
        var current = await cache.GetAsync("provider-key", CancellationToken.None);
        cache.Invalidate("provider-key", current.Generation);

        using var response = await PostAsync(key.Value);

        Assert.Equal(200, (int)response.StatusCode);
    }
}
