using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using FuncProxy.Keys;
using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// <c>peers</c> mode (issue 3): the whole gateway with limits on against what a user would pick instead, all in front of
/// the same provider stub on loopback: nginx with <c>limit_req</c> keyed by the Authorization header, and the open-source
/// Portkey gateway (<c>@portkey-ai/gateway</c> 1.15.2, which has no rate limiting of its own: compared as a plain gateway).
/// Same request, same concurrency, rounds alternating the targets, median round reported, as in <c>gateway</c> mode.
/// Options: <c>--concurrency 32</c>, <c>--seconds 5</c>, <c>--rounds 3</c>, <c>--nginx-workers auto</c>,
/// <c>--portkey-dir DIR</c> (where <c>@portkey-ai/gateway</c> is or gets installed).
/// </summary>
internal static class PeersBench
{
    public const string PortkeyVersion = "1.15.2";
    private const string Body = """{"model":"gpt-bench","messages":[{"role":"user","content":"Say hello."}]}""";
    private static int _reportedErrors;

    private sealed record Target(string Name, string Url, IReadOnlyList<KeyValuePair<string, string>> Headers, string Configured);

    public static async Task<int> RunAsync(string[] args)
    {
        var concurrency = Option(args, "--concurrency", 32);
        var seconds = Option(args, "--seconds", 5);
        var rounds = Option(args, "--rounds", 3);
        var nginxWorkers = StringOption(args, "--nginx-workers") ?? "auto";
        var portkeyDir = StringOption(args, "--portkey-dir") ?? Path.Combine(Path.GetTempPath(), "funcproxy-bench-portkey");
        var scratch = Directory.CreateTempSubdirectory("funcproxy-peers-");

        await using var stub = await UpstreamStub.StartAsync(record: false);
        var origin = stub.BaseAddress.GetLeftPart(UriPartial.Authority);
        await using var azurite = await AzuriteProcess.StartAsync();

        var (gateway, gatewayAddress) = await BenchGateway.StartAsync(azurite.ConnectionString, origin);
        // Limits far above the load, so none is ever refused: what is measured is the cost of checking them.
        var key = await gateway.Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation
        {
            Name = "bench-peers",
            AllowedUpstreams = ["stub"],
            Limits = new KeyLimits { RequestsPerMinute = 100_000_000, TokensPerMinute = 100_000_000_000 },
        });

