using System.Diagnostics;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace FuncProxy.Tests.Infra;

/// <summary>
/// Compiles <c>infra/main.bicep</c> with the pinned Bicep CLI and evaluates it offline with <c>bicep snapshot</c>, which
/// predicts every resource with its properties (values known only at deployment stay ARM expressions). Runs once per
/// test class. No network and no Azure sign-in are involved.
/// </summary>
public sealed class BicepDeployment : IDisposable
{
    // Fixed inputs for the offline evaluation; any values would do, these are recognisable.
    internal const string EnvironmentName = "drift";
    internal const string Location = "eastus2";
    internal const string DeployerPrincipalId = "11111111-1111-1111-1111-111111111111";
    internal const string ClientTokenAudience = "api://funcproxy-drift";

    /// <summary>An Azure OpenAI account in another resource group and subscription, as <c>openAiAccountIds</c> names it.</summary>
    internal const string OpenAIAccountId = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-aoai/providers/Microsoft.CognitiveServices/accounts/aoai-drift";
    private const string ZeroGuid = "00000000-0000-0000-0000-000000000000";
    private static readonly TimeSpan CliTimeout = TimeSpan.FromMinutes(3);

    private readonly Lazy<Result> _result;
    private readonly string _workDirectory = Path.Combine(Path.GetTempPath(), "funcproxy-infra-" + Guid.NewGuid().ToString("N"));

    public BicepDeployment()
    {
        RepositoryRoot = FindRepositoryRoot();
        _result = new Lazy<Result>(Run, LazyThreadSafetyMode.ExecutionAndPublication);
    }

    public string RepositoryRoot { get; }

    public string MainBicep => Path.Combine(RepositoryRoot, "infra", "main.bicep");

    /// <summary>The compiled ARM template (what <c>azd provision</c> deploys).</summary>
    public JsonElement CompiledTemplate => _result.Value.Template.RootElement;

    /// <summary>Diagnostics the compiler printed (warnings and errors would be listed here).</summary>
    public string CompilerDiagnostics => _result.Value.Diagnostics;

    /// <summary>The resources the template predicts, from <c>bicep snapshot</c>.</summary>
    public IReadOnlyList<JsonElement> Resources => _result.Value.Resources;

    public JsonElement Outputs => _result.Value.Snapshot.RootElement.GetProperty("outputs");

    public JsonElement FunctionApp => Resources.Single(r => r.GetProperty("type").GetString() == "Microsoft.Web/sites");

