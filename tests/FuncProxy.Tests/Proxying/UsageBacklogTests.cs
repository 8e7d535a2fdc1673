using FuncProxy.Proxying;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace FuncProxy.Tests.Proxying;

/// <summary>
/// Usage is added up while calls arrive, not only at each flush: a busy instance (over 100,000 calls in one flush
/// interval, the channel's bound) must not drop metered usage. Real gateway host on a real Azurite.
/// </summary>
public sealed class UsageBacklogTests
{
    [Fact]
    public async Task More_calls_than_the_channel_holds_in_one_flush_interval_are_all_metered()
    {
        await using var gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:stub:BaseUrl"] = "http://127.0.0.1:9/v1",
            // No flush by the timer during the test: only the adding-up between flushes can empty the channel.
            ["FuncProxy:Limits:UsageFlushInterval"] = "01:00:00",
        });
        var meter = gateway.Services.GetRequiredService<UsageMeter>();
        var keyId = FuncProxy.Keys.ApiKey.NewId();
        var at = DateTimeOffset.UtcNow;
        const int Batch = 70_000; // two batches: 140,000 calls, more than the channel's 100,000

        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < Batch; i++)
            {
                meter.Record(new UsageRecord(keyId, "stub", at, new TokenUsage(3, 5), "gpt-test"));
            }
            await Eventually.PollAsync(() => Task.FromResult(meter.Pending), pending => pending == 0);
        }
        await meter.FlushAsync();

        var rows = await meter.ReadAsync(keyId, at.AddHours(-1), at.AddHours(1));
        var row = Assert.Single(rows);
        Assert.Equal(2 * Batch, row.Requests);
        Assert.Equal(2 * Batch * 3L, row.InputTokens);
        Assert.Equal(2 * Batch * 5L, row.OutputTokens);
    }
}
