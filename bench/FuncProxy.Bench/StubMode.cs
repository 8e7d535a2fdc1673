using System.Globalization;
using FuncProxy.Tests.Infrastructure;

namespace FuncProxy.Bench;

/// <summary>Runs the provider stub on a fixed port until Ctrl+C, so the README's walk-through works offline.</summary>
public static class StubMode
{
    public static async Task<int> RunAsync(string[] args)
    {
        var i = Array.IndexOf(args, "--port");
        var port = i >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], CultureInfo.InvariantCulture) : 8089;
        await using var stub = await UpstreamStub.StartAsync(record: false, port: port);
        Console.WriteLine($"Provider stub on {stub.BaseAddress} (POST /v1/chat/completions, POST /v1/messages). Ctrl+C stops it.");
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        return 0;
    }
}
