using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// <c>lockouts</c> mode (issue 13 item 3): per-IP lockouts shared by 3 separate FuncProxy.Server processes on one Azurite.
/// Every storage request of the processes goes through a counting tap (a YARP forwarder in this process between them and
/// Azurite), so operations are counted by what they touch: the <c>lockouts</c> table, the per-IP counter rows
/// (<c>ip:</c> partitions of the <c>keys</c> table), or anything else (key records, ...).
/// <list type="number">
/// <item>Calls that fail nothing, from many client addresses (X-Forwarded-For from the trusted loopback proxy), on the 3
/// processes with lockouts shared and, as the baseline in the same run, on 3 processes with <c>FuncProxy:Lockouts:Shared</c>
/// off: requests/s, server CPU per call, storage operations per call by kind.</item>
/// <item>Propagation: an address presents <c>MaxFailuresPerIp</c> refused keys to one process; the other two are polled
/// (every 10 ms, with a valid key) until they refuse it: the time from the tripping answer to each refusal.</item>
/// </list>
/// Options: <c>--seconds 10</c>, <c>--concurrency 24</c>, <c>--rounds 6</c>, <c>--server-dll PATH</c>.
/// </summary>
internal static class LockoutBench
{
    private const int Instances = 3;
    private const int MaxFailures = 5;

    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = Option(args, "--seconds", 10);
        var concurrency = Option(args, "--concurrency", 24);
        var rounds = Option(args, "--rounds", 6);
        var dll = StringOption(args, "--server-dll") ?? ProcessAccuracyBench.FindServerDll();
        if (dll is null || !File.Exists(dll))
        {
            Console.Error.WriteLine("FuncProxy.Server.dll not found: build the bench (it is copied next to it) or pass --server-dll PATH.");
            return 1;
        }

        await using var stub = await UpstreamStub.StartAsync(record: false);
        await using var azurite = await AzuriteProcess.StartAsync();
        await using var tap = await StorageTap.StartAsync(azurite.Port);
        var connection = azurite.ConnectionString.Replace(Inv($":{azurite.Port}/"), Inv($":{tap.Port}/"), StringComparison.Ordinal);
        var workingDirectory = Path.GetDirectoryName(dll)!;
        Console.WriteLine($"# shared lockouts across {Instances} FuncProxy.Server processes ({dll}; Azurite in memory on loopback behind a counting tap; {Environment.ProcessorCount} cores; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC)");
        Console.WriteLine();

        var baseline = await Deployment.StartAsync("unshared (baseline)", dll, workingDirectory, stub, connection, shared: false);
        await using (baseline)
        {
            var shared = await Deployment.StartAsync("shared", dll, workingDirectory, stub, connection, shared: true);
            await using (shared)
            {
                using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = concurrency, UseProxy = false }) { Timeout = TimeSpan.FromSeconds(30) };
                foreach (var d in new[] { baseline, shared })
                {
                    foreach (var url in d.Urls)
                    {
                        if (await CallAsync(client, url, d.Key, "198.51.100.1") != 200)
                        {
                            Console.Error.WriteLine($"warm-up: {url} refused the key");
                            return 1;
                        }
                    }
                }

                Console.WriteLine(Inv($"## 1. Calls that fail nothing: {concurrency} closed-loop callers over {Instances} processes, {seconds} s, a new client address every call (X-Forwarded-For), no limits configured"));
                Console.WriteLine();
                Console.WriteLine("| lockouts | requests/s | server CPU per call (ms, 3 processes) | calls | lockouts-table ops | per-IP counter ops | per-IP counter ops per call | other storage ops (key records) |");
                Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
                var results = new List<(string Name, double Rps, double CpuMs)>();
                foreach (var d in new[] { baseline, shared })
                {
                    var before = tap.Snapshot(d.Prefix);
                    var cpuBefore = d.CpuTime();
                    var (calls, elapsed) = await DriveAsync(client, d, concurrency, TimeSpan.FromSeconds(seconds));
                    var cpu = d.CpuTime() - cpuBefore;
                    var ops = tap.Snapshot(d.Prefix) - before;
                    var rps = calls / elapsed.TotalSeconds;
                    var cpuMs = cpu.TotalMilliseconds / calls;
                    results.Add((d.Name, rps, cpuMs));
                    Console.WriteLine(Inv($"| {d.Name} | {rps:F0} | {cpuMs:F3} | {calls} | {ops.Lockouts} ({ops.Lockouts / elapsed.TotalSeconds:F1}/s) | {ops.Counters} | {(double)ops.Counters / calls:F4} | {ops.Other} |"));
                }
                Console.WriteLine();
                Console.WriteLine(Inv($"shared / unshared: requests/s {results[1].Rps / results[0].Rps:F2}, CPU per call {results[1].CpuMs / results[0].CpuMs:F2}"));
                Console.WriteLine();

