using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using FuncProxy.Backends;
using FuncProxy.Keys;
using FuncProxy.Server;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// Issue 9's measures, on provider stubs over loopback and one Azurite, all in this process:
/// 1. failover cost: a call whose first backend answers 503 and fails over once, against a call to the healthy backend
///    alone (sequential calls, p50 and p99);
/// 2. throughput through a pool of three healthy backends against a pool of one, at fixed concurrency;
/// 3. storage operations of breaker sharing per call once warm, over those runs;
/// 4. after one instance saw a 429 with Retry-After 30 s, how many calls two other instances still send to that backend
///    in the next 30 s, with the breakers table (sharing on) and without it (each instance on its own).
/// Rounds alternate the targets so drift on a noisy machine hits all alike; the median round is reported.
/// </summary>
public static class PoolBench
{
    private const string Body = """{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}]}""";
    private const string InstanceHeader = "x-bench-instance";

    public static async Task<int> RunAsync(string[] args)
    {
        var concurrency = Option(args, "--concurrency", 32);
        var seconds = Option(args, "--seconds", 5);
        var rounds = Option(args, "--rounds", 3);
        var shareSeconds = Option(args, "--share-seconds", 30);

        await using var storage = await BenchStorage.StartAsync();
        var stubs = new List<UpstreamStub>();
        for (var i = 0; i < 4; i++)
        {
            stubs.Add(await UpstreamStub.StartAsync(record: false));
        }
        var failing = stubs[3];
        long failingAttempts = 0;
        failing.Override = async c =>
        {
            Interlocked.Increment(ref failingAttempts);
            c.Response.StatusCode = 503;
            await c.Response.WriteAsync("{}");
        };
        string V1(UpstreamStub s) => s.BaseAddress.GetLeftPart(UriPartial.Authority) + "/v1";

        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Storage:ConnectionString"] = storage.ConnectionString,
            ["FuncProxy:Secrets:stub-key"] = "bench-provider-secret",
            // one healthy backend
            ["FuncProxy:Upstreams:one:Backends:a:BaseUrl"] = V1(stubs[0]),
            ["FuncProxy:Upstreams:one:Backends:a:SecretName"] = "stub-key",
            // three healthy backends of one priority
            ["FuncProxy:Upstreams:three:Backends:a:BaseUrl"] = V1(stubs[0]),
            ["FuncProxy:Upstreams:three:Backends:a:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:three:Backends:b:BaseUrl"] = V1(stubs[1]),
            ["FuncProxy:Upstreams:three:Backends:b:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:three:Backends:c:BaseUrl"] = V1(stubs[2]),
            ["FuncProxy:Upstreams:three:Backends:c:SecretName"] = "stub-key",
            // a first backend that always answers 503 (its breaker never opens here), then the healthy one
            ["FuncProxy:Upstreams:failover:Backends:bad:BaseUrl"] = V1(failing),
            ["FuncProxy:Upstreams:failover:Backends:bad:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:failover:Backends:good:BaseUrl"] = V1(stubs[0]),
            ["FuncProxy:Upstreams:failover:Backends:good:SecretName"] = "stub-key",
            ["FuncProxy:Upstreams:failover:Backends:good:Priority"] = "1",
            ["FuncProxy:Upstreams:failover:Breaker:ConsecutiveFailures"] = "1000000000",
        };
        var gateway = await StartGatewayAsync(settings);
        var address = BenchGateway.Address(gateway);
        var key = (await gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation { Name = "bench", AllowedUpstreams = ["*"] })).Value;
        using var client = LoadRun.NewClient(concurrency);
        Console.WriteLine($"pool bench: {Environment.ProcessorCount} cores, storage {storage.Description}, {rounds} rounds; the machine may be shared, figures are noisy");

        // 1. Failover cost, one call at a time.
        var direct = new List<LoadResult>();
        var failover = new List<LoadResult>();
        foreach (var up in new[] { "one", "failover" })
        {
            await LoadRun.RunAsync(up, 1, TimeSpan.FromSeconds(1), c => SendAsync(c, $"{address}/api/{up}/chat/completions", key), client);
        }
        var attemptsBefore = Interlocked.Read(ref failingAttempts);
        for (var round = 0; round < rounds; round++)
        {
            direct.Add(await LoadRun.RunAsync("no failover", 1, TimeSpan.FromSeconds(seconds), c => SendAsync(c, $"{address}/api/one/chat/completions", key), client));
            failover.Add(await LoadRun.RunAsync("one failover", 1, TimeSpan.FromSeconds(seconds), c => SendAsync(c, $"{address}/api/failover/chat/completions", key), client));
            Console.WriteLine(FormattableString.Invariant($"  round {round + 1}: no failover p50 {direct[^1].P50Ms:F2} ms p99 {direct[^1].P99Ms:F2} ms; one failover p50 {failover[^1].P50Ms:F2} ms p99 {failover[^1].P99Ms:F2} ms; errors {direct[^1].Errors}/{failover[^1].Errors}"));
        }

        // Every call of the failover rounds must have tried the failing backend first, or they measured nothing.
        var failoverCalls = failover.Sum(r => r.Requests);
        Console.WriteLine(FormattableString.Invariant($"  the failing backend answered 503 to {Interlocked.Read(ref failingAttempts) - attemptsBefore} attempts during {failoverCalls} failover calls"));

        // 2 and 3. Throughput, three backends against one; breaker-table operations over these runs.
        var board = gateway.Services.GetRequiredService<BreakerBoard>();
        var one = new List<LoadResult>();
        var three = new List<LoadResult>();
        foreach (var up in new[] { "one", "three" })
        {
            await LoadRun.RunAsync(up, concurrency, TimeSpan.FromSeconds(1), c => SendAsync(c, $"{address}/api/{up}/chat/completions", key), client);
        }
        var opsBefore = board.Reads + board.Writes;
        var clock = Stopwatch.StartNew();
        for (var round = 0; round < rounds; round++)
        {
            one.Add(await LoadRun.RunAsync("pool of 1", concurrency, TimeSpan.FromSeconds(seconds), c => SendAsync(c, $"{address}/api/one/chat/completions", key), client));
            three.Add(await LoadRun.RunAsync("pool of 3", concurrency, TimeSpan.FromSeconds(seconds), c => SendAsync(c, $"{address}/api/three/chat/completions", key), client));
            Console.WriteLine(FormattableString.Invariant($"  round {round + 1}: pool of 1 {one[^1].RequestsPerSecond:F0} req/s, pool of 3 {three[^1].RequestsPerSecond:F0} req/s; errors {one[^1].Errors}/{three[^1].Errors}"));
        }
        var ops = board.Reads + board.Writes - opsBefore;
        var calls = one.Sum(r => r.Requests) + three.Sum(r => r.Requests);
        var elapsed = clock.Elapsed;
        await gateway.StopAsync();
        await gateway.DisposeAsync();

        static LoadResult Median(List<LoadResult> results, Func<LoadResult, double> by) => results.OrderBy(by).ElementAt(results.Count / 2);
        var d = Median(direct, r => r.P50Ms);
        var f = Median(failover, r => r.P50Ms);
        var o = Median(one, r => r.RequestsPerSecond);
        var t = Median(three, r => r.RequestsPerSecond);
        Console.WriteLine();
        Console.WriteLine(FormattableString.Invariant($"failover cost (median round): p50 {f.P50Ms:F2} vs {d.P50Ms:F2} ms (+{f.P50Ms - d.P50Ms:F2} ms), p99 {f.P99Ms:F2} vs {d.P99Ms:F2} ms (+{f.P99Ms - d.P99Ms:F2} ms)"));
        Console.WriteLine(FormattableString.Invariant($"throughput (median round): pool of 3 {t.RequestsPerSecond:F0} req/s vs pool of 1 {o.RequestsPerSecond:F0} req/s = {t.RequestsPerSecond / o.RequestsPerSecond:F2}x; p50 {t.P50Ms:F2} vs {o.P50Ms:F2} ms"));
        Console.WriteLine(FormattableString.Invariant($"breaker table operations during {elapsed.TotalSeconds:F0} s and {calls} calls: {ops} ({(double)ops / calls:F5} per call; {ops / elapsed.TotalSeconds:F2} per second, the sync interval's one query)"));

        // 4. Sharing: three instances, one backend that asks one of them to stay away for 30 s.
        foreach (var share in new[] { true, false })
        {
            await ShareRunAsync(storage.ConnectionString, share, shareSeconds);
        }
        foreach (var s in stubs)
        {
            await s.DisposeAsync();
        }
        return 0;
    }

    private static async Task ShareRunAsync(string connectionString, bool share, int seconds)
    {
        await using var preferred = await UpstreamStub.StartAsync(record: false);
        await using var fallback = await UpstreamStub.StartAsync(record: false);
        var armed = 0;
        var throttledAt = 0L;
        var afterThrottle = new long[4];
        preferred.Override = async c =>
        {
            var instance = int.Parse(c.Request.Headers[InstanceHeader].ToString(), CultureInfo.InvariantCulture);
            if (instance == 1 && Interlocked.CompareExchange(ref armed, 2, 1) == 1)
            {
                Interlocked.Exchange(ref throttledAt, Stopwatch.GetTimestamp());
                c.Response.StatusCode = 429;
                c.Response.Headers.RetryAfter = "30";
                await c.Response.WriteAsync("{}");
                return;
            }
            if (Volatile.Read(ref armed) == 2 && instance != 1)
            {
                Interlocked.Increment(ref afterThrottle[instance]);
            }
            c.Response.ContentType = "application/json";
            await c.Response.WriteAsync("""{"object":"list","data":[]}""");
        };
        string V1(UpstreamStub s) => s.BaseAddress.GetLeftPart(UriPartial.Authority) + "/v1";
        var prefix = "share" + Guid.NewGuid().ToString("N")[..8];
        var settings = new Dictionary<string, string?>
        {
            ["FuncProxy:Storage:ConnectionString"] = connectionString,
            ["FuncProxy:Storage:TablePrefix"] = prefix,
            ["FuncProxy:Proxy:ShareBreakers"] = share ? "true" : "false",
            ["FuncProxy:Upstreams:pool:Backends:preferred:BaseUrl"] = V1(preferred),
            ["FuncProxy:Upstreams:pool:Backends:fallback:BaseUrl"] = V1(fallback),
            ["FuncProxy:Upstreams:pool:Backends:fallback:Priority"] = "1",
        };
        var instances = new List<WebApplication>();
        for (var i = 0; i < 3; i++)
        {
            instances.Add(await StartGatewayAsync(settings));
        }
        var key = (await instances[0].Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation { Name = "bench", AllowedUpstreams = ["pool"] })).Value;
        using var client = LoadRun.NewClient(16);
        using var stop = new CancellationTokenSource();
        var sent = new long[4];
        // Each instance gets a call every 20 ms or so (about 50 per second), one at a time.
        var drivers = Enumerable.Range(1, 3).Select(async n =>
        {
            var url = BenchGateway.Address(instances[n - 1]) + "/api/pool/models";
            while (!stop.IsCancellationRequested)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, url);
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                request.Headers.Add(InstanceHeader, n.ToString(CultureInfo.InvariantCulture));
                try
                {
                    using var response = await client.SendAsync(request, stop.Token);
                    Interlocked.Increment(ref sent[n]);
                    await Task.Delay(20, stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(3)); // warm: every instance calls the preferred backend
        Volatile.Write(ref armed, 1);
        while (Volatile.Read(ref armed) != 2)
        {
            await Task.Delay(10);
        }
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        stop.Cancel();
        await Task.WhenAll(drivers);
        var sinceThrottle = Stopwatch.GetElapsedTime(Interlocked.Read(ref throttledAt));
        var leaked = afterThrottle[2] + afterThrottle[3];
        var writes = instances.Sum(i => i.Services.GetRequiredService<BreakerBoard>().Writes);
        Console.WriteLine(FormattableString.Invariant(
            $"breaker sharing {(share ? "on " : "off")}: after instance 1 got 429 Retry-After 30 s, instances 2 and 3 sent {leaked} calls to that backend in the next {sinceThrottle.TotalSeconds:F0} s (instance 2: {afterThrottle[2]}, instance 3: {afterThrottle[3]}; each sent about {sent[2] / (seconds + 3.0):F0} calls/s in all); breaker rows written: {writes}"));
        foreach (var instance in instances)
        {
            await instance.StopAsync();
            await instance.DisposeAsync();
        }
    }

    private static async Task<WebApplication> StartGatewayAsync(Dictionary<string, string?> settings)
    {
        var app = await GatewayServer.BuildAsync(["--urls", "http://127.0.0.1:0"], b =>
        {
            b.Configuration.Sources.Clear();
            b.Configuration.AddInMemoryCollection(settings);
            b.Logging.ClearProviders();
        }, startLocalStorage: false);
        await app.StartAsync();
        return app;
    }

    private static async Task<bool> SendAsync(HttpClient client, string url, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(Body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await client.SendAsync(request);
        await response.Content.CopyToAsync(Stream.Null);
        return response.IsSuccessStatusCode;
    }
}