    /// <summary>The function app's app settings, by name, as the template writes them.</summary>
    public IReadOnlyDictionary<string, string> AppSettings
    {
        get
        {
            var settings = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var setting in FunctionApp.GetProperty("properties").GetProperty("siteConfig").GetProperty("appSettings").EnumerateArray())
            {
                settings.Add(setting.GetProperty("name").GetString()!, setting.GetProperty("value").GetString()!);
            }
            return settings;
        }
    }

    /// <summary>True for a value ARM only knows at deployment, such as <c>[reference(...).vaultUri]</c>.</summary>
    public static bool IsExpression(string value) => value.StartsWith('[') && value.EndsWith(']') && !value.StartsWith("[[", StringComparison.Ordinal);

    public void Dispose()
    {
        if (_result.IsValueCreated)
        {
            _result.Value.Template.Dispose();
            _result.Value.Snapshot.Dispose();
        }
        try
        {
            Directory.Delete(_workDirectory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    private Result Run()
    {
        var bicep = LocateBicep(RepositoryRoot);
        Directory.CreateDirectory(_workDirectory);

        var build = RunCli(bicep, RepositoryRoot, "build", MainBicep, "--stdout");
        Assert.True(build.ExitCode == 0, $"bicep build infra/main.bicep failed (exit {build.ExitCode}):\n{build.StandardError}");
        var template = JsonDocument.Parse(build.StandardOutput);

        // bicep snapshot takes a .bicepparam file whose 'using' path must be relative.
        var paramFile = Path.Combine(_workDirectory, "drift.bicepparam");
        var relativeMain = Path.GetRelativePath(_workDirectory, MainBicep).Replace('\\', '/');
        File.WriteAllText(paramFile, $"""
            using '{relativeMain}'
            param environmentName = '{EnvironmentName}'
            param location = '{Location}'
            param principalId = '{DeployerPrincipalId}'
            param principalType = 'User'
            param openAiAccountIds = '{OpenAIAccountId}'
            param clientTokenAudience = '{ClientTokenAudience}'
            """);
        var snapshot = RunCli(bicep, _workDirectory, "snapshot", paramFile,
            "--subscription-id", ZeroGuid, "--tenant-id", ZeroGuid, "--location", Location, "--deployment-name", "drift");
        var snapshotFile = Path.Combine(_workDirectory, "drift.snapshot.json");
        Assert.True(snapshot.ExitCode == 0 && File.Exists(snapshotFile),
            $"bicep snapshot failed (exit {snapshot.ExitCode}):\n{snapshot.StandardOutput}\n{snapshot.StandardError}");
        var document = JsonDocument.Parse(File.ReadAllText(snapshotFile));
        var resources = document.RootElement.GetProperty("predictedResources").EnumerateArray().ToList();
        return new Result(template, build.StandardError.Trim(), document, resources);
    }

    private static (int ExitCode, string StandardOutput, string StandardError) RunCli(string bicep, string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo(bicep)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {bicep}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(CliTimeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"bicep {string.Join(' ', arguments)} did not finish within {CliTimeout}.");
        }
        process.WaitForExit();
        return (process.ExitCode, stdout.GetAwaiter().GetResult(), stderr.GetAwaiter().GetResult());
    }

    /// <summary>
    /// The Bicep CLI pinned in eng/bicep/Bicep.CommandLine.csproj, as restored into the NuGet cache by eng/lint-infra.sh,
    /// or FUNCPROXY_BICEP. A missing CLI fails the test: this check must not pass by not running.
    /// </summary>
    internal static string LocateBicep(string repositoryRoot)
    {
        var overridePath = Environment.GetEnvironmentVariable("FUNCPROXY_BICEP");
        if (!string.IsNullOrEmpty(overridePath))
        {
            Assert.True(File.Exists(overridePath), $"FUNCPROXY_BICEP points to '{overridePath}', which does not exist.");
            return overridePath;
        }

        var project = Path.Combine(repositoryRoot, "eng", "bicep", "Bicep.CommandLine.csproj");
        var version = Regex.Match(File.ReadAllText(project), "<BicepVersion>([^<]+)</BicepVersion>").Groups[1].Value;
        Assert.False(string.IsNullOrEmpty(version), $"No <BicepVersion> in {project}.");

        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(packages))
        {
            packages = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        }
        var bicep = Path.Combine(packages, "azure.bicep.commandline.linux-x64", version, "tools", "bicep");
        if (!File.Exists(bicep))
        {
            Assert.Fail(
                $"The Bicep CLI {version} is not at {bicep}. Run `bash eng/lint-infra.sh` once (it restores " +
                "eng/bicep/Bicep.CommandLine.csproj; CI runs it before the tests), or set FUNCPROXY_BICEP to a bicep binary " +
                "(needed off linux-x64).");
        }
        if (!OperatingSystem.IsWindows())
        {
            // NuGet extracts the binary owner-executable only on some setups.
            File.SetUnixFileMode(bicep, File.GetUnixFileMode(bicep) | UnixFileMode.UserExecute);
        }
        return bicep;
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "infra", "main.bicep"))
                && File.Exists(Path.Combine(directory.FullName, "Directory.Build.props")))
            {
                return directory.FullName;
            }
        }
        throw new InvalidOperationException($"No repository root (with infra/main.bicep) above {AppContext.BaseDirectory}.");
    }

    private sealed record Result(JsonDocument Template, string Diagnostics, JsonDocument Snapshot, IReadOnlyList<JsonElement> Resources);
}
