using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// <c>accuracy-processes</c> mode (issue 3): the limiter's accuracy across 3 separate FuncProxy.Server processes sharing one
/// Azurite, over HTTP, which the <c>limiter</c> mode approximates with 3 engine instances in one process. One key per demand
/// level with a requests-per-second limit (minted with the server's own <c>keys create</c> verb), paced callers spread
/// evenly over the three processes at 0.5x, 1x, 2x and 10x the limit, and each 200 counted in the UTC second in which
/// the client sent it. The server decides somewhere between send and receipt, so a request whose send and receipt fall in
/// different seconds is ambiguous; a window is reported as over the limit only when its unambiguous admissions alone
/// exceed the limit. Options: <c>--limit 200</c>, <c>--seconds 6</c>, <c>--server-dll PATH</c>, <c>--local-clock</c> (the
/// processes cut windows by their own clock rather than storage's: <c>FuncProxy:Limits:UseStorageClock=false</c>),
/// <c>--runs 1</c> (repeat every level on the same processes, then summarise over all runs: issue 8 item 10 measured
/// over many runs), <c>--loads 0.5,1,2,10</c> (the demand levels, in multiples of the limit).
/// </summary>
internal static class ProcessAccuracyBench
{
    private const int Instances = 3;
    private const int CallersPerInstance = 16;
    private const string Body = """{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}]}""";
    private static int _reportedErrors;

    private readonly record struct Outcome(DateTime Sent, DateTime Received, int Status);

    /// <summary>
    /// One level of one run, by real UTC second: admissions counted by send time, the certain ones among them, and
    /// admissions counted by receipt time (a call that waited out a window's guard band is sent in one second and
    /// admitted in the next).
    /// </summary>
    private readonly record struct LevelResult(double Load, int[] Admitted, int[] Certain, int[] ByReceipt, double[] AdmittedLatencyMs);

    public static async Task<int> RunAsync(string[] args)
    {
        var limit = Option(args, "--limit", 200);
        var seconds = Option(args, "--seconds", 6);
        var localClock = args.Contains("--local-clock");
        var runs = Option(args, "--runs", 1);
        var loads = StringOption(args, "--loads") is { } l
            ? l.Split(',').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray()
            : new[] { 0.5, 1, 2, 10 };
        var dll = StringOption(args, "--server-dll") ?? FindServerDll();
        if (dll is null || !File.Exists(dll))
        {
            Console.Error.WriteLine("FuncProxy.Server.dll not found: build the bench (it is copied next to it) or pass --server-dll PATH.");
            return 1;
        }

        await using var stub = await UpstreamStub.StartAsync(record: false);
        var origin = stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        await using var azurite = await AzuriteProcess.StartAsync();
        var environment = new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = azurite.ConnectionString,
            ["FuncProxy__Storage__TablePrefix"] = "p" + Guid.NewGuid().ToString("N")[..10],
            ["FuncProxy__Upstreams__stub__BaseUrl"] = origin + "/v1",
            ["FuncProxy__Upstreams__stub__SecretName"] = "stubkey",
            ["FuncProxy__Secrets__stubkey"] = "bench-provider-secret",
            ["FuncProxy__Limits__ExpectedInstances"] = Instances.ToString(CultureInfo.InvariantCulture),
            // Default: windows cut by storage's clock, estimated from Azurite's Date headers. --local-clock cuts them by each
            // process's own clock instead (the same clock the client counts by, on one machine).
            ["FuncProxy__Limits__UseStorageClock"] = localClock ? "false" : "true",
            ["Logging__LogLevel__Default"] = "Warning",
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
        };
        var workingDirectory = Path.GetDirectoryName(dll)!;
        Console.WriteLine($"# limiter accuracy across {Instances} FuncProxy.Server processes ({dll}; Azurite in memory on loopback; {Environment.ProcessorCount} cores; {DateTime.UtcNow:yyyy-MM-dd})");
        Console.WriteLine();

        var keys = new Dictionary<double, string>();
        foreach (var load in loads)
        {
            var created = await ChildProcess.RunAsync("dotnet",
                [dll, "keys", "create", "--name", Inv($"bench-{load}x"), "--upstream", "stub", "--limit", Inv($"requestsPerSecond={limit}"), "--json"],
                environment, workingDirectory);
            if (created.ExitCode != 0)
            {
                Console.Error.WriteLine($"keys create failed ({created.ExitCode}): {created.Output}{created.Error}");
                return 1;
            }
            using var json = JsonDocument.Parse(created.Output);
            keys[load] = json.RootElement.GetProperty("key").GetString()!;
        }