        var targets = new List<Target>
        {
            new("stub direct", origin + "/v1/chat/completions", [], "the provider stub itself (reference, not a peer)"),
            new("FuncProxy+limits", gatewayAddress + "/api/stub/chat/completions", [new("Authorization", "Bearer " + key.Value)],
                "FuncProxy.Server in this process; key with rpm 100,000,000 and tpm 100,000,000,000 (distributed limiter on Azurite, token reservation and settlement, metering)"),
        };
        var skipped = new List<string>();
        var children = new List<ChildProcess>();
        try
        {
            var own = await StartOwnProcessAsync(azurite.ConnectionString, origin, skipped);
            if (own is not null)
            {
                children.Add(own.Value.Process);
                targets.Add(new("FuncProxy+limits, own process", $"http://127.0.0.1:{own.Value.Port}/api/stub/chat/completions", [new("Authorization", "Bearer " + own.Value.Key)],
                    "the same, as a separate 'dotnet FuncProxy.Server.dll' process (as nginx and Portkey are), key minted with 'keys create --limit requestsPerMinute=100000000 --limit tokensPerMinute=100000000000'"));
            }
            var nginx = await StartNginxAsync(scratch.FullName, origin, nginxWorkers, skipped);
            if (nginx is not null)
            {
                children.Add(nginx.Value.Process);
                targets.Add(new("nginx limit_req", $"http://127.0.0.1:{nginx.Value.Port}/v1/chat/completions", [new("Authorization", "Bearer bench-client-key")],
                    $"nginx {nginx.Value.Version}, worker_processes {nginxWorkers}; limit_req_zone $http_authorization rate=100000r/s, limit_req burst=100000 nodelay; proxy_pass to the stub, upstream keepalive 64"));
            }
            var portkey = await StartPortkeyAsync(portkeyDir, skipped);
            if (portkey is not null)
            {
                children.Add(portkey.Value.Process);
                targets.Add(new("Portkey", $"http://127.0.0.1:{portkey.Value.Port}/v1/chat/completions",
                    [new("Authorization", "Bearer bench-provider-secret"), new("x-portkey-provider", "openai"), new("x-portkey-custom-host", origin + "/v1")],
                    $"@portkey-ai/gateway {PortkeyVersion} (node {await NodeVersionAsync()}), NODE_ENV=production, --headless; provider openai with x-portkey-custom-host = the stub; no rate limit (none in the open-source build)"));
            }

            using var client = LoadRun.NewClient(concurrency);
            var reference = await ProbeAsync(client, targets[0]);
            if (reference is null)
            {
                return 1;
            }
            foreach (var t in targets.Skip(1))
            {
                var body = await ProbeAsync(client, t);
                if (body is null || !SameAnswer(reference, body))
                {
                    Console.Error.WriteLine($"{t.Name} did not answer with the stub's completion: {body}");
                    return 1;
                }
                if (body != reference)
                {
                    Console.WriteLine($"  note: {t.Name} answers the stub's completion re-serialized: {Trim(body, 200)}");
                }
            }

            Console.WriteLine($"peers bench: concurrency {concurrency}, {seconds} s per target, {rounds} rounds, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd}");
            foreach (var t in targets)
            {
                Console.WriteLine($"  {t.Name}: {t.Configured}");
            }
            foreach (var s in skipped)
            {
                Console.WriteLine($"  skipped: {s}");
            }
            foreach (var t in targets)
            {
                await LoadRun.RunAsync(t.Name, concurrency, TimeSpan.FromSeconds(1), c => SendAsync(c, t), client); // warm-up
            }
            var results = targets.ToDictionary(t => t.Name, _ => new List<LoadResult>());
            for (var round = 0; round < rounds; round++)
            {
                foreach (var t in targets)
                {
                    var r = await LoadRun.RunAsync(t.Name, concurrency, TimeSpan.FromSeconds(seconds), c => SendAsync(c, t), client);
                    results[t.Name].Add(r);
                    Console.WriteLine(Inv($"  round {round + 1} {r.Name,-30} {r.RequestsPerSecond,9:F0} req/s  p50 {r.P50Ms,6:F2} ms  p99 {r.P99Ms,6:F2} ms  errors {r.Errors}"));
                }
            }

            var median = results.ToDictionary(kv => kv.Key, kv => kv.Value.OrderBy(r => r.RequestsPerSecond).ElementAt(kv.Value.Count / 2));
            var ours = median["FuncProxy+limits"];
            var oursOwn = median.GetValueOrDefault("FuncProxy+limits, own process");
            Console.WriteLine();
            Console.WriteLine("| target | req/s | p50 ms | p99 ms | errors | FuncProxy (in-process) req/s ÷ this | FuncProxy (own process) req/s ÷ this |");
            Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var t in targets)
            {
                var r = median[t.Name];
                Console.WriteLine(Inv($"| {r.Name} | {r.RequestsPerSecond:F0} | {r.P50Ms:F2} | {r.P99Ms:F2} | {r.Errors} | {ours.RequestsPerSecond / r.RequestsPerSecond:F2} | {(oursOwn is null ? "-" : (oursOwn.RequestsPerSecond / r.RequestsPerSecond).ToString("F2", CultureInfo.InvariantCulture))} |"));
            }
            Console.WriteLine();
            // On a shared machine whole rounds speed up and slow down together: the ratio within each round is steadier
            // than the ratio of the medians.
            foreach (var peer in new[] { "nginx limit_req", "Portkey" }.Where(results.ContainsKey))
            {
                foreach (var mine in new[] { "FuncProxy+limits", "FuncProxy+limits, own process" }.Where(results.ContainsKey))
                {
                    var perRound = results[mine].Zip(results[peer], (a, b) => a.RequestsPerSecond / b.RequestsPerSecond).ToArray();
                    Console.WriteLine(Inv($"{mine} / {peer}, round by round: {string.Join(", ", perRound.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))} (median {perRound.Order().ElementAt(perRound.Length / 2):F2})"));
                }
            }
            Console.WriteLine();
            if (median.TryGetValue("nginx limit_req", out var ng))
            {
                Console.WriteLine(Inv($"FuncProxy / nginx limit_req: throughput {ours.RequestsPerSecond / ng.RequestsPerSecond:F2} (target >= 0.80), p50 {ours.P50Ms - ng.P50Ms:+0.00;-0.00} ms, p99 {ours.P99Ms - ng.P99Ms:+0.00;-0.00} ms"));
                if (oursOwn is not null)
                {
                    Console.WriteLine(Inv($"FuncProxy (own process) / nginx limit_req: throughput {oursOwn.RequestsPerSecond / ng.RequestsPerSecond:F2}, p50 {oursOwn.P50Ms - ng.P50Ms:+0.00;-0.00} ms, p99 {oursOwn.P99Ms - ng.P99Ms:+0.00;-0.00} ms"));
                }
            }
            if (median.TryGetValue("Portkey", out var pk))
            {
                Console.WriteLine(Inv($"FuncProxy / Portkey: throughput {ours.RequestsPerSecond / pk.RequestsPerSecond:F2} (target > 1.00), p50 {ours.P50Ms - pk.P50Ms:+0.00;-0.00} ms, p99 {ours.P99Ms - pk.P99Ms:+0.00;-0.00} ms"));
                if (oursOwn is not null)
                {
                    Console.WriteLine(Inv($"FuncProxy (own process) / Portkey: throughput {oursOwn.RequestsPerSecond / pk.RequestsPerSecond:F2}, p50 {oursOwn.P50Ms - pk.P50Ms:+0.00;-0.00} ms, p99 {oursOwn.P99Ms - pk.P99Ms:+0.00;-0.00} ms"));
                }
            }
            return 0;
        }
        finally
        {
            foreach (var c in children)
            {
                await c.DisposeAsync();
            }
            await gateway.StopAsync();
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

    /// <summary>FuncProxy.Server in its own process, so that it does not share a runtime with the stub and the load generator.</summary>
    private static async Task<(ChildProcess Process, int Port, string Key)?> StartOwnProcessAsync(string connectionString, string origin, List<string> skipped)
    {
        var dll = ProcessAccuracyBench.FindServerDll();
        if (dll is null)
        {
            skipped.Add("FuncProxy+limits, own process: FuncProxy.Server.dll not found");
            return null;
        }
        var port = AzuriteProcess.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = connectionString,
            ["FuncProxy__Storage__TablePrefix"] = "o" + Guid.NewGuid().ToString("N")[..10],
            ["FuncProxy__Upstreams__stub__BaseUrl"] = origin + "/v1",
            ["FuncProxy__Upstreams__stub__SecretName"] = "stubkey",
            ["FuncProxy__Secrets__stubkey"] = "bench-provider-secret",
            ["Logging__LogLevel__Default"] = "Warning",
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["ASPNETCORE_URLS"] = Inv($"http://127.0.0.1:{port}"),
        };
        var directory = Path.GetDirectoryName(dll)!;
        var created = await ChildProcess.RunAsync("dotnet",
            [dll, "keys", "create", "--name", "bench-peers", "--upstream", "stub", "--limit", "requestsPerMinute=100000000", "--limit", "tokensPerMinute=100000000000", "--json"],
            environment, directory);
        if (created.ExitCode != 0)
        {
            skipped.Add($"FuncProxy+limits, own process: keys create failed: {Trim(created.Output + created.Error, 300)}");
            return null;
        }
        using var json = JsonDocument.Parse(created.Output);
        var key = json.RootElement.GetProperty("key").GetString()!;
        var process = ChildProcess.Start("FuncProxy.Server", "dotnet", [dll], environment, directory);
        try
        {
            await process.WaitForPortAsync(port, TimeSpan.FromSeconds(60));
        }
        catch (InvalidOperationException e)
        {
            await process.DisposeAsync();
            skipped.Add("FuncProxy+limits, own process: " + e.Message);
            return null;
        }
        return (process, port, key);
    }

    private static async Task<(ChildProcess Process, int Port, string Version)?> StartNginxAsync(string scratch, string origin, string workers, List<string> skipped)
    {
        var binary = new[] { "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx" }.FirstOrDefault(File.Exists);
        if (binary is null)
        {
            skipped.Add("nginx: not installed (apt-get install -y nginx)");
            return null;
        }
        var version = (await ChildProcess.RunAsync(binary, ["-v"])).Error.Trim().Replace("nginx version: ", "", StringComparison.Ordinal);
        var port = AzuriteProcess.FreePort();
        var upstream = new Uri(origin);
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
                # One bucket per client key, at a rate far above the load, so nothing is ever refused.
                limit_req_zone $http_authorization zone=perkey:10m rate=100000r/s;
                limit_req_status 429;
                upstream stub {
                    server {{upstream.Host}}:{{upstream.Port}};
                    keepalive 64;
                }
                server {
                    listen 127.0.0.1:{{port}};
                    location / {
                        limit_req zone=perkey burst=100000 nodelay;
                        proxy_pass http://stub;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                    }
                }
            }
            """);
        var check = await ChildProcess.RunAsync(binary, ["-t", "-p", dir, "-e", Path.Combine(dir, "error.log"), "-c", conf]);
        if (check.ExitCode != 0)
        {
            skipped.Add($"nginx: configuration rejected: {check.Error.Trim()}");
            return null;
        }
        var process = ChildProcess.Start("nginx", binary, ["-p", dir, "-e", Path.Combine(dir, "error.log"), "-c", conf]);
        process.GracefulStop = () => ChildProcess.RunAsync(binary, ["-p", dir, "-e", Path.Combine(dir, "error.log"), "-c", conf, "-s", "stop"]);
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

    private static async Task<(ChildProcess Process, int Port)?> StartPortkeyAsync(string dir, List<string> skipped)
    {
        var script = Path.Combine(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js");
        if (!File.Exists(script))
        {
            // Installed once per machine into a scratch folder, not into the repository: it is not a dependency of FuncProxy
            // and 95 packages would otherwise come with every 'npm ci' that only needs Azurite. The one install script
            // (patch-package) has no patches to apply in the published package, so scripts are not run.
            Directory.CreateDirectory(dir);
            if (!File.Exists(Path.Combine(dir, "package.json")))
            {
                await File.WriteAllTextAsync(Path.Combine(dir, "package.json"), """{"private":true}""");
            }
            Console.WriteLine($"  installing @portkey-ai/gateway@{PortkeyVersion} into {dir} ...");
            var install = await ChildProcess.RunAsync("npm", ["install", "--no-audit", "--no-fund", "--ignore-scripts", $"@portkey-ai/gateway@{PortkeyVersion}"], workingDirectory: dir);
            if (install.ExitCode != 0 || !File.Exists(script))
            {
                skipped.Add($"Portkey: npm install failed ({install.ExitCode}): {Trim(install.Error.Trim(), 300)}");
                return null;
            }
        }
        var port = AzuriteProcess.FreePort();
        // --headless and NODE_ENV=production: no web UI, nothing read or fetched but the request's own upstream.
        var process = ChildProcess.Start("Portkey", "node", [script, $"--port={port}", "--headless"],
            new Dictionary<string, string> { ["NODE_ENV"] = "production" }, dir);
        try
        {
            await process.WaitForPortAsync(port, TimeSpan.FromSeconds(30));
        }
        catch (InvalidOperationException e)
        {
            await process.DisposeAsync();
            skipped.Add("Portkey: " + e.Message);
            return null;
        }
        return (process, port);
    }

    private static async Task<string> NodeVersionAsync()
    {
        try
        {
            return (await ChildProcess.RunAsync("node", ["--version"])).Output.Trim();
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "?";
        }
    }

    private static HttpRequestMessage Request(Target t)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, t.Url) { Content = new StringContent(Body, Encoding.UTF8, "application/json") };
        foreach (var (name, value) in t.Headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }
        return request;
    }

    private static async Task<string?> ProbeAsync(HttpClient client, Target t)
    {
        using var request = Request(t);
        using var answer = await client.SendAsync(request);
        var body = await answer.Content.ReadAsStringAsync();
        if ((int)answer.StatusCode != 200)
        {
            Console.Error.WriteLine($"{t.Name} answered {(int)answer.StatusCode}: {Trim(body, 500)}");
            return null;
        }
        return body;
    }

    /// <summary>The same completion: id, model, first message and usage as the stub sent them (a peer may re-serialize).</summary>
    private static bool SameAnswer(string reference, string body)
    {
        try
        {
            using var a = JsonDocument.Parse(reference);
            using var b = JsonDocument.Parse(body);
            string Pick(JsonElement e) => e.GetProperty("id").GetString() + "|" + e.GetProperty("model").GetString() + "|"
                + e.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() + "|"
                + e.GetProperty("usage").GetProperty("total_tokens").GetInt32();
            return Pick(a.RootElement) == Pick(b.RootElement);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException)
        {
            return false;
        }
    }

    private static async Task<bool> SendAsync(HttpClient client, Target t)
    {
        using var request = Request(t);
        using var response = await client.SendAsync(request);
        if (!response.IsSuccessStatusCode)
        {
            var body = await response.Content.ReadAsStringAsync();
            if (Interlocked.Increment(ref _reportedErrors) <= 5)
            {
                Console.Error.WriteLine($"  {t.Name} answered {(int)response.StatusCode}: {Trim(body, 300)}");
            }
            return false;
        }
        await response.Content.CopyToAsync(Stream.Null);
        return true;
    }

    private static string Trim(string s, int max) => s.Length <= max ? s : s[..max] + "...";
}
