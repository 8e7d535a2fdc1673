using FuncProxy;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration.Memory;
using Microsoft.Extensions.Options;

namespace FuncProxy.Server;

/// <summary>The Kestrel host of the engine: the same registration and routes the Functions app has, under <c>/api</c>.</summary>
public static partial class GatewayServer
{
    /// <summary>Where the host listens unless <c>--urls</c>, <c>ASPNETCORE_URLS</c> or <c>ASPNETCORE_HTTP_PORTS</c> say otherwise: as <c>func start</c> does.</summary>
    public const string DefaultUrl = "http://127.0.0.1:7071";

    /// <summary>Exit code: the host ran and stopped cleanly (Ctrl+C, SIGTERM).</summary>
    public const int ExitStopped = 0;

    /// <summary>Exit code: something went wrong while stopping (logged in one line); metered usage may be lost.</summary>
    public const int ExitStoppedWithError = 1;

    /// <summary>Exit code: bad command line (an unknown verb or a stray argument).</summary>
    public const int ExitUsage = 2;

    /// <summary>Exit code: the host could not start: an invalid setting, or storage (the local Azurite) could not be started.</summary>
    public const int ExitConfiguration = 3;

    /// <summary>Exit code: the host could not listen on its address (in use, or not allowed).</summary>
    public const int ExitCannotListen = 5;