        var servers = new List<(ChildProcess Process, string Url)>();
        try
        {
            for (var i = 0; i < Instances; i++)
            {
                var port = AzuriteProcess.FreePort();
                var env = new Dictionary<string, string>(environment) { ["ASPNETCORE_URLS"] = Inv($"http://127.0.0.1:{port}") };
                var process = ChildProcess.Start($"FuncProxy.Server #{i + 1}", "dotnet", [dll], env, workingDirectory);
                servers.Add((process, Inv($"http://127.0.0.1:{port}/api/stub/chat/completions")));
                await process.WaitForPortAsync(port, TimeSpan.FromSeconds(60));
            }
            Console.WriteLine($"processes: {string.Join(", ", servers.Select(s => $"pid {s.Process.Id} {s.Url}"))}");

            using var client = new HttpClient(new SocketsHttpHandler
            {
                MaxConnectionsPerServer = CallersPerInstance,
                PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
                UseProxy = false,
            })
            { Timeout = TimeSpan.FromSeconds(30) };
            // Warm-up: every process loads every key once (a cold key costs a storage read), and its connections open.
            foreach (var (_, url) in servers)
            {
                foreach (var key in keys.Values)
                {
                    var o = await SendAsync(client, url, key);
                    if (o.Status != 200)
                    {
                        Console.Error.WriteLine($"warm-up: {url} answered {o.Status}");
                        return 1;
                    }
                }
            }

            Console.WriteLine(Inv($"One key per demand level, limit {limit} requests per 1-second window (rps), {Instances} processes x {CallersPerInstance} paced callers, {seconds} whole UTC seconds per level, counted by the client's send time; windows cut by {(localClock ? "each process's local clock (--local-clock)" : "storage's clock (default)")}."));
            Console.WriteLine();
            Console.WriteLine("| demand | offered per window (mean) | windows | admitted per window: min | mean | max | windows certainly over the limit | ambiguous admissions per window (max) | admitted / min(offered, limit) | refused (429) | other | admitted, window by window |");
            Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
            var results = new List<LevelResult>();
            for (var run = 0; run < runs; run++)
            {
                foreach (var load in loads)
                {
                    await Task.Delay(1500); // let the previous level's last windows close
                    var outcomes = await DriveAsync(client, servers.Select(s => s.Url).ToArray(), keys[load], load * limit, seconds);
                    results.Add(Report(load, limit, seconds, outcomes));
                }
            }
            Console.WriteLine();
            if (runs > 1)
            {
                Summarise(results, limit, runs);
            }
            foreach (var (process, _) in servers.Where(s => s.Process.HasExited))
            {
                Console.Error.WriteLine($"{process.Name} exited during the run:{Environment.NewLine}{process.Tail}");
            }
            return 0;
        }
        finally
        {
            foreach (var (process, _) in servers)
            {
                await process.DisposeAsync();
            }
        }
    }

    /// <summary>Paced (open-loop) callers spread evenly over the processes, starting on a UTC second boundary.</summary>
    private static async Task<List<Outcome>> DriveAsync(HttpClient client, string[] urls, string key, double demandPerSecond, int seconds)
    {
        var callers = urls.Length * CallersPerInstance;
        var interval = TimeSpan.FromSeconds(callers / demandPerSecond);
        var now = DateTime.UtcNow;
        var start = new DateTime(now.Ticks - (now.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc).AddSeconds(1);
        await Task.Delay(start - DateTime.UtcNow);
        var clock = Stopwatch.StartNew();
        var runFor = TimeSpan.FromSeconds(seconds);
        var outcomes = new ConcurrentBag<Outcome>();
        var tasks = Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
        {
            var url = urls[c % urls.Length];
            var next = interval * c / callers;
            while (true)
            {
                var wait = next - clock.Elapsed;
                if (wait > TimeSpan.FromMilliseconds(1))
                {
                    await Task.Delay(wait);
                }
                if (clock.Elapsed >= runFor || next >= runFor)
                {
                    break;
                }
                next += interval;
                outcomes.Add(await SendAsync(client, url, key));
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        return [.. outcomes];
    }

    private static async Task<Outcome> SendAsync(HttpClient client, string url, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(Body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var sent = DateTime.UtcNow;
        try
        {
            using var response = await client.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            var received = DateTime.UtcNow;
            var status = (int)response.StatusCode;
            if (status is not (200 or 429) && Interlocked.Increment(ref _reportedErrors) <= 5)
            {
                Console.Error.WriteLine($"  {url} answered {status}: {body[..Math.Min(body.Length, 300)]}");
            }
            return new Outcome(sent, received, status);
        }
        catch (HttpRequestException e)
        {
            if (Interlocked.Increment(ref _reportedErrors) <= 5)
            {
                Console.Error.WriteLine($"  {url} failed: {e.Message}");
            }
            return new Outcome(sent, DateTime.UtcNow, 0);
        }
    }

    /// <summary>Over all runs, per level: how many real UTC seconds admitted more than the limit, certainly or by send time alone.</summary>
    private static void Summarise(List<LevelResult> results, int limit, int runs)
    {
        Console.WriteLine(Inv($"Over {runs} runs, every real UTC second of every run:"));
        Console.WriteLine();
        Console.WriteLine("| demand | seconds | certainly over the limit | max certain admissions in a second | over the limit by send time (incl. ambiguous) | max admitted by send time | over the limit by receipt time | max admitted by receipt time | 200s: latency p50 / p99 / max (ms) |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var level in results.GroupBy(r => r.Load))
        {
            var admitted = level.SelectMany(r => r.Admitted).ToArray();
            var certain = level.SelectMany(r => r.Certain).ToArray();
            var byReceipt = level.SelectMany(r => r.ByReceipt).ToArray();
            var latency = level.SelectMany(r => r.AdmittedLatencyMs).Order().ToArray();
            Console.WriteLine(Inv($"| {level.Key}x | {admitted.Length} | {certain.Count(c => c > limit)} | {certain.Max()} | {admitted.Count(a => a > limit)} | {admitted.Max()} | {byReceipt.Count(a => a > limit)} | {byReceipt.Max()} | {Percentile(latency, 0.5):F0} / {Percentile(latency, 0.99):F0} / {latency.LastOrDefault():F0} |"));
        }
        Console.WriteLine();
    }

    private static LevelResult Report(double load, int limit, int seconds, List<Outcome> outcomes)
    {
        static long Window(DateTime t) => t.Ticks / TimeSpan.TicksPerSecond;
        var first = outcomes.Min(o => Window(o.Sent));
        var windows = Enumerable.Range(0, seconds).Select(i => first + i).ToArray();
        var offered = windows.Select(w => outcomes.Count(o => Window(o.Sent) == w)).ToArray();
        var admitted = windows.Select(w => outcomes.Count(o => o.Status == 200 && Window(o.Sent) == w)).ToArray();
        // Certain: sent and received in the same window, so the server decided in it (up to its storage-clock estimate).
        var certain = windows.Select(w => outcomes.Count(o => o.Status == 200 && Window(o.Sent) == w && Window(o.Received) == w)).ToArray();
        // By receipt: the last window's calls may be answered after it, so the seconds compared are those sends began in.
        var byReceipt = windows.Select(w => outcomes.Count(o => o.Status == 200 && Window(o.Received) == w)).ToArray();
        var ambiguous = windows.Select(w => outcomes.Count(o => o.Status == 200 && Window(o.Sent) == w && Window(o.Received) != w)).ToArray();
        var fraction = windows.Select((_, i) => admitted[i] / (double)Math.Min(Math.Max(offered[i], 1), limit)).Average();
        var refused = outcomes.Count(o => o.Status == 429);
        var other = outcomes.Count(o => o.Status is not (200 or 429));
        Console.WriteLine(Inv($"| {load}x | {offered.Average():F0} | {windows.Length} | {admitted.Min()} | {admitted.Average():F1} | {admitted.Max()} | {certain.Count(x => x > limit)} | {ambiguous.Max()} | {fraction:P1} | {refused} | {other} | {string.Join(" ", admitted)} |"));
        // What a window's guard band costs: calls that wait out its end are answered later.
        var latency = outcomes.Where(o => o.Status == 200).Select(o => (o.Received - o.Sent).TotalMilliseconds).ToArray();
        return new LevelResult(load, admitted, certain, byReceipt, latency);
    }

    private static double Percentile(double[] sorted, double p) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];

    internal static string? FindServerDll()
    {
        var beside = Path.Combine(AppContext.BaseDirectory, "FuncProxy.Server.dll");
        if (File.Exists(beside) && File.Exists(Path.Combine(AppContext.BaseDirectory, "FuncProxy.Server.runtimeconfig.json")))
        {
            return beside;
        }
        var root = AzuriteProcess.RepositoryRoot();
        return new[] { "Release", "Debug" }
            .Select(c => Path.Combine(root, "src", "FuncProxy.Server", "bin", c, "net10.0", "FuncProxy.Server.dll"))
            .FirstOrDefault(File.Exists);
    }
}
