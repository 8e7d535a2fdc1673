using System.Net.Http.Headers;
using System.Text;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;
using OpenAI.Chat;

namespace FuncProxy.Tests.Proxying;

public sealed class SecretHygieneTests
{
    [Fact]
    public async Task No_log_line_or_error_body_ever_holds_a_client_key_or_a_provider_secret()
    {
        const string ProviderSecret = "provider-secret-never-logged-42";
        await using var stub = await UpstreamStub.StartAsync();
        var origin = stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        await using var gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:stub:BaseUrl"] = origin + "/v1",
            ["FuncProxy:Upstreams:stub:SecretName"] = "stub-key",
            ["FuncProxy:Secrets:stub-key"] = ProviderSecret,
            ["FuncProxy:Upstreams:slow:BaseUrl"] = origin,
            ["FuncProxy:Upstreams:slow:Timeout"] = "00:00:00.500",
            ["FuncProxy:Upstreams:slow:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:dead:BaseUrl"] = RefusingPort.Url(),
            ["FuncProxy:Upstreams:dead:SecretName"] = "stub-key",
        });
        var key = await gateway.MintKeyAsync("stub", "slow", "dead");
        var revoked = await gateway.MintKeyAsync("stub");
        await gateway.Services.GetService<FuncProxy.Keys.KeyLifecycle>()!.RevokeAsync(revoked.Record.Id);
        var bodies = new StringBuilder();

        async Task CallAsync(string path, string presented, string? body = null)
        {
            using var request = new HttpRequestMessage(body is null ? HttpMethod.Get : HttpMethod.Post, path);
            if (body is not null)
            {
                request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            }
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", presented);
            using var response = await gateway.Client.SendAsync(request);
            bodies.Append(await response.Content.ReadAsStringAsync());
            bodies.Append(response.Headers);
        }

        // Success, every refusal, provider rejection, timeout and unreachable upstream, plus an SDK streaming call.
        await CallAsync("/api/stub/chat/completions", key.Value, """{"model":"m","messages":[]}""");
        await CallAsync("/api/stub/chat/completions", revoked.Value, "{}");
        await CallAsync("/api/stub/chat/completions", key.Value[..^2] + "zz", "{}");
        await CallAsync("/api/stub/chat/completions", FuncProxy.Keys.ApiKey.GenerateFor(key.Record.Id).Value, "{}");
        await CallAsync("/api/nowhere/x", key.Value);
        await CallAsync("/api/stub/../../x", key.Value);
        await CallAsync("/api/slow/hang", key.Value);
        await CallAsync("/api/dead/x", key.Value);
        stub.RequiredCredential = "Bearer other";
        await CallAsync("/api/stub/chat/completions", key.Value, """{"model":"m","messages":[]}""");
        stub.RequiredCredential = null;
        var chat = new OpenAIClient(new System.ClientModel.ApiKeyCredential(key.Value), new OpenAIClientOptions { Endpoint = new Uri(gateway.BaseAddress, "/api/stub") }).GetChatClient("m");
        await foreach (var _ in chat.CompleteChatStreamingAsync([new UserChatMessage("hi")]))
        {
        }

        Assert.NotEmpty(gateway.Logs.Lines);
        foreach (var secret in new[] { key.Value, key.Record.Id + "_", revoked.Value, ProviderSecret })
        {
            Assert.DoesNotContain(gateway.Logs.Lines, line => line.Contains(secret, StringComparison.Ordinal));
            Assert.DoesNotContain(secret, bodies.ToString(), StringComparison.Ordinal);
        }
        // The key secret half alone must not appear either (it is the part after the id).
        var secretHalf = key.Value[(4 + 16 + 1)..];
        Assert.DoesNotContain(gateway.Logs.Lines, line => line.Contains(secretHalf, StringComparison.Ordinal));
        // Refusals are logged by key id and reason, so operators can still see what happened.
        Assert.Contains(gateway.Logs.Lines, line => line.Contains(revoked.Record.Id, StringComparison.Ordinal) && line.Contains("Revoked", StringComparison.Ordinal));
    }
}
