using System.Globalization;
using System.Runtime.InteropServices;
using FuncProxy.Tests.Infrastructure;

namespace FuncProxy.Bench;

/// <summary>
/// Runs the provider stub on a fixed port until Ctrl+C (SIGINT) or SIGTERM (<c>kill %1</c> after the README's <c>&amp;</c>),
/// so the README's walk-through works offline. The same code runs as <c>bench/FuncProxy.Stub</c> (a small project that
/// starts in seconds) and as the benchmark's <c>stub</c> mode.
/// </summary>
public static class StubMode
{
    public const int DefaultPort = 8089;

    public static async Task<int> RunAsync(string[] args)
    {
        ArgumentNullException.ThrowIfNull(args);
        var port = DefaultPort;
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] is "--help" or "-h")
            {
                Console.WriteLine($"Provider stub: [--port {DefaultPort}]. Answers {UpstreamStub.Routes}; anything else is 404.");
                return 0;
            }
            if (args[i] == "--port" && i + 1 < args.Length && int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and < 65536)
            {
                port = p;
                i++;
                continue;
            }
            await Console.Error.WriteLineAsync($"Unknown or invalid argument '{args[i]}'. Usage: [--port {DefaultPort}]");
            return 2;
        }

        // Signals first: a SIGTERM that arrives while the stub starts must stop it too.
        using var stop = new CancellationTokenSource();
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        UpstreamStub stub;
        try
        {
            stub = await UpstreamStub.StartAsync(record: false, port: port);
        }
        catch (IOException e)
        {
            await Console.Error.WriteLineAsync($"The provider stub could not start: {e.Message}");
            return 5;
        }
        await using (stub)
        {
            Console.WriteLine($"Provider stub on {stub.BaseAddress} answers {UpstreamStub.Routes}. Ctrl+C or SIGTERM stops it.");
            try
            {
                await Task.Delay(Timeout.Infinite, stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
        Console.WriteLine("Provider stub stopped.");
        return 0;
    }
}
