using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using FuncProxy.Server;
using FuncProxy.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;

namespace FuncProxy.Tests.Hosting;

/// <summary>
/// The real FuncProxy.Server process, as README runs it: real signals (Ctrl+C is SIGINT to the terminal's whole process
/// group), exit codes, what it prints, and the local Azurite it starts and must stop. Bounds are generous: the machine is busy.
/// </summary>
public sealed partial class ServerProcessTests : IAsyncLifetime
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(120);
    private readonly string _prefix = TestStorage.NewTablePrefix();
    private UpstreamStub _stub = null!;
    private string _connection = null!;

    public async Task InitializeAsync()
    {
        _stub = await UpstreamStub.StartAsync();
        _connection = await TestStorage.GetConnectionStringAsync();
    }

    public async Task DisposeAsync() => await _stub.DisposeAsync();

    [GeneratedRegex(@"Started Azurite \(tables\) on 127\.0\.0\.1:10002 \(pid (\d+)\)")]
    private static partial Regex AzuriteStarted();

    private static void AssertNoStackTrace(string output)
    {
        Assert.DoesNotMatch(new Regex(@"^\s+at \S+\(", RegexOptions.Multiline), output);
        Assert.DoesNotContain("Unhandled exception", output, StringComparison.Ordinal);
        Assert.DoesNotContain("AggregateException", output, StringComparison.Ordinal);
    }

    private static int AzuritePid(ChildProcess server)
    {
        var match = AzuriteStarted().Match(server.Output);
        Assert.True(match.Success, "the host says it started Azurite, with its pid:\n" + server.Output);
        return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Ctrl_C_before_any_request_stops_the_host_cleanly_and_then_the_Azurite_it_started()
    {
        await using var server = ServerProcess.StartIsolated([], new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = "UseDevelopmentStorage=true",
        });
        Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
        var azurite = AzuritePid(server);

        await server.SignalAsync("INT", group: true);

        Assert.True(await server.WaitForExitAsync(Generous), "the host stops on Ctrl+C:\n" + server.Output);
        Assert.Equal(GatewayServer.ExitStopped, server.ExitCode);
        AssertNoStackTrace(server.Output);
        Assert.DoesNotContain("could not be written", server.Output, StringComparison.Ordinal);
        Assert.True(await ServerProcess.WaitUntilGoneAsync(azurite, Generous), "the Azurite the host started is stopped with it");
    }

    [Fact]
    public async Task A_host_killed_outright_leaves_no_Azurite_running()
    {
        await using var server = ServerProcess.StartIsolated([], new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = "UseDevelopmentStorage=true",
        });
        Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
        var azurite = AzuritePid(server);
        try
        {
            // SIGKILL: the host runs none of its own clean-up; Azurite sees its standard input close and exits.
            await server.SignalAsync("KILL");
            Assert.True(await server.WaitForExitAsync(Generous), server.Output);
            Assert.True(await ServerProcess.WaitUntilGoneAsync(azurite, Generous), "the Azurite of a killed host exits by itself");
        }
        finally
        {
            if (ServerProcess.IsRunning(azurite))
            {
                using var orphan = System.Diagnostics.Process.GetProcessById(azurite);
                orphan.Kill(entireProcessTree: true);
            }
        }
    }

    [Fact]
    public async Task A_start_failure_is_one_line_and_a_documented_exit_code_and_leaves_no_Azurite_running()
    {
        // The address is the one the host's own Azurite takes: Azurite starts, then the host cannot listen.
        await using (var busy = ServerProcess.StartIsolated(["--urls", "http://127.0.0.1:10002"], new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = "UseDevelopmentStorage=true",
        }))
        {
            Assert.True(await busy.WaitForExitAsync(Generous), busy.Output);
            Assert.Equal(GatewayServer.ExitCannotListen, busy.ExitCode);
            Assert.Contains("FuncProxy could not start: Failed to bind to address http://127.0.0.1:10002: address already in use.", busy.Output, StringComparison.Ordinal);
            AssertNoStackTrace(busy.Output);
            Assert.True(await ServerProcess.WaitUntilGoneAsync(AzuritePid(busy), Generous), "no Azurite is left running");
        }

        await using var invalid = ServerProcess.StartIsolated([], new Dictionary<string, string>
        {
            ["FuncProxy__Storage__ConnectionString"] = "UseDevelopmentStorage=true",
            ["FuncProxy__Proxy__UpstreamTimeout"] = "soon",
        });
        Assert.True(await invalid.WaitForExitAsync(Generous), invalid.Output);
        Assert.Equal(GatewayServer.ExitConfiguration, invalid.ExitCode);
        Assert.Contains("FuncProxy:Proxy:UpstreamTimeout", invalid.Output, StringComparison.Ordinal);
        AssertNoStackTrace(invalid.Output);
        Assert.DoesNotContain("Started Azurite", invalid.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_mistyped_verb_or_stray_argument_prints_usage_and_exits_2_instead_of_starting_a_gateway()
    {
        foreach (var args in new[] { new[] { "frob" }, ["key", "list"], ["--urls", "http://127.0.0.1:1", "frob"] })
        {
            var (code, output, error) = await ServerProcess.RunAsync(args);
            Assert.True(code == GatewayServer.ExitUsage, $"{string.Join(' ', args)}: exit {code}\n{output}{error}");
            Assert.DoesNotContain("Now listening", output, StringComparison.Ordinal);
        }
        var (_, _, mistyped) = await ServerProcess.RunAsync(["key", "list"]);
        Assert.Contains("Did you mean 'keys list'?", mistyped, StringComparison.Ordinal);
    }

    private async Task<(string Id, string Key)> MintAsync()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        var code = await OperatorCli.RunAsync(["keys", "create", "--name", "process-test", "--upstream", "stub", "--json"], output, error, config =>
        {
            config.Sources.Clear();
            config.AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["FuncProxy:Storage:ConnectionString"] = _connection,
                ["FuncProxy:Storage:TablePrefix"] = _prefix,
                ["FuncProxy:Upstreams:stub:BaseUrl"] = new Uri(_stub.BaseAddress, "/v1").ToString(),
            });
        });
        Assert.True(code == OperatorCli.Ok, error.ToString());
        var json = JsonDocument.Parse(output.ToString()).RootElement;
        return (json.GetProperty("record").GetProperty("id").GetString()!, json.GetProperty("key").GetString()!);
    }

    private Dictionary<string, string> GatewayEnvironment(string connection) => new()
    {
        ["FuncProxy__Storage__ConnectionString"] = connection,
        ["FuncProxy__Storage__TablePrefix"] = _prefix,
        ["FuncProxy__Upstreams__stub__BaseUrl"] = new Uri(_stub.BaseAddress, "/v1").ToString(),
        // Nothing is written before shutdown: what the test reads afterwards was written by the shutdown flush.
        ["FuncProxy__Limits__UsageFlushInterval"] = "01:00:00",
    };

    private static async Task CallAsync(int port, string key)
    {
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
        using var request = ChatRequest(key);
        using var response = await client.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        _ = await response.Content.ReadAsStringAsync();
    }

    [Fact]
    public async Task A_clients_traceparent_goes_upstream_unchanged_unless_hosting_diagnostics_are_switched_back_on()
    {
        // By default the host starts no per-request Activity (issue 11: its cost is paid for spans nobody reads when no
        // exporter is configured), so the client's trace context passes through as it came and none is made up.
        const string TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        var (_, key) = await MintAsync();
        var port = AzuriteProcess.FreePort();
        await using (var server = ServerProcess.Start(["--urls", $"http://127.0.0.1:{port}"], GatewayEnvironment(_connection)))
        {
            Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
            Assert.Equal(TraceParent, (await CallRecordedAsync(port, key, TraceParent)).GetValueOrDefault("traceparent"));
            Assert.False((await CallRecordedAsync(port, key, traceParent: null)).ContainsKey("traceparent"));
        }

        // Switched back on in configuration (it outranks the built-in default): the gateway joins the client's trace with
        // a span of its own, so the upstream sees the same trace id under a new parent id.
        var environment = GatewayEnvironment(_connection);
        environment["Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics"] = "Information";
        port = AzuriteProcess.FreePort();
        await using (var server = ServerProcess.Start(["--urls", $"http://127.0.0.1:{port}"], environment))
        {
            Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
            var forwarded = (await CallRecordedAsync(port, key, TraceParent)).GetValueOrDefault("traceparent");
            Assert.NotNull(forwarded);
            Assert.StartsWith("00-0af7651916cd43dd8448eb211c80319c-", forwarded, StringComparison.Ordinal);
            Assert.NotEqual(TraceParent, forwarded);
        }
    }

    /// <summary>A chat completion through the server's <c>stub</c> upstream with <paramref name="key"/>.</summary>
    private static HttpRequestMessage ChatRequest(string key)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/api/stub/chat/completions")
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return request;
    }

    // One call through the server; the request headers the provider stub saw.
    private async Task<IReadOnlyDictionary<string, string>> CallRecordedAsync(int port, string key, string? traceParent)
    {
        var before = _stub.Requests.Count;
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(60) };
        using var request = ChatRequest(key);
        if (traceParent is not null)
        {
            request.Headers.TryAddWithoutValidation("traceparent", traceParent);
        }
        using var response = await client.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
        Assert.Equal(before + 1, _stub.Requests.Count);
        return _stub.Requests.Last().Headers;
    }

    [Fact]
    public async Task SIGTERM_writes_the_usage_still_in_memory_before_the_host_exits()
    {
        var (id, key) = await MintAsync();
        var port = AzuriteProcess.FreePort();
        await using var server = ServerProcess.Start(["--urls", $"http://127.0.0.1:{port}"], GatewayEnvironment(_connection));
        Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
        await CallAsync(port, key);

        await server.SignalAsync("TERM");

        Assert.True(await server.WaitForExitAsync(Generous), server.Output);
        Assert.Equal(GatewayServer.ExitStopped, server.ExitCode);
        using var output = new StringWriter();
        var code = await OperatorCli.RunAsync(["keys", "usage", id, "--json"], output, TextWriter.Null, config =>
        {
            config.Sources.Clear();
            config.AddInMemoryCollection(new Dictionary<string, string?> { ["FuncProxy:Storage:ConnectionString"] = _connection, ["FuncProxy:Storage:TablePrefix"] = _prefix });
        });
        Assert.Equal(OperatorCli.Ok, code);
        var totals = JsonDocument.Parse(output.ToString()).RootElement.GetProperty("totals");
        Assert.Equal(1, totals.GetProperty("requests").GetInt64());
        Assert.Equal(UpstreamStub.CompletionTokens, totals.GetProperty("outputTokens").GetInt64());
    }

    [Fact]
    public async Task SIGTERM_after_storage_went_away_stops_cleanly_and_says_in_one_line_what_usage_was_lost()
    {
        await using var storage = await AzuriteProcess.StartAsync();
        _connection = storage.ConnectionString;
        var (_, key) = await MintAsync();
        var port = AzuriteProcess.FreePort();
        await using var server = ServerProcess.Start(["--urls", $"http://127.0.0.1:{port}"], GatewayEnvironment(storage.ConnectionString));
        Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
        await CallAsync(port, key);
        await storage.StopAsync();

        await server.SignalAsync("TERM");

        Assert.True(await server.WaitForExitAsync(Generous), server.Output);
        Assert.Equal(GatewayServer.ExitStopped, server.ExitCode);
        Assert.Contains("Usage could not be written at shutdown: 1 row(s) of metered usage are lost.", server.Output, StringComparison.Ordinal);
        AssertNoStackTrace(server.Output);
    }

    [Fact]
    public async Task User_secrets_set_as_README_says_reach_the_host_and_the_CLI_and_environment_variables_still_win()
    {
        // dotnet user-secrets writes ~/.microsoft/usersecrets/<UserSecretsId>/secrets.json, a flat JSON object.
        var home = ServerProcess.NewDirectory();
        var secrets = Path.Combine(home, ".microsoft", "usersecrets", "funcproxy-server");
        Directory.CreateDirectory(secrets);
        await File.WriteAllTextAsync(Path.Combine(secrets, "secrets.json"), JsonSerializer.Serialize(new Dictionary<string, string>
        {
            ["FuncProxy:Secrets:stub-key"] = "sk-from-user-secrets",
            ["FuncProxy:Storage:ConnectionString"] = _connection,
            ["FuncProxy:Storage:TablePrefix"] = _prefix,
            ["FuncProxy:Upstreams:stub:BaseUrl"] = "http://127.0.0.1:1/overridden-by-the-environment",
        }));
        var environment = new Dictionary<string, string>
        {
            ["HOME"] = home,
            ["FuncProxy__Upstreams__stub__BaseUrl"] = new Uri(_stub.BaseAddress, "/v1").ToString(),
            ["FuncProxy__Upstreams__stub__SecretName"] = "stub-key",
        };

        // The CLI reads its storage from user-secrets.
        var (code, output, error) = await ServerProcess.RunAsync(["keys", "create", "--name", "from-secrets", "--upstream", "stub"], environment);
        Assert.True(code == OperatorCli.Ok, output + error);
        var key = output.Trim().Split('\n')[^1].Trim();

        // The host attaches the provider secret from user-secrets.
        _stub.RequiredCredential = "Bearer sk-from-user-secrets";
        var port = AzuriteProcess.FreePort();
        await using var server = ServerProcess.Start(["--urls", $"http://127.0.0.1:{port}"], environment);
        Assert.True(await server.WaitForOutputAsync("FuncProxy serves", Generous), server.Output);
        await CallAsync(port, key);
        await server.SignalAsync("TERM");
        Assert.True(await server.WaitForExitAsync(Generous), server.Output);
    }

    [Fact]
    public async Task The_provider_stub_stops_on_SIGTERM()
    {
        // SIGTERM only: a process started by the test runner may inherit SIGINT as ignored, so Ctrl+C is checked by hand.
        Assert.True(File.Exists(ServerProcess.StubDll), ServerProcess.StubDll + " is built with the tests");
        foreach (var signal in new[] { "TERM" })
        {
            var port = AzuriteProcess.FreePort();
            await using var stub = ChildProcess.Start("stub", "dotnet", [ServerProcess.StubDll, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)], workingDirectory: ServerProcess.NewDirectory());
            Assert.True(await stub.WaitForOutputAsync("stops it.", Generous), stub.Output);
            await stub.SignalAsync(signal);
            Assert.True(await stub.WaitForExitAsync(Generous), $"SIG{signal} stops the stub:\n{stub.Output}");
            Assert.Equal(0, stub.ExitCode);
        }
    }
}
