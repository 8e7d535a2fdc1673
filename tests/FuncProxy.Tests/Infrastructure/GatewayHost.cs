using System.Collections.Concurrent;
using FuncProxy.Keys;
using FuncProxy.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace FuncProxy.Tests.Infrastructure;

/// <summary>
/// The real Server host (same registration and routes as <c>dotnet run</c>) on a free loopback port, against the test
/// storage with its own table prefix, with every log line captured.
/// </summary>
public sealed class GatewayHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private GatewayHost(WebApplication app, Uri baseAddress, CapturedLogs logs, string tablePrefix)
    {
        _app = app;
        BaseAddress = baseAddress;
        Logs = logs;
        TablePrefix = tablePrefix;
        Client = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public Uri BaseAddress { get; }
    public HttpClient Client { get; }
    public CapturedLogs Logs { get; }
    public string TablePrefix { get; }
    public IServiceProvider Services => _app.Services;

    /// <param name="settings">Configuration under the usual names, e.g. <c>FuncProxy:Upstreams:stub:BaseUrl</c>.</param>
    /// <param name="tablePrefix">Share one to make several hosts act as instances of one deployment.</param>
    public static async Task<GatewayHost> StartAsync(
        IDictionary<string, string?> settings,
        string? tablePrefix = null,
        Action<IServiceCollection>? services = null,
        string? connectionString = null)
    {
        tablePrefix ??= TestStorage.NewTablePrefix();
        var config = new Dictionary<string, string?>
        {
            // A loaded test machine can take seconds to answer a storage call; at the default 2 s a slow claim would count
            // as an outage and switch the limiter to its failure mode mid-test. Outage tests set their own.
            ["FuncProxy:Limits:StorageTimeout"] = "00:00:30",
        };
        foreach (var (name, value) in settings)
        {
            config[name] = value;
        }
        config["FuncProxy:Storage:ConnectionString"] = connectionString ?? await TestStorage.GetConnectionStringAsync();
        config["FuncProxy:Storage:TablePrefix"] = tablePrefix;
        var logs = new CapturedLogs();
        var app = await GatewayServer.BuildAsync(
            ["--urls", "http://127.0.0.1:0", "--environment", "Testing"],
            builder =>
            {
                // Only what the test says: the Server's appsettings.json names real providers.
                builder.Configuration.Sources.Clear();
                builder.Configuration.AddInMemoryCollection(config);
                builder.Logging.ClearProviders();
                builder.Logging.SetMinimumLevel(LogLevel.Trace);
                builder.Logging.AddProvider(logs);
                services?.Invoke(builder.Services);
            },
            startLocalStorage: false);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new GatewayHost(app, new Uri(address), logs, tablePrefix);
    }

    /// <summary>Sends one request with a client key as <c>Authorization: Bearer</c>.</summary>
    public async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string key, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", key);
        return await Client.SendAsync(request);
    }

    /// <summary>Mints a key through the engine's own key lifecycle (as the CLI does).</summary>
    public async Task<IssuedKey> MintKeyAsync(params string[] upstreams) =>
        await Services.GetRequiredService<KeyLifecycle>().CreateAsync(new KeyCreation { Name = "test", AllowedUpstreams = upstreams });

    /// <summary>Mints an admin key (as <c>admin-keys create</c> does) and returns its value.</summary>
    public async Task<string> MintAdminKeyAsync(string name = "test-admin") =>
        (await Services.GetRequiredService<FuncProxy.Admin.AdminKeyStore>().CreateAsync(name, "test")).Value;

    /// <summary>A client for the management API that sends <paramref name="adminKey"/> as X-Admin-Key.</summary>
    public HttpClient AdminClient(string adminKey)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseAddress, "/api/admin/"), Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Add("X-Admin-Key", adminKey);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>Every log line the host writes, formatted, with exceptions and structured values, to search for leaks.</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    public ConcurrentQueue<string> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public bool Contains(string text) => Lines.Any(l => l.Contains(text, StringComparison.Ordinal));

    public void Dispose() { }

    private sealed class Logger(CapturedLogs owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull
        {
            owner.Lines.Enqueue($"{category} scope: {state}");
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var values = state is IEnumerable<KeyValuePair<string, object?>> pairs ? string.Join(";", pairs.Select(p => $"{p.Key}={p.Value}")) : "";
            owner.Lines.Enqueue($"{logLevel} {category} [{eventId.Id}] {formatter(state, exception)} | {values} | {exception}");
        }
    }
}
