using System.Diagnostics.CodeAnalysis;
using System.Globalization;

/// <summary>
/// Loaded by the runtime before <c>Main</c> when <c>DOTNET_STARTUP_HOOKS</c> names this assembly and
/// <c>FUNCPROXY_BENCH_ALLOCATIONS</c> names a file. Whenever the benchmark creates <c>FILE.ask</c>, the hook writes
/// <c>FILE</c> with this process's bytes allocated so far and its GC counts, then deletes the ask, so a round's delta is
/// exact at both ends. It polls every 10 ms on one background thread: the same small cost in every process it is loaded in.
/// </summary>
[SuppressMessage("Design", "CA1050:Declare types in namespaces", Justification = "The runtime looks for a type named exactly StartupHook in the global namespace.")]
internal static class StartupHook
{
    public static void Initialize()
    {
        var file = Environment.GetEnvironmentVariable("FUNCPROXY_BENCH_ALLOCATIONS");
        if (string.IsNullOrEmpty(file))
        {
            return;
        }
        var thread = new Thread(() => Answer(file)) { IsBackground = true, Name = "bench allocation counter" };
        thread.Start();
    }

    private static void Answer(string file)
    {
        var ask = file + ".ask";
        var partial = file + ".tmp";
        while (true)
        {
            if (File.Exists(ask))
            {
                var line = string.Create(CultureInfo.InvariantCulture,
                    $"{GC.GetTotalAllocatedBytes(precise: false)} {GC.CollectionCount(0)} {GC.CollectionCount(1)} {GC.CollectionCount(2)}");
                File.WriteAllText(partial, line);
                File.Move(partial, file, overwrite: true);
                File.Delete(ask);
            }
            Thread.Sleep(10);
        }
    }
}
