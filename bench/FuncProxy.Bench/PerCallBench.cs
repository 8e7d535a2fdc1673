using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// <c>percall</c> mode (issue 11): what one forwarded call costs each server, every server in its own process. The provider
/// stub (this exe's <c>stub</c> mode), a bare Kestrel + YARP <c>IHttpForwarder</c> (this exe's <c>bare-yarp</c> mode, with
/// FuncProxy's own <see cref="Proxying.UpstreamInvoker"/>), FuncProxy.Server (Release, a key with limits far above the load,
/// minted with <c>keys create</c>) and nginx as a plain proxy (when installed) are driven in turn by wrk, an external load
/// generator, at fixed concurrency, in alternating rounds. Per target and round: requests/s, p50/p99 from wrk, CPU µs per
/// call (utime+stime of the server's processes from /proc over the round, divided by the calls wrk counted) and, for the
/// .NET servers, bytes allocated per call (the runtime's own counter, read through a startup hook: no endpoint is added to
/// the product). FuncProxy's ratios to bare YARP are computed within each round, then the median is reported.
/// </summary>
internal static class PerCallBench
{
    private const string Body = """{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}]}""";
    private const string BareYarp = "bare YARP";
    private const string FuncProxyName = "FuncProxy+limits";
    private const string FuncProxyUnlimited = "FuncProxy, no limits";
    private const string FuncProxyCompared = "FuncProxy+limits (--compare-dll)";
    private const string Nginx = "nginx proxy";

    private sealed record Target(string Name, string Url, string? ClientKey, ServerProcess Server, string Configured);

    /// <summary>A server process whose CPU time (with its children's: nginx workers) and, for .NET, allocations are read.</summary>
    private sealed record ServerProcess(ChildProcess Process, string? AllocationFile);

