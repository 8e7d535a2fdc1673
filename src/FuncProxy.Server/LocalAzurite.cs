using System.Diagnostics;
using System.Net.Sockets;

namespace FuncProxy.Server;

/// <summary>
/// First-run convenience: when the storage connection is Azurite's (<c>UseDevelopmentStorage=true</c>) and nothing listens on
/// its table port, start the Azurite pinned in package.json, and stop it again when the host stops: after the host has
/// stopped serving and written its usage, on a start failure too, so it is never left running. It runs in a session of its
/// own (<c>setsid</c>, where there is one), so a Ctrl+C in the terminal reaches only the host, which stops it last; it also
/// exits by itself when the host is gone, however the host ended (<c>eng/exit-with-parent.cjs</c>).
/// </summary>
internal sealed class LocalAzurite : IDisposable
{
    public const int TablePort = 10002;
    private readonly Process _process;

    private LocalAzurite(Process process) => _process = process;

    public static async Task<LocalAzurite?> EnsureRunningAsync(IConfiguration configuration, TextWriter console)
    {
        var connection = configuration["FuncProxy:Storage:ConnectionString"];
        var usesAzurite = string.Equals(connection?.Trim().TrimEnd(';'), "UseDevelopmentStorage=true", StringComparison.OrdinalIgnoreCase);
        if (!usesAzurite || configuration["FuncProxy:Storage:TableServiceUri"] is { Length: > 0 } || await IsListeningAsync(TablePort).ConfigureAwait(false))
        {
            return null;
        }
        var root = FindRepositoryRoot() ?? throw new InvalidOperationException(
            $"Nothing listens on 127.0.0.1:{TablePort} and Azurite could not be found: run 'npm ci' in the repository root, or start Azurite yourself ('npm run azurite').");
        var script = Path.Combine(root, "node_modules", "azurite", "dist", "src", "table", "main.js");
        if (!File.Exists(script))
        {
            await console.WriteLineAsync("Azurite is not installed yet; running 'npm ci' once (it is pinned in package.json)...").ConfigureAwait(false);
            await RunAsync("npm", ["ci", "--no-audit", "--no-fund"], root).ConfigureAwait(false);
        }
        var location = Path.Combine(root, ".azurite");
        Directory.CreateDirectory(location);
        // Its own session: the terminal's Ctrl+C (SIGINT to the whole foreground process group) must not stop storage
        // before the host has written what it still holds; the host stops it last.
        var setsid = FindOnPath("setsid");
        // Standard input is a pipe the host never writes to: eng/exit-with-parent.cjs ends Azurite when it closes, so a
        // host that is killed outright (SIGKILL runs no clean-up) leaves no Azurite behind either.
        var start = new ProcessStartInfo(setsid ?? "node") { WorkingDirectory = root, RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (setsid is not null)
        {
            start.ArgumentList.Add("node");
        }
        var watchdog = Path.Combine(root, "eng", "exit-with-parent.cjs");
        if (File.Exists(watchdog))
        {
            start.ArgumentList.Add("--require");
            start.ArgumentList.Add(watchdog);
        }
        foreach (var a in new[] { script, "--tableHost", "127.0.0.1", "--tablePort", TablePort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--location", location, "--skipApiVersionCheck", "--silent" })
        {
            start.ArgumentList.Add(a);
        }
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("Could not start node for Azurite.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Could not start Azurite: {e.Message}. Is Node.js installed (see README)?", e);
        }
        var azurite = new LocalAzurite(process);
        var lastLines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        DataReceivedEventHandler keep = (_, e) =>
        {
            if (e.Data is { } line)
            {
                lastLines.Enqueue(line);
                while (lastLines.Count > 5 && lastLines.TryDequeue(out string? _))
                {
                }
            }
        };
        process.OutputDataReceived += keep;
        process.ErrorDataReceived += keep;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!await IsListeningAsync(TablePort).ConfigureAwait(false))
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                azurite.Dispose();
                var said = string.Join(" | ", lastLines);
                throw new InvalidOperationException($"Azurite did not start on 127.0.0.1:{TablePort}{(said.Length > 0 ? ": " + said : ".")}");
            }
            await Task.Delay(100).ConfigureAwait(false);
        }
        await console.WriteLineAsync($"Started Azurite (tables) on 127.0.0.1:{TablePort} (pid {process.Id}), data in {location}; it stops with the host.").ConfigureAwait(false);
        return azurite;
    }

    /// <summary>The Azurite process's id.</summary>
    public int ProcessId => _process.Id;

    /// <summary>Stops Azurite (and waits for it, briefly), so nothing is left running once the host has exited.</summary>
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(TimeSpan.FromSeconds(10));
            }
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            // Already gone.
        }
        _process.Dispose();
    }

    private static string? FindOnPath(string file)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, file);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    internal static async Task<bool> IsListeningAsync(int port)
    {
        using var client = new TcpClient();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
            await client.ConnectAsync("127.0.0.1", port, timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            return false;
        }
    }

    internal static string? FindRepositoryRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var package = Path.Combine(dir.FullName, "package.json");
                if (File.Exists(package) && File.ReadAllText(package).Contains("\"azurite\"", StringComparison.Ordinal))
                {
                    return dir.FullName;
                }
            }
        }
        return null;
    }

    private static async Task RunAsync(string file, string[] arguments, string directory)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, UseShellExecute = false };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {file}.");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Could not run '{file}' to install Azurite: {e.Message}. Is Node.js installed (see README)?", e);
        }
        using var _ = process;
        await process.WaitForExitAsync().ConfigureAwait(false);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"'{file} {string.Join(' ', arguments)}' failed with exit code {process.ExitCode}.");
        }
    }
}
