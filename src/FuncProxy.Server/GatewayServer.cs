using FuncProxy;
using Microsoft.Extensions.Options;

namespace FuncProxy.Server;

/// <summary>The Kestrel host of the engine: the same registration and routes the Functions app has, under <c>/api</c>.</summary>
public static partial class GatewayServer
{
    /// <summary>Where the host listens unless <c>--urls</c>, <c>ASPNETCORE_URLS</c> or <c>ASPNETCORE_HTTP_PORTS</c> say otherwise: as <c>func start</c> does.</summary>
    public const string DefaultUrl = "http://127.0.0.1:7071";

    public static async Task<WebApplication> BuildAsync(string[] args, Action<WebApplicationBuilder>? configure = null, bool startLocalStorage = true)
    {
        var builder = WebApplication.CreateBuilder(args);
        if (string.IsNullOrEmpty(builder.Configuration["urls"]) && string.IsNullOrEmpty(builder.Configuration["http_ports"]) && string.IsNullOrEmpty(builder.Configuration["https_ports"]))
        {
            builder.WebHost.UseUrls(DefaultUrl);
        }
        // No "Server: Kestrel" banner: the upstream's own Server header is stripped too (SECURITY.md).
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
        builder.Services.AddFuncProxy(builder.Configuration);
        configure?.Invoke(builder);

        LocalAzurite? azurite = null;
        if (startLocalStorage)
        {
            azurite = await LocalAzurite.EnsureRunningAsync(builder.Configuration, Console.Out).ConfigureAwait(false);
        }

        var app = builder.Build();
        app.MapFuncProxy();
        if (azurite is not null)
        {
            app.Lifetime.ApplicationStopping.Register(azurite.Dispose);
        }
        app.Lifetime.ApplicationStarted.Register(() => PrintBanner(app));
        return app;
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
