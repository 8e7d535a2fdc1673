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
/// <c>spend</c> mode (issue 10), FuncProxy.Server as separate processes on one Azurite, the provider stub in this process:
/// 1. Cost of spend control per call: one server process, two keys with the same request and token limits, one of them
///    also with an allow-list of models, an alias and a daily budget (so each call parses the model, looks up its price,
///    reserves its most expensive outcome in micro-dollars and settles the real cost). Closed-loop load from this process
///    on each key in alternating rounds; per round the server's CPU time (utime + stime from /proc) per call served, and
///    the ratio of the budget key to the plain one within the round.
/// 2. Accuracy of a daily budget across 3 server processes: one key per demand level with the same budget, paced callers
///    spread over the processes offering 0.5x to 10x the budget's worth of calls over the run. Every admitted call's cost
///    is computed here from the usage the stub reported and the same prices, and compared with the budget (over-spend in
///    dollars) and with what the gateway itself recorded in its usage table (read with <c>keys usage --json</c> after the
///    processes stopped with SIGTERM, which flushes their meters).
/// </summary>
internal static class SpendBench
{
    // Prices of the bench model, USD per million tokens: dear enough that one call is 22,000 micro-dollars (2.2 cents).
    private const decimal InputPerMillion = 1000m;
    private const decimal OutputPerMillion = 2000m;
    private const string Body = """{"model":"gpt-bench","max_tokens":5,"messages":[{"role":"user","content":"Say hello."}]}""";
    private const string AliasBody = """{"model":"bench-alias","max_tokens":5,"messages":[{"role":"user","content":"Say hello."}]}""";
    private const int Instances = 3;
    private const int CallersPerInstance = 16;

    private readonly record struct Outcome(int Status, long CostMicroUsd);

    public static async Task<int> RunAsync(string[] args)
    {
        var concurrency = Option(args, "--concurrency", 16);
        var seconds = Option(args, "--seconds", 5);
        var rounds = Option(args, "--rounds", 3);
        var budgetCalls = Option(args, "--budget-calls", 100);
        var accuracySeconds = Option(args, "--accuracy-seconds", 6);
        var loads = StringOption(args, "--loads") is { } l
            ? l.Split(',').Select(x => double.Parse(x, CultureInfo.InvariantCulture)).ToArray()
            : new[] { 0.5, 1, 2, 10 };
        var dll = ProcessAccuracyBench.FindServerDll();
        if (dll is null)
        {
            Console.Error.WriteLine("FuncProxy.Server.dll not found: build the bench (it is copied next to it).");
            return 1;
        }
        var callCost = UpstreamStub.PromptTokens * Micro(InputPerMillion) + UpstreamStub.CompletionTokens * Micro(OutputPerMillion);

        await using var stub = await UpstreamStub.StartAsync(record: false);
        await using var azurite = await AzuriteProcess.StartAsync();
        var environment = new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = azurite.ConnectionString,
            ["FuncProxy__Storage__TablePrefix"] = "s" + Guid.NewGuid().ToString("N")[..10],
            ["FuncProxy__Upstreams__stub__BaseUrl"] = stub.BaseAddress.GetLeftPart(UriPartial.Authority) + "/v1",
            ["FuncProxy__Upstreams__stub__SecretName"] = "stubkey",
            ["FuncProxy__Upstreams__stub__Prices__0__Model"] = "gpt-bench*",
            ["FuncProxy__Upstreams__stub__Prices__0__InputPerMillion"] = Inv($"{InputPerMillion}"),
            ["FuncProxy__Upstreams__stub__Prices__0__OutputPerMillion"] = Inv($"{OutputPerMillion}"),
            ["FuncProxy__Secrets__stubkey"] = "bench-provider-secret",
            ["FuncProxy__Limits__ExpectedInstances"] = Inv($"{Instances}"),
            ["Logging__LogLevel__Default"] = "Warning",
            ["ASPNETCORE_ENVIRONMENT"] = "Production",
            ["DOTNET_ENVIRONMENT"] = "Production",
        };
        var workingDirectory = Path.GetDirectoryName(dll)!;
        Console.WriteLine(Inv($"# spend control: {dll}; {Environment.ProcessorCount} cores; {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; load average {LoadAverage()}"));
        Console.WriteLine(Inv($"bench model gpt-bench*: {InputPerMillion} USD per million input tokens, {OutputPerMillion} per million output; the stub reports {UpstreamStub.PromptTokens} input ({UpstreamStub.CachedTokens} cached, not priced apart here) and {UpstreamStub.CompletionTokens} output tokens, so a call costs {callCost} micro-USD"));
        Console.WriteLine();

