using System.Diagnostics;
using System.Net.Http.Headers;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace FuncProxy.Tests.Telemetry;

public sealed class TelemetryTests
{
    [Fact]
    public async Task Proxied_calls_produce_a_span_each_and_metrics_for_requests_refusals_latency_and_caches()
    {
        // Meters and the activity source are process-wide and other tests run gateways at the same time, so everything
        // this test counts is filtered by an upstream and secret name no other test uses.
        var upstream = "tele" + Guid.NewGuid().ToString("N")[..8];
        var secretName = upstream + "-key";
        var metrics = new List<Metric>();
        var spans = new List<Activity>();
        await using var stub = await UpstreamStub.StartAsync();
        await using var gateway = await GatewayHost.StartAsync(
            new Dictionary<string, string?>
            {
                [$"FuncProxy:Upstreams:{upstream}:BaseUrl"] = stub.BaseAddress + "echo",
                [$"FuncProxy:Upstreams:{upstream}:SecretName"] = secretName,
                [$"FuncProxy:Secrets:{secretName}"] = "telemetry-provider-secret",
            },
            // As the engine registers it when an exporter is configured: ASP.NET Core spans as parents, ours as children.
            services: s => s.AddOpenTelemetry()
                .WithMetrics(m => m.AddMeter(FuncProxy.Telemetry.FuncProxyMetrics.Name).AddInMemoryExporter(metrics))
                .WithTracing(t => t.AddSource(FuncProxy.Telemetry.FuncProxyMetrics.Name).AddAspNetCoreInstrumentation().AddInMemoryExporter(spans)));
        var key = await gateway.MintKeyAsync(upstream);

        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.SendAsync(HttpMethod.Get, $"/api/{upstream}/x", key.Value);
            Assert.Equal(200, (int)response.StatusCode);
        }
        using (var bad = await gateway.Client.GetAsync($"/api/{upstream}/x"))
        {
            Assert.Equal(401, (int)bad.StatusCode);
        }

        gateway.Services.GetRequiredService<MeterProvider>().ForceFlush();
        gateway.Services.GetRequiredService<TracerProvider>().ForceFlush();

        long Sum(string name, Func<ReadOnlyTagCollection, bool> where)
        {
            long total = 0;
            foreach (var metric in metrics.Where(m => m.Name == name))
            {
                foreach (ref readonly var point in metric.GetMetricPoints())
                {
                    if (where(point.Tags))
                    {
                        total += point.GetSumLong();
                    }
                }
            }
            return total;
        }
        static bool Has(ReadOnlyTagCollection tags, string key, object value)
        {
            foreach (var tag in tags)
            {
                if (tag.Key == key && Equals(tag.Value?.ToString(), value.ToString()))
                {
                    return true;
                }
            }
            return false;
        }

        Assert.Equal(3, Sum("funcproxy.requests", t => Has(t, "funcproxy.upstream", upstream) && Has(t, "funcproxy.outcome", "forwarded") && Has(t, "http.response.status_code", 200)));
        Assert.Equal(1, Sum("funcproxy.refusals", t => Has(t, "funcproxy.upstream", upstream) && Has(t, "funcproxy.reason", "invalid_api_key")));
        Assert.Equal(2, Sum("funcproxy.secret_cache.hits", t => Has(t, "funcproxy.secret", secretName)));
        Assert.Equal(1, Sum("funcproxy.secret_cache.misses", t => Has(t, "funcproxy.secret", secretName)));
        Assert.Contains(metrics, m => m.Name == "funcproxy.upstream.duration");

        var proxied = spans.Where(s => s.OperationName == "funcproxy.proxy" && Equals(s.GetTagItem("funcproxy.upstream"), upstream)).ToList();
        Assert.Equal(4, proxied.Count);
        Assert.Equal(3, proxied.Count(s => Equals(s.GetTagItem("funcproxy.key_id"), key.Record.Id) && Equals(s.GetTagItem("http.response.status_code"), 200)));
        Assert.Single(proxied, s => Equals(s.GetTagItem("funcproxy.refusal"), "invalid_api_key"));
        Assert.All(spans.SelectMany(s => s.TagObjects), tag => Assert.DoesNotContain(key.Value, tag.Value?.ToString() ?? "", StringComparison.Ordinal));
    }

    [Fact]
    public void Without_an_exporter_configured_no_telemetry_pipeline_is_built()
    {
        var services = new ServiceCollection();
        services.AddFuncProxyTelemetry(new Microsoft.Extensions.Configuration.ConfigurationBuilder().Build());
        Assert.DoesNotContain(services, d => d.ServiceType == typeof(TracerProvider) || d.ServiceType == typeof(MeterProvider));

        var exporting = new ServiceCollection();
        exporting.AddFuncProxyTelemetry(new Microsoft.Extensions.Configuration.ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4317" }).Build());
        Assert.Contains(exporting, d => d.ServiceType == typeof(TracerProvider));
        Assert.Contains(exporting, d => d.ServiceType == typeof(MeterProvider));
    }

    [Fact]
    public async Task The_limiter_reports_its_storage_operations_and_lease_hits()
    {
        await using var stub = await UpstreamStub.StartAsync();
        // One frozen instant: how long the 20 calls take on a busy machine must not change the counts (a minute boundary
        // crossed mid-test, or calls so slow that the measured demand shrinks the lease blocks, both add storage waits).
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 10, 0, 5, TimeSpan.Zero));
        await using var gateway = await GatewayHost.StartAsync(new Dictionary<string, string?>
        {
            ["FuncProxy:Upstreams:echo:BaseUrl"] = stub.BaseAddress + "echo",
            ["FuncProxy:Limits:RequestsPerMinute"] = "1000",
            ["FuncProxy:Limits:UseStorageClock"] = "false",
        }, services: s => s.AddSingleton<TimeProvider>(time));
        // Scoped to this host's meter factory, so gateways of other tests running at the same time do not count.
        var meters = gateway.Services.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>();
        using var storage = new MetricCollector<long>(meters, "FuncProxy", "funcproxy.limiter.storage_operations");
        using var hits = new MetricCollector<long>(meters, "FuncProxy", "funcproxy.limiter.lease_hits");
        using var waits = new MetricCollector<long>(meters, "FuncProxy", "funcproxy.limiter.storage_waits");
        var key = await gateway.MintKeyAsync("echo");

        for (var i = 0; i < 20; i++)
        {
            using var response = await gateway.SendAsync(HttpMethod.Get, "/api/echo/x", key.Value);
            Assert.Equal(200, (int)response.StatusCode);
        }

        storage.RecordObservableInstruments();
        hits.RecordObservableInstruments();
        waits.RecordObservableInstruments();
        // The first call waits for a claim; the block it claims serves the rest from memory.
        Assert.InRange(waits.LastMeasurement!.Value, 1, 3);
        Assert.InRange(hits.LastMeasurement!.Value, 17, 19);
        Assert.InRange(storage.LastMeasurement!.Value, 1, 20);
    }
}
