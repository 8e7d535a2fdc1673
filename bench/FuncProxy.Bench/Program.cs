using FuncProxy.Bench;

// Each benchmark is a mode named by the first argument: `dotnet run -c Release --project bench/FuncProxy.Bench -- <mode> [options]`.
var modes = new Dictionary<string, Func<string[], Task<int>>>(StringComparer.OrdinalIgnoreCase)
{
    ["limiter"] = LimiterBench.RunAsync,
};

if (args.Length == 0 || !modes.TryGetValue(args[0], out var run))
{
    Console.Error.WriteLine($"usage: FuncProxy.Bench <mode> [options]; modes: {string.Join(", ", modes.Keys)}");
    return 2;
}
return await run(args[1..]);
