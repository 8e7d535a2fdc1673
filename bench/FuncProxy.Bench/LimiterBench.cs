using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Azure;
using Azure.Data.Tables;
using FuncProxy.Keys;
using FuncProxy.RateLimiting;
using Microsoft.Extensions.Logging.Abstractions;
using static FuncProxy.Bench.BenchArgs;

namespace FuncProxy.Bench;

/// <summary>
/// <c>limiter</c> mode. (1) A hot key on one instance: decisions per second, storage operations per admitted request and
/// decision latency of the leased limiter, against a naive counter (one read plus one ETag write per request) in the same
/// run. (2) Accuracy across 3 independent engine instances in this process (own storage client, clock and leases each, as
/// separate Function instances would have) at 0.5x, 1x, 2x and 10x the limit: admitted per window against the limit.
/// Options: <c>--quick</c> (smaller runs), <c>--plot PATH</c> (PNG of the accuracy run).
/// </summary>
internal static class LimiterBench
{
    public static async Task<int> RunAsync(string[] args)
    {
        var quick = args.Contains("--quick");
        var plotIndex = Array.IndexOf(args, "--plot");
        var plotPath = plotIndex >= 0 && plotIndex + 1 < args.Length ? args[plotIndex + 1] : null;
        await using var storage = await BenchStorage.StartAsync();
        Console.WriteLine($"# limiter benchmark ({storage.Description}, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd})");
        Console.WriteLine();

        await HotKeyAsync(storage.ConnectionString, quick ? 100_000 : 500_000, quick ? 500 : 2_000);
        await AccuracyAsync(storage.ConnectionString, quick ? 4 : 7, plotPath);
        return 0;
    }

    private static KeyRateLimiter Instance(string connectionString, string prefix, LimitOptions options)
    {
        var tables = new FuncProxyTables(FuncProxyTables.CreateServiceClient(new StorageOptions { ConnectionString = connectionString }), prefix);
        var clock = new LimiterClock(TimeProvider.System, options.UseStorageClock);
        return new KeyRateLimiter(new CounterStore(tables, clock), clock, () => options, NullLogger.Instance);
    }

    private static KeyRecord Key(KeyLimits limits) => new()
    {
        Id = "b" + Guid.NewGuid().ToString("N")[..12],
        Name = "bench",
        CreatedAt = DateTimeOffset.UnixEpoch,
        SecretHash = [],
        Limits = limits,
    };

    private static string Prefix() => "b" + Guid.NewGuid().ToString("N")[..10];

