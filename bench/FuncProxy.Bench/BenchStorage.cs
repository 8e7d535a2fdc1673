using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace FuncProxy.Bench;

/// <summary>
/// Storage for a benchmark: the connection string in <c>FUNCPROXY_BENCH_STORAGE</c>, or an in-memory Azurite (the one pinned
/// in package.json) started on a free loopback port for the run.
/// </summary>
internal sealed class BenchStorage : IAsyncDisposable
{
    private const string DevAccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
    private readonly Process? _azurite;

    private BenchStorage(string connectionString, Process? azurite)
    {
        ConnectionString = connectionString;
        _azurite = azurite;
    }

    public string ConnectionString { get; }

    public string Description => _azurite is null ? "FUNCPROXY_BENCH_STORAGE" : "Azurite (in memory, loopback)";

    public static async Task<BenchStorage> StartAsync()
    {
        var configured = Environment.GetEnvironmentVariable("FUNCPROXY_BENCH_STORAGE");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return new BenchStorage(configured, null);
        }
        var root = AppContext.BaseDirectory;
        var dir = new DirectoryInfo(root);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "package.json")))
        {
            dir = dir.Parent;
        }
        var script = Path.Combine(dir?.FullName ?? ".", "node_modules", "azurite", "dist", "src", "table", "main.js");
        if (!File.Exists(script))
        {
            throw new InvalidOperationException("Azurite is not installed: run 'npm ci' in the repository root.");
        }
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        var start = new ProcessStartInfo("node") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { script, "--tableHost", "127.0.0.1", "--tablePort", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--inMemoryPersistence", "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent" })
        {
            start.ArgumentList.Add(a);
        }
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        for (var waited = Stopwatch.StartNew(); ; await Task.Delay(50))
        {
            using var client = new TcpClient();
            try
            {
                await client.ConnectAsync(IPAddress.Loopback, port);
                break;
            }
            catch (SocketException) when (waited.Elapsed < TimeSpan.FromSeconds(30) && !process.HasExited)
            {
            }
        }
        return new BenchStorage(
            $"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DevAccountKey};TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
            process);
    }

    public async ValueTask DisposeAsync()
    {
        if (_azurite is { HasExited: false })
        {
            _azurite.Kill(entireProcessTree: true);
            await _azurite.WaitForExitAsync();
        }
        _azurite?.Dispose();
    }
}
