using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// A real Azurite table service (the one pinned in package.json) on a free loopback port, in memory. Tests share one per
/// run (<see cref="TestStorage"/>); a test that stops and restarts storage starts its own.
/// </summary>
public sealed class AzuriteProcess : IAsyncDisposable
{
    // Azurite's published development account: not a secret.
    public const string AccountName = "devstoreaccount1";
    public const string AccountKey = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(3);

    private Process? _process;

    private AzuriteProcess(int port) => Port = port;

    public int Port { get; }

    public string ConnectionString =>
        $"DefaultEndpointsProtocol=http;AccountName={AccountName};AccountKey={AccountKey};TableEndpoint=http://127.0.0.1:{Port}/{AccountName};";

    public static async Task<AzuriteProcess> StartAsync(int? port = null)
    {
        var azurite = new AzuriteProcess(port ?? FreePort());
        await azurite.StartAgainAsync();
        return azurite;
    }

    /// <summary>Starts (or restarts, on the same port) the process. Data is in memory, so a restart begins empty.</summary>
    public async Task StartAgainAsync()
    {
        var script = Path.Combine(RepositoryRoot(), "node_modules", "azurite", "dist", "src", "table", "main.js");
        if (!File.Exists(script))
        {
            throw new InvalidOperationException($"Azurite is not installed ({script} is missing): run 'npm ci' in the repository root.");
        }
        // Standard input is a pipe this process never writes to: eng/exit-with-parent.cjs ends Azurite when it closes, so
        // a test host that is killed outright (vstest's hang or shutdown timeout, Ctrl+C on dotnet test) leaves no
        // Azurite behind; on a normal exit Running's handler stops it first.
        var start = new ProcessStartInfo("node")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var a in new[] { "--require", Path.Combine(RepositoryRoot(), "eng", "exit-with-parent.cjs"), script, "--tableHost", "127.0.0.1", "--tablePort", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--inMemoryPersistence", "--skipApiVersionCheck", "--disableProductStyleUrl", "--silent" })
        {
            start.ArgumentList.Add(a);
        }
        _placeholder?.Dispose();
        _placeholder = null;
        _process = Process.Start(start) ?? throw new InvalidOperationException("Could not start node.");
        Running[_process.Id] = _process;
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        // Generous: on a loaded machine node takes well over 30 s to load Azurite (seen: three starts timing out at 30 s).
        var deadline = Stopwatch.StartNew();
        while (!await IsListeningAsync(Port))
        {
            if (_process.HasExited || deadline.Elapsed > StartTimeout)
            {
                // Never leave a half-started emulator behind (it would outlive the test run).
                await KillAsync();
                throw new InvalidOperationException($"Azurite did not start on port {Port} within {StartTimeout.TotalSeconds} s.");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// Kills the process: storage becomes unreachable, as in an outage. The port stays taken (bound, not listening:
    /// connections are refused) until <see cref="StartAgainAsync"/>, so no server another test starts on port 0 meanwhile
    /// is given it and receives this test's storage calls.
    /// </summary>
    public async Task StopAsync()
    {
        await KillAsync();
        var placeholder = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // Reuse: the emulator's closed connections may still hold the port in TIME_WAIT.
            placeholder.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            placeholder.Bind(new IPEndPoint(IPAddress.Loopback, Port));
            _placeholder = placeholder;
        }
        catch (SocketException)
        {
            placeholder.Dispose();
        }
    }

    private Socket? _placeholder;

    private async Task KillAsync()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree: true);
            await p.WaitForExitAsync();
        }
        if (_process is not null)
        {
            Running.TryRemove(_process.Id, out _);
            _process.Dispose();
        }
        _process = null;
    }

    // Every Azurite a test started (the shared one and each test's own), stopped when the test host exits, even if a
    // test was abandoned before its own dispose ran.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, Process> Running = new();

    static AzuriteProcess() => AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();

    /// <summary>Kills every Azurite a test started that is still running (at the end of the run, from the test framework's disposal).</summary>
    public static void KillAll() => ChildProcess.KillTrees(Running.Values);

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _placeholder?.Dispose();
        _placeholder = null;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task<bool> IsListeningAsync(int port)
    {
        using var client = new TcpClient();
        try
        {
            await client.ConnectAsync(IPAddress.Loopback, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FuncProxy.sln")) || File.Exists(Path.Combine(dir.FullName, "package.json")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException("Cannot find the repository root above " + AppContext.BaseDirectory);
    }
}

/// <summary>
/// The storage every test shares: the account named by <c>FUNCPROXY_TEST_STORAGE</c> (a connection string), or one Azurite
/// started for this test run. Each test isolates itself with its own table prefix (<see cref="NewTablePrefix"/>).
/// </summary>
public static class TestStorage
{
    private static readonly Lazy<Task<string>> Shared = new(StartSharedAsync);
    private static AzuriteProcess? _azurite;

    public static Task<string> GetConnectionStringAsync() => Shared.Value;

    /// <summary>A fresh table-name prefix, so tests never see each other's keys or counters.</summary>
    public static string NewTablePrefix() => "t" + Guid.NewGuid().ToString("N")[..10];

    private static async Task<string> StartSharedAsync()
    {
        var configured = Environment.GetEnvironmentVariable("FUNCPROXY_TEST_STORAGE");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured;
        }
        // Stopped when the test host exits (AzuriteProcess keeps every one it started), or by itself if the host is killed.
        _azurite = await AzuriteProcess.StartAsync();
        return _azurite.ConnectionString;
    }
}
