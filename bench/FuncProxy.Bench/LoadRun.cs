using System.Diagnostics;

namespace FuncProxy.Bench;

/// <summary>Result of driving one target at fixed concurrency for a fixed time.</summary>
public sealed record LoadResult(string Name, long Requests, long Errors, TimeSpan Elapsed, double P50Ms, double P99Ms)
{
    public double RequestsPerSecond => Requests / Elapsed.TotalSeconds;
}

/// <summary>A closed-loop load generator: N workers, each sending its next request when the last one finished.</summary>
public static class LoadRun
{
    public static async Task<LoadResult> RunAsync(string name, int concurrency, TimeSpan duration, Func<HttpClient, Task<bool>> send, HttpClient client)
    {
        var latencies = new List<double>[concurrency];
        long errors = 0;
        var stop = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, concurrency).Select(async w =>
        {
            var mine = latencies[w] = new List<double>(100_000);
            while (stop.Elapsed < duration)
            {
                var start = Stopwatch.GetTimestamp();
                bool ok;
                try
                {
                    ok = await send(client);
                }
                catch (HttpRequestException)
                {
                    ok = false;
                }
                if (!ok)
                {
                    Interlocked.Increment(ref errors);
                }
                mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            }
        }).ToArray();
        await Task.WhenAll(workers);
        var elapsed = stop.Elapsed;
        var all = latencies.SelectMany(l => l).Order().ToArray();
        return new LoadResult(name, all.Length, errors, elapsed, Percentile(all, 0.50), Percentile(all, 0.99));
    }

    public static double Percentile(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];

    public static HttpClient NewClient(int concurrency) => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = concurrency,
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        UseProxy = false,
    })
    { Timeout = TimeSpan.FromSeconds(30) };
}
