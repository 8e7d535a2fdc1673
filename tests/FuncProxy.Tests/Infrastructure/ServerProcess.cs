namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// Starts the real FuncProxy.Server (or the provider stub) as its own process, as README's commands do, so tests can send
/// it real signals and read its exit code and everything it printed. Each runs in an empty working directory (no
/// appsettings.json naming real providers) unless told otherwise.
/// </summary>
public static class ServerProcess
{
    /// <summary>FuncProxy.Server.dll, copied beside the tests by the project reference.</summary>
    public static string ServerDll => Path.Combine(AppContext.BaseDirectory, "FuncProxy.Server.dll");

    /// <summary>The provider stub's own small project (bench/FuncProxy.Stub), built with the tests.</summary>
    public static string StubDll
    {
        get
        {
            var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";
            return Path.Combine(AzuriteProcess.RepositoryRoot(), "bench", "FuncProxy.Stub", "bin", configuration, "net10.0", "FuncProxy.Stub.dll");
        }
    }

    /// <summary>An empty directory for a process to run in (and to hold a HOME with user-secrets).</summary>
    public static string NewDirectory()
    {
        var dir = Path.Combine(Path.GetTempPath(), "funcproxy-test-" + Guid.NewGuid().ToString("N")[..10]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary><c>dotnet FuncProxy.Server.dll args</c> with <paramref name="environment"/> added to this process's.</summary>
    public static ChildProcess Start(IEnumerable<string> args, IDictionary<string, string>? environment = null, string? workingDirectory = null) =>
        ChildProcess.Start("FuncProxy.Server", "dotnet", [ServerDll, .. args], WithoutHostSettings(environment), workingDirectory ?? NewDirectory());

    /// <summary>
    /// The server as a process-group leader in a network namespace of its own (<c>setsid unshare -n</c>; the tests run as
    /// root here): it may start the local Azurite on 127.0.0.1:10002 without meeting anyone else's, and a signal to its
    /// group reaches every process a terminal's Ctrl+C would. SIGINT is reset to its default first (<c>env
    /// --default-signal</c>): a test run started in the background of a non-interactive shell (<c>dotnet test &amp;</c>)
    /// hands every child SIGINT ignored, and a host that cannot see Ctrl+C cannot be tested on it (seen: the Ctrl+C test
    /// timing out in such a run).
    /// </summary>
    public static ChildProcess StartIsolated(IEnumerable<string> args, IDictionary<string, string>? environment = null) =>
        ChildProcess.Start("FuncProxy.Server (own network)", "setsid",
            ["unshare", "--net", "sh", "-c", "ip link set lo up && exec env --default-signal=INT dotnet \"$0\" \"$@\"", ServerDll, .. args],
            WithoutHostSettings(environment), NewDirectory());

    /// <summary>Runs the server's CLI to its end.</summary>
    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(IEnumerable<string> args, IDictionary<string, string>? environment = null, string? workingDirectory = null) =>
        await ChildProcess.RunAsync("dotnet", [ServerDll, .. args], WithoutHostSettings(environment), workingDirectory ?? NewDirectory());

    public static bool IsRunning(int pid)
    {
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Waits up to <paramref name="timeout"/> for the process to be gone.</summary>
    public static async Task<bool> WaitUntilGoneAsync(int pid, TimeSpan timeout)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (IsRunning(pid))
        {
            if (waited.Elapsed > timeout)
            {
                return false;
            }
            await Task.Delay(200);
        }
        return true;
    }

    /// <summary>A test run's own ASPNETCORE_/DOTNET_ environment must not leak into the process under test.</summary>
    private static Dictionary<string, string> WithoutHostSettings(IDictionary<string, string>? environment)
    {
        var result = new Dictionary<string, string>(environment ?? new Dictionary<string, string>())
        {
            ["DOTNET_ENVIRONMENT"] = environment?.TryGetValue("DOTNET_ENVIRONMENT", out var d) == true ? d : "",
            ["ASPNETCORE_ENVIRONMENT"] = environment?.TryGetValue("ASPNETCORE_ENVIRONMENT", out var a) == true ? a : "",
            ["ASPNETCORE_URLS"] = environment?.TryGetValue("ASPNETCORE_URLS", out var u) == true ? u : "",
        };
        return result;
    }
}
