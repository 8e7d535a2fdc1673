using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Microsoft.Playwright;

namespace FuncProxy.Tests.OperatorConsole;

/// <summary>
/// Headless Chromium driven by Playwright, one per test class. Every page it opens is watched: a console error, an
/// uncaught exception, a Content-Security-Policy violation or a JavaScript dialog (alert/confirm/prompt) is recorded,
/// and <see cref="WatchedPage.AssertCleanAsync"/> fails the test on any of them.
/// </summary>
public sealed class ConsoleBrowser : IAsyncDisposable
{
    public const string ExecutableVariable = "FUNCPROXY_CHROMIUM";

    // The flags the project runs Chromium with here: no sandbox (root in a container), nothing reaching out.
    private static readonly string[] Args =
    [
        "--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-component-update", "--disable-sync",
    ];

    private readonly IPlaywright _playwright;

    private ConsoleBrowser(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        Browser = browser;
    }

    public static string ExecutablePath => Environment.GetEnvironmentVariable(ExecutableVariable) is { Length: > 0 } path ? path : "/usr/bin/chromium";

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public IBrowser Browser { get; }

    public static async Task<ConsoleBrowser> LaunchAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            throw new InvalidOperationException($"Chromium is not installed at {ExecutablePath}: apt-get install -y chromium (CI installs it in .ci/run).");
        }
        // Waits in Playwright's assertions are bounded generously: the machine running the suite may be busy.
        Assertions.SetDefaultExpectTimeout(30_000);
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            Args = Args,
            Timeout = 60_000,
        });
        return new ConsoleBrowser(playwright, browser);
    }

    /// <summary>A new context (fresh sessionStorage) and page, watched for errors, CSP violations and dialogs.</summary>
    public async Task<WatchedPage> OpenAsync(int width = 1280, int height = 800)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = width, Height = height },
            Permissions = ["clipboard-read", "clipboard-write"],
            Locale = "en-US",
            TimezoneId = "UTC",
        });
        context.SetDefaultTimeout(30_000);
        // Runs before the page's own scripts, outside the page's CSP (it is injected by the browser, not loaded).
        await context.AddInitScriptAsync("""
            window.__cspViolations = [];
            document.addEventListener('securitypolicyviolation',
              (e) => window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));
            """);
        var page = await context.NewPageAsync();
        return new WatchedPage(context, page);
    }

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright.Dispose();
    }
}

/// <summary>A page with everything that must not happen recorded.</summary>
public sealed partial class WatchedPage : IAsyncDisposable
{
    private readonly IBrowserContext _context;

    internal WatchedPage(IBrowserContext context, IPage page)
    {
        _context = context;
        Page = page;
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                ConsoleErrors.Enqueue(message.Text);
            }
        };
        page.PageError += (_, error) => PageErrors.Enqueue(error);
        page.Dialog += (_, dialog) =>
        {
            Dialogs.Enqueue(dialog.Type + ": " + dialog.Message);
            _ = dialog.DismissAsync();
        };
    }

    public IPage Page { get; }
    public ConcurrentQueue<string> ConsoleErrors { get; } = new();
    public ConcurrentQueue<string> PageErrors { get; } = new();
    public ConcurrentQueue<string> Dialogs { get; } = new();

    /// <summary>CSP violations the page reported (securitypolicyviolation events).</summary>
    public async Task<string[]> CspViolationsAsync() => await Page.EvaluateAsync<string[]>("() => window.__cspViolations");

    /// <summary>
    /// Fails on any CSP violation, uncaught error, dialog, or console error. A console error that only reports an HTTP
    /// status the test provoked on purpose (Chromium logs "Failed to load resource: ... status of 401") is allowed when
    /// that status is listed in <paramref name="expectedStatuses"/>.
    /// </summary>
    public async Task AssertCleanAsync(params int[] expectedStatuses)
    {
        var csp = await CspViolationsAsync();
        Assert.True(csp.Length == 0, "CSP violations: " + string.Join(" | ", csp));
        Assert.True(PageErrors.IsEmpty, "Uncaught errors: " + string.Join(" | ", PageErrors));
        Assert.True(Dialogs.IsEmpty, "Dialogs opened: " + string.Join(" | ", Dialogs));
        var unexpected = ConsoleErrors.Where(e => !(FailedToLoad().Match(e) is { Success: true } m
            && expectedStatuses.Contains(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)))).ToList();
        Assert.True(unexpected.Count == 0, "Console errors: " + string.Join(" | ", unexpected));
    }

    [GeneratedRegex(@"^Failed to load resource: the server responded with a status of (\d{3})")]
    private static partial Regex FailedToLoad();

    public async ValueTask DisposeAsync() => await _context.DisposeAsync();
}
