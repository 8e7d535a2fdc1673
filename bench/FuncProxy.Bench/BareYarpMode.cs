using System.Globalization;
using System.Runtime.InteropServices;
using FuncProxy.Proxying;
using Yarp.ReverseProxy.Forwarder;

namespace FuncProxy.Bench;

/// <summary>
/// <c>bare-yarp</c> mode: Kestrel + YARP's <see cref="IHttpForwarder"/> and nothing else, forwarding every path to one
/// upstream with the default transformer, through FuncProxy's own <see cref="UpstreamInvoker"/> (the same
/// <see cref="SocketsHttpHandler"/> settings FuncProxy.Server forwards with). The baseline of the <c>percall</c> mode, run
/// as its own process; it stops on Ctrl+C or SIGTERM.
/// </summary>
internal static class BareYarpMode
{
    public static async Task<int> RunAsync(string[] args)
    {
        var portAt = Array.IndexOf(args, "--port");
        var upstreamAt = Array.IndexOf(args, "--upstream");
        if (portAt < 0 || portAt + 1 >= args.Length || !int.TryParse(args[portAt + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var port)
            || upstreamAt < 0 || upstreamAt + 1 >= args.Length || !Uri.TryCreate(args[upstreamAt + 1], UriKind.Absolute, out var upstream))
        {
            await Console.Error.WriteLineAsync("Usage: bare-yarp --port PORT --upstream http://127.0.0.1:PORT");
            return 2;
        }
        using var stop = new CancellationTokenSource();
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls(string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}"));
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
        builder.Services.AddHttpForwarder();
        await using var app = builder.Build();
        using var invoker = new UpstreamInvoker();
        var destination = upstream.GetLeftPart(UriPartial.Authority);
        app.Map("/{**path}", async (HttpContext context, IHttpForwarder forwarder) =>
        {
            var error = await forwarder.SendAsync(context, destination, invoker.Invoker, ForwarderRequestConfig.Empty, HttpTransformer.Default);
            if (error != ForwarderError.None)
            {
                await Console.Error.WriteLineAsync($"forwarding failed: {error}: {context.GetForwarderErrorFeature()?.Exception?.Message}");
            }
        });
        await app.StartAsync();
        Console.WriteLine($"bare YARP on http://127.0.0.1:{port} -> {destination}");
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await app.StopAsync();
        return 0;
    }
}
