using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// A process a benchmark or a test starts and must stop: its output is drained and kept (stdout and stderr together, for
/// error messages and for tests that check what a process printed), and it is killed with its children on dispose, on
/// Ctrl+C and when the starting process exits, so a failed run leaves nothing behind. Tests send it real signals.
/// Shared by the tests and the benchmarks.
/// </summary>
public sealed class ChildProcess : IAsyncDisposable
{
    private const int MaxLines = 5000;
    private static readonly ConcurrentDictionary<int, Process> Running = new();
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();
    private readonly ConcurrentQueue<string> _lastLines = new();

    static ChildProcess()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        Console.CancelKeyPress += (_, _) => KillAll();
    }

    private ChildProcess(string name, Process process)
    {
        Name = name;
        _process = process;
    }

    public string Name { get; }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    /// <summary>The last lines the process wrote (stdout and stderr together).</summary>
    public string Tail => string.Join(Environment.NewLine, _lastLines);

    /// <summary>Everything the process wrote so far (stdout and stderr together, the first 5000 lines).</summary>
    public string Output => string.Join(Environment.NewLine, _lines);

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Sends a signal (<c>INT</c>, <c>TERM</c>, ...) as <c>kill -s</c> does; with <paramref name="group"/>, to the
    /// process group the process leads (as a terminal's Ctrl+C reaches every process of the foreground group).</summary>
    public async Task SignalAsync(string signal, bool group = false)
    {
        var target = group ? "-" + Id.ToString(System.Globalization.CultureInfo.InvariantCulture) : Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var (code, _, error) = await RunAsync("kill", ["-s", signal, "--", target]);
        if (code != 0)
        {
            throw new InvalidOperationException($"kill -s {signal} {target} failed: {error}");
        }
    }

    /// <summary>Waits for the process to exit; false if it is still running after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
            // The asynchronous readers may still be delivering the last lines.
            _process.WaitForExit();
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Waits until the process has printed a line containing <paramref name="text"/>; false on exit or timeout.</summary>
    public async Task<bool> WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var waited = Stopwatch.StartNew();
        while (waited.Elapsed < timeout)
        {
            if (_lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                return true;
            }
            if (_process.HasExited)
            {
                await WaitForExitAsync(TimeSpan.FromSeconds(5));
                return _lines.Any(l => l.Contains(text, StringComparison.Ordinal));
            }
            await Task.Delay(100);
        }
        return false;
    }

    public static ChildProcess Start(string name, string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var start = StartInfo(fileName, arguments, environment, workingDirectory);
        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {fileName}.");
        Running[process.Id] = process;
        var child = new ChildProcess(name, process);
        process.OutputDataReceived += (_, e) => child.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => child.Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    private static ProcessStartInfo StartInfo(string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment, string? workingDirectory)
    {
        var start = new ProcessStartInfo(fileName)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (var a in arguments)
        {
            start.ArgumentList.Add(a);
        }
        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            // An empty value removes the variable: the child must not inherit it.
            if (v.Length == 0)
            {
                start.Environment.Remove(k);
            }
            else
            {
                start.Environment[k] = v;
            }
        }
        return start;
    }

    /// <summary>Runs a process to its end and returns its exit code and standard output.</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var start = StartInfo(fileName, arguments, environment, workingDirectory);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {fileName}.");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, await output, await error);
    }

    /// <summary>Waits until something accepts connections on the loopback port, or the process exits, or the timeout passes.</summary>
    public async Task WaitForPortAsync(int port, TimeSpan timeout)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{Name} exited with code {_process.ExitCode} before listening on port {port}:{Environment.NewLine}{Tail}");
            }
            using (var client = new TcpClient())
            {
                try
                {
                    await client.ConnectAsync(IPAddress.Loopback, port);
                    return;
                }
                catch (SocketException) when (waited.Elapsed < timeout)
                {
                }
                catch (SocketException)
                {
                    throw new InvalidOperationException($"{Name} did not listen on port {port} within {timeout.TotalSeconds:F0} s:{Environment.NewLine}{Tail}");
                }
            }
            await Task.Delay(100);
        }
    }

    /// <summary>Asks the process to stop by itself (e.g. <c>nginx -s stop</c>, so its master reaps its workers) before it is killed.</summary>
    public Func<Task>? GracefulStop { get; set; }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited && GracefulStop is not null)
        {
            try
            {
                await GracefulStop();
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (TimeoutException)
            {
            }
        }
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        Running.TryRemove(_process.Id, out _);
        _process.Dispose();
    }

    private void Keep(string? line)
    {
        if (line is null)
        {
            return;
        }
        if (_lines.Count < MaxLines)
        {
            _lines.Enqueue(line);
        }
        _lastLines.Enqueue(line);
        while (_lastLines.Count > 40)
        {
            _lastLines.TryDequeue(out _);
        }
    }

    /// <summary>Kills every process started through this class that is still running, with its children.</summary>
    public static void KillAll() => KillTrees(Running.Values);

    /// <summary>Kills each of <paramref name="processes"/> still running, with its children (one that exits meanwhile is skipped).</summary>
    internal static void KillTrees(IEnumerable<Process> processes)
    {
        foreach (var p in processes)
        {
            try
            {
                if (!p.HasExited)
                {
                    p.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
            }
        }
    }
}
