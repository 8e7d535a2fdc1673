using System.Diagnostics;
using System.Text;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using FuncProxy.Tests.Spend;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace FuncProxy.Tests.Telemetry;

/// <summary>GenAI semantic conventions (semantic-conventions v1.41.0) on the in-memory exporter, plus FuncProxy's cost counter.</summary>
public sealed class GenAiTelemetryTests
{
    [Fact]
    public async Task Model_calls_record_GenAI_token_usage_duration_time_to_first_chunk_and_cost_with_the_convention_names()
    {
        var metrics = new List<Metric>();
        var spans = new List<Activity>();
        await using var stub = await UpstreamStub.StartAsync();
        stub.StreamDelay = TimeSpan.FromMilliseconds(2);
        // Model names no other test uses: meters are process-wide and other tests run gateways at the same time.
        var model = "gpt-test-otel-" + Guid.NewGuid().ToString("N")[..8];
        var claude = "claude-test-otel-" + Guid.NewGuid().ToString("N")[..8];
        var settings = SpendControlTests.Settings(stub);
        settings["FuncProxy:Upstreams:anthropic:Prices:2:Model"] = "claude-test-otel-*";
        settings["FuncProxy:Upstreams:anthropic:Prices:2:InputPerMillion"] = "100";
        settings["FuncProxy:Upstreams:anthropic:Prices:2:OutputPerMillion"] = "200";
        settings["FuncProxy:Upstreams:anthropic:Prices:2:CachedInputPerMillion"] = "50";
        await using var gateway = await GatewayHost.StartAsync(settings,
            services: s => s.AddOpenTelemetry()
                .WithMetrics(m => m.AddMeter(FuncProxy.Telemetry.FuncProxyMetrics.Name).AddInMemoryExporter(metrics))
                .WithTracing(t => t.AddSource(FuncProxy.Telemetry.FuncProxyMetrics.Name).AddAspNetCoreInstrumentation().AddInMemoryExporter(spans)));
        var key = await gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation { Name = "otel", AllowedUpstreams = ["openai", "anthropic"] });

        async Task CallAsync(string path, string body)
        {
            using var response = await gateway.SendAsync(HttpMethod.Post, path, key.Value, new StringContent(body, Encoding.UTF8, "application/json"));
            await response.Content.ReadAsStringAsync();
            Assert.Equal(200, (int)response.StatusCode);
        }
        await CallAsync("/api/openai/chat/completions", $$"""{"model":"{{model}}","max_tokens":10,"messages":[]}""");
        await CallAsync("/api/openai/chat/completions", $$"""{"model":"{{model}}","max_tokens":10,"stream":true,"messages":[]}""");
        await CallAsync("/api/anthropic/messages", $$"""{"model":"{{claude}}","max_tokens":10,"stream":true,"messages":[]}""");

        // A client can have read the whole answer before the gateway has finished the call (metered, span ended): wait for
        // the three spans, which end after the metrics are recorded.
        Activity[] ours = [];
        for (var i = 0; i < 1200 && ours.Length < 3; i++)
        {
            await Task.Delay(100);
            try
            {
                ours = [.. spans.ToArray().Where(s => s.OperationName == "funcproxy.proxy" && s.GetTagItem("gen_ai.request.model") is string m && (m == model || m == claude))];
            }
            catch (ArgumentException)
            {
                // The exporter added a span while the list was copied: look again.
            }
        }
        Assert.Equal(3, ours.Length);
        gateway.Services.GetRequiredService<MeterProvider>().ForceFlush();

        static bool Has(ReadOnlyTagCollection tags, string key, string value)
        {
            foreach (var tag in tags)
            {
                if (tag.Key == key && tag.Value?.ToString() == value)
                {
                    return true;
                }
            }
            return false;
        }
        List<(ReadOnlyTagCollection Tags, long Count, double Sum)> Points(string name)
        {
            var points = new List<(ReadOnlyTagCollection, long, double)>();
            foreach (var metric in metrics.Where(m => m.Name == name))
            {
                foreach (ref readonly var point in metric.GetMetricPoints())
                {
                    var isHistogram = metric.MetricType is MetricType.Histogram;
                    points.Add((point.Tags, isHistogram ? point.GetHistogramCount() : 1,
                        isHistogram ? point.GetHistogramSum() : metric.MetricType == MetricType.DoubleSum ? point.GetSumDouble() : point.GetSumLong()));
                }
            }
            return points;
        }

        var tokens = Points("gen_ai.client.token.usage").Where(p => Has(p.Tags, "gen_ai.request.model", model)).ToList();
        Assert.NotEmpty(tokens);
        Assert.All(tokens, p =>
        {
            Assert.True(Has(p.Tags, "gen_ai.operation.name", "chat"));
            Assert.True(Has(p.Tags, "gen_ai.provider.name", "openai"));
            Assert.True(Has(p.Tags, "gen_ai.response.model", model));
        });
        Assert.Equal(2 * UpstreamStub.PromptTokens, tokens.Where(p => Has(p.Tags, "gen_ai.token.type", "input")).Sum(p => p.Sum));
        Assert.Equal(2 * UpstreamStub.CompletionTokens, tokens.Where(p => Has(p.Tags, "gen_ai.token.type", "output")).Sum(p => p.Sum));
        Assert.Equal(2, Points("gen_ai.client.operation.duration").Where(p => Has(p.Tags, "gen_ai.request.model", model)).Sum(p => p.Count));
        // Only the streamed call has a first chunk.
        Assert.Equal(1, Points("gen_ai.client.operation.time_to_first_chunk").Where(p => Has(p.Tags, "gen_ai.request.model", model)).Sum(p => p.Count));
        var anthropic = Points("gen_ai.client.token.usage").Where(p => Has(p.Tags, "gen_ai.request.model", claude)).ToList();
        Assert.All(anthropic, p => Assert.True(Has(p.Tags, "gen_ai.provider.name", "anthropic")));
        Assert.Equal(UpstreamStub.PromptTokens, anthropic.Where(p => Has(p.Tags, "gen_ai.token.type", "input")).Sum(p => p.Sum));

        var cost = Points("funcproxy.spend.cost").Where(p => Has(p.Tags, "funcproxy.key_id", key.Record.Id)).ToList();
        Assert.Equal(2 * SpendControlTests.CallCostMicroUsd / 1_000_000.0, cost.Where(p => Has(p.Tags, "gen_ai.request.model", model)).Sum(p => p.Sum), 9);
        Assert.Equal(SpendControlTests.CallCostMicroUsd / 1_000_000.0, cost.Where(p => Has(p.Tags, "gen_ai.request.model", claude)).Sum(p => p.Sum), 9);

        var span = ours.First(s => (string?)s.GetTagItem("gen_ai.request.model") == model);
        Assert.Equal("chat", span.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("openai", span.GetTagItem("gen_ai.provider.name"));
        Assert.Equal(model, span.GetTagItem("gen_ai.response.model"));
        Assert.Equal((long)UpstreamStub.PromptTokens, span.GetTagItem("gen_ai.usage.input_tokens"));
    }
}