                Console.WriteLine(Inv($"## 2. Propagation: {MaxFailures} refused keys from one address on one process (MaxFailuresPerIp {MaxFailures}); the other two polled every 10 ms with a valid key"));
                Console.WriteLine();
                Console.WriteLine("| lockouts | round | tripped on | other process | refused after (ms) | per-IP counter ops for the 5 failures | lockout rows written |");
                Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
                var delays = new List<double>();
                for (var round = 0; round < rounds; round++)
                {
                    delays.AddRange(await PropagateAsync(client, shared, tap, round, TimeSpan.FromSeconds(15)));
                }
                await PropagateAsync(client, baseline, tap, 0, TimeSpan.FromSeconds(5));
                Console.WriteLine();
                delays.Sort();
                Console.WriteLine(Inv($"shared, {delays.Count} refusals: min {delays[0]:F0} ms, median {delays[delays.Count / 2]:F0} ms, max {delays[^1]:F0} ms (sync interval 1 s)"));
                Console.WriteLine();
                foreach (var process in baseline.Processes.Concat(shared.Processes).Where(p => p.HasExited))
                {
                    Console.Error.WriteLine($"{process.Name} exited during the run:{Environment.NewLine}{process.Tail}");
                }
            }
        }
        return 0;
    }

    private static async Task<List<double>> PropagateAsync(HttpClient client, Deployment d, StorageTap tap, int round, TimeSpan cap)
    {
        var attacker = Inv($"203.0.113.{(d.Shared ? 100 : 200) + round}");
        var tripOn = round % Instances;
        var before = tap.Snapshot(d.Prefix);
        for (var i = 0; i < MaxFailures; i++)
        {
            var status = await CallAsync(client, d.Urls[tripOn], d.Guess, attacker);
            if (status != 401)
            {
                Console.Error.WriteLine($"failure {i + 1} answered {status}");
            }
        }
        var tripped = Stopwatch.StartNew();
        var ops = tap.Snapshot(d.Prefix) - before;
        if (await CallAsync(client, d.Urls[tripOn], d.Key, attacker) != 429)
        {
            Console.Error.WriteLine("the tripping process did not refuse the address");
        }
        var others = Enumerable.Range(0, Instances).Where(i => i != tripOn).ToArray();
        var waits = await Task.WhenAll(others.Select(async i =>
        {
            while (tripped.Elapsed < cap)
            {
                if (await CallAsync(client, d.Urls[i], d.Key, attacker) == 429)
                {
                    return tripped.Elapsed.TotalMilliseconds;
                }
                await Task.Delay(10);
            }
            return double.NaN;
        }));
        for (var j = 0; j < others.Length; j++)
        {
            var shown = double.IsNaN(waits[j]) ? Inv($"not within {cap.TotalSeconds:F0} s") : Inv($"{waits[j]:F0}");
            Console.WriteLine(Inv($"| {d.Name} | {round + 1} | #{tripOn + 1} | #{others[j] + 1} | {shown} | {ops.Counters} | {(tap.Snapshot(d.Prefix) - before).LockoutWrites} |"));
        }
        return [.. waits.Where(w => !double.IsNaN(w))];
    }

    private static async Task<(long Calls, TimeSpan Elapsed)> DriveAsync(HttpClient client, Deployment d, int concurrency, TimeSpan duration)
    {
        long calls = 0;
        long address = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(c => Task.Run(async () =>
        {
            var url = d.Urls[c % d.Urls.Length];
            while (clock.Elapsed < duration)
            {
                var n = Interlocked.Increment(ref address);
                var ip = Inv($"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}");
                if (await CallAsync(client, url, d.Key, ip) == 200)
                {
                    Interlocked.Increment(ref calls);
                }
            }
        })));
        return (calls, clock.Elapsed);
    }

    private static async Task<int> CallAsync(HttpClient client, string url, string key, string clientIp)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url)
        {
            Content = new StringContent("""{"model":"gpt-bench","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Headers.Add("X-Forwarded-For", clientIp);
        try
        {
            using var response = await client.SendAsync(request);
            await response.Content.LoadIntoBufferAsync();
            return (int)response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return 0;
        }
    }

    /// <summary>Three server processes on one table prefix: one deployment.</summary>
    private sealed class Deployment : IAsyncDisposable
    {
        private Deployment(string name, bool shared, string prefix, List<ChildProcess> processes, string[] urls, string key, string guess)
        {
            Name = name;
            Shared = shared;
            Prefix = prefix;
            Processes = processes;
            Urls = urls;
            Key = key;
            Guess = guess;
        }

        public string Name { get; }
        public bool Shared { get; }
        public string Prefix { get; }
        public List<ChildProcess> Processes { get; }
        public string[] Urls { get; }
        public string Key { get; }
        public string Guess { get; }

        public static async Task<Deployment> StartAsync(string name, string dll, string workingDirectory, UpstreamStub stub, string connection, bool shared)
        {
            var prefix = "l" + Guid.NewGuid().ToString("N")[..10];
            var environment = new Dictionary<string, string>
            {
                ["FuncProxy__Storage__ConnectionString"] = connection,
                ["FuncProxy__Storage__TablePrefix"] = prefix,
                ["FuncProxy__Upstreams__stub__BaseUrl"] = stub.BaseAddress.GetLeftPart(UriPartial.Authority) + "/v1",
                ["FuncProxy__TrustedProxies__0"] = "127.0.0.1",
                ["FuncProxy__Keys__MaxFailuresPerIp"] = MaxFailures.ToString(CultureInfo.InvariantCulture),
                ["FuncProxy__Keys__FailureWindow"] = "01:00:00",
                ["FuncProxy__Keys__LockoutDuration"] = "00:30:00",
                ["FuncProxy__Lockouts__Shared"] = shared ? "true" : "false",
                ["Logging__LogLevel__Default"] = "Warning",
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["DOTNET_ENVIRONMENT"] = "Production",
            };
            var created = await ChildProcess.RunAsync("dotnet", [dll, "keys", "create", "--name", "bench", "--upstream", "stub", "--json"], environment, workingDirectory);
            if (created.ExitCode != 0)
            {
                throw new InvalidOperationException($"keys create failed ({created.ExitCode}): {created.Output}{created.Error}");
            }
            string key;
            using (var json = JsonDocument.Parse(created.Output))
            {
                key = json.RootElement.GetProperty("key").GetString()!;
            }
            var id = key.Split('_')[1];
            var guess = "fpk_" + id + "_" + new string('A', 43) + "AAAAAA";
            var processes = new List<ChildProcess>();
            var urls = new List<string>();
            var ports = Enumerable.Range(0, Instances).Select(_ => AzuriteProcess.FreePort()).ToArray();
            for (var i = 0; i < Instances; i++)
            {
                var env = new Dictionary<string, string>(environment) { ["ASPNETCORE_URLS"] = Inv($"http://127.0.0.1:{ports[i]}") };
                processes.Add(ChildProcess.Start($"FuncProxy.Server {name} #{i + 1}", "dotnet", [dll], env, workingDirectory));
                urls.Add(Inv($"http://127.0.0.1:{ports[i]}/api/stub/chat/completions"));
            }
            for (var i = 0; i < Instances; i++)
            {
                await processes[i].WaitForPortAsync(ports[i], TimeSpan.FromSeconds(90));
            }
            return new Deployment(name, shared, prefix, processes, [.. urls], key, guess);
        }

        public TimeSpan CpuTime() => Processes.Aggregate(TimeSpan.Zero, (sum, p) =>
        {
            try
            {
                using var process = Process.GetProcessById(p.Id);
                return sum + process.TotalProcessorTime;
            }
            catch (ArgumentException)
            {
                return sum;
            }
        });

        public async ValueTask DisposeAsync()
        {
            foreach (var process in Processes)
            {
                await process.DisposeAsync();
            }
        }
    }

    /// <summary>Storage operations by kind, for one table prefix.</summary>
    private readonly record struct Ops(long Lockouts, long LockoutWrites, long Counters, long Other)
    {
        public static Ops operator -(Ops a, Ops b) => new(a.Lockouts - b.Lockouts, a.LockoutWrites - b.LockoutWrites, a.Counters - b.Counters, a.Other - b.Other);
    }

    /// <summary>A YARP forwarder between the processes and Azurite that counts every request by what it touches.</summary>
    private sealed class StorageTap : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly ConcurrentDictionary<(string Prefix, string Kind), long> _counts = new();

        private StorageTap(WebApplication app, int port)
        {
            _app = app;
            Port = port;
        }

        public int Port { get; }

        public static async Task<StorageTap> StartAsync(int azuritePort)
        {
            var port = AzuriteProcess.FreePort();
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls(Inv($"http://127.0.0.1:{port}"));
            builder.Logging.ClearProviders();
            builder.Services.AddHttpForwarder();
            var app = builder.Build();
            var tap = new StorageTap(app, port);
            var invoker = new HttpMessageInvoker(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, UseCookies = false });
            var destination = Inv($"http://127.0.0.1:{azuritePort}/");
            app.Map("/{**rest}", async (HttpContext context, IHttpForwarder forwarder) =>
            {
                context.Request.EnableBuffering();
                string body;
                using (var reader = new StreamReader(context.Request.Body, Encoding.UTF8, leaveOpen: true))
                {
                    body = await reader.ReadToEndAsync();
                }
                context.Request.Body.Position = 0;
                tap.Count(context.Request.Method, Uri.UnescapeDataString(context.Request.Path.Value ?? ""), body);
                await forwarder.SendAsync(context, destination, invoker, ForwarderRequestConfig.Empty, HttpTransformer.Default);
            });
            await app.StartAsync();
            return tap;
        }

        private void Count(string method, string path, string body)
        {
            // /devstoreaccount1/{prefix}{table}(...) or /devstoreaccount1/Tables or /devstoreaccount1/$batch
            var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            var resource = segments.Length > 1 ? segments[1] : "";
            var paren = resource.IndexOf('(', StringComparison.Ordinal);
            var table = paren >= 0 ? resource[..paren] : resource;
            var prefix = table.Length > 11 ? table[..11] : table;
            var name = table.Length > 11 ? table[11..] : "";
            if (resource.StartsWith("$batch", StringComparison.Ordinal) || resource == "Tables")
            {
                var inBody = System.Text.RegularExpressions.Regex.Match(body, @"/(l[0-9a-f]{10})(\w+)");
                prefix = inBody.Success ? inBody.Groups[1].Value : "";
                name = inBody.Success ? inBody.Groups[2].Value : "";
            }
            var counter = path.Contains("PartitionKey='ip:", StringComparison.Ordinal) || body.Contains("\"PartitionKey\":\"ip:", StringComparison.Ordinal)
                || body.Contains("PartitionKey%20eq%20'ip%3A", StringComparison.Ordinal) || body.Contains("PartitionKey eq 'ip:", StringComparison.Ordinal);
            var kind = name == "lockouts" ? (method is "PUT" or "MERGE" or "POST" or "PATCH" ? "lockout-write" : "lockouts")
                : counter ? "counters" : "other";
            _counts.AddOrUpdate((prefix, kind), 1, (_, n) => n + 1);
        }

        public Ops Snapshot(string prefix)
        {
            long Get(string kind) => _counts.TryGetValue((prefix, kind), out var n) ? n : 0;
            return new Ops(Get("lockouts") + Get("lockout-write"), Get("lockout-write"), Get("counters"), Get("other"));
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