    /// <summary>
    /// Runs the host until Ctrl+C or SIGTERM and returns one of the documented exit codes. A start failure is one line on
    /// standard error, never a stack trace. The Azurite it starts itself is stopped last, after the server has stopped
    /// accepting and metered usage is written, whether the host stops or fails to start.
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter? error = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        error ??= Console.Error;
        if (StrayArgument(args) is { } stray)
        {
            await error.WriteLineAsync($"Unknown argument '{stray}'. The host takes settings as --name value (e.g. --urls http://127.0.0.1:8080); operator verbs are listed by --help.").ConfigureAwait(false);
            return ExitUsage;
        }
        WebApplication? app = null;
        LocalAzurite? azurite = null;
        try
        {
            try
            {
                // The host logs a failed start with its stack trace; RunAsync says it in one line instead (a faulted
                // background service is still logged: it is Critical).
                app = Build(args, b => b.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical));
                _ = app.Services.GetRequiredService<IOptions<FuncProxyOptions>>().Value;
            }
            catch (OptionsValidationException e)
            {
                await error.WriteLineAsync("FuncProxy could not start: configuration is not valid:\n  " + string.Join("\n  ", e.Failures)).ConfigureAwait(false);
                return ExitConfiguration;
            }
            catch (InvalidOperationException e)
            {
                // Binding errors name the setting ("Failed to convert configuration value ... at 'FuncProxy:...'").
                await error.WriteLineAsync("FuncProxy could not start: configuration is not valid: " + e.Message).ConfigureAwait(false);
                return ExitConfiguration;
            }
            try
            {
                azurite = await LocalAzurite.EnsureRunningAsync(app.Configuration, Console.Out).ConfigureAwait(false);
            }
            catch (InvalidOperationException e)
            {
                await error.WriteLineAsync("FuncProxy could not start: " + e.Message).ConfigureAwait(false);
                return ExitConfiguration;
            }
            try
            {
                await app.StartAsync().ConfigureAwait(false);
            }
            catch (IOException e)
            {
                // Kestrel: "Failed to bind to address http://127.0.0.1:7071: address already in use."
                await error.WriteLineAsync($"FuncProxy could not start: {e.Message} Choose another address with --urls http://127.0.0.1:PORT (or ASPNETCORE_URLS).").ConfigureAwait(false);
                return ExitCannotListen;
            }
            catch (OptionsValidationException e)
            {
                await error.WriteLineAsync("FuncProxy could not start: configuration is not valid:\n  " + string.Join("\n  ", e.Failures)).ConfigureAwait(false);
                return ExitConfiguration;
            }
            catch (Exception e) when (e is InvalidOperationException or FormatException or UriFormatException or ArgumentException || FuncProxyTables.IsStorageFailure(e))
            {
                await error.WriteLineAsync("FuncProxy could not start: " + FuncProxyTables.Describe(e)).ConfigureAwait(false);
                return ExitConfiguration;
            }
            try
            {
                await app.WaitForShutdownAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // Stopping must not crash whatever state storage or the network is in; say what happened in one line.
                await error.WriteLineAsync("FuncProxy stopped with an error: " + FuncProxyTables.Describe(e)).ConfigureAwait(false);
                return ExitStoppedWithError;
            }
            return ExitStopped;
        }
        finally
        {
            if (app is not null)
            {
                await app.DisposeAsync().ConfigureAwait(false);
            }
            // Last: the server has stopped accepting and the usage meter has flushed into it.
            azurite?.Dispose();
        }
    }

    /// <summary>
    /// Builds the host. With <paramref name="startLocalStorage"/>, starts the local Azurite when the settings name it and
    /// nothing listens on its port, and stops it when the host has stopped (tests and benchmarks pass false).
    /// </summary>
    public static async Task<WebApplication> BuildAsync(string[] args, Action<WebApplicationBuilder>? configure = null, bool startLocalStorage = true)
    {
        var app = Build(args, configure);
        if (startLocalStorage && await LocalAzurite.EnsureRunningAsync(app.Configuration, Console.Out).ConfigureAwait(false) is { } azurite)
        {
            // Stopped, not stopping: the usage meter flushes into it while the host stops.
            app.Lifetime.ApplicationStopped.Register(azurite.Dispose);
        }
        return app;
    }

    /// <summary>
    /// ASP.NET Core hosting starts an <see cref="System.Diagnostics.Activity"/> and a log scope for every request whenever
    /// its <c>Microsoft.AspNetCore.Hosting.Diagnostics</c> category is enabled at any level, and HttpClient then adds a
    /// child Activity and a <c>traceparent</c> of its own: about 2 KB and a tenth of the gateway's CPU per call for spans
    /// nobody reads when no exporter is configured (docs/benchmarks.md, issue 11). So that category is off by default.
    /// A configured exporter (docs/architecture.md, "Telemetry") listens to the hosting ActivitySource and gets its spans anyway; a
    /// client's own <c>traceparent</c> is forwarded unchanged either way. Setting the category to <c>Information</c> brings
    /// back the per-request log lines and the Activity.
    /// </summary>
    internal static readonly Dictionary<string, string?> QuietDefaults = new()
    {
        ["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "None",
    };

    private static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure)
    {
        // Settings are read once, bound and validated at start (a change needs a restart, as README says), so no file
        // watchers on appsettings: each holds one of the user's inotify instances (128 by default on Linux), which a few
        // hosts on one machine, or one test run's many, use up; the next host then fails to start.
        var builder = WebApplication.CreateBuilder([.. args, "--hostBuilder:reloadConfigOnChange=false"]);
        // Defaults below every other source (appsettings, environment, command line can each set them back).
        ((IConfigurationBuilder)builder.Configuration).Sources.Insert(0, new MemoryConfigurationSource { InitialData = QuietDefaults });
        UserSecrets.Add(builder.Configuration, builder.Environment);
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]) && string.IsNullOrEmpty(builder.Configuration["https_ports"]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }
        // No "Server: Kestrel" banner: the upstream's own Server header is stripped too (SECURITY.md).
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
        builder.Services.AddFuncProxy(builder.Configuration);
        // Kestrel's own refusals are empty bodies (no hook writes one), so its limits sit well above the gateway's, which
        // answer 414/431 problem+json (Http/RequestLimits.cs); only a request beyond this ceiling meets Kestrel's answer.
        builder.Services.AddOptions<KestrelServerOptions>().Configure<IOptions<FuncProxyOptions>>((kestrel, options) =>
        {
            var requests = options.Value.Requests;
            kestrel.Limits.MaxRequestLineSize = RequestLimitOptions.ServerCeilingFactor * requests.MaxTargetLength;
            kestrel.Limits.MaxRequestHeadersTotalSize = RequestLimitOptions.ServerCeilingFactor * requests.MaxHeadersTotalBytes;
            kestrel.Limits.MaxRequestHeaderCount = RequestLimitOptions.ServerCeilingFactor * requests.MaxHeaderCount;
            kestrel.Limits.Http2.MaxRequestHeaderFieldSize = Math.Max(kestrel.Limits.Http2.MaxRequestHeaderFieldSize, kestrel.Limits.MaxRequestHeadersTotalSize);
        });
        // Audit retention: on Functions a timer function runs the sweep; here a hosted service does.
        builder.Services.AddHostedService<FuncProxy.Admin.AuditRetentionService>();
        configure?.Invoke(builder);
        var app = builder.Build();
        app.UseFuncProxyRequestLimits();
        // Client calls go straight to the proxy; routing (here, after it) serves the management API, health and the 404s.
        app.UseFuncProxyCalls();
        app.UseRouting();
        app.MapFuncProxy();
        app.Lifetime.ApplicationStarted.Register(() => PrintBanner(app));
        return app;
    }

    /// <summary>
    /// The first argument that the configuration's command line would silently ignore: a bare word that is neither a
    /// <c>--name value</c> pair nor <c>name=value</c> (a mistyped verb such as <c>frob</c> or <c>key list</c>).
    /// </summary>
    internal static string? StrayArgument(string[] args)
    {
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg.StartsWith('-') || arg.StartsWith('/'))
            {
                if (!arg.Contains('=', StringComparison.Ordinal))
                {
                    i++;
                }
                continue;
            }
            if (!arg.Contains('=', StringComparison.Ordinal))
            {
                return arg;
            }
        }
        return null;
    }

    private static void PrintBanner(WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<FuncProxyOptions>>().Value;
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("FuncProxy.Server");
        var address = app.Urls.FirstOrDefault() ?? DefaultUrl;
        var upstreams = options.Upstreams.Count == 0 ? "(none configured)" : string.Join(", ", options.Upstreams.Select(u => u.Value.Backends.Count == 0
                ? $"{u.Key} -> {u.Value.BaseUrl}"
                : $"{u.Key} -> [{string.Join(", ", u.Value.Backends.Select(b => $"{b.Key}: {b.Value.BaseUrl}"))}]"));
        var secrets = options.KeyVault.VaultUri is { } vault ? $"Key Vault {vault}" : "configuration (FuncProxy:Secrets)";
        Log.Serving(logger, address, upstreams, secrets);
        Log.HowToMintKey(logger, options.Upstreams.ContainsKey("openai") ? "openai" : options.Upstreams.Keys.FirstOrDefault() ?? "openai");
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 9001, Level = LogLevel.Information, Message = "FuncProxy serves {Address}/api/{{upstream}}/... Upstreams: {Upstreams}. Secrets from {SecretSource}.")]
        public static partial void Serving(ILogger logger, string address, string upstreams, string secretSource);

        [LoggerMessage(EventId = 9002, Level = LogLevel.Information, Message = "Mint a client key with: dotnet run --project src/FuncProxy.Server -- keys create --name my-app --upstream {Upstream}")]
        public static partial void HowToMintKey(ILogger logger, string upstream);
    }
}