    private static async Task HotKeyAsync(string connectionString, int n, int naiveN)
    {
        var limiter = Instance(connectionString, Prefix(), new LimitOptions { ExpectedInstances = 1 });
        var key = Key(new KeyLimits { RequestsPerHour = 1_000_000_000 });
        var request = new LimitRequest(key, 0);
        for (var i = 0; i < 20_000; i++)
        {
            (await limiter.AcquireAsync(request)).Dispose();
        }

        var latencies = new double[n];
        var fromMemory = new List<double>(n);
        var opsBefore = limiter.Store.Operations;
        var admitted = 0;
        var total = Stopwatch.StartNew();
        for (var i = 0; i < n; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            var pending = limiter.AcquireAsync(request);
            var synchronous = pending.IsCompleted;
            using var lease = synchronous ? pending.Result : await pending;
            var us = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
            latencies[i] = us;
            if (synchronous)
            {
                fromMemory.Add(us);
            }
            admitted += lease.IsAcquired ? 1 : 0;
        }
        total.Stop();
        var ops = limiter.Store.Operations - opsBefore;

        var naive = new NaiveCounter(connectionString);
        await naive.InitializeAsync();
        var naiveLatencies = new double[naiveN];
        var naiveTotal = Stopwatch.StartNew();
        for (var i = 0; i < naiveN; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            await naive.TryAcquireAsync(1_000_000_000);
            naiveLatencies[i] = Stopwatch.GetElapsedTime(t0).TotalMicroseconds;
        }
        naiveTotal.Stop();

        var leasedRate = n / total.Elapsed.TotalSeconds;
        var naiveRate = naiveN / naiveTotal.Elapsed.TotalSeconds;
        Console.WriteLine("## Hot key, one instance");
        Console.WriteLine();
        Console.WriteLine("| limiter | requests | decisions/s | storage ops / admitted | p50 | p99 | p99.9 |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        Console.WriteLine(Inv($"| leased blocks (FuncProxy) | {n:N0} | {leasedRate:N0} | {ops / (double)admitted:F5} | {P(latencies, 50):F2} µs | {P(latencies, 99):F2} µs | {P(latencies, 99.9):F1} µs |"));
        Console.WriteLine(Inv($"| naive read + ETag write | {naiveN:N0} | {naiveRate:N0} | {naive.Operations / (double)naiveN:F2} | {P(naiveLatencies, 50):F0} µs | {P(naiveLatencies, 99):F0} µs | {P(naiveLatencies, 99.9):F0} µs |"));
        Console.WriteLine();
        Console.WriteLine(Inv($"Ratio: {leasedRate / naiveRate:N0}x the decisions/s of the naive counter; {(double)naive.Operations / naiveN / (ops / (double)admitted):N0}x fewer storage operations per request."));
        Console.WriteLine(Inv($"Decisions answered from the lease in memory: {fromMemory.Count:N0} of {n:N0}; their p50 {P([.. fromMemory], 50):F2} µs, p99 {P([.. fromMemory], 99):F2} µs (target p99 < 100 µs)."));
        Console.WriteLine(Inv($"Storage operations: {ops} for {admitted:N0} admitted (target <= 0.02 per admitted request once warm)."));
        Console.WriteLine();
    }

    private static async Task AccuracyAsync(string connectionString, int seconds, string? plotPath)
    {
        const int Limit = 200;
        const int Instances = 3;
        const int CallersPerInstance = 4;
        Console.WriteLine($"## Accuracy: {Instances} independent engine instances (in one process), one key, limit {Limit} requests per 1-second window, {seconds} s per load");
        Console.WriteLine();
        Console.WriteLine("| demand | offered per window (mean) | full windows | admitted per window: min | mean | max | windows over the limit | admitted / min(offered, limit) | storage ops / admitted | window-clock error bound at the end (LimiterClock.MaxLag, worst instance) |");
        Console.WriteLine("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        var series = new List<(double Load, int[] PerWindow)>();
        foreach (var load in new[] { 0.5, 1, 2, 10 })
        {
            var prefix = Prefix();
            var options = new LimitOptions { ExpectedInstances = Instances };
            var instances = Enumerable.Range(0, Instances).Select(_ => Instance(connectionString, prefix, options)).ToArray();
            var key = Key(new KeyLimits { RequestsPerSecond = Limit });
            var admitted = new ConcurrentDictionary<DateTimeOffset, int>();
            var offered = new ConcurrentDictionary<DateTimeOffset, int>();
            var demandPerSecond = load * Limit;
            var interval = TimeSpan.FromSeconds(Instances * CallersPerInstance / demandPerSecond);
            var clock = Stopwatch.StartNew();
            var runFor = TimeSpan.FromSeconds(seconds + 0.5);
            var tasks = instances.SelectMany((instance, i) => Enumerable.Range(0, CallersPerInstance).Select(c => Task.Run(async () =>
            {
                var next = interval * ((i * CallersPerInstance) + c) / (Instances * CallersPerInstance);
                var request = new LimitRequest(key, 0);
                while (clock.Elapsed < runFor)
                {
                    var wait = next - clock.Elapsed;
                    if (wait > TimeSpan.FromMilliseconds(1))
                    {
                        await Task.Delay(wait);
                    }
                    next += interval;
                    offered.AddOrUpdate(PolicyWindow.Second.StartOf(instance.Clock.UtcNow), 1, (_, x) => x + 1);
                    using var lease = (KeyRateLimiter.KeyLease)await instance.AcquireAsync(request);
                    if (lease.IsAcquired)
                    {
                        admitted.AddOrUpdate(lease.Decisions[0].WindowStart, 1, (_, x) => x + 1);
                    }
                }
            }))).ToArray();
            await Task.WhenAll(tasks);
            var windows = admitted.Keys.Order().Skip(1).SkipLast(1).ToArray();
            var full = windows.Select(w => admitted[w]).ToArray();
            var demand = windows.Select(w => offered.GetValueOrDefault(w)).ToArray();
            var ops = instances.Sum(x => x.Store.Operations);
            var fraction = windows.Select((w, i) => full[i] / (double)Math.Min(Math.Max(demand[i], 1), Limit)).Average();
            var maxLag = instances.Max(x => x.Clock.MaxLag);
            var lag = maxLag == TimeSpan.MaxValue ? "none yet" : Inv($"{maxLag.TotalMilliseconds:F1} ms");
            Console.WriteLine(Inv($"| {load}x | {demand.Average():F0} | {full.Length} | {full.Min()} | {full.Average():F1} | {full.Max()} | {full.Count(x => x > Limit)} | {fraction:P1} | {ops / (double)admitted.Values.Sum():F3} | {lag} |"));
            series.Add((load, full));
        }
        Console.WriteLine();
        if (plotPath is not null)
        {
            Plot(series, Limit, plotPath);
            Console.WriteLine($"Plot: {plotPath}");
        }
    }

    private static void Plot(List<(double Load, int[] PerWindow)> series, int limit, string path)
    {
        var plot = new ScottPlot.Plot();
        foreach (var (load, perWindow) in series)
        {
            var xs = Enumerable.Range(1, perWindow.Length).Select(x => (double)x).ToArray();
            var ys = perWindow.Select(y => (double)y).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = Inv($"demand {load}x the limit");
        }
        var limitLine = plot.Add.HorizontalLine(limit);
        limitLine.LegendText = "limit";
        limitLine.LinePattern = ScottPlot.LinePattern.Dashed;
        plot.Title("Admitted per 1-second window, 3 instances, one key");
        plot.XLabel("window");
        plot.YLabel("requests admitted");
        plot.Axes.SetLimitsY(0, limit * 1.2);
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        plot.SavePng(path, 900, 500);
    }

    private static double P(double[] values, double percentile)
    {
        if (values.Length == 0)
        {
            return double.NaN;
        }
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        return sorted[Math.Clamp((int)Math.Ceiling(percentile / 100 * sorted.Length) - 1, 0, sorted.Length - 1)];
    }

    /// <summary>The baseline: every request reads the counter and writes it back with its ETag (retrying on 412).</summary>
    private sealed class NaiveCounter(string connectionString)
    {
        private readonly TableClient _table = FuncProxyTables.CreateServiceClient(new StorageOptions { ConnectionString = connectionString }).GetTableClient(Prefix() + "naive");

        public long Operations { get; private set; }

        public Task InitializeAsync() => _table.CreateIfNotExistsAsync();

        public async Task<bool> TryAcquireAsync(long limit)
        {
            while (true)
            {
                Operations++;
                var row = await _table.GetEntityIfExistsAsync<TableEntity>("k", "ctr");
                var used = row.HasValue ? row.Value!.GetInt64("Used") ?? 0 : 0;
                if (used >= limit)
                {
                    return false;
                }
                var entity = new TableEntity("k", "ctr") { ["Used"] = used + 1 };
                try
                {
                    Operations++;
                    if (row.HasValue)
                    {
                        await _table.UpdateEntityAsync(entity, row.Value!.ETag, TableUpdateMode.Replace);
                    }
                    else
                    {
                        await _table.AddEntityAsync(entity);
                    }
                    return true;
                }
                catch (RequestFailedException e) when (e.Status is 412 or 409)
                {
                }
            }
        }
    }
}
