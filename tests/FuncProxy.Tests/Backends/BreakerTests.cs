using System.Diagnostics;
using System.Net;
using FuncProxy.Backends;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using static FuncProxy.Tests.Backends.PoolKit;

namespace FuncProxy.Tests.Backends;

/// <summary>Circuit breakers: Retry-After honoured, one probe closes, and an opening is shared by every instance.</summary>
public sealed class BreakerTests(ITestOutputHelper output)
{
    [Fact]
    public async Task The_breaker_stays_open_for_the_retry_after_ms_a_429_gave_and_one_good_probe_closes_it()
    {
        await using var preferred = await UpstreamStub.StartAsync();
        var throttledOnce = 0;
        preferred.Override = context => Interlocked.Exchange(ref throttledOnce, 1) == 0 ? Throttled(retryAfterMs: 3000)(context) : NextAsync(context);
        await using var fallback = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("preferred", V1(preferred), priority: 0),
            Backend("fallback", V1(fallback), priority: 1)));
        var key = await gateway.MintKeyAsync(Upstream);

        async Task<HttpStatusCode> CallAsync()
        {
            using var response = await gateway.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value);
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await CallAsync()); // the 429 was held back and the fallback answered
        Assert.Single(preferred.Requests);
        Assert.Single(fallback.Requests);

        // Calls go to the fallback until the breaker lets one probe through, which succeeds.
        Assert.True(await EventuallyAsync(async () => await CallAsync() == HttpStatusCode.OK && preferred.Requests.Count == 2),
            "the preferred backend never got a probe after its Retry-After");
        var requests = preferred.Requests.ToArray();
        var gap = requests[1].At - requests[0].At;
        Assert.True(gap >= TimeSpan.FromMilliseconds(2900), $"the probe came {gap.TotalMilliseconds:F0} ms after a 429 that asked for 3000 ms");

        // Closed again: the preferred backend takes the calls.
        var fallbackBefore = fallback.Requests.Count;
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, await CallAsync());
        }
        Assert.Equal(7, preferred.Requests.Count);
        Assert.Equal(fallbackBefore, fallback.Requests.Count);
    }

    [Fact]
    public async Task Consecutive_failures_open_the_breaker_and_all_open_answers_503_with_Retry_After()
    {
        await using var failing = await UpstreamStub.StartAsync();
        failing.Override = Failing(500, "failing");
        await using var gateway = await GatewayHost.StartAsync(Merge(
            Backend("only", V1(failing)),
            new()
            {
                [$"FuncProxy:Upstreams:{Upstream}:Breaker:ConsecutiveFailures"] = "3",
                [$"FuncProxy:Upstreams:{Upstream}:Breaker:BreakDuration"] = "00:01:00",
            }));
        var key = await gateway.MintKeyAsync(Upstream);

        for (var i = 0; i < 3; i++)
        {
            using var failed = await gateway.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value);
            Assert.Equal(HttpStatusCode.InternalServerError, failed.StatusCode); // the only backend's own answer
        }
        using var refused = await gateway.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value);

        await Problems.AssertProblemAsync(refused, 503, "backends_unavailable");
        Assert.InRange(refused.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 1, 60);
        Assert.Equal(3, failing.Requests.Count);
    }

    [Fact]
    public async Task A_second_instance_stops_sending_to_a_backend_the_first_saw_throttled()
    {
        await using var throttled = await UpstreamStub.StartAsync();
        throttled.Override = async context =>
        {
            context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
            context.Response.Headers.RetryAfter = "30";
            await context.Response.WriteAsync("{}");
        };
        await using var healthy = await UpstreamStub.StartAsync();
        var settings = Merge(Backend("throttled", V1(throttled), priority: 0), Backend("healthy", V1(healthy), priority: 1));
        await using var first = await GatewayHost.StartAsync(settings);
        await using var second = await GatewayHost.StartAsync(settings, tablePrefix: first.TablePrefix);
        var key = await first.MintKeyAsync(Upstream);

        using (var response = await first.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        var opened = Stopwatch.StartNew();
        Assert.Single(throttled.Requests);

        // The second instance learns it from the breakers table on its next refresh (every second by default).
        Assert.True(await EventuallyAsync(() => Task.FromResult(second.Logs.Contains("[2111]"))), "the second instance never learned of the opened breaker");
        output.WriteLine($"second instance learned of the breaker {opened.ElapsedMilliseconds} ms after the first opened it");

        for (var i = 0; i < 20; i++)
        {
            using var response = await second.SendAsync(HttpMethod.Get, $"/api/{Upstream}/models", key.Value);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Single(throttled.Requests);
        Assert.Equal(21, healthy.Requests.Count);

        // One write for the opening; the reads are per interval, not per call.
        Assert.Equal(1, first.Services.GetRequiredService<BreakerBoard>().Writes);
        Assert.Equal(0, second.Services.GetRequiredService<BreakerBoard>().Writes);
    }

    private static Task NextAsync(HttpContext context)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync("""{"object":"list","data":[]}""");
    }
}