        const string Limits = "requestsPerMinute=100000000";
        const string Tokens = "tokensPerMinute=100000000000";
        var plain = await CreateKeyAsync(dll, environment, workingDirectory, "bench-plain", ["--limit", Limits, "--limit", Tokens]);
        var budget = await CreateKeyAsync(dll, environment, workingDirectory, "bench-budget",
            ["--limit", Limits, "--limit", Tokens, "--limit", "budgetPerDayUsd=1000000", "--model", "gpt-bench*", "--alias", "bench-alias=gpt-bench"]);
        if (plain is null || budget is null)
        {
            return 1;
        }

        await CostPerCallAsync(dll, environment, workingDirectory, plain.Value.Key, budget.Value.Key, concurrency, seconds, rounds);
        await AccuracyAsync(dll, environment, workingDirectory, loads, budgetCalls, callCost, accuracySeconds);
        return 0;
    }

    private static async Task CostPerCallAsync(string dll, Dictionary<string, string> environment, string workingDirectory, string plainKey, string budgetKey, int concurrency, int seconds, int rounds)
    {
        var port = AzuriteProcess.FreePort();
        await using var server = StartServer(dll, environment, workingDirectory, port, "FuncProxy.Server");
        await server.WaitForPortAsync(port, TimeSpan.FromSeconds(60));
        var url = Inv($"http://127.0.0.1:{port}/api/stub/chat/completions");
        using var client = LoadRun.NewClient(concurrency);
        foreach (var (key, body) in new[] { (plainKey, Body), (budgetKey, AliasBody) })
        {
            var check = await SendAsync(client, url, key, body);
            if (check.Status != 200)
            {
                throw new InvalidOperationException(Inv($"warm-up call answered {check.Status}"));
            }
            await LoadRun.RunAsync("warm", concurrency, TimeSpan.FromSeconds(2), c => OkAsync(c, url, key, body), client);
        }

        Console.WriteLine(Inv($"## Cost per call: one FuncProxy.Server process (pid {server.Id}), {concurrency} closed-loop callers in this process, {rounds} alternating rounds of {seconds} s"));
        Console.WriteLine();
        Console.WriteLine("| round | key | req/s | p50 ms | p99 ms | errors | server CPU µs per call | budget ÷ plain (CPU per call) | budget ÷ plain (req/s) |");
        Console.WriteLine("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        var cpuRatios = new List<double>();
        var rpsRatios = new List<double>();
        for (var round = 1; round <= rounds; round++)
        {
            var results = new List<(LoadResult Load, double CpuMicros)>();
            // Alternate which key goes first, so a drift within a round hits both alike.
            var order = round % 2 == 1
                ? new[] { ("plain (limits)", plainKey, Body), ("budget + models + alias", budgetKey, AliasBody) }
                : new[] { ("budget + models + alias", budgetKey, AliasBody), ("plain (limits)", plainKey, Body) };
            foreach (var (name, key, body) in order)
            {
                var cpuBefore = ProcessCpu.TreeTicks(server.Id);
                var load = await LoadRun.RunAsync(name, concurrency, TimeSpan.FromSeconds(seconds), c => OkAsync(c, url, key, body), client);
                var cpu = (ProcessCpu.TreeTicks(server.Id) - cpuBefore) * 1e6 / ProcessCpu.TicksPerSecond / Math.Max(1, load.Requests);
                results.Add((load, cpu));
            }
            var p = results.Single(r => r.Load.Name.StartsWith("plain", StringComparison.Ordinal));
            var b = results.Single(r => r.Load.Name.StartsWith("budget", StringComparison.Ordinal));
            cpuRatios.Add(b.CpuMicros / p.CpuMicros);
            rpsRatios.Add(b.Load.RequestsPerSecond / p.Load.RequestsPerSecond);
            foreach (var (load, cpu) in results)
            {
                var ratios = load == b.Load ? Inv($"{cpuRatios[^1]:F2} | {rpsRatios[^1]:F2}") : " | ";
                Console.WriteLine(Inv($"| {round} | {load.Name} | {load.RequestsPerSecond:F0} | {load.P50Ms:F2} | {load.P99Ms:F2} | {load.Errors} | {cpu:F0} | {ratios} |"));
            }
        }
        Console.WriteLine();
        Console.WriteLine(Inv($"median over rounds: budget ÷ plain CPU per call {Median(cpuRatios):F2}, throughput {Median(rpsRatios):F2}; load average {LoadAverage()}"));
        Console.WriteLine();
    }

    private static async Task AccuracyAsync(string dll, Dictionary<string, string> environment, string workingDirectory, double[] loads, int budgetCalls, long callCost, int seconds)
    {
        var budgetMicro = budgetCalls * callCost;
        var budgetUsd = budgetMicro / 1_000_000m;
        var keys = new Dictionary<double, (string Key, string Id)>();
        foreach (var load in loads)
        {
            var created = await CreateKeyAsync(dll, environment, workingDirectory, Inv($"budget-{load}x"), ["--limit", Inv($"budgetPerDayUsd={budgetUsd}")]);
            if (created is null)
            {
                return;
            }
            keys[load] = created.Value;
        }

        var servers = new List<(ChildProcess Process, string Url)>();
        var results = new List<(double Load, List<Outcome> Outcomes, TimeSpan Elapsed)>();
        using var client = LoadRun.NewClient(CallersPerInstance);
        try
        {
            for (var i = 0; i < Instances; i++)
            {
                var port = AzuriteProcess.FreePort();
                var process = StartServer(dll, environment, workingDirectory, port, Inv($"FuncProxy.Server #{i + 1}"));
                servers.Add((process, Inv($"http://127.0.0.1:{port}/api/stub/chat/completions")));
                await process.WaitForPortAsync(port, TimeSpan.FromSeconds(60));
            }
            foreach (var load in loads)
            {
                // Offer load x the budget's worth of calls over the run, paced, spread over the three processes.
                var offered = (int)Math.Round(load * budgetCalls);
                var stopwatch = Stopwatch.StartNew();
                var outcomes = await DriveAsync(client, servers.Select(s => s.Url).ToArray(), keys[load].Key, offered, TimeSpan.FromSeconds(seconds));
                results.Add((load, outcomes, stopwatch.Elapsed));
            }
        }
        finally
        {
            // SIGTERM: each process writes the usage it still holds before it exits.
            foreach (var (process, _) in servers)
            {
                process.GracefulStop = () => process.SignalAsync("TERM");
                await process.DisposeAsync();
            }
        }

        Console.WriteLine(Inv($"## Budget accuracy: {Instances} FuncProxy.Server processes, daily budget {budgetUsd:F2} USD per key ({budgetCalls} calls' worth), {Instances * CallersPerInstance} paced callers, about {seconds} s per level"));
        Console.WriteLine();
        Console.WriteLine("| demand | offered calls | offered USD | admitted (200) | refused 429 budget_exceeded | other | spent USD (stub usage x prices) | over the budget USD | spent / min(offered, budget) | recorded by the gateway USD | recorded requests |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (load, outcomes, _) in results)
        {
            var admitted = outcomes.Count(o => o.Status == 200);
            var refused = outcomes.Count(o => o.Status == 429);
            var other = outcomes.Count - admitted - refused;
            var spent = outcomes.Where(o => o.Status == 200).Sum(o => o.CostMicroUsd);
            var offeredCost = outcomes.Count * callCost;
            var over = Math.Max(0, spent - budgetMicro);
            var used = spent / (double)Math.Min(offeredCost, budgetMicro);
            var recorded = await RecordedAsync(dll, environment, workingDirectory, keys[load].Id);
            Console.WriteLine(Inv($"| {load}x | {outcomes.Count} | {offeredCost / 1e6:F2} | {admitted} | {refused} | {other} | {spent / 1e6:F4} | {over / 1e6:F4} | {used:P1} | {recorded.CostUsd:F4} | {recorded.Requests} |"));
        }
        Console.WriteLine();
        Console.WriteLine(Inv($"load average {LoadAverage()}"));
    }

    /// <summary>Paced (open-loop) callers: <paramref name="calls"/> calls spread evenly over the run and the processes.</summary>
    private static async Task<List<Outcome>> DriveAsync(HttpClient client, string[] urls, string key, int calls, TimeSpan runFor)
    {
        var callers = urls.Length * CallersPerInstance;
        var outcomes = new ConcurrentBag<Outcome>();
        var clock = Stopwatch.StartNew();
        var next = -1;
        var tasks = Enumerable.Range(0, callers).Select(c => Task.Run(async () =>
        {
            var url = urls[c % urls.Length];
            while (true)
            {
                var n = Interlocked.Increment(ref next);
                if (n >= calls)
                {
                    break;
                }
                var due = runFor * n / calls;
                var wait = due - clock.Elapsed;
                if (wait > TimeSpan.FromMilliseconds(1))
                {
                    await Task.Delay(wait);
                }
                outcomes.Add(await SendAsync(client, url, key, Body));
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        return [.. outcomes];
    }

    private static async Task<Outcome> SendAsync(HttpClient client, string url, string key, string body)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        try
        {
            using var response = await client.SendAsync(request);
            var text = await response.Content.ReadAsStringAsync();
            var status = (int)response.StatusCode;
            if (status != 200)
            {
                if (status == 429 && !text.Contains("budget_exceeded", StringComparison.Ordinal))
                {
                    Console.Error.WriteLine($"  429 that is not budget_exceeded: {text[..Math.Min(text.Length, 300)]}");
                }
                return new Outcome(status, 0);
            }
            using var json = JsonDocument.Parse(text);
            var usage = json.RootElement.GetProperty("usage");
            var cost = usage.GetProperty("prompt_tokens").GetInt64() * Micro(InputPerMillion)
                       + usage.GetProperty("completion_tokens").GetInt64() * Micro(OutputPerMillion);
            return new Outcome(status, cost);
        }
        catch (HttpRequestException e)
        {
            Console.Error.WriteLine($"  {url} failed: {e.Message}");
            return new Outcome(0, 0);
        }
    }

    private static async Task<bool> OkAsync(HttpClient client, string url, string key, string body) => (await SendAsync(client, url, key, body)).Status == 200;

    private static async Task<(decimal CostUsd, long Requests)> RecordedAsync(string dll, Dictionary<string, string> environment, string workingDirectory, string id)
    {
        var run = await ChildProcess.RunAsync("dotnet", [dll, "keys", "usage", id, "--json"], environment, workingDirectory);
        if (run.ExitCode != 0)
        {
            Console.Error.WriteLine($"keys usage failed ({run.ExitCode}): {run.Output}{run.Error}");
            return (-1, -1);
        }
        using var json = JsonDocument.Parse(run.Output);
        var totals = json.RootElement.GetProperty("totals");
        return (totals.GetProperty("costUsd").GetDecimal(), totals.GetProperty("requests").GetInt64());
    }

    private static async Task<(string Key, string Id)?> CreateKeyAsync(string dll, Dictionary<string, string> environment, string workingDirectory, string name, string[] extra)
    {
        var created = await ChildProcess.RunAsync("dotnet", [dll, "keys", "create", "--name", name, "--upstream", "stub", .. extra, "--json"], environment, workingDirectory);
        if (created.ExitCode != 0)
        {
            Console.Error.WriteLine($"keys create failed ({created.ExitCode}): {created.Output}{created.Error}");
            return null;
        }
        using var json = JsonDocument.Parse(created.Output);
        return (json.RootElement.GetProperty("key").GetString()!, json.RootElement.GetProperty("record").GetProperty("id").GetString()!);
    }

    private static ChildProcess StartServer(string dll, Dictionary<string, string> environment, string workingDirectory, int port, string name)
    {
        var env = new Dictionary<string, string>(environment) { ["ASPNETCORE_URLS"] = Inv($"http://127.0.0.1:{port}") };
        return ChildProcess.Start(name, "dotnet", [dll], env, workingDirectory);
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ')[..3]) : "n/a";

    private static long Micro(decimal perMillion) => (long)perMillion; // USD per million tokens = micro-USD per token

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
}