    private sealed record RoundResult(string Name, long Requests, long Errors, double Seconds, double P50Ms, double P99Ms, double CpuUsPerCall, double UserUsPerCall,
        double? BytesPerCall, double StubCpuUsPerCall, string Load)
    {
        public double RequestsPerSecond => Requests / Seconds;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        var concurrency = Option(args, "--concurrency", 32);
        var seconds = Option(args, "--seconds", 5);
        var rounds = Option(args, "--rounds", 5);
        var warmup = Option(args, "--warmup", 10);
        var threads = Option(args, "--wrk-threads", 2);
        var nginxWorkers = StringOption(args, "--nginx-workers") ?? "1";
        var serveSeconds = Option(args, "--serve-seconds", 0);
        var serverDll = StringOption(args, "--server-dll") ?? ProcessAccuracyBench.FindServerDll();
        // Another build (e.g. the tree before a change) as one more target in the same rounds: an A/B within each round.
        var compareDll = StringOption(args, "--compare-dll");
        var wrk = new[] { "/usr/bin/wrk", "/usr/local/bin/wrk" }.FirstOrDefault(File.Exists);
        if (wrk is null)
        {
            Console.Error.WriteLine("wrk is not installed (Debian: apt-get install -y wrk).");
            return 1;
        }
        if (compareDll is not null && !File.Exists(compareDll))
        {
            Console.Error.WriteLine($"--compare-dll: {compareDll} not found.");
            return 1;
        }
        if (serverDll is null || !File.Exists(serverDll))
        {
            Console.Error.WriteLine("FuncProxy.Server.dll not found: build the bench in Release (it is copied next to it) or pass --server-dll PATH.");
            return 1;
        }
        var hook = Path.Combine(AppContext.BaseDirectory, "FuncProxy.Bench.AllocationHook.dll");
        var scratch = Directory.CreateTempSubdirectory("funcproxy-percall-");
        var children = new List<ChildProcess>();
        var skipped = new List<string>();
        try
        {
            var self = Path.Combine(AppContext.BaseDirectory, "FuncProxy.Bench.dll");
            var stubPort = AzuriteProcess.FreePort();
            var stub = await StartDotnetAsync("stub", [self, "stub", "--port", Inv($"{stubPort}")], new Dictionary<string, string>(), stubPort, hook, scratch.FullName);
            children.Add(stub.Process);
            var origin = Inv($"http://127.0.0.1:{stubPort}");

            await using var azurite = await AzuriteProcess.StartAsync();

            var yarpPort = AzuriteProcess.FreePort();
            var yarp = await StartDotnetAsync("bare-yarp", [self, "bare-yarp", "--port", Inv($"{yarpPort}"), "--upstream", origin],
                new Dictionary<string, string>(), yarpPort, hook, scratch.FullName);
            children.Add(yarp.Process);

            var (gateway, gatewayPort, key, unlimitedKey) = await StartFuncProxyAsync(serverDll, azurite.ConnectionString, origin, hook, scratch.FullName);
            children.Add(gateway.Process);

            var targets = new List<Target>
            {
                new(BareYarp, Inv($"http://127.0.0.1:{yarpPort}/v1/chat/completions"), null, yarp,
                    "Kestrel + YARP IHttpForwarder (HttpTransformer.Default), FuncProxy's UpstreamInvoker (same SocketsHttpHandler settings), no logging, own process"),
                new(FuncProxyName, Inv($"http://127.0.0.1:{gatewayPort}/api/stub/chat/completions"), key, gateway,
                    "FuncProxy.Server (Release, own process, Logging:Default=Warning), key minted with 'keys create --limit requestsPerMinute=100000000 --limit tokensPerMinute=100000000000' on Azurite"),
                new(FuncProxyUnlimited, Inv($"http://127.0.0.1:{gatewayPort}/api/stub/chat/completions"), unlimitedKey, gateway,
                    "the same FuncProxy.Server process, a key minted without limits (no policy, no token estimate or reservation; the rest of the path as above)"),
            };
            if (compareDll is not null)
            {
                var (other, otherPort, otherKey, _) = await StartFuncProxyAsync(compareDll, azurite.ConnectionString, origin, hook, scratch.FullName);
                children.Add(other.Process);
                targets.Add(new(FuncProxyCompared, Inv($"http://127.0.0.1:{otherPort}/api/stub/chat/completions"), otherKey, other,
                    $"{compareDll}: the same configuration and limited key, its own process"));
            }
            var nginx = await StartNginxAsync(scratch.FullName, stubPort, nginxWorkers, skipped);
            if (nginx is not null)
            {
                children.Add(nginx.Value.Process);
                targets.Add(new(Nginx, Inv($"http://127.0.0.1:{nginx.Value.Port}/v1/chat/completions"), null, new ServerProcess(nginx.Value.Process, null),
                    $"nginx {nginx.Value.Version}, worker_processes {nginxWorkers}, proxy_pass with upstream keepalive 64, no access log (CPU of master and workers)"));
            }

            using var client = LoadRun.NewClient(1);
            var reference = await ProbeAsync(client, origin + "/v1/chat/completions", null);
            foreach (var t in targets)
            {
                var answer = await ProbeAsync(client, t.Url, t.ClientKey);
                if (reference is null || answer != reference)
                {
                    Console.Error.WriteLine($"{t.Name} did not answer with the stub's completion: {answer}");
                    return 1;
                }
            }

            var wrkVersion = (await ChildProcess.RunAsync(wrk, ["-v"])).Output.Split('\n')[0].Trim();
            Console.WriteLine(Inv($"percall bench: {wrkVersion}, {threads} threads, {concurrency} connections, {seconds} s per target, {warmup} s warm-up, {rounds} rounds, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC"));
            Console.WriteLine(Inv($"  request: POST {Body.Length} B chat completion; answer: {Encoding.UTF8.GetByteCount(reference!)} B JSON from the provider stub (own process, this exe's stub mode)"));
            foreach (var t in targets)
            {
                Console.WriteLine($"  {t.Name}: {t.Configured}");
            }
            foreach (var s in skipped)
            {
                Console.WriteLine($"  skipped: {s}");
            }

            var scripts = targets.ToDictionary(t => t.Name, t => WriteScript(scratch.FullName, t));
            foreach (var t in targets)
            {
                await RunWrkAsync(wrk, threads, concurrency, warmup, t, scripts[t.Name], stub);
            }
            var results = targets.ToDictionary(t => t.Name, _ => new List<RoundResult>());
            for (var round = 0; round < rounds; round++)
            {
                foreach (var t in targets)
                {
                    var r = await RunWrkAsync(wrk, threads, concurrency, seconds, t, scripts[t.Name], stub);
                    results[t.Name].Add(r);
                    Console.WriteLine(Inv($"  round {round + 1} {r.Name,-17} {r.RequestsPerSecond,8:F0} req/s  p50 {r.P50Ms,6:F2} ms  p99 {r.P99Ms,6:F2} ms  CPU {r.CpuUsPerCall,6:F1} µs/call (user {r.UserUsPerCall,5:F1})  {(r.BytesPerCall is { } b ? Inv($"{b,7:F0} B/call") : "      - B/call")}  stub {r.StubCpuUsPerCall,5:F1} µs/call  errors {r.Errors}  load {r.Load}"));
                }
            }

            Report(targets, results);

            if (serveSeconds > 0)
            {
                // For a profiler: everything stays up, and the wrk line to drive FuncProxy is printed.
                Console.WriteLine(Inv($"serving {serveSeconds} s: FuncProxy.Server pid {gateway.Process.Id}, bare YARP pid {yarp.Process.Id}, stub pid {stub.Process.Id}"));
                Console.WriteLine($"  {wrk} -t{threads} -c{concurrency} -d30s -s {scripts[FuncProxyName]} {targets[1].Url}");
                await Task.Delay(TimeSpan.FromSeconds(serveSeconds));
            }
            return 0;
        }
        finally
        {
            foreach (var c in Enumerable.Reverse(children))
            {
                await c.DisposeAsync();
            }
            try
            {
                scratch.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
    }

    private static void Report(List<Target> targets, Dictionary<string, List<RoundResult>> results)
    {
        static double Median(IEnumerable<double> values)
        {
            var sorted = values.Order().ToArray();
            return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        }
        Console.WriteLine();
        Console.WriteLine("Medians over the rounds:");
        Console.WriteLine();
        Console.WriteLine("| target | req/s | p50 ms | p99 ms | CPU µs/call | of it user | bytes/call | stub CPU µs/call | errors |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var t in targets)
        {
            var r = results[t.Name];
            var bytes = r.All(x => x.BytesPerCall is not null) ? Inv($"{Median(r.Select(x => x.BytesPerCall!.Value)):F0}") : "-";
            Console.WriteLine(Inv($"| {t.Name} | {Median(r.Select(x => x.RequestsPerSecond)):F0} | {Median(r.Select(x => x.P50Ms)):F2} | {Median(r.Select(x => x.P99Ms)):F2} | {Median(r.Select(x => x.CpuUsPerCall)):F1} | {Median(r.Select(x => x.UserUsPerCall)):F1} | {bytes} | {Median(r.Select(x => x.StubCpuUsPerCall)):F1} | {r.Sum(x => x.Errors)} |"));
        }
        Console.WriteLine();
        var ours = results[FuncProxyName];
        var bare = results[BareYarp];
        var cpu = ours.Zip(bare, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
        var throughput = ours.Zip(bare, (a, b) => a.RequestsPerSecond / b.RequestsPerSecond).ToArray();
        var p50 = ours.Zip(bare, (a, b) => a.P50Ms - b.P50Ms).ToArray();
        var bytesAbove = ours.Zip(bare, (a, b) => a.BytesPerCall - b.BytesPerCall ?? double.NaN).ToArray();
        static string Rounds(double[] values, string format) => string.Join(", ", values.Select(v => v.ToString(format, CultureInfo.InvariantCulture)));
        Console.WriteLine("FuncProxy against bare YARP, within each round (median of the rounds):");
        Console.WriteLine(Inv($"  CPU per call: {Rounds(cpu, "F2")} -> {Median(cpu):F2}x (target <= 1.25x)"));
        // Kernel time per call (sockets, scheduling) is the same work in both: the difference is the user-space part.
        var userAbove = ours.Zip(bare, (a, b) => a.UserUsPerCall - b.UserUsPerCall).ToArray();
        var kernelAbove = ours.Zip(bare, (a, b) => (a.CpuUsPerCall - a.UserUsPerCall) - (b.CpuUsPerCall - b.UserUsPerCall)).ToArray();
        Console.WriteLine(Inv($"  CPU per call above bare YARP: user {Rounds(userAbove, "F1")} -> {Median(userAbove):+0.0;-0.0} µs, kernel {Rounds(kernelAbove, "F1")} -> {Median(kernelAbove):+0.0;-0.0} µs"));
        Console.WriteLine(Inv($"  throughput: {Rounds(throughput, "F2")} -> {Median(throughput):F2}x (target >= 0.80x)"));
        Console.WriteLine(Inv($"  added p50: {Rounds(p50, "F2")} -> {Median(p50):+0.00;-0.00} ms (target <= 0.30 ms)"));
        Console.WriteLine(Inv($"  bytes allocated per call above bare YARP: {Rounds(bytesAbove, "F0")} -> {Median(bytesAbove):F0} B (target <= 2048 B)"));
        if (results.TryGetValue(FuncProxyUnlimited, out var plain))
        {
            // What the limits themselves cost: the same process, key and path, with and without the two policies.
            var plainCpu = plain.Zip(bare, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
            var limitsCpu = ours.Zip(plain, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
            var plainBytes = plain.Zip(bare, (a, b) => a.BytesPerCall - b.BytesPerCall ?? double.NaN).ToArray();
            Console.WriteLine(Inv($"  FuncProxy with a key without limits: CPU per call {Rounds(plainCpu, "F2")} -> {Median(plainCpu):F2}x bare YARP, {Median(plainBytes):F0} B above it; the limits themselves {Median(limitsCpu):F2}x of that"));
        }
        if (results.TryGetValue(FuncProxyCompared, out var other))
        {
            var cpuToOther = ours.Zip(other, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
            var userToOther = ours.Zip(other, (a, b) => a.UserUsPerCall - b.UserUsPerCall).ToArray();
            var otherToBare = other.Zip(bare, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
            var bytesToOther = ours.Zip(other, (a, b) => a.BytesPerCall - b.BytesPerCall ?? double.NaN).ToArray();
            Console.WriteLine(Inv($"  this build against --compare-dll, within each round: CPU per call {Rounds(cpuToOther, "F3")} -> {Median(cpuToOther):F3}x, user {Median(userToOther):+0.0;-0.0} µs, {Median(bytesToOther):+0;-0} B; that build {Median(otherToBare):F2}x bare YARP"));
        }
        if (results.TryGetValue(Nginx, out var ng))
        {
            var toNginx = ours.Zip(ng, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
            var bareToNginx = bare.Zip(ng, (a, b) => a.CpuUsPerCall / b.CpuUsPerCall).ToArray();
            Console.WriteLine(Inv($"  (CPU per call against nginx: FuncProxy {Median(toNginx):F2}x, bare YARP {Median(bareToNginx):F2}x)"));
        }
    }

    private static async Task<RoundResult> RunWrkAsync(string wrk, int threads, int concurrency, int seconds, Target target, string script, ServerProcess stub)
    {
        var load = File.ReadAllText("/proc/loadavg").Split(' ')[0..3];
        var allocatedBefore = await AllocatedBytesAsync(target.Server);
        var cpuBefore = ProcessCpu.TreeTicksSplit(target.Server.Process.Id);
        var stubBefore = ProcessCpu.TreeTicks(stub.Process.Id);
        var run = await ChildProcess.RunAsync(wrk, [Inv($"-t{threads}"), Inv($"-c{concurrency}"), Inv($"-d{seconds}s"), "--timeout", "10s", "-s", script, target.Url]);
        var cpuAfter = ProcessCpu.TreeTicksSplit(target.Server.Process.Id);
        var (user, kernel) = (cpuAfter.User - cpuBefore.User, cpuAfter.System - cpuBefore.System);
        var stubCpu = ProcessCpu.TreeTicks(stub.Process.Id) - stubBefore;
        var allocatedAfter = await AllocatedBytesAsync(target.Server);
        var line = run.Output.Split('\n').FirstOrDefault(l => l.StartsWith("PERCALL ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"wrk printed no summary for {target.Name} (exit {run.ExitCode}): {run.Output} {run.Error}");
        var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..].Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        var (requests, durationUs, statusErrors, socketErrors, p50Us, p99Us) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        if (statusErrors + socketErrors > 0)
        {
            Console.Error.WriteLine(Inv($"  {target.Name}: {statusErrors} non-2xx answers, {socketErrors} socket errors"));
        }
        var perCall = 1e6 / ProcessCpu.TicksPerSecond / Math.Max(1, requests);
        return new RoundResult(target.Name, requests, statusErrors + socketErrors, durationUs / 1e6, p50Us / 1000.0, p99Us / 1000.0,
            (user + kernel) * perCall, user * perCall, allocatedBefore is null || allocatedAfter is null ? null : (double)(allocatedAfter.Value - allocatedBefore.Value) / Math.Max(1, requests),
            stubCpu * perCall, string.Join(' ', load));
    }

    /// <summary>The process's allocated bytes so far, from the startup hook (see bench/FuncProxy.Bench.AllocationHook).</summary>
    private static async Task<long?> AllocatedBytesAsync(ServerProcess server)
    {
        if (server.AllocationFile is null)
        {
            return null;
        }
        var ask = server.AllocationFile + ".ask";
        await File.WriteAllTextAsync(ask, "");
        var waited = Stopwatch.StartNew();
        while (File.Exists(ask))
        {
            if (waited.Elapsed > TimeSpan.FromSeconds(10))
            {
                throw new InvalidOperationException($"{server.Process.Name}: the allocation hook did not answer (DOTNET_STARTUP_HOOKS not loaded?)");
            }
            await Task.Delay(5);
        }
        return long.Parse((await File.ReadAllTextAsync(server.AllocationFile)).Split(' ')[0], CultureInfo.InvariantCulture);
    }

    private static string WriteScript(string scratch, Target target)
    {
        var path = Path.Combine(scratch, target.Name.Replace(' ', '-').Replace('+', '-') + ".lua");
        var authorization = target.ClientKey is null ? "" : $"wrk.headers[\"Authorization\"] = \"Bearer {target.ClientKey}\"\n";
        // wrk's latencies are in microseconds; 'done' prints one machine-readable line.
        File.WriteAllText(path, $$"""
            wrk.method = "POST"
            wrk.body = '{{Body}}'
            wrk.headers["Content-Type"] = "application/json"
            {{authorization}}
            done = function(summary, latency, requests)
              local e = summary.errors
              io.write(string.format("PERCALL %d %d %d %d %d %d\n", summary.requests, summary.duration, e.status,
                e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
            end
            """);
        return path;
    }

    private static async Task<ServerProcess> StartDotnetAsync(string name, string[] arguments, Dictionary<string, string> environment, int port, string hook, string scratch)
    {
        var allocationFile = Path.Combine(scratch, Inv($"{name}-{port}.alloc"));
        environment["DOTNET_STARTUP_HOOKS"] = hook;
        environment["FUNCPROXY_BENCH_ALLOCATIONS"] = allocationFile;
        var process = ChildProcess.Start(name, "dotnet", arguments, environment, Path.GetDirectoryName(arguments[0]));
        await process.WaitForPortAsync(port, TimeSpan.FromSeconds(60));
        return new ServerProcess(process, allocationFile);
    }

    private static async Task<(ServerProcess Server, int Port, string Key, string UnlimitedKey)> StartFuncProxyAsync(string dll, string connectionString, string origin, string hook, string scratch)
    {
        var port = AzuriteProcess.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = connectionString,
            ["FuncProxy__Storage__TablePrefix"] = "c" + Guid.NewGuid().ToString("N")[..10],
            ["FuncProxy__Upstreams__stub__BaseUrl"] = origin + "/v1",
            ["FuncProxy__Upstreams__stub__SecretName"] = "stubkey",
            ["FuncProxy__Secrets__stubkey"] = "bench-provider-secret",
            ["Logging__LogLevel__Default"] = "Warning",
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
            ["ASPNETCORE_URLS"] = Inv($"http://127.0.0.1:{port}"),
        };
        var created = await ChildProcess.RunAsync("dotnet",
            [dll, "keys", "create", "--name", "bench-percall", "--upstream", "stub", "--limit", "requestsPerMinute=100000000", "--limit", "tokensPerMinute=100000000000", "--json"],
            environment, Path.GetDirectoryName(dll));
        if (created.ExitCode != 0)
        {
            throw new InvalidOperationException($"keys create failed ({created.ExitCode}): {created.Output} {created.Error}");
        }
        using var json = JsonDocument.Parse(created.Output);
        var key = json.RootElement.GetProperty("key").GetString()!;
        var unlimited = await ChildProcess.RunAsync("dotnet", [dll, "keys", "create", "--name", "bench-percall-unlimited", "--upstream", "stub", "--json"],
            environment, Path.GetDirectoryName(dll));
        if (unlimited.ExitCode != 0)
        {
            throw new InvalidOperationException($"keys create failed ({unlimited.ExitCode}): {unlimited.Output} {unlimited.Error}");
        }
        using var unlimitedJson = JsonDocument.Parse(unlimited.Output);
        var server = await StartDotnetAsync("FuncProxy.Server", [dll], environment, port, hook, scratch);
        return (server, port, key, unlimitedJson.RootElement.GetProperty("key").GetString()!);
    }

    private static async Task<(ChildProcess Process, int Port, string Version)?> StartNginxAsync(string scratch, int stubPort, string workers, List<string> skipped)
    {
        var binary = new[] { "/usr/sbin/nginx", "/usr/local/sbin/nginx" }.FirstOrDefault(File.Exists);
        if (binary is null)
        {
            skipped.Add("nginx: not installed (apt-get install -y nginx)");
            return null;
        }
        var version = (await ChildProcess.RunAsync(binary, ["-v"])).Error.Trim().Replace("nginx version: ", "", StringComparison.Ordinal);
        var port = AzuriteProcess.FreePort();
        var dir = Path.Combine(scratch, "nginx");
        Directory.CreateDirectory(dir);
        var conf = Path.Combine(dir, "nginx.conf");
        // Foreground, pid/error log/temp files in the scratch folder, no access log: nothing touches /etc/nginx or /var.
        await File.WriteAllTextAsync(conf, $$"""
            daemon off;
            worker_processes {{workers}};
            pid {{dir}}/nginx.pid;
            error_log {{dir}}/error.log warn;
            events { worker_connections 4096; }
            http {
                access_log off;
                client_body_temp_path {{dir}}/body;
                proxy_temp_path {{dir}}/proxy;
                fastcgi_temp_path {{dir}}/fastcgi;
                uwsgi_temp_path {{dir}}/uwsgi;
                scgi_temp_path {{dir}}/scgi;
                upstream stub {
                    server 127.0.0.1:{{stubPort}};
                    keepalive 64;
                }
                server {
                    listen 127.0.0.1:{{port}};
                    location / {
                        proxy_pass http://stub;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                    }
                }
            }
            """);
        var arguments = new[] { "-p", dir, "-e", Path.Combine(dir, "error.log"), "-c", conf };
        var process = ChildProcess.Start("nginx", binary, arguments);
        process.GracefulStop = () => ChildProcess.RunAsync(binary, [.. arguments, "-s", "stop"]);
        try
        {
            await process.WaitForPortAsync(port, TimeSpan.FromSeconds(15));
        }
        catch (InvalidOperationException e)
        {
            await process.DisposeAsync();
            skipped.Add("nginx: " + e.Message);
            return null;
        }
        return (process, port, version);
    }

    private static async Task<string?> ProbeAsync(HttpClient client, string url, string? key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(Body, Encoding.UTF8, "application/json") };
        if (key is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + key);
        }
        using var answer = await client.SendAsync(request);
        var body = await answer.Content.ReadAsStringAsync();
        return (int)answer.StatusCode == 200 ? body : $"{(int)answer.StatusCode}: {body}";
    }
}

/// <summary>CPU time of a process and its descendants (nginx's workers), from /proc/PID/stat: utime + stime, in clock ticks.</summary>
internal static class ProcessCpu
{
    /// <summary>USER_HZ: 100 on Linux for every architecture the runtime supports (the /proc ABI fixes it).</summary>
    public const double TicksPerSecond = 100;

    public static long TreeTicks(int root)
    {
        var (user, system) = TreeTicksSplit(root);
        return user + system;
    }

    /// <summary>As <see cref="TreeTicks"/>, user time (utime) and kernel time (stime) apart.</summary>
    public static (long User, long System) TreeTicksSplit(int root)
    {
        var stats = new List<(int Pid, int Parent, long User, long System)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
            {
                continue;
            }
            try
            {
                var stat = File.ReadAllText(Path.Combine(dir, "stat"));
                // Fields after the command name (which may hold spaces and parentheses): state ppid ... utime(14) stime(15).
                var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                stats.Add((pid, int.Parse(rest[1], CultureInfo.InvariantCulture), long.Parse(rest[11], CultureInfo.InvariantCulture), long.Parse(rest[12], CultureInfo.InvariantCulture)));
            }
            catch (IOException)
            {
                // The process ended while the list was read.
            }
        }
        var tree = new HashSet<int> { root };
        bool grew;
        do
        {
            grew = false;
            foreach (var s in stats)
            {
                if (!tree.Contains(s.Pid) && tree.Contains(s.Parent))
                {
                    tree.Add(s.Pid);
                    grew = true;
                }
            }
        }
        while (grew);
        var ours = stats.Where(s => tree.Contains(s.Pid)).ToArray();
        return (ours.Sum(s => s.User), ours.Sum(s => s.System));
    }
}
