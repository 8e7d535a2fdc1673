using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using FuncProxy.Keys;
using FuncProxy.Secrets;
using FuncProxy.Tests.Infrastructure;
using Yarp.ReverseProxy.Forwarder;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// Issue 2's measure: the same chat-completion request sent to the provider stub directly, through a bare YARP forwarder,
/// and through FuncProxy.Server (key check + secret + forward), at fixed concurrency, in one process and one run.
/// Rounds alternate the targets so drift on a noisy machine hits all three alike; the median round is reported.
/// </summary>
public static class GatewayBench
{
    private static int _reportedErrors;

    private const string Body = """{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}]}""";

    public static async Task<int> RunAsync(string[] args)
    {
        var concurrency = Option(args, "--concurrency", 32);
        var seconds = Option(args, "--seconds", 5);
        var rounds = Option(args, "--rounds", 3);

        await using var stub = await UpstreamStub.StartAsync(record: false);
        var origin = stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        await using var azurite = await AzuriteProcess.StartAsync();

        // A bare YARP forwarder: IHttpForwarder with the default transformer, no auth, no secret.
        var yarpBuilder = WebApplication.CreateSlimBuilder();
        yarpBuilder.Logging.ClearProviders();
        yarpBuilder.WebHost.UseUrls("http://127.0.0.1:0");
        yarpBuilder.Services.AddHttpForwarder();
        var yarp = yarpBuilder.Build();
        var invoker = new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false });
        yarp.Map("/{**path}", async (HttpContext context, IHttpForwarder forwarder) =>
        {
            await forwarder.SendAsync(context, origin, invoker, ForwarderRequestConfig.Empty, HttpTransformer.Empty);
        });
        await yarp.StartAsync();
        var yarpAddress = BenchGateway.Address(yarp);

        var (gateway, gatewayAddress) = await BenchGateway.StartAsync(azurite.ConnectionString, origin);
        var key = await gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation { Name = "bench", AllowedUpstreams = ["stub"] });
        // The same gateway with the distributed limiter and token accounting on: limits high enough never to refuse.
        var limited = await gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "bench-limited",
            AllowedUpstreams = ["stub"],
            Limits = new KeyLimits { RequestsPerMinute = 100_000_000, TokensPerMinute = 100_000_000_000 },
        });

        var targets = new (string Name, string Url, string? Key)[]
        {
            ("stub direct", origin + "/v1/chat/completions", null),
            ("bare YARP", yarpAddress + "/v1/chat/completions", null),
            ("FuncProxy", gatewayAddress + "/api/stub/chat/completions", key.Value),
            ("FuncProxy+limits", gatewayAddress + "/api/stub/chat/completions", limited.Value),
        };

        using var client = LoadRun.NewClient(concurrency);
        foreach (var t in targets)
        {
            using var probe = new HttpRequestMessage(HttpMethod.Post, t.Url) { Content = new StringContent(Body, Encoding.UTF8, "application/json") };
            if (t.Key is not null)
            {
                probe.Headers.Authorization = new AuthenticationHeaderValue("Bearer", t.Key);
            }
            using var answer = await client.SendAsync(probe);
            if (!answer.IsSuccessStatusCode)
            {
                Console.Error.WriteLine($"{t.Name} answered {(int)answer.StatusCode}: {await answer.Content.ReadAsStringAsync()}");
                return 1;
            }
        }
        Console.WriteLine($"gateway bench: concurrency {concurrency}, {seconds} s per target, {rounds} rounds, {Environment.ProcessorCount} cores");
        foreach (var t in targets)
        {
            await LoadRun.RunAsync(t.Name, concurrency, TimeSpan.FromSeconds(1), c => SendAsync(c, t.Url, t.Key), client); // warm-up
        }

        var keyReadsBefore = gateway.Services.GetRequiredService<KeyRecordCache>().StorageReads;
        var secretReadsBefore = gateway.Services.GetRequiredService<SecretCache>().SourceReads;
        var results = targets.ToDictionary(t => t.Name, _ => new List<LoadResult>());
        for (var round = 0; round < rounds; round++)
        {
            foreach (var t in targets)
            {
                var r = await LoadRun.RunAsync(t.Name, concurrency, TimeSpan.FromSeconds(seconds), c => SendAsync(c, t.Url, t.Key), client);
                results[t.Name].Add(r);
                Console.WriteLine($"  round {round + 1} {r.Name,-12} {r.RequestsPerSecond,9:F0} req/s  p50 {r.P50Ms,6:F2} ms  p99 {r.P99Ms,6:F2} ms  errors {r.Errors}");
            }
        }
        var keyReads = gateway.Services.GetRequiredService<KeyRecordCache>().StorageReads - keyReadsBefore;
        var secretReads = gateway.Services.GetRequiredService<SecretCache>().SourceReads - secretReadsBefore;
        var gatewayRequests = results["FuncProxy"].Sum(r => r.Requests) + results["FuncProxy+limits"].Sum(r => r.Requests);

        var median = results.ToDictionary(kv => kv.Key, kv => kv.Value.OrderBy(r => r.RequestsPerSecond).ElementAt(kv.Value.Count / 2));
        var direct = median["stub direct"];
        var bare = median["bare YARP"];
        var ours = median["FuncProxy"];
        var withLimits = median["FuncProxy+limits"];
        var counterOps = gateway.Services.GetRequiredService<FuncProxy.RateLimiting.KeyRateLimiter>().Store.Operations;
        var table = new StringBuilder();
        table.AppendLine(CultureInfo.InvariantCulture, $"| target | req/s | p50 ms | p99 ms | errors |");
        table.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var r in new[] { direct, bare, ours, withLimits })
        {
            table.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.RequestsPerSecond:F0} | {r.P50Ms:F2} | {r.P99Ms:F2} | {r.Errors} |");
        }
        Console.WriteLine();
        Console.Write(table);
        Console.WriteLine();
        Console.WriteLine(FormattableString.Invariant($"FuncProxy / bare YARP throughput: {ours.RequestsPerSecond / bare.RequestsPerSecond:F2} (target >= 0.70)"));
        Console.WriteLine(FormattableString.Invariant($"FuncProxy / stub direct throughput: {ours.RequestsPerSecond / direct.RequestsPerSecond:F2}"));
        Console.WriteLine(FormattableString.Invariant($"added p50 vs bare YARP: {ours.P50Ms - bare.P50Ms:F3} ms (target < 1 ms); vs direct: {ours.P50Ms - direct.P50Ms:F3} ms"));
        Console.WriteLine(FormattableString.Invariant($"added p99 vs bare YARP: {ours.P99Ms - bare.P99Ms:F3} ms"));
        Console.WriteLine(FormattableString.Invariant($"with limits on (rpm + tpm, token accounting, metering): {withLimits.RequestsPerSecond / bare.RequestsPerSecond:F2} of bare YARP throughput, p50 +{withLimits.P50Ms - bare.P50Ms:F3} ms; limiter storage operations in the whole run: {counterOps} over {results["FuncProxy+limits"].Sum(r => r.Requests)} limited requests"));
        Console.WriteLine(FormattableString.Invariant($"storage reads per request once warm: {(double)keyReads / gatewayRequests:F5} ({keyReads} background refreshes over {gatewayRequests} requests); Key Vault/secret reads: {secretReads}"));
        Console.WriteLine(FormattableString.Invariant($"peak working set of the whole benchmark process (stub, YARP, FuncProxy, Azurite client and load generator): {Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024):F0} MiB"));

        await gateway.StopAsync();
        await yarp.StopAsync();
        return 0;
    }

    private static async Task<bool> SendAsync(HttpClient client, string url, string? key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(Body, Encoding.UTF8, "application/json") };
        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }
        using var response = await client.SendAsync(request);
        if (!response.IsSuccessStatusCode)
        {
            // Say what failed (the first few), so an error count is never a mystery.
            var body = await response.Content.ReadAsStringAsync();
            if (Interlocked.Increment(ref _reportedErrors) <= 5)
            {
                Console.Error.WriteLine($"  {url} answered {(int)response.StatusCode}: {body[..Math.Min(body.Length, 300)]}");
            }
            return false;
        }
        await response.Content.CopyToAsync(Stream.Null);
        return true;
    }
}
