using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;

namespace FuncProxy.Tests.Proxying;

public sealed class ForwardingTests : IAsyncLifetime
{
    private const string ProviderSecret = "sk-provider-test-secret-0001";
    private UpstreamStub _stub = null!;
    private GatewayHost _gateway = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _stub.RequiredCredential = "Bearer " + ProviderSecret;
        _gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:stub:BaseUrl"] = new Uri(_stub.BaseAddress, "/v1").ToString(),
            ["FuncProxy:Upstreams:stub:SecretName"] = "stub-key",
            ["FuncProxy:Secrets:stub-key"] = ProviderSecret,
            ["FuncProxy:Upstreams:echo:BaseUrl"] = new Uri(_stub.BaseAddress, "/echo/base").ToString(),
        });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _stub.DisposeAsync();
    }

    [Fact]
    public async Task A_valid_key_reaches_the_upstream_with_the_provider_credential_instead_of_its_own()
    {
        var key = await _gateway.MintKeyAsync("stub");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/stub/chat/completions")
        {
            Content = JsonContent.Create(new { model = "gpt-test", messages = new[] { new { role = "user", content = "hi" } } }),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);

        using var response = await _gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("Hello from the stub.", body.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        var seen = Assert.Single(_stub.Requests);
        Assert.Equal("/v1/chat/completions", seen.Path);
        Assert.Equal("Bearer " + ProviderSecret, seen.Headers["Authorization"]);
        Assert.DoesNotContain(seen.Headers.Values, v => v.Contains(key.Value, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_body_that_is_not_JSON_gets_the_providers_400_passed_through_not_a_500()
    {
        // Cut off mid-member: the gateway's read-ahead finds no model and forwards it; the provider's refusal reaches the client.
        var key = await _gateway.MintKeyAsync("stub");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/stub/chat/completions")
        {
            Content = new StringContent("{\"model\":", System.Text.Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);

        using var response = await _gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("invalid_request_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Single(_stub.Requests);
    }
}
