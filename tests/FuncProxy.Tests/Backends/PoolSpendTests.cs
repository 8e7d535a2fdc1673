using System.Net;
using System.Text;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static FuncProxy.Tests.Backends.PoolKit;

namespace FuncProxy.Tests.Backends;

/// <summary>Backend pools (issue 9) and spend control (issue 10) on one call path, on real stub backends and a real Azurite.</summary>
public sealed class PoolSpendTests
{
    [Fact]
    public async Task An_aliased_call_that_fails_over_is_mapped_to_the_serving_backends_deployment_and_metered_once_with_model_backend_and_cost()
    {
        await using var throttled = await UpstreamStub.StartAsync();
        throttled.Override = Throttled(retryAfterMs: 60_000);
        await using var healthy = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("throttled", V1(throttled), priority: 0),
            Backend("healthy", V1(healthy), priority: 1),
            new()
            {
                [$"FuncProxy:Upstreams:{Upstream}:Backends:healthy:Deployments:gpt-test-mini-2030"] = "eastus-mini",
                [$"FuncProxy:Upstreams:{Upstream}:Prices:0:Model"] = "gpt-test*",
                [$"FuncProxy:Upstreams:{Upstream}:Prices:0:InputPerMillion"] = "100",
                [$"FuncProxy:Upstreams:{Upstream}:Prices:0:OutputPerMillion"] = "200",
                [$"FuncProxy:Upstreams:{Upstream}:Prices:0:CachedInputPerMillion"] = "50",
                ["FuncProxy:Limits:UseStorageClock"] = "false",
            }));
        var key = await gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "pool-spend",
            AllowedUpstreams = [Upstream],
            AllowedModels = ["gpt-test-mini*"],
            ModelAliases = new Dictionary<string, string> { ["gpt-test"] = "gpt-test-mini-2030" },
            Limits = new KeyLimits { BudgetPerDayMicroUsd = 5_000_000 },
        });

        // Plain: the alias makes gpt-test-mini-2030, the throttled backend's 429 is held back, and the healthy backend gets
        // its own deployment name in the JSON model (the stub answers with the model it received).
        using (var response = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/chat/completions", key.Value, Chat("gpt-test")))
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {body}");
            Assert.Equal("eastus-mini", JsonDocument.Parse(body).RootElement.GetProperty("model").GetString());
        }

        // Streamed: include_usage is added once to the body before the attempts; the usage chunk the client did not ask for
        // is kept from it, and the usage it carried is metered.
        using (var response = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/chat/completions", key.Value, Chat("gpt-test", stream: true)))
        {
            var events = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {events}");
            Assert.Contains("\"model\":\"eastus-mini\"", events, StringComparison.Ordinal);
            Assert.DoesNotContain("\"prompt_tokens\"", events, StringComparison.Ordinal);
        }

        Assert.Equal(2, healthy.Requests.Count);
        var meter = gateway.Services.GetRequiredService<UsageMeter>();
        await meter.FlushAsync();
        var rows = await meter.ReadAsync(key.Record.Id, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(1));
        var row = Assert.Single(rows);
        Assert.Equal("healthy", row.Backend);
        Assert.Equal("gpt-test-mini-2030", row.Model);
        Assert.Equal(2, row.Requests); // once per client call, however many backends each call tried
        Assert.Equal(0, row.RequestsWithoutUsage);
        Assert.Equal(2 * (UpstreamStub.PromptTokens + UpstreamStub.CompletionTokens), row.InputTokens + row.OutputTokens);
        var expectedMicroUsd = 2 * (((UpstreamStub.PromptTokens - UpstreamStub.CachedTokens) * 100) + (UpstreamStub.CachedTokens * 50)
            + (UpstreamStub.CompletionTokens * 200));
        Assert.Equal(expectedMicroUsd, row.CostMicroUsd);
    }
}
