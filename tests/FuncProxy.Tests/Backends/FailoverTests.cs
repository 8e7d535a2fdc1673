using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using FuncProxy.Proxying;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using static FuncProxy.Tests.Backends.PoolKit;

namespace FuncProxy.Tests.Backends;

/// <summary>Choosing among a pool's backends and failing over, on real stub backends over loopback and a real Azurite.</summary>
public sealed class FailoverTests
{
    [Fact]
    public async Task No_client_sees_an_error_while_a_healthy_backend_remains_and_usage_names_the_backend_that_served()
    {
        await using var throttled = await UpstreamStub.StartAsync();
        throttled.Override = Throttled(retryAfterMs: 60_000);
        await using var slow = await UpstreamStub.StartAsync();
        slow.Override = Hanging;
        await using var healthy = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("throttled", V1(throttled), priority: 0),
            Backend("refusing", Refusing(), priority: 0),
            Backend("slow", V1(slow), priority: 0),
            new() { [$"FuncProxy:Upstreams:{Upstream}:Backends:slow:Timeout"] = "00:00:01" },
            Backend("healthy", V1(healthy), priority: 1),
            new() { [$"FuncProxy:Upstreams:{Upstream}:Failover:MaxAttempts"] = "4" }));
        var key = await gateway.MintKeyAsync(Upstream);

        for (var i = 0; i < 8; i++)
        {
            using var response = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/chat/completions", key.Value, Chat());
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"call {i}: {(int)response.StatusCode} {body}");
            Assert.Contains("Hello from the stub.", body, StringComparison.Ordinal);
        }

        Assert.Equal(8, healthy.Requests.Count);
        Assert.Single(throttled.Requests); // its Retry-After opened its breaker for a minute after the first 429
        var meter = gateway.Services.GetRequiredService<UsageMeter>();
        await meter.FlushAsync();
        var rows = await meter.ReadAsync(key.Record.Id, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(1));
        var row = Assert.Single(rows);
        Assert.Equal("healthy", row.Backend);
        Assert.Equal(8, row.Requests); // once per client call, however many backends each call tried
        Assert.Equal(8 * (UpstreamStub.PromptTokens + UpstreamStub.CompletionTokens), row.InputTokens + row.OutputTokens);
    }

    [Fact]
    public async Task When_every_backend_fails_the_client_sees_the_last_backends_answer()
    {
        await using var first = await UpstreamStub.StartAsync();
        first.Override = Failing(503, "first");
        await using var second = await UpstreamStub.StartAsync();
        second.Override = Failing(500, "second");
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("first", V1(first), priority: 0),
            Backend("second", V1(second), priority: 1)));
        var key = await gateway.MintKeyAsync(Upstream);

        using var response = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/chat/completions", key.Value, Chat());

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        Assert.Contains("failed at second", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Single(first.Requests);
        Assert.Single(second.Requests);
    }

    [Fact]
    public async Task The_best_priority_takes_every_call_while_it_is_healthy_and_the_next_takes_over_when_it_fails()
    {
        await using var primary = await UpstreamStub.StartAsync();
        await using var secondary = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("primary", V1(primary), priority: 0, weight: 1),
            Backend("secondary", V1(secondary), priority: 1, weight: 100)));
        var key = await gateway.MintKeyAsync(Upstream);

        for (var i = 0; i < 20; i++)
        {
            using var response = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/chat/completions", key.Value, Chat());
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(20, primary.Requests.Count);
        Assert.Empty(secondary.Requests);

        primary.Override = Failing(502, "primary");
        using (var response = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/chat/completions", key.Value, Chat()))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Single(secondary.Requests);
    }

    [Fact]
    public async Task Weights_share_calls_within_ten_points_of_their_ratio()
    {
        // Weights 1:3 over 400 calls: the heavier backend's share has a standard deviation of about 2.2 points, so a
        // tolerance of 10 points fails by chance about once in 100,000 runs.
        await using var light = await UpstreamStub.StartAsync();
        await using var heavy = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("light", V1(light), weight: 1),
            Backend("heavy", V1(heavy), weight: 3)));
        var key = await gateway.MintKeyAsync(Upstream);

        const int Calls = 400;
        await Parallel.ForAsync(0, Calls, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
        {
            using var response = await gateway.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        });

        Assert.Equal(Calls, light.Requests.Count + heavy.Requests.Count);
        Assert.InRange(heavy.Requests.Count / (double)Calls, 0.65, 0.85);
    }

    [Fact]
    public async Task A_body_above_the_replay_limit_goes_to_one_backend_only_and_a_smaller_one_is_replayed_whole()
    {
        await using var failing = await UpstreamStub.StartAsync();
        failing.Override = Failing(503, "failing");
        await using var healthy = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("failing", V1(failing), priority: 0),
            Backend("healthy", V1(healthy), priority: 1),
            new() { [$"FuncProxy:Upstreams:{Upstream}:Failover:MaxReplayBodyBytes"] = "1024" }));
        var key = await gateway.MintKeyAsync(Upstream);

        using (var large = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/echo", key.Value, new ByteArrayContent(new byte[4096])))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, large.StatusCode);
            Assert.Contains("failed at failing", await large.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        Assert.Empty(healthy.Requests);

        using var small = await gateway.SendAsync(HttpMethod.Post, $"/api/{Upstream}/echo", key.Value, new ByteArrayContent(new byte[1000]));
        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        using var echo = JsonDocument.Parse(await small.Content.ReadAsStringAsync());
        Assert.Equal(1000, echo.RootElement.GetProperty("bodyLength").GetInt64());
        Assert.Single(healthy.Requests);
    }

    [Fact]
    public async Task A_stream_is_not_retried_once_its_first_byte_reached_the_client()
    {
        await using var breaking = await UpstreamStub.StartAsync();
        breaking.Override = BreaksAfterFirstEvent;
        await using var healthy = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("breaking", V1(breaking), priority: 0),
            Backend("healthy", V1(healthy), priority: 1)));
        var key = await gateway.MintKeyAsync(Upstream);

        using var request = new HttpRequestMessage(HttpMethod.Post, $"/api/{Upstream}/chat/completions") { Content = Chat(stream: true) };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key.Value);
        using var response = await gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string received;
        using (var reader = new StreamReader(await response.Content.ReadAsStreamAsync()))
        {
            received = await reader.ReadLineAsync() ?? "";
            try
            {
                received += await reader.ReadToEndAsync();
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                // The broken stream reaches the client as a broken stream: that is the point.
            }
        }

        Assert.StartsWith("data: {\"first\":true}", received, StringComparison.Ordinal);
        Assert.DoesNotContain("Hello", received, StringComparison.Ordinal);
        Assert.Single(breaking.Requests);
        Assert.Empty(healthy.Requests);
    }
}
