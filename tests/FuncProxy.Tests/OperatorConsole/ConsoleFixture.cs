using FuncProxy.Tests.Infrastructure;
using static FuncProxy.Tests.Admin.AdminTestKit;

namespace FuncProxy.Tests.OperatorConsole;

/// <summary>
/// One gateway (the real Server host on real Azurite, a provider stub behind it) and one headless Chromium for the
/// console's browser tests. The browser is launched only where the tests run (see <see cref="BrowserFactAttribute"/>).
/// </summary>
public sealed class ConsoleFixture : IAsyncLifetime
{
    private ConsoleBrowser? _browser;

    public UpstreamStub? Stub { get; private set; }
    public GatewayHost Gateway { get; private set; } = null!;
    public string AdminKey { get; private set; } = null!;

    public ConsoleBrowser Browser => _browser ?? throw new InvalidOperationException("Chromium was not launched.");

    public Uri ConsoleUrl => new(Gateway.BaseAddress, "/api/admin/console/");

    /// <summary>Where the tests write the README's screenshots, when <c>FUNCPROXY_CONSOLE_SCREENSHOTS</c> names a folder.</summary>
    public static string? ScreenshotFolder => Environment.GetEnvironmentVariable("FUNCPROXY_CONSOLE_SCREENSHOTS") is { Length: > 0 } d ? d : null;

    public async Task InitializeAsync()
    {
        Stub = await UpstreamStub.StartAsync();
        Gateway = await GatewayHost.StartAsync(Settings(Stub,
            ("FuncProxy:Admin:MaxFailedAttempts", "1000"),
            ("FuncProxy:Admin:RequestsPerMinutePerIp", "100000"),
            // Usage rows are written on this interval; short, so a test sees its call's usage without a long wait.
            ("FuncProxy:Limits:UsageFlushInterval", "00:00:01")));
        AdminKey = await Gateway.MintAdminKeyAsync("console-tests");
        if (File.Exists(ConsoleBrowser.ExecutablePath) || ConsoleBrowser.InCi)
        {
            _browser = await ConsoleBrowser.LaunchAsync();
        }
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }
        // Null-safe: a start that failed half way must not hide its own error behind this one.
        if (Gateway is not null)
        {
            await Gateway.DisposeAsync();
        }
        if (Stub is not null)
        {
            await Stub.DisposeAsync();
        }
    }
}
