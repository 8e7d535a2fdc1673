using System.Net;
using System.Text;
using FuncProxy.Keys;
using FuncProxy.Proxying;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace FuncProxy.Tests.Spend;

/// <summary>
/// One key's daily budget across three gateway hosts on one Azurite (three instances of one deployment), under concurrent
/// calls: what the calls really cost never exceeds the budget (the settlement bound is 0 here, since every call names
/// max_tokens and its body has more bytes than tokens), and the budget is nearly used before calls are refused.
/// </summary>
public sealed class BudgetAcrossInstancesTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Concurrent_calls_on_three_instances_never_spend_more_than_the_budget_and_nearly_use_it()
    {
        const long Budget = 300_000; // 0.30 USD: 150 calls at 2,000 micro-dollars; each reserves about 5,000
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 10, 0, 5, TimeSpan.Zero));
        await using var stub = await UpstreamStub.StartAsync(record: false);
        stub.StreamDelay = TimeSpan.FromMilliseconds(1);
        var prefix = TestStorage.NewTablePrefix();
        var settings = SpendControlTests.Settings(stub);
        settings["FuncProxy:Limits:ExpectedInstances"] = "3";
        // What is proved here is the storage-backed bound. On a busy machine a claim can take longer than the 2 s default
        // timeout, and the default failure mode (LocalShare) then admits up to budget / ExpectedInstances per instance by
        // design (docs/rate-limiting.md): wait longer for storage, and refuse rather than share if it still does not answer.
        settings["FuncProxy:Limits:StorageTimeout"] = "00:00:30";
        settings["FuncProxy:Limits:StorageFailureMode"] = "Closed";
        await using var a = await GatewayHost.StartAsync(settings, prefix, s => s.AddSingleton<TimeProvider>(time));
        await using var b = await GatewayHost.StartAsync(settings, prefix, s => s.AddSingleton<TimeProvider>(time));
        await using var c = await GatewayHost.StartAsync(settings, prefix, s => s.AddSingleton<TimeProvider>(time));
        var key = await a.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "shared-budget",
            AllowedUpstreams = ["openai"],
            Limits = new KeyLimits { BudgetPerDayMicroUsd = Budget },
        });
        GatewayHost[] instances = [a, b, c];

        var admitted = 0;
        var refusedRounds = 0;
        for (var round = 0; round < 60 && refusedRounds < 2; round++)
        {
            var results = await Task.WhenAll(Enumerable.Range(0, 12).Select(async i =>
            {
                var stream = i % 2 == 0;
                var body = $$"""{"model":"gpt-test","max_tokens":10,"stream":{{(stream ? "true" : "false")}},"messages":[{"role":"user","content":"hi"}]}""";
                using var response = await instances[i % 3].SendAsync(HttpMethod.Post, "/api/openai/chat/completions", key.Value,
                    new StringContent(body, Encoding.UTF8, "application/json"));
                var text = await response.Content.ReadAsStringAsync();
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return true;
                }
                Assert.True(response.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable, text);
                Assert.Contains(response.StatusCode == HttpStatusCode.TooManyRequests ? "budget_exceeded" : "rate_limiter_unavailable", text, StringComparison.Ordinal);
                return false;
            }));
            admitted += results.Count(r => r);
            refusedRounds += results.All(r => !r) ? 1 : 0;
        }

        foreach (var instance in instances)
        {
            await instance.Services.GetRequiredService<UsageMeter>().FlushAsync();
        }
        var hour = new DateTimeOffset(2030, 1, 1, 10, 0, 0, TimeSpan.Zero);
        var rows = await a.Services.GetRequiredService<UsageMeter>().ReadAsync(key.Record.Id, hour, hour.AddHours(1));
        var spent = rows.Sum(r => r.CostMicroUsd);
        output.WriteLine($"admitted {admitted} calls, spent {spent} of {Budget} micro-dollars ({100.0 * spent / Budget:0.0} %)");

        Assert.Equal(admitted, rows.Sum(r => r.Requests));
        Assert.Equal(admitted * SpendControlTests.CallCostMicroUsd, spent);
        Assert.True(spent <= Budget, $"spent {spent} of a budget of {Budget}");
        // What is left unused is at most what the three instances hold leased when they start refusing (each refuses once
        // what it holds plus what storage has left is less than one reservation).
        Assert.True(spent >= Budget * 8 / 10, $"only {spent} of {Budget} spent");
    }
}
